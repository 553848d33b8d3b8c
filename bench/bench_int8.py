"""int8 vs fp32 on the CPU: speed and accuracy of the shipped model, side by side in one run.

    python -m bench.bench_int8 [--model models/bisenet_xception39_synthetic.pt]
                               [--int8 models/bisenet_xception39_synthetic_int8.onnx]
                               [--frames 60] [--seed 9001]

Renders a held-out synthetic drive, and for every frame runs the same network input through
torch eager fp32, ONNX Runtime fp32 and ONNX Runtime int8 (interleaved, in a rotating order, so
load spikes and thread-pool spin-down hit all three alike), then scores each against the ground
truth (bilinear upsampling, the node's default). Prints p50/p99 inference latency, the speed-up
over torch and over ORT fp32, mIoU, and the share of labels equal to torch fp32 (the accuracy
bar: at least 99.5 %).
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bisenet_core.data.synthetic import render_drive
from bisenet_core.inference import Segmenter
from bisenet_core.inference.postprocess import logits_to_labels
from bisenet_core.metrics import ConfusionMatrix

MODELS = Path(__file__).resolve().parent.parent / 'models'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m bench.bench_int8', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', type=Path,
                        default=MODELS / 'bisenet_xception39_synthetic.pt')
    parser.add_argument('--int8', type=Path,
                        default=MODELS / 'bisenet_xception39_synthetic_int8.onnx')
    parser.add_argument('--frames', type=int, default=60)
    parser.add_argument('--seed', type=int, default=9001, help='drive seed (held out)')
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)  # 'no GPU, running on the CPU'
        rows = {'torch fp32': Segmenter(args.model, backend='torch', device='cpu'),
                'onnxruntime fp32': Segmenter(args.model, backend='onnxruntime', device='cpu'),
                'onnxruntime int8': Segmenter(args.int8, backend='onnxruntime', device='cpu')}
    spec = rows['torch fp32'].spec
    times = {name: [] for name in rows}
    scores = {name: ConfusionMatrix(spec.num_classes) for name in rows}
    agree = {name: 0 for name in rows}
    total = 0
    frames = render_drive(args.seed, args.frames, (480, 360), step=30)
    names = list(rows)
    for i, frame in enumerate(tqdm(frames, total=args.frames, desc='frames', unit='frame')):
        labels = {}
        # Rotate the order: a backend's thread pool keeps spinning for a moment after its
        # call and slows whichever runs next; rotating spreads that evenly.
        for name in names[i % len(names):] + names[:i % len(names)]:
            seg = rows[name]
            batch = seg.preprocess(frame.image)
            start = time.perf_counter()
            logits = seg.infer(batch)[0]
            times[name].append((time.perf_counter() - start) * 1e3)
            labels[name] = logits_to_labels(logits, frame.image.shape[:2], 'bilinear')
            scores[name].update(labels[name], frame.label)
        for name in names:
            agree[name] += int((labels[name] == labels['torch fp32']).sum())
        total += labels['torch fp32'].size
    torch_p50 = float(np.median(times['torch fp32']))
    ort_p50 = float(np.median(times['onnxruntime fp32']))
    print(f'{args.frames} frames of drive {args.seed} at 480x360, network '
          f'{spec.input_size[0]}x{spec.input_size[1]}, batch 1, CPU')
    print('| backend | p50 ms | p99 ms | vs torch fp32 | vs ORT fp32 | mIoU '
          '| labels = torch fp32 |')
    print('| --- | ---: | ---: | ---: | ---: | ---: | ---: |')
    for name in rows:
        p50, p99 = np.percentile(times[name], [50, 99])
        print(f'| {name} | {p50:.1f} | {p99:.1f} | {torch_p50 / p50:.2f}x | {ort_p50 / p50:.2f}x '
              f'| {scores[name].miou():.4f} | {100 * agree[name] / total:.2f}% |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
