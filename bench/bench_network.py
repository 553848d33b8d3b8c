"""The network alone: eager, Conv+BN folded, one CUDA graph, torch.compile + graph.

    python -m bench.bench_network                       # Xception39 1536x768, ResNet-18 2048x1024
    python -m bench.bench_network --configs xception39:640x360 --iters 50
    python -m bench.bench_network --configs xception39:1280x720 --batches 1 6

--batches times each row at several batch sizes (the frames of N cameras in one forward pass,
as the multi-camera node runs them) and reports each step against the batch-1 step of the
same row (issue 19's GPU target: batch 6 <= 2x batch 1 at 1280x720).

What the paper's speed table measures: the forward pass on an input already on the device
(random weights, 19 classes; speed does not depend on the weights), no pre/post-processing,
no copies. Each row is prepared as the Segmenter prepares its model (TorchBackend: eval,
folding, channels_last + fp16 on CUDA, compile) and, for the graph rows, captured the way the
device pipeline captures (bisenet_core.inference.device.capture_graph). GPU times come from
CUDA events around each call; FPS = 1000 / mean ms.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import numpy as np
import torch

from bench.machine import machine_info
from bisenet_core.inference.backends import TorchBackend
from bisenet_core.inference.device import capture_eager, capture_graph
from bisenet_core.model import bisenet
from bisenet_core.spec import BACKBONES, size_arg

DEFAULT_CONFIGS = ('xception39:1536x768', 'resnet18:2048x1024')
NUM_CLASSES = 19


def config_arg(text: str) -> tuple[str, tuple[int, int]]:
    backbone, _, size = text.partition(':')
    if backbone not in BACKBONES:
        raise argparse.ArgumentTypeError(f'backbone must be one of {BACKBONES}, got {backbone!r}')
    return backbone, size_arg(size)


def variants(device: str) -> list[tuple[str, str, dict, bool]]:
    """(name, precision, TorchBackend options, graph) rows for this device."""
    if device == 'cpu':
        return [('eager', 'fp32', {'fold': False}, False),
                ('folded', 'fp32', {}, False)]
    return [('eager', 'fp32', {'fold': False}, False),
            ('eager', 'fp16', {'fold': False}, False),
            ('graph', 'fp16', {'fold': False}, True),
            ('folded + graph', 'fp16', {}, True),
            ('compile + graph', 'fp16', {'compile': True}, True)]


def bench_one(backbone: str, size: tuple[int, int], device: str, iters: int, warmup: int,
              batches: tuple[int, ...] = (1,)) -> list[dict]:
    """Every variant of one backbone and network size on one device, at each batch size."""
    torch.manual_seed(0)
    model = bisenet(NUM_CLASSES, backbone).eval()
    results = []
    for name, precision, options, graph in variants(device):
        for batch in batches:
            try:
                row = bench_variant(model, size, device, precision, options, graph, iters,
                                    warmup, batch)
            except Exception as exc:  # noqa: BLE001 - e.g. compile without a working compiler
                print(f'skipped: {backbone} {size[0]}x{size[1]} {device} {name} {precision} '
                      f'batch {batch}: {type(exc).__name__}: {str(exc)[:200]}', file=sys.stderr)
                continue
            results.append({'backbone': backbone, 'size': size, 'device': device, 'row': name,
                            'precision': precision, 'batch': batch, **row})
    return results


def bench_variant(model, size: tuple[int, int], device: str, precision: str, options: dict,
                  graph: bool, iters: int, warmup: int, batch: int = 1) -> dict:
    """Prepare a copy of `model` as the Segmenter would and time its forward pass."""
    width, height = size
    start = time.perf_counter()
    backend = TorchBackend(copy.deepcopy(model), device, precision, **options)
    x = torch.randn(batch, 3, height, width, device=device).to(backend.dtype)
    if backend.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def run():
        return {'logits': backend.model(x).logits}
    with torch.inference_mode():
        if device == 'cpu':
            _, step = capture_eager(run, None)
        else:
            _, step = (capture_graph if graph else capture_eager)(run, torch.cuda.Stream(device))
        for _ in range(warmup):
            step()
        prepare_s = time.perf_counter() - start
        samples = _time(step, iters, device)
    p50, p99 = np.percentile(samples, [50, 99])
    # FPS counts frames: a batch of N is N frames.
    return {'p50': p50, 'p99': p99, 'fps': batch * 1e3 / statistics.fmean(samples),
            'prepare_s': prepare_s}


def _time(step, iters: int, device: str) -> list[float]:
    samples = []
    if device == 'cpu':
        for _ in range(iters):
            start = time.perf_counter()
            step()
            samples.append((time.perf_counter() - start) * 1e3)
        return samples
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(iters):
        begin.record()
        step()
        end.record()
        end.synchronize()
        samples.append(begin.elapsed_time(end))
    return samples


def step_ratios(results: list[dict]) -> list[float | None]:
    """Each row's p50 step over the batch-1 p50 of the same variant (None without one)."""
    def variant(r):
        return r['backbone'], r['size'], r['device'], r['row'], r['precision']
    single = {variant(r): r['p50'] for r in results if r.get('batch', 1) == 1}
    return [r['p50'] / single[variant(r)] if variant(r) in single else None for r in results]


