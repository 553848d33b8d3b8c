"""Camera frame -> labels, side by side: the path before issue 10 and the new pipelines.

    python -m bench.bench_pipeline                # 1920x1080 and 1280x720 cameras (minutes)
    python -m bench.bench_pipeline --quick        # one camera, one network, a few frames
    python -m bench.bench_pipeline --compile      # add torch.compile rows on the CPU too

Every row segments the same bgr8 frames (a rendered drive the shipped model never saw) from
the numpy frame to uint8 labels at the frame's size, including every host<->device copy. Rows
run interleaved, frame by frame, so load spikes on a shared machine hit them all alike:

- today: the pre-issue-10 code, kept here only as the baseline: cv2 resize, colour conversion
  and numpy normalisation, the network, then cv2 upsampling of all C logit maps and argmax
  (bilinear) or of the argmax (nearest). Same network call as 'host'.
- host: Segmenter(pipeline='host'): cv2 resize, numpy normalisation, network, exact sparse
  bilinear upsampling (bisenet_core.inference.postprocess).
- device eager / graph / compile: Segmenter(pipeline='device') on torch: the whole step in
  torch where the model runs; on CUDA eager, one CUDA graph per frame size, and
  torch.compile'd network inside the graph.
- device onnxruntime / tensorrt: the end-to-end ONNX graph (bisenet_core.inference.export_frames).

Columns: p50 / p99 ms per frame, FPS = 1000 / mean, speed-up = today p50 / row p50 (same
camera, network, upsampling), labels = the share of pixels equal to today's labels (the CPU
reference). A second table times the upsampling alone and its peak memory (issue 12).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
import warnings
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from bench.machine import machine_info
from bench.timing import interleaved_ms
from bisenet_core.data.synthetic import render_drive
from bisenet_core.inference import Segmenter
from bisenet_core.inference.backends import cpu_threads, ort_available, ort_providers
from bisenet_core.inference.pipeline import bilinear_labels as device_bilinear_labels
from bisenet_core.inference.postprocess import UPSAMPLE_MODES, bilinear_labels
from bisenet_core.modelfile import load_model
from bisenet_core.spec import size_arg

SHIPPED = Path(__file__).resolve().parent.parent / 'models' / 'bisenet_xception39_synthetic.pt'
CAMERAS = ((1920, 1080), (1280, 720))
NETWORKS = ((640, 360), (960, 720), (1280, 720))
DRIVE_SEED = 9001


# ------------------------------------------------------------------ today's path (baseline)
def today_segment(seg: Segmenter, frame_bgr: np.ndarray, upsample: str) -> np.ndarray:
    """The frame -> labels code on main before issue 10, around `seg`'s network."""
    width, height = seg.input_size
    h, w = frame_bgr.shape[:2]
    interp = cv2.INTER_AREA if width * height < w * h else cv2.INTER_LINEAR
    resized = cv2.cvtColor(cv2.resize(frame_bgr, (width, height), interpolation=interp),
                           cv2.COLOR_BGR2RGB)
    std = np.asarray(seg.spec.std, np.float32)
    mean = np.asarray(seg.spec.mean, np.float32)
    x = resized.astype(np.float32) * (1.0 / (255.0 * std)) - mean / std
    logits = seg.infer(np.ascontiguousarray(x.transpose(2, 0, 1))[None])[0]
    return today_upsample(logits, (h, w), upsample)


def today_upsample(logits: np.ndarray, size: tuple[int, int], upsample: str) -> np.ndarray:
    """The pre-issue-10 logits_to_labels: every class map resized (bilinear), then argmax."""
    height, width = size
    if upsample == 'nearest':
        return cv2.resize(logits.argmax(axis=0).astype(np.uint8), (width, height),
                          interpolation=cv2.INTER_NEAREST)
    channels = np.ascontiguousarray(logits.transpose(1, 2, 0), dtype=np.float32)
    best = labels = None
    for start in range(0, channels.shape[2], 128):  # cv2.resize takes <= 128 channels
        part = cv2.resize(np.ascontiguousarray(channels[:, :, start:start + 128]),
                          (width, height), interpolation=cv2.INTER_LINEAR)
        part = part[:, :, None] if part.ndim == 2 else part
        part_best, part_labels = part.max(axis=2), part.argmax(axis=2) + start
        if best is None:
            best, labels = part_best, part_labels
        else:
            better = part_best > best
            best = np.where(better, part_best, best)
            labels = np.where(better, part_labels, labels)
    return labels.astype(np.uint8)


