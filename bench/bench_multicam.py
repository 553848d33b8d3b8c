"""Several cameras: one node serving N cameras against N single-camera nodes side by side.

    python -m bench.bench_multicam                          # 4 cameras, 640x480, 10 Hz, both
    python -m bench.bench_multicam --cameras 1 2 4 6 --sizes 640x480 1280x720 --rates 10 30
    python -m bench.bench_multicam --modes separate --cameras 2 --seconds 20

As deployed: every camera is its own process (bench/node_delivery.py's camera, bgr8 at a
fixed rate, the shipped Fast DDS profile), every node is `ros2 launch bisenet_ros
segment.launch.py` with the shipped config (bisenet_ros/launched_node.py). Modes:

- one-node: one node with `cameras:=[front, left, ...]` (inputs /<camera>/image_raw,
  outputs <namespace>/segment_node/<camera>/label);
- separate: N nodes, node i in namespace /<camera i> with image_topic:=/<camera i>/image_raw.

This process subscribes to every camera's ~/label (only the header stamp is read) and
samples the node processes (and their children; not `ros2 launch` itself) twice a second.
The first --warmup-s seconds of each camera's stream are left out (first-frame set-up, graph
captures), so each figure covers the steady part. Per row:

- masks/s: labels received with a stamp in the window, over its length, summed over cameras;
- per camera p50/p99: camera stamp -> label received here (stamp to publish plus a local
  delivery of a mono8 image: an upper bound of stamp to publish);
- dropped: frames sent in the window that got no label (newest frame wins when the node is
  slower than its cameras), summed;
- RSS: the node processes' resident memory, summed (shared library pages count once per
  process, as `ps` shows them), and PSS (shared pages split between the processes sharing
  them: what N processes really cost); the peak over the window;
- CPU: the node processes' CPU time over the window, in % of one core;
- on a machine with CUDA: GPU memory of the node processes (nvidia-smi), GPU busy % (the
  utilisation nvidia-smi samples) and the number of node processes holding a CUDA context.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from bench.machine import machine_info
from bench.node_delivery import (MATCH_TIMEOUT_S, PROFILE_ENV, PUBLISHER_QOS, SHIPPED_PROFILE,
                                 SETTLE_S, Monitor)
from bisenet_core.spec import size_arg
from bisenet_ros.launched_node import LaunchedNode
from bisenet_ros.paths import REPO_ROOT
from bisenet_ros.ros_env import fresh_domain_id, ros_child_env

# Camera names, in the order cameras are added (a vehicle's first six).
CAMERA_NAMES = ('front', 'left', 'right', 'rear', 'front_left', 'front_right')
MODES = ('one-node', 'separate')
NAMESPACE = '/bench'
SAMPLE_S = 0.5
READY_TIMEOUT_S = 180.0  # N nodes importing torch at once on a small CPU take a while


def camera_topic(camera: str) -> str:
    return f'/{camera}/image_raw'


def node_setups(mode: str, cameras: tuple[str, ...]) -> tuple[list[list[str]], list[str]]:
    """Launch arguments of each node and each camera's label topic, in camera order."""
    if mode == 'one-node':
        return ([[f'namespace:={NAMESPACE}', f"cameras:=[{', '.join(cameras)}]"]],
                [f'{NAMESPACE}/segment_node/{camera}/label' for camera in cameras])
    return ([[f'namespace:=/{camera}', f'image_topic:={camera_topic(camera)}']
             for camera in cameras],
            [f'/{camera}/segment_node/label' for camera in cameras])


# ----------------------------------------------------------------------------- sampling
def process_tree(pid: int) -> list:
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def gpu_memory_mb(pids: set[int]) -> tuple[float, int] | None:
    """(MB of GPU memory, processes with a CUDA context) among `pids`; None without a GPU."""
    if shutil.which('nvidia-smi') is None:
        return None
    query = ['nvidia-smi', '--query-compute-apps=pid,used_memory', '--format=csv,noheader,nounits']
    try:
        lines = subprocess.run(query, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    used, holders = 0.0, 0
    for line in lines.strip().splitlines():
        pid, _, memory = line.partition(',')
        if pid.strip().isdigit() and int(pid) in pids:
            used += float(memory.strip() or 0)
            holders += 1
    return used, holders


def gpu_busy_pct() -> float | None:
    if shutil.which('nvidia-smi') is None:
        return None
    query = ['nvidia-smi', '--query-gpu=utilization.gpu', '--format=csv,noheader,nounits']
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=10).stdout.split()
        return float(out[0])
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        return None


