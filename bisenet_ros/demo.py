"""`make demo`: a held-out synthetic drive, through the real ROS 2 node, scored against its labels.

Steps (each prints what it does):
  1. render a synthetic CamVid-style drive the model never saw (seed 9001; training uses others),
  2. write it into an MCAP bag (rgb8 images on /camera/image_raw, labels on /camera/labels),
  3. launch segment_node with `ros2 launch bisenet_ros segment.launch.py` on the shipped model,
     replay the bag through it at the bag's 10 fps (or --rate, or --lockstep: as fast as the
     node keeps up, no frame lost),
  4. run the same model offline (no ROS) as the reference,
  5. write report.json, report.md and plots to out/demo/ and print a summary.

    python -m bisenet_ros.demo                      # what `make demo` runs
    python -m bisenet_ros.demo --frames 40 --lockstep --out out/demo_lockstep
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

from bisenet_core.data.synthetic import write_drive
from bisenet_ros.bags import BagError, convert_drive
from bisenet_ros.paths import default_model_path
from bisenet_ros.replay import (DEFAULT_MODEL, ReplayError, ReplayOptions, add_node_options,
                                evaluate, summary_lines)

DEMO_SEED = 9001      # held out: training uses seeds 1..20, validation 1001, test 2001
DEMO_FRAMES = 150
DEMO_SIZE = (480, 360)
DEMO_FPS = 10.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='python -m bisenet_ros.demo',
        description='End-to-end demo: render a held-out synthetic drive, write it to an MCAP '
                    'bag, replay it through segment_node (launched with ros2 launch) and '
                    'through the same model offline, and write an evaluation report.',
        epilog=f'The report lands in --out (default out/demo): report.md, report.json and '
               f'PNG plots. Model: {DEFAULT_MODEL} unless --model.')
    parser.add_argument('--frames', type=int, default=DEMO_FRAMES,
                        help=f'frames in the drive ({DEMO_SIZE[0]}x{DEMO_SIZE[1]}, '
                             f'{DEMO_FPS:g} fps; default: {DEMO_FRAMES})')
    parser.add_argument('--seed', type=int, default=DEMO_SEED,
                        help=f'drive seed (default: {DEMO_SEED}); keep it away from the '
                             'training seeds to measure generalisation')
    parser.add_argument('--model', type=Path, default=None,
                        help=f'model file (.pt or .onnx); default: the shipped {DEFAULT_MODEL}')
    add_node_options(parser)  # --rate (default: the bag's 10 fps), --lockstep, --backend, ...
    parser.add_argument('--out', type=Path, default=Path('out/demo'),
                        help='output folder: drive/, drive_bag/, node.log and the report, '
                             'replaced on each run (default: out/demo)')
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.frames < 2:
        build_parser().error(f'--frames must be >= 2, got {args.frames}')
    model = args.model or default_model_path()
    if not Path(model).is_file():
        print(f'error: model file {model}: not found; train one (see README, `python -m '
              f'training.train`) or pass --model', file=sys.stderr)
        return 2
    out = args.out
    drive, bag = out / 'drive', out / 'drive_bag'
    start = time.perf_counter()
    try:
        for old in (drive, bag):
            if old.exists():
                shutil.rmtree(old)  # the demo's own outputs from an earlier run
        print(f'[1/4] rendering held-out drive: seed {args.seed}, {args.frames} frames '
              f'{DEMO_SIZE[0]}x{DEMO_SIZE[1]} -> {drive}')
        write_drive(drive, args.seed, args.frames, DEMO_SIZE, split='test', fps=DEMO_FPS,
                    step=1)
        print(f'[2/4] writing MCAP bag ({DEMO_FPS:g} fps) -> {bag}')
        convert_drive(drive, bag, split='test', storage='mcap', fps=DEMO_FPS)
        pace = 'lockstep (no frame lost)' if args.rate is None else f'{args.rate:g}x real time'
        print(f'[3/4] live replay through segment_node ({pace}), model {model}')
        print('[4/4] then the offline reference (same model, no ROS)')
        report = evaluate(ReplayOptions(bag, model, mode='both', rate=args.rate, out=out,
                                        backend=args.backend, device=args.device,
                                        precision=args.precision))
    except (ReplayError, BagError, ValueError, RuntimeError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('interrupted; the node was stopped', file=sys.stderr)
        return 130
    print(f'\ndemo finished in {time.perf_counter() - start:.0f} s')
    print('\n'.join(summary_lines(report)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