# ------------------------------------------------------------------ rows
class Row:
    """One way of segmenting a frame; `make(network, upsample)` builds its callable."""

    def __init__(self, name: str, device: str, precision: str,
                 make: Callable[[tuple[int, int]], Segmenter], today: bool = False):
        self.name, self.device, self.precision = name, device, precision
        self.make = make
        self.today = today


def rows_for_this_machine(model_path: Path, threads: int, compile_on_cpu: bool) -> list[Row]:
    """The baseline (today's path, the reference) first, then every new path available."""
    cpu_backend = 'onnxruntime' if ort_available() else 'torch'

    def segmenter(**kwargs) -> Callable[[tuple[int, int]], Segmenter]:
        def make(network):
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', RuntimeWarning)
                return Segmenter(model_path, input_size=network, threads=threads, **kwargs)
        return make

    rows = [Row(f'today ({cpu_backend})', 'cpu', 'fp32',
                segmenter(backend=cpu_backend, device='cpu', pipeline='host'), today=True),
            Row(f'host ({cpu_backend})', 'cpu', 'fp32',
                segmenter(backend=cpu_backend, device='cpu', pipeline='host'))]
    if cpu_backend == 'onnxruntime':
        rows.append(Row('host (torch)', 'cpu', 'fp32',
                        segmenter(backend='torch', device='cpu', pipeline='host')))
    rows.append(Row('device eager (torch)', 'cpu', 'fp32',
                    segmenter(backend='torch', device='cpu', pipeline='device')))
    if ort_available():
        rows.append(Row('device (onnxruntime)', 'cpu', 'fp32',
                        segmenter(backend='onnxruntime', device='cpu', pipeline='device')))
    if compile_on_cpu:
        rows.append(Row('host compile (torch)', 'cpu', 'fp32',
                        segmenter(backend='torch', device='cpu', pipeline='host',
                                  compile=True)))
    if torch.cuda.is_available():
        for precision in ('fp32', 'fp16'):
            rows.append(Row('device eager (torch)', 'cuda', precision,
                            segmenter(backend='torch', device='cuda', precision=precision,
                                      graphs=False)))
            rows.append(Row('device graph (torch)', 'cuda', precision,
                            segmenter(backend='torch', device='cuda', precision=precision)))
        rows.append(Row('device compile+graph (torch)', 'cuda', 'fp16',
                        segmenter(backend='torch', device='cuda', precision='fp16',
                                  compile=True)))
    if 'CUDAExecutionProvider' in ort_providers():
        rows.append(Row('device (onnxruntime)', 'cuda', 'fp16',
                        segmenter(backend='onnxruntime', device='cuda', precision='fp16')))
    if 'TensorrtExecutionProvider' in ort_providers():
        rows.append(Row('device (tensorrt)', 'cuda', 'fp16',
                        segmenter(backend='tensorrt', device='cuda', precision='fp16')))
    return rows


def drive_frames(camera: tuple[int, int], count: int) -> list[np.ndarray]:
    """bgr8 frames (what a camera driver sends) of a drive the shipped model never saw."""
    return [np.ascontiguousarray(f.image[:, :, ::-1])
            for f in render_drive(DRIVE_SEED, count, size=camera)]