def markdown_table(results: list[dict]) -> str:
    batched = any(r.get('batch', 1) != 1 for r in results)
    head = '| backbone | input | device | row | precision | '
    rule = '| --- | --- | --- | --- | --- | '
    if batched:
        head += 'batch | '
        rule += '---: | '
    head += 'p50 ms | p99 ms | FPS | prepare s |'
    rule += '---: | ---: | ---: | ---: |'
    if batched:
        head += ' step / batch-1 step |'
        rule += ' ---: |'
    lines = [head, rule]
    for r, ratio in zip(results, step_ratios(results)):
        line = (f"| {r['backbone']} | {r['size'][0]}x{r['size'][1]} | {r['device']} | "
                f"{r['row']} | {r['precision']} | ")
        if batched:
            line += f"{r.get('batch', 1)} | "
        line += f"{r['p50']:.2f} | {r['p99']:.2f} | {r['fps']:.1f} | {r['prepare_s']:.1f} |"
        if batched:
            line += ' - |' if ratio is None else f' {ratio:.2f}x |'
        lines.append(line)
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m bench.bench_network',
        description='BiSeNet forward pass alone (batch 1, or --batches): eager vs Conv+BN '
                    'folded vs CUDA graph vs torch.compile + graph, on the CPU and every GPU '
                    'row when CUDA is present.')
    parser.add_argument('--configs', nargs='+', type=config_arg,
                        default=[config_arg(c) for c in DEFAULT_CONFIGS],
                        help='backbone:WxH network inputs (default: %s)' % ' '.join(
                            DEFAULT_CONFIGS))
    parser.add_argument('--iters', type=int, default=None,
                        help='timed calls per row (default: 200 on a GPU, 5 on the CPU)')
    parser.add_argument('--warmup', type=int, default=None,
                        help='untimed calls per row first (default: 20 on a GPU, 1 on the CPU)')
    parser.add_argument('--no-cpu', action='store_true', help='GPU rows only')
    parser.add_argument('--batches', type=int, nargs='+', default=[1], metavar='N',
                        help='batch sizes to time each row at (default: 1); e.g. 1 6 for '
                             'six cameras in one forward pass against one camera')
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.batches):
        parser.error('--batches must be >= 1')
    devices = ([] if args.no_cpu else ['cpu']) + (['cuda'] if torch.cuda.is_available() else [])
    if not devices:
        parser.error('--no-cpu without a CUDA GPU leaves nothing to measure')
    print(machine_info(), flush=True)
    results = []
    for backbone, size in args.configs:
        for device in devices:
            iters = args.iters or (5 if device == 'cpu' else 200)
            warmup = args.warmup if args.warmup is not None else (1 if device == 'cpu' else 20)
            results += bench_one(backbone, size, device, iters, warmup,
                                 tuple(args.batches))
    batches = ', '.join(str(n) for n in args.batches)
    print(f'batch {batches}, {NUM_CLASSES} classes, random weights; FPS counts frames (a batch '
          'of N is N); "prepare" includes folding, compiling and capturing')
    print(markdown_table(results))
    return 0


if __name__ == '__main__':
    sys.exit(main())
