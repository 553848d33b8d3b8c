"""Backend benchmark: batch-1 latency of BiSeNet on torch eager vs ONNX Runtime (and GPU rows).

    python -m bench.bench_backends [--backbones xception39 resnet18] [--sizes 640x360 1280x720]
                                   [--iters 20] [--warmup 3]

For every backbone and size, each backend runs the same randomly initialised BiSeNet (19
Cityscapes classes, as in the paper's speed table) through `Segmenter.infer`: the network
forward plus host<->device copies, without pre/post-processing. The backends are measured
side by side, interleaved call by call, so a load spike on a shared machine hits them all
alike. Sizes are network inputs (width x height); a height or width that is not a multiple
of 32 runs padded up to one (640x360 runs as 640x384), which is what the model does
internally anyway. Prints a Markdown table: p50/p90/p99 latency, FPS (1000 / mean ms),
speed-up over torch eager fp32 (its p50 / the row's p50), the row's p50 over the fastest
row's at that backbone and size, and the share of 1/8 labels equal to torch fp32 on the same
input. `--paper-sizes` runs the paper's speed-table sizes (Table 5: 640x360, 1280x720,
1920x1080) and its Cityscapes sizes (1536x768, 2048x1024).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import warnings

import numpy as np
import torch

from bench.machine import machine_info
from bench.timing import interleaved_ms
from bisenet_core.inference import Segmenter
from bisenet_core.inference.backends import cpu_threads, ort_available, ort_providers
from bisenet_core.model import bisenet
from bisenet_core.spec import BACKBONES, size_arg, spec_for_dataset

PAPER_SIZES = ((640, 360), (1280, 720), (1920, 1080), (1536, 768), (2048, 1024))


def backend_rows() -> list[tuple[str, str, str]]:
    """(backend, device, precision) rows this machine can run; torch CPU fp32 first."""
    rows = [('torch', 'cpu', 'fp32')]
    providers = ort_providers()
    if ort_available():
        rows.append(('onnxruntime', 'cpu', 'fp32'))
    if torch.cuda.is_available():
        rows += [('torch', 'cuda', 'fp32'), ('torch', 'cuda', 'fp16')]
    if 'CUDAExecutionProvider' in providers:
        rows.append(('onnxruntime', 'cuda', 'fp16'))
    if 'TensorrtExecutionProvider' in providers:
        rows.append(('tensorrt', 'cuda', 'fp16'))
    return rows


def test_image(width: int, height: int) -> np.ndarray:
    """A smooth synthetic RGB image (gradients + blobs): labels are not pure noise."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 127 + 120 * np.sin(xx / 37.0)
    g = 127 + 120 * np.cos(yy / 23.0)
    b = 255 * ((xx - width / 2) ** 2 + (yy - height / 2) ** 2 < (min(width, height) / 3) ** 2)
    return np.clip(np.stack([r, g, b], axis=2), 0, 255).astype(np.uint8)


def bench_config(backbone: str, size: tuple[int, int], iters: int, warmup: int,
                 rows: list[tuple[str, str, str]], threads: int) -> list[dict]:
    """Measure every row on one backbone and size, interleaved; return one dict per row."""
    torch.manual_seed(0)
    # The network input is `size`; the model pads it to a multiple of 32 itself.
    spec = spec_for_dataset('cityscapes', backbone=backbone, input_size=size)
    model = bisenet(spec.num_classes, backbone).eval()
    segmenters = []
    for backend, device, precision in rows:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', RuntimeWarning)
            segmenters.append(Segmenter.from_model(model, spec, backend=backend, device=device,
                                                   precision=precision, threads=threads))
    batch = segmenters[0].preprocess(test_image(*size))
    reference = segmenters[0].infer(batch)[0].argmax(0)
    agreement = [float((seg.infer(batch)[0].argmax(0) == reference).mean())
                 for seg in segmenters]
    times = interleaved_ms([seg.infer for seg in segmenters], [batch], iters, warmup,
                           f'{backbone} {size[0]}x{size[1]}')
    results = []
    for (backend, device, precision), samples, agree in zip(rows, times, agreement):
        p50, p90, p99 = np.percentile(samples, [50, 90, 99])
        results.append({'backbone': backbone, 'size': size,
                        'backend': backend, 'device': device, 'precision': precision,
                        'p50': p50, 'p90': p90, 'p99': p99,
                        'fps': 1e3 / statistics.fmean(samples), 'agreement': agree})
    base = results[0]['p50']
    best = min(row['p50'] for row in results)
    for row in results:
        row['speedup'] = base / row['p50']
        row['vs_best'] = row['p50'] / best
    return results


def markdown_table(results: list[dict]) -> str:
    lines = ['| backbone | input | backend | device | precision | p50 ms | p90 ms | p99 ms '
             '| FPS | speed-up vs torch fp32 | p50 / fastest | labels = torch fp32 |',
             '| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
    for r in results:
        w, h = r['size']
        lines.append(f"| {r['backbone']} | {w}x{h} | {r['backend']} | {r['device']} | "
                     f"{r['precision']} | {r['p50']:.1f} | {r['p90']:.1f} | {r['p99']:.1f} | "
                     f"{r['fps']:.1f} | {r['speedup']:.2f}x | {r['vs_best']:.2f} | "
                     f"{100 * r['agreement']:.2f}% |")
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m bench.bench_backends',
        description='Batch-1 BiSeNet latency on torch eager vs ONNX Runtime CPU (and CUDA / '
                    'TensorRT fp16 when a GPU is present), measured interleaved in one run. '
                    'Weights are random: speed does not depend on them.')
    parser.add_argument('--backbones', nargs='+', default=['xception39', 'resnet18'],
                        choices=BACKBONES, help='Context Path backbones (default: %(default)s)')
    parser.add_argument('--sizes', nargs='+', type=size_arg,
                        default=[(640, 360), (1280, 720)],
                        help='network input sizes WxH; the model pads sides to a multiple of 32 '
                             '(default: 640x360 1280x720)')
    parser.add_argument('--paper-sizes', action='store_true',
                        help='the paper\'s sizes instead of --sizes: '
                             + ' '.join(f'{w}x{h}' for w, h in PAPER_SIZES))
    parser.add_argument('--iters', type=int, default=20,
                        help='timed calls per backend (default: %(default)s)')
    parser.add_argument('--warmup', type=int, default=3,
                        help='untimed calls per backend first (default: %(default)s)')
    parser.add_argument('--threads', type=int, default=cpu_threads(),
                        help='CPU threads for both torch and ONNX Runtime, the same for a fair '
                             'comparison (default: all usable cores, %(default)s)')
    args = parser.parse_args(argv)
    if args.iters < 1 or args.warmup < 0 or args.threads < 1:
        parser.error('--iters and --threads must be >= 1, --warmup >= 0')
    torch.set_num_threads(args.threads)

    rows = backend_rows()
    print(machine_info(), flush=True)
    results = []
    for backbone in args.backbones:
        for size in PAPER_SIZES if args.paper_sizes else args.sizes:
            results += bench_config(backbone, size, args.iters, args.warmup, rows, args.threads)
    print(f'threads: {args.threads}, iterations: {args.iters} (warm-up {args.warmup}), '
          'batch 1, interleaved')
    print(markdown_table(results))
    return 0


if __name__ == '__main__':
    sys.exit(main())