def bench_config(rows: list[Row], segmenters: list[Segmenter], frames: list[np.ndarray],
                 camera, network, upsample: str, iters: int, warmup: int) -> list[dict]:
    """All rows on one camera size, network size and upsampling mode, interleaved."""
    calls = []
    for row, seg in zip(rows, segmenters):
        seg.upsample = upsample
        calls.append((lambda f, s=seg: today_segment(s, f, upsample)) if row.today
                     else (lambda f, s=seg: s(f, 'bgr')))
    reference = [calls[0](frame) for frame in frames]
    agreement = [statistics.fmean(float((call(f) == ref).mean())
                                  for f, ref in zip(frames, reference)) for call in calls]
    desc = f'{camera[0]}x{camera[1]} -> {network[0]}x{network[1]} {upsample}'
    times = interleaved_ms(calls, frames, iters, warmup, desc, unit='frame')
    results = []
    for row, samples, agree in zip(rows, times, agreement):
        p50, p99 = np.percentile(samples, [50, 99])
        results.append({'row': row.name, 'device': row.device, 'precision': row.precision,
                        'camera': camera, 'network': network, 'upsample': upsample,
                        'p50': p50, 'p99': p99, 'fps': 1e3 / statistics.fmean(samples),
                        'agreement': agree})
    for r in results:
        r['speedup'] = results[0]['p50'] / r['p50']
    return results


def markdown_table(results: list[dict]) -> str:
    lines = ['| camera | network | upsample | path | device | precision | p50 ms | p99 ms | FPS '
             '| speed-up vs today | labels = today (CPU) |',
             '| --- | --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |']
    for r in results:
        lines.append(f"| {r['camera'][0]}x{r['camera'][1]} | {r['network'][0]}x"
                     f"{r['network'][1]} | {r['upsample']} | {r['row']} | {r['device']} | "
                     f"{r['precision']} | {r['p50']:.1f} | {r['p99']:.1f} | {r['fps']:.1f} | "
                     f"{r['speedup']:.2f}x | {100 * r['agreement']:.2f}% |")
    return '\n'.join(lines)


# ------------------------------------------------------------------ upsampling alone
def _timed(fn, iters: int) -> float:
    fn()
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return float(np.median(samples))