class Sampler:
    """Samples the node processes' CPU time, RSS, PSS (and GPU use) every SAMPLE_S seconds."""

    def __init__(self, pids: list[int], gpu: bool):
        self.pids = pids
        self.gpu = gpu
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            cpu = rss = pss = 0.0
            alive: set[int] = set()
            for pid in self.pids:
                for proc in process_tree(pid):
                    try:
                        times = proc.cpu_times()
                        memory = proc.memory_full_info()
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        continue
                    cpu += times.user + times.system
                    rss += memory.rss
                    pss += getattr(memory, 'pss', memory.rss)
                    alive.add(proc.pid)
            sample = {'t_ns': time.time_ns(), 'cpu_s': cpu, 'rss_mb': rss / 2**20,
                      'pss_mb': pss / 2**20}
            if self.gpu:
                sample['gpu'] = gpu_memory_mb(alive)
                sample['gpu_busy'] = gpu_busy_pct()
            self.samples.append(sample)
            self._stop.wait(SAMPLE_S)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def window(self, start_ns: int, end_ns: int) -> dict:
        """CPU %, peak RSS/PSS (and GPU figures) between two wall-clock times."""
        inside = [s for s in self.samples if start_ns <= s['t_ns'] <= end_ns]
        if len(inside) < 2:
            raise RuntimeError('fewer than two resource samples in the measured window; '
                               'run longer (--seconds) or with less --warmup-s')
        first, last = inside[0], inside[-1]
        out = {'cpu_pct': 100.0 * (last['cpu_s'] - first['cpu_s'])
               / ((last['t_ns'] - first['t_ns']) / 1e9),
               'rss_mb': max(s['rss_mb'] for s in inside),
               'pss_mb': max(s['pss_mb'] for s in inside)}
        gpu = [s['gpu'] for s in inside if s.get('gpu')]
        busy = [s['gpu_busy'] for s in inside if s.get('gpu_busy') is not None]
        if gpu:
            out['gpu_mb'] = max(g[0] for g in gpu)
            out['cuda_contexts'] = max(g[1] for g in gpu)
        if busy:
            out['gpu_busy_pct'] = float(np.mean(busy))
        return out


# ----------------------------------------------------------------------------- one row
def run_row(mode: str, count: int, size: tuple[int, int], rate: float, seconds: float,
            warmup_s: float, qos: str, domain_id: int, log_dir: Path, launch_args=(),
            progress=print) -> dict:
    """Start the node(s) and `count` cameras, measure, stop everything; one result row."""
    cameras = CAMERA_NAMES[:count]
    width, height = size
    tag = f'{mode}-{count}cam-{width}x{height}-{rate:g}hz'
    node_env = ros_child_env(domain_id)
    node_env.pop(PROFILE_ENV, None)  # the launch file sets the shipped profile itself
    camera_env = ros_child_env(domain_id)
    camera_env[PROFILE_ENV] = str(SHIPPED_PROFILE)  # a driver started after ros_env.sh
    node_args, label_topics = node_setups(mode, cameras)
    monitor = Monitor(domain_id, tuple(label_topics))
    nodes, processes, sampler = [], [], None
    try:
        for index, args in enumerate(node_args):
            nodes.append(LaunchedNode([*args, *launch_args], node_env,
                                      log_dir / f'{tag}-node{index}.log'))
        progress(f'{tag}: starting {len(nodes)} node(s)')
        pids = [node.wait_ready(READY_TIMEOUT_S) for node in nodes]
        sampler = Sampler(pids, gpu=shutil.which('nvidia-smi') is not None)
        processes = [subprocess.Popen(
            [sys.executable, '-m', 'bench.node_delivery', f'{width}x{height}', str(rate),
             str(seconds), qos, camera_topic(camera)],
            env=camera_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=REPO_ROOT) for camera in cameras]
        progress(f'{tag}: {count} camera(s) at {rate:g} Hz for {seconds:g} s')
        reports = []
        for camera, process in zip(cameras, processes):
            out, err = process.communicate(timeout=seconds + MATCH_TIMEOUT_S + 60)
            try:
                report = json.loads(out.strip().splitlines()[-1])
            except (IndexError, ValueError):
                raise RuntimeError(f'camera {camera} failed:\n{out}\n{err}') from None
            if not report.get('sent'):
                raise RuntimeError(f'camera {camera}: {report.get("error", out)}')
            reports.append(report)
        time.sleep(SETTLE_S)
        for node in nodes:
            node.check_alive()
    finally:
        if sampler is not None:
            sampler.stop()
        for process in processes:
            if process.poll() is None:
                process.kill()
        codes = [node.stop(timeout=30.0) for node in nodes]
        monitor.close()
    if any(code != 0 for code in codes):
        raise RuntimeError(f'ros2 launch exited {codes}; see {log_dir}/{tag}-node*.log')
    return summarise(mode, cameras, size, rate, seconds, warmup_s, reports, label_topics,
                     monitor, sampler)


