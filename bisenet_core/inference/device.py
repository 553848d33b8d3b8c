"""Run the frame pipeline on its device: fixed buffers, one stream, a CUDA graph per frame layout.

    runner = DeviceRunner(pipeline, torch.device('cuda'), graphs=True)
    outputs, timings_ms = runner(frame, 'bgr', 'bilinear', ('color',))
    outputs, timings_ms = runner.run_batch([front, left, rear], 'bgr', 'bilinear', ())

For each FrameKey (batch size, frame size and channels, colour order, upsampling, requested
outputs) a Step holds everything its frames need, allocated once: a page-locked (pinned) host
buffer of N frames each frame is copied into straight from its message, the device input (one
upload for all N), the device outputs and pinned host outputs. With `graphs`, the whole
pipeline (resize, normalise, network on the N frames as one batch, upsample, colours) is
captured as one CUDA graph on the first batch of that key and replayed after: one launch
instead of hundreds. Steps live in a small least-recently-used cache (a camera does not
change size often; a multi-camera node sees a few batch sizes); every capture is logged.

Capture follows the torch.cuda.graphs documentation: warm-up runs on the capture stream first
(cuDNN autotuning, lazy initialisation and torch.compile all happen there, never inside the
capture), static input and output tensors, and the same stream for capture and replay. Each
graph has its own memory pool: sharing one is documented as safe only when graphs replay in
the order they were captured, which an LRU of frame sizes does not promise.
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict
from contextlib import nullcontext
from typing import Callable, NamedTuple

import numpy as np
import torch

from bisenet_core.inference.frames import channel_index, to_uint8

log = logging.getLogger(__name__)

# (batch size, frame layout) steps kept captured at once: a few layouts, and a multi-camera
# node's batch sizes (1 .. cameras) of its usual one.
CACHE_SIZE = 8
WARMUP_RUNS = 3         # eager runs on the capture stream before a capture


class FrameKey(NamedTuple):
    """Everything that changes the work done for a batch of frames."""

    height: int
    width: int
    channels: int
    color_order: str
    upsample: str
    outputs: tuple[str, ...]
    batch: int = 1

    def describe(self) -> str:
        extra = f" + {', '.join(self.outputs)}" if self.outputs else ''
        order = 'mono' if self.channels == 1 else self.color_order + ('a' * (self.channels == 4))
        batch = f'batches of {self.batch} ' if self.batch > 1 else ''
        return f'{batch}{self.width}x{self.height} {order} frames, {self.upsample}{extra}'


Outputs = dict[str, torch.Tensor]
# (run the pipeline once -> outputs, stream) -> (static outputs, replay: refills them)
Capture = Callable[[Callable[[], Outputs], 'torch.cuda.Stream | None'],
                   tuple[Outputs, Callable[[], None]]]


def capture_eager(run: Callable[[], Outputs], stream) -> tuple[Outputs, Callable[[], None]]:
    """No graph: every replay runs the pipeline and copies into the static outputs."""
    outputs = run()

    def replay() -> None:
        for name, value in run().items():
            outputs[name].copy_(value)
    return outputs, replay


def capture_graph(run: Callable[[], Outputs], stream: torch.cuda.Stream
                  ) -> tuple[Outputs, Callable[[], None]]:
    """Warm up on `stream`, then capture one run of the pipeline as a CUDA graph."""
    stream.wait_stream(torch.cuda.current_stream(stream.device))
    with torch.cuda.stream(stream):
        for _ in range(WARMUP_RUNS):
            run()
    torch.cuda.current_stream(stream.device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    # thread_local: the node's other threads may use CUDA (e.g. a subscriber) while this one
    # captures; only this thread's capture-unsafe calls are errors.
    with torch.cuda.graph(graph, stream=stream, capture_error_mode='thread_local'):
        outputs = run()
    return outputs, graph.replay


class Step:
    """The fixed buffers of one FrameKey (N x H x W x C in, N x ... out) and its pipeline run."""

    def __init__(self, pipeline, key: FrameKey, device: torch.device, stream,
                 capture: Capture):
        pinned = device.type == 'cuda'
        shape = (key.batch, key.height, key.width, key.channels)
        self.host_in = torch.zeros(shape, dtype=torch.uint8, pin_memory=pinned)
        self.host_in_array = self.host_in.numpy()
        self.device_in = (torch.zeros(shape, dtype=torch.uint8, device=device)
                          if device.type != 'cpu' else self.host_in)
        self.channels = torch.tensor(channel_index(key.channels, key.color_order),
                                     device=device)

        def run() -> Outputs:
            return pipeline(self.device_in, self.channels, key.upsample, key.outputs)

        with torch.inference_mode():
            self.device_out, self.replay = capture(run, stream)
        if device.type == 'cpu':
            self.host_out = self.device_out
        else:
            self.host_out = {name: torch.empty(value.shape, dtype=value.dtype,
                                               pin_memory=pinned)
                             for name, value in self.device_out.items()}
        self.host_out_arrays = {name: value.numpy() for name, value in self.host_out.items()}

    def upload(self) -> None:
        if self.device_in is not self.host_in:
            self.device_in.copy_(self.host_in, non_blocking=True)

    def download(self) -> None:
        if self.host_out is not self.device_out:
            for name, value in self.device_out.items():
                self.host_out[name].copy_(value, non_blocking=True)


class StepCache:
    """A bounded least-recently-used map FrameKey -> Step; builds (captures) on a miss.

    Args:
        build: makes the Step for a key (allocates, warms up, captures).
        capacity: Steps kept; the least recently used one is dropped (and its graph and
            buffers freed) when a new key would exceed it.
        what: how the log lines name a build ('CUDA graph' or 'frame buffers').
    """

    def __init__(self, build: Callable[[FrameKey], object], capacity: int = CACHE_SIZE,
                 what: str = 'CUDA graph'):
        if capacity < 1:
            raise ValueError(f'capacity must be >= 1, got {capacity}')
        self._build = build
        self.capacity = capacity
        self.what = what
        self.builds = 0
        self._steps: OrderedDict[FrameKey, object] = OrderedDict()

    def get(self, key: FrameKey):
        step = self._steps.get(key)
        if step is not None:
            self._steps.move_to_end(key)
            return step
        start = time.perf_counter()
        step = self._build(key)
        self.builds += 1
        self._steps[key] = step
        if len(self._steps) > self.capacity:
            dropped, _ = self._steps.popitem(last=False)
            log.info('dropped the %s for %s (cache holds %d)', self.what, dropped.describe(),
                     self.capacity)
        log.info('captured a %s for %s in %.0f ms (%d cached)', self.what, key.describe(),
                 (time.perf_counter() - start) * 1e3, len(self._steps))
        return step

    def keys(self) -> list[FrameKey]:
        """Cached keys, least recently used first."""
        return list(self._steps)

    def __len__(self) -> int:
        return len(self._steps)


class DeviceRunner:
    """FramePipeline on one device: frame (numpy view) -> numpy outputs and stage timings.

    Args:
        pipeline: the FramePipeline (its model already on `device`).
        device: where it runs; CUDA gets pinned buffers, a stream of its own, and graphs.
        graphs: capture CUDA graphs (CUDA only; ignored on the CPU).
        capture: override how a Step is captured (tests: a counting eager capture).
        cache_size: steps kept, one per (batch size, frame layout).
    """

    def __init__(self, pipeline, device: torch.device, graphs: bool = True,
                 capture: Capture | None = None, cache_size: int = CACHE_SIZE):
        self.device = device
        cuda = device.type == 'cuda'
        self.graphs = graphs and cuda
        self.stream = torch.cuda.Stream(device) if cuda else None
        if capture is None:
            capture = capture_graph if self.graphs else capture_eager
        self.cache = StepCache(lambda key: Step(pipeline, key, device, self.stream, capture),
                               cache_size, 'CUDA graph' if self.graphs else 'set of buffers')
        self._events = ([torch.cuda.Event(enable_timing=True) for _ in range(4)]
                        if cuda else None)

    def __call__(self, frame: np.ndarray, color_order: str, upsample: str,
                 outputs: tuple[str, ...]) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """One H x W x C frame -> its outputs and the stage timings (a batch of one)."""
        results, timings = self.run_batch([frame], color_order, upsample, outputs)
        return results[0], timings

    def run_batch(self, frames, color_order: str, upsample: str, outputs: tuple[str, ...]
                  ) -> tuple[list[dict[str, np.ndarray]], dict[str, float]]:
        """N frames of one layout (H x W x C, dtype) -> their outputs in order, and timings.

        The network sees the N frames as one batch; the timings are the batch's stages.
        """
        if not frames:
            raise ValueError('run_batch needs at least one frame')
        shape = frames[0].shape
        if any(frame.shape != shape for frame in frames):
            raise ValueError(f'a batch needs frames of one layout; got shapes '
                             f'{sorted({frame.shape for frame in frames})}')
        key = FrameKey(*shape, color_order, upsample, outputs, len(frames))
        with torch.cuda.device(self.device) if self.stream is not None else nullcontext():
            return self._run(key, frames)

    def _run(self, key: FrameKey, frames
             ) -> tuple[list[dict[str, np.ndarray]], dict[str, float]]:
        step = self.cache.get(key)
        t0 = time.perf_counter()
        for index, frame in enumerate(frames):
            to_uint8(frame, out=step.host_in_array[index])  # each frame's one host copy
        t1 = time.perf_counter()
        if self._events is None:
            with torch.inference_mode():
                step.replay()
            t2 = time.perf_counter()
            step.download()
            device_ms = ((t2 - t1) * 1e3, 0.0, 0.0)
        else:
            start, uploaded, computed, downloaded = self._events
            with torch.cuda.stream(self.stream), torch.inference_mode():
                start.record()
                step.upload()
                uploaded.record()
                step.replay()
                computed.record()
                step.download()
                downloaded.record()
            downloaded.synchronize()
            device_ms = (start.elapsed_time(uploaded), uploaded.elapsed_time(computed),
                         computed.elapsed_time(downloaded))
        t3 = time.perf_counter()
        results = [{name: array[index].copy() for name, array in step.host_out_arrays.items()}
                   for index in range(key.batch)]
        t4 = time.perf_counter()
        timings = {'upload': (t1 - t0) * 1e3 + device_ms[0], 'compute': device_ms[1],
                   'download': device_ms[2] + (t4 - t3) * 1e3}
        return results, timings