def _peak_mb(fn) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def upsampling_table(model_path: Path, cameras, networks, iters: int) -> str:
    """Bilinear upsampling of the same logits, timed and with its peak host memory.

    Today's cv2 (every class map), the host's sparse exact method, and the device pipeline's
    class groups run on this CPU.
    """
    model, spec = load_model(model_path)
    lines = ['| camera | network (logits) | classes | today ms | host ms | speed-up | '
             'torch groups (CPU) ms | labels = today | peak MB today | peak MB host |',
             '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
    for camera in cameras:
        frame = drive_frames(camera, 1)[0]
        for network in networks:
            seg_net = Segmenter.from_model(model, spec, backend='torch', device='cpu',
                                           pipeline='host', input_size=network)
            logits = seg_net.infer(seg_net.preprocess(frame, 'bgr'))[0]
            size = frame.shape[:2]
            for classes in (logits.shape[0], 19):
                # 19 classes (Cityscapes): 8 more maps made from the real ones, shifted.
                maps = logits if classes == logits.shape[0] else np.concatenate(
                    [logits, logits[:classes - logits.shape[0]] - 1.0])
                today = _timed(lambda: today_upsample(maps, size, 'bilinear'), iters)
                host = _timed(lambda: bilinear_labels(maps, size), iters)
                tensor = torch.from_numpy(maps)[None]
                with torch.no_grad():
                    groups = _timed(lambda: device_bilinear_labels(tensor, size), 1)
                agree = (bilinear_labels(maps, size) == today_upsample(maps, size,
                                                                       'bilinear')).mean()
                peak_today = _peak_mb(lambda: today_upsample(maps, size, 'bilinear'))
                peak_host = _peak_mb(lambda: bilinear_labels(maps, size))
                lines.append(f'| {camera[0]}x{camera[1]} | {network[0]}x{network[1]} '
                             f'({maps.shape[2]}x{maps.shape[1]}) | {classes} | {today:.1f} | '
                             f'{host:.1f} | {today / host:.1f}x | {groups:.0f} | '
                             f'{100 * agree:.3f}% | {peak_today:.0f} | {peak_host:.0f} |')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m bench.bench_pipeline',
        description='Camera frame -> labels latency of the pre-issue-10 path and the new '
                    'pipelines (host, device eager/graph/compile, ONNX Runtime, TensorRT) on '
                    'every device this machine has, measured interleaved in one run.')
    parser.add_argument('--quick', action='store_true',
                        help='1920x1080 camera, 640x360 network, 5 frames: a fast check')
    parser.add_argument('--cameras', nargs='+', type=size_arg, default=list(CAMERAS),
                        help='camera frame sizes WxH (default: 1920x1080 1280x720)')
    parser.add_argument('--networks', nargs='+', type=size_arg, default=list(NETWORKS),
                        help='network input sizes WxH (default: 640x360 960x720 1280x720)')
    parser.add_argument('--upsample', nargs='+', choices=UPSAMPLE_MODES,
                        default=list(UPSAMPLE_MODES), help='upsampling modes (default: both)')
    parser.add_argument('--model', type=Path, default=SHIPPED,
                        help='model file (default: the shipped Xception39)')
    parser.add_argument('--iters', type=int, default=20, help='timed frames per row')
    parser.add_argument('--warmup', type=int, default=3, help='untimed frames per row first')
    parser.add_argument('--frames', type=int, default=3, help='distinct frames cycled through')
    parser.add_argument('--threads', type=int, default=cpu_threads(),
                        help='CPU threads for torch and ONNX Runtime (default: all usable)')
    parser.add_argument('--compile', action='store_true',
                        help='also torch.compile on the CPU (minutes of compiling on 2 cores)')
    parser.add_argument('--no-upsampling-table', action='store_true',
                        help='skip the upsampling-alone table')
    args = parser.parse_args(argv)
    if args.quick:
        args.cameras, args.networks = [(1920, 1080)], [(640, 360)]
        args.iters, args.warmup, args.frames = min(args.iters, 5), min(args.warmup, 1), 2
    if min(args.iters, args.frames, args.threads) < 1 or args.warmup < 0:
        parser.error('--iters, --frames and --threads must be >= 1, --warmup >= 0')
    if not args.model.is_file():
        parser.error(f'model file {args.model} not found')
    torch.set_num_threads(args.threads)

    print(machine_info(), flush=True)
    rows = rows_for_this_machine(args.model, args.threads, args.compile)
    results = []
    skipped = []
    for camera in args.cameras:
        frames = drive_frames(camera, args.frames)
        for network in args.networks:
            # A row that cannot start here (e.g. a TensorRT engine build, a compiler missing)
            # is left out of this configuration and named under the table, not fatal.
            ready = []
            for row in rows:
                try:
                    seg = row.make(network)
                    seg(frames[0], 'bgr')
                    ready.append((row, seg))
                except Exception as exc:  # noqa: BLE001 - reported, the other rows go on
                    if row.today:
                        raise
                    skipped.append(f'{row.name} {row.device} {row.precision} at '
                                   f'{network[0]}x{network[1]}: {type(exc).__name__}: '
                                   f'{str(exc).splitlines()[0][:200] if str(exc) else ""}')
            for upsample in args.upsample:
                results += bench_config([r for r, _ in ready], [s for _, s in ready], frames,
                                        camera, network, upsample, args.iters, args.warmup)
            del ready
    print(f'model {args.model.name}; {args.iters} frames per row (warm-up {args.warmup}), '
          f'bgr8 input, interleaved; threads {args.threads}')
    print(markdown_table(results), flush=True)
    for note in skipped:
        print(f'skipped: {note}')
    if not args.no_upsampling_table:
        print('\nBilinear upsampling alone (same logits; peak = Python/numpy heap, tracemalloc):')
        print(upsampling_table(args.model, args.cameras, args.networks,
                               max(3, args.iters // 2)))
        print('\nIssue 12, bilinear upsampling of a 4K frame (3840x2160, 19 classes, '
              '80x45 logits):')
        print(four_k_memory())
    return 0


def four_k_memory() -> str:
    """Peak host memory of bilinear upsampling to 4K, today's way and the host's."""
    rng = np.random.default_rng(0)
    logits = np.stack([cv2.GaussianBlur(rng.standard_normal((45, 80)).astype(np.float32),
                                        (0, 0), 2) for _ in range(19)]) * 10
    size = (2160, 3840)
    today = _peak_mb(lambda: today_upsample(logits, size, 'bilinear'))
    host = _peak_mb(lambda: bilinear_labels(logits, size))
    return (f'peak memory: today {today:.0f} MB, host {host:.0f} MB '
            f'(labels alone {size[0] * size[1] / 1e6:.1f} MB)')


if __name__ == '__main__':
    sys.exit(main())