def summarise(mode, cameras, size, rate, seconds, warmup_s, reports, label_topics, monitor,
              sampler) -> dict:
    """The row: per camera figures over its window, resources over the common window."""
    per_camera = []
    for camera, report, topic in zip(cameras, reports, label_topics):
        start = report['start_ns'] + int(warmup_s * 1e9)
        end = report['start_ns'] + int(seconds * 1e9)
        stamps = np.asarray(monitor.stamps_ns[topic], np.int64)
        latencies = np.asarray(monitor.by_topic[topic], np.float64)
        keep = (stamps >= start) & (stamps < end)
        sent = int(round((seconds - warmup_s) * rate))
        masks = int(keep.sum())
        per_camera.append({
            'camera': camera, 'sent': sent, 'masks': masks,
            'masks_per_s': masks / (seconds - warmup_s), 'dropped': max(0, sent - masks),
            'p50_ms': float(np.percentile(latencies[keep], 50)) if masks else None,
            'p99_ms': float(np.percentile(latencies[keep], 99)) if masks else None})
    common_start = max(r['start_ns'] for r in reports) + int(warmup_s * 1e9)
    common_end = min(r['start_ns'] for r in reports) + int(seconds * 1e9)
    resources = sampler.window(common_start, common_end)
    p99s = [c['p99_ms'] for c in per_camera if c['p99_ms'] is not None]
    p50s = [c['p50_ms'] for c in per_camera if c['p50_ms'] is not None]
    return {'mode': mode, 'cameras': len(cameras), 'image': f'{size[0]}x{size[1]}',
            'rate': rate, 'seconds': seconds - warmup_s,
            'masks_per_s': sum(c['masks_per_s'] for c in per_camera),
            'sent': sum(c['sent'] for c in per_camera),
            'dropped': sum(c['dropped'] for c in per_camera),
            'worst_p50_ms': max(p50s) if p50s else None,
            'worst_p99_ms': max(p99s) if p99s else None,
            'per_camera': per_camera, **resources}


# ----------------------------------------------------------------------------- report
def _fmt(value, digits: int = 0, unit: str = '') -> str:
    return '-' if value is None else f'{value:.{digits}f}{unit}'


def markdown(rows: list[dict]) -> str:
    gpu = any('gpu_mb' in r or 'gpu_busy_pct' in r for r in rows)
    head = ('| cameras | image | rate | mode | nodes | total masks/s | dropped | '
            'per-camera p50 / p99 ms | total RSS MB | total PSS MB | CPU % |')
    rule = '| ---: | --- | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |'
    if gpu:
        head += ' GPU MB | GPU busy % | CUDA contexts |'
        rule += ' ---: | ---: | ---: |'
    lines = [head, rule]
    for r in rows:
        cams = ', '.join(f"{c['camera']} {_fmt(c['p50_ms'])} / {_fmt(c['p99_ms'])}"
                         for c in r['per_camera'])
        line = (f"| {r['cameras']} | {r['image']} | {r['rate']:g} Hz | {r['mode']} | "
                f"{1 if r['mode'] == 'one-node' else r['cameras']} | "
                f"{r['masks_per_s']:.1f} | {r['dropped']} of {r['sent']} | {cams} | "
                f"{r['rss_mb']:.0f} | {r['pss_mb']:.0f} | {r['cpu_pct']:.0f} |")
        if gpu:
            line += (f" {_fmt(r.get('gpu_mb'))} | {_fmt(r.get('gpu_busy_pct'))} | "
                     f"{r.get('cuda_contexts', '-')} |")
        lines.append(line)
    return '\n'.join(lines)


