"""A fleet evaluation on 1 process, N workers and torchrun with N ranks, side by side.

    python -m bench.bench_drives [--drives 20] [--frames 50] [--size 160x120]
                                 [--net 160x128] [--ranks 2] [--repeats 1] [--backend auto]

Renders `--drives` synthetic drives of `--frames` frames (small, so the bench is about the
ranks, not one big network), writes them as bags, then runs `python -m
bisenet_ros.evaluate_drives` on the corpus as a user would (a fresh process and output
folder per run, no cache): with --workers 1, with --workers N, and under `torchrun
--standalone --nproc_per_node N`, interleaved when repeated. Prints wall time (process start
to exit), frames/s and the busiest rank's time evaluating drives (the wall time less process
start-up, model loading and waiting) per run, checks the three summed confusion matrices are
identical, and prints the machine and its load (a shared machine's load moves these numbers).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.machine import machine_info
from bisenet_core.data.synthetic import write_drive
from bisenet_core.spec import size_arg
from bisenet_ros.bags import convert_drive

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / 'models' / 'bisenet_xception39_synthetic.pt'


def make_corpus(root: Path, drives: int, frames: int, size: tuple[int, int]) -> Path:
    corpus = root / 'corpus'
    for k in range(drives):
        write_drive(root / f'src{k}', seed=5000 + k, num_frames=frames, size=size,
                    split='test', progress=False)
        convert_drive(root / f'src{k}', corpus / f'drive{k:02d}', progress=False)
    return corpus


def evaluate_command(how: str, ranks: int, corpus: Path, out: Path, args) -> list[str]:
    tail = ['-m', 'bisenet_ros.evaluate_drives', str(corpus), '--model', str(args.model),
            '--out', str(out), '--backend', args.backend, '--device', 'cpu',
            '--width', str(args.net[0]), '--height', str(args.net[1]), '--no-progress']
    if how == 'torchrun':
        return [sys.executable, '-m', 'torch.distributed.run', '--standalone',
                '--nproc_per_node', str(ranks), *tail]
    return [sys.executable, *tail, '--workers', str(ranks if how == 'workers' else 1)]


def timed_run(command: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f'{" ".join(command)} failed ({proc.returncode}):\n'
                         f'{proc.stdout[-2000:]}{proc.stderr[-3000:]}')
    return seconds


def busiest_rank_seconds(summary: dict) -> float:
    """Time the busiest rank spent evaluating drives (wall time less start-up and waiting)."""
    per_rank: dict[int, float] = {}
    for drive in summary['drives']:
        per_rank[drive['rank']] = per_rank.get(drive['rank'], 0.0) + drive['seconds']
    return max(per_rank.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m bench.bench_drives', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--drives', type=int, default=20)
    parser.add_argument('--frames', type=int, default=50, help='frames per drive')
    parser.add_argument('--size', type=size_arg, default=(160, 120), help='frame size WxH')
    parser.add_argument('--net', type=size_arg, default=(160, 128), help='network input WxH')
    parser.add_argument('--ranks', type=int, default=2, help='workers / torchrun ranks')
    parser.add_argument('--repeats', type=int, default=1)
    parser.add_argument('--backend', default='auto', help='evaluate_drives --backend')
    parser.add_argument('--model', type=Path, default=MODEL)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix='bench_drives_') as tmp:
        tmp = Path(tmp)
        print(f'rendering {args.drives} drives x {args.frames} frames '
              f'({args.size[0]}x{args.size[1]}) ...', flush=True)
        corpus = make_corpus(tmp, args.drives, args.frames, args.size)
        # One small run first: the ONNX export of a .pt (auto backend) is cached, not timed.
        timed_run(evaluate_command('one', 1, corpus / 'drive00', tmp / 'warm', args))
        runs = (('1 process', 'one'), (f'{args.ranks} workers', 'workers'),
                (f'torchrun, {args.ranks} ranks', 'torchrun'))
        times: dict[str, list[float]] = {label: [] for label, _ in runs}
        evaluation: dict[str, list[float]] = {label: [] for label, _ in runs}
        confusions = {}
        for repeat in range(args.repeats):
            for label, how in runs:
                out = tmp / f'{how}{repeat}'
                times[label].append(timed_run(evaluate_command(how, args.ranks, corpus, out,
                                                               args)))
                summary = json.loads((out / 'summary.json').read_text())
                confusions[label] = np.asarray(summary['aggregate']['confusion'])
                busy = busiest_rank_seconds(summary)
                evaluation[label].append(busy)
                print(f'  {label}: {times[label][-1]:.1f} s, busiest rank evaluating '
                      f'{busy:.1f} s', flush=True)
    frames = args.drives * args.frames
    same = all(np.array_equal(c, confusions[runs[0][0]]) for c in confusions.values())
    print(f'\n{args.drives} drives x {args.frames} frames ({frames} frames, '
          f'{args.size[0]}x{args.size[1]}, network {args.net[0]}x{args.net[1]}), backend '
          f'{args.backend}, {args.repeats} run(s) each, wall time from process start to exit')
    print('| run | wall time (s) | frames/s | vs 1 process | busiest rank evaluating (s) |')
    print('| --- | ---: | ---: | ---: | ---: |')
    base = min(times[runs[0][0]])
    for label, _ in runs:
        best = min(times[label])
        print(f'| {label} | {best:.1f} | {frames / best:.1f} | {base / best:.2f}x | '
              f'{min(evaluation[label]):.1f} |')
    print(f'summed confusion matrices identical: {same}')
    print(machine_info())
    return 0 if same else 1


if __name__ == '__main__':
    sys.exit(main())
