"""segment_node's /diagnostics statuses and its log lines, from its cameras and batches.

One camera: one status `<node>: segmentation` (the camera's counters and timings, the model's
settings, the node's batches and memory). Several cameras: the node's own status
`<node>: segmentation` first (model, cameras, batches, compute per batch, memory, GPU memory
on CUDA; its level the worst camera's), then one per camera, `<node>: segmentation <camera>`,
with its own level and message; a camera that sent nothing for camera_timeout_s is WARN.
"""
from __future__ import annotations

import time

from diagnostic_msgs.msg import DiagnosticStatus

from bisenet_ros.diagnostics import LEVEL_NAMES, diagnostic_status
from bisenet_ros.node_status import gpu_memory_mb, rss_mb

# The values of the node's own status that describe the model, not a camera.
NODE_SETTINGS = ('backend', 'device', 'precision', 'network_size', 'upsample',
                 'latency_budget_ms')


class StatusReport:
    """Builds the node's statuses each diagnostics period (call statuses() once per period).

    Args:
        node: the SegmentNode (its cameras, segmenter, batch_stats, diagnostic_values).
        camera_timeout_s: several cameras: WARN for a camera silent this long; 0 = off.
    """

    def __init__(self, node, camera_timeout_s: float):
        self.node = node
        self.camera_timeout_s = camera_timeout_s
        # Per camera: frames_in at the last period, and when it last changed.
        self._last_input = {c.name: (0, time.monotonic()) for c in node.cameras}

    @property
    def several(self) -> bool:
        return bool(self.node.cameras[0].name)

    def node_values(self) -> dict[str, object]:
        """The node's own: its cameras, the batches run, compute per batch, memory."""
        node = self.node
        return {'cameras': ', '.join(c.name for c in node.cameras if c.name) or '-',
                **node.batch_stats.values(), 'memory_rss_mb': rss_mb(),
                **gpu_memory_mb(node.segmenter.device)}

    def camera_level(self, camera) -> tuple[int, str]:
        """The period's level of one camera (starts its next period)."""
        level, message = camera.stats.period_level(self.node.latency_budget_ms,
                                                   list(camera.input.notes.values()))
        if self.node.worker_failed():
            reason = self.node.worker_failure or 'it returned'
            return DiagnosticStatus.ERROR, (f'the worker thread ended ({reason}): no frame is '
                                            'labelled any more')
        frames_in, now = camera.stats.frames_in, time.monotonic()
        seen, since = self._last_input[camera.name]
        if frames_in != seen:
            self._last_input[camera.name] = (frames_in, now)
            return level, message
        silent = now - since
        if not self.several or not self.camera_timeout_s or silent < self.camera_timeout_s:
            return level, message
        what = (f'no frame for {silent:.1f} s' if frames_in else
                f'no frame yet ({silent:.1f} s)') + f' on {camera.input.topic_name}'
        if level == DiagnosticStatus.OK:
            return DiagnosticStatus.WARN, what
        return level, f'{message}; {what}'

    def statuses(self) -> tuple[list[DiagnosticStatus], int]:
        """This period's statuses and the worst level among them."""
        node = self.node
        hardware = f'{node.segmenter.backend_name}/{node.segmenter.device}'
        statuses, levels = [], []
        for camera in node.cameras:
            level, message = self.camera_level(camera)
            values = node.diagnostic_values(camera)
            if not self.several:  # one camera: its status is the node's
                values.update(self.node_values())
            levels.append((level, camera.name))
            statuses.append(diagnostic_status(self.name(camera), hardware, level, message,
                                              values))
        worst = max(level for level, _ in levels)
        if self.several:
            bad = [f'{name} {LEVEL_NAMES[level]}' for level, name in levels if level]
            message = (f'{len(bad)} of {len(levels)} cameras not OK: {", ".join(bad)}'
                       if bad else f'{len(levels)} cameras ok')
            settings = {k: v for k, v in node.diagnostic_values().items() if k in NODE_SETTINGS}
            statuses.insert(0, diagnostic_status(self.name(), hardware, worst, message,
                                                 {**settings, **self.node_values()}))
        return statuses, worst

    def name(self, camera=None) -> str:
        suffix = f' {camera.name}' if camera is not None and camera.name else ''
        return f'{self.node.get_fully_qualified_name()}: segmentation{suffix}'

    def wiring(self, qos: str) -> str:
        """Inputs and outputs for the 'ready:' log line."""
        cameras = self.node.cameras
        if not self.several:
            return (f'input {cameras[0].input.topic_name} ({qos}), output '
                    f'{cameras[0].outputs.topic_name("label")}')
        return f'{len(cameras)} cameras ({qos}): ' + ', '.join(
            f'{c.name} {c.input.topic_name} -> {c.outputs.topic_name("label")}' for c in cameras)

    def summary_line(self) -> str:
        """The 10 s log line: per camera rates, counts and latency; batches; the status."""
        node = self.node
        status = f'status {LEVEL_NAMES.get(node.last_level, "-")}'
        if not self.several:
            return f'{self._camera_summary(node.cameras[0])}; {status}'
        cameras = '; '.join(f'{c.name}: {self._camera_summary(c)}' for c in node.cameras)
        sizes = node.batch_stats.values()['batch_sizes_seen']
        return f'{cameras}; batches {sizes} (size x count); {status}'

    def _camera_summary(self, camera) -> str:
        v = self.node.diagnostic_values(camera)
        timing = ('no frame segmented yet' if not v['frames_out'] else
                  f'compute p50 {v["compute_p50_ms"]:.1f} ms, end-to-end p50 '
                  f'{v["end_to_end_p50_ms"]:.1f} / p99 {v["end_to_end_p99_ms"]:.1f} ms')
        return (f'{v["fps_in"]:.1f} fps in, {v["fps_out"]:.1f} out, {v["frames_out"]} frames, '
                f'{v["frames_dropped"]} dropped, {v["frames_missed"]} never arrived, '
                f'{v["errors"]} errors; {timing}')