def comparisons(rows: list[dict]) -> list[str]:
    """One line per setting measured in both modes: the one node against the N nodes."""
    lines = []
    by_setting: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        by_setting.setdefault((r['cameras'], r['image'], r['rate']), {})[r['mode']] = r
    for (cameras, image, rate), modes in by_setting.items():
        if len(modes) < 2:
            continue
        one, many = modes['one-node'], modes['separate']
        rss = one['rss_mb'] / many['rss_mb']
        pss = one['pss_mb'] / many['pss_mb']
        masks = one['masks_per_s'] / many['masks_per_s'] if many['masks_per_s'] else float('inf')
        p99 = (one['worst_p99_ms'] / many['worst_p99_ms']
               if one['worst_p99_ms'] and many['worst_p99_ms'] else None)
        line = (f'{cameras} cameras {image} at {rate:g} Hz: one node / {cameras} nodes: '
                f'RSS {rss:.2f}x (PSS {pss:.2f}x), masks/s {masks:.2f}x, worst p99 '
                f'{_fmt(p99, 2, "x")}')
        if (cameras, image, rate) == (4, '640x480', 10.0):
            met = rss <= 0.35 and masks >= 1.2 and p99 is not None and p99 <= 1.0
            line += (' -- issue 19 target (RSS <= 0.35x, masks/s >= 1.2x, p99 no worse): '
                     f"{'met' if met else 'NOT met'}")
        lines.append(line)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m bench.bench_multicam',
        description='One segment_node serving N cameras against N single-camera nodes, each '
                    'camera a process of its own, the nodes started with ros2 launch and the '
                    'shipped config: total masks/s, per-camera latency, dropped frames, '
                    'memory and CPU (GPU memory and use where CUDA is present).')
    parser.add_argument('--cameras', type=int, nargs='+', default=[4],
                        help=f'camera counts, 1..{len(CAMERA_NAMES)} (default: 4)')
    parser.add_argument('--sizes', type=size_arg, nargs='+', default=[(640, 480)],
                        help='camera image sizes WxH (default: 640x480)')
    parser.add_argument('--rates', type=float, nargs='+', default=[10.0],
                        help='camera rates in Hz (default: 10)')
    parser.add_argument('--modes', nargs='+', choices=MODES, default=list(MODES),
                        help='one-node: one node with cameras:=[...]; separate: one node '
                             'per camera (default: both)')
    parser.add_argument('--seconds', type=float, default=30.0,
                        help='seconds each camera publishes (default 30)')
    parser.add_argument('--warmup-s', type=float, default=5.0,
                        help='first seconds of each stream left out of every figure (5)')
    parser.add_argument('--publisher', choices=PUBLISHER_QOS, default='reliable',
                        help="the cameras' QoS reliability (default reliable)")
    parser.add_argument('--launch-arg', action='append', default=[], metavar='NAME:=VALUE',
                        help='another segment.launch.py argument for every node, e.g. '
                             'device:=cuda (repeatable)')
    parser.add_argument('--domain-id', type=int, default=None,
                        help='ROS domain for the run (default: $ROS_DOMAIN_ID, else random)')
    parser.add_argument('--log-dir', type=Path, default=Path('out/bench_multicam'),
                        help='node logs and results.json go here (out/bench_multicam)')
    args = parser.parse_args(argv)
    if any(not 1 <= n <= len(CAMERA_NAMES) for n in args.cameras):
        parser.error(f'--cameras must be between 1 and {len(CAMERA_NAMES)}')
    if args.seconds <= args.warmup_s + 2 * SAMPLE_S or args.warmup_s < 0:
        parser.error('--seconds must exceed --warmup-s (>= 0) by at least a second')
    if any(rate <= 0 for rate in args.rates):
        parser.error('--rates must be > 0')
    domain_id = args.domain_id
    if domain_id is None:
        env_domain = os.environ.get('ROS_DOMAIN_ID')
        domain_id = int(env_domain) if env_domain else fresh_domain_id()
    args.log_dir.mkdir(parents=True, exist_ok=True)
    before = machine_info()
    rows, failures = [], []
    for count in args.cameras:
        for size in args.sizes:
            for rate in args.rates:
                for mode in args.modes:
                    try:
                        rows.append(run_row(mode, count, size, rate, args.seconds,
                                            args.warmup_s, args.publisher, domain_id,
                                            args.log_dir, tuple(args.launch_arg)))
                    except Exception as exc:  # noqa: BLE001 - one failed row, the rest run
                        failures.append(f'{mode} {count} cameras {size[0]}x{size[1]} '
                                        f'{rate:g} Hz: {type(exc).__name__}: {exc}')
                        print(f'row failed: {failures[-1]}', file=sys.stderr)
                    if rows:
                        (args.log_dir / 'results.json').write_text(json.dumps(rows, indent=1))
    print(f'\nmachine at the start: {before}\nmachine at the end: {machine_info()}')
    print(f'{args.publisher} cameras, bgr8, shipped Fast DDS profile; nodes: ros2 launch '
          f'segment.launch.py, shipped config {" ".join(args.launch_arg)}; figures over '
          f'{args.seconds - args.warmup_s:g} s per camera after {args.warmup_s:g} s warm-up')
    print(markdown(rows))
    for line in comparisons(rows):
        print(line)
    for line in failures:
        print(f'FAILED: {line}')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
