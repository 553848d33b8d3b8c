"""Judge a model over a corpus of recorded drives: criteria, A/B, many processes or machines.

    python -m bisenet_ros.evaluate_drives corpus/ --model new.pt --out out/release \
        --criteria config/criteria/release.yaml --baseline models/current.pt
    python -m bisenet_ros.evaluate_drives corpus/ --model new.pt --out out/r --workers 4
    torchrun --nnodes 4 --nproc_per_node 8 ... -m bisenet_ros.evaluate_drives corpus/ ...
    python -m bisenet_ros.evaluate_drives corpus/ --model new.pt --out out/live --live

Exit code 0: every criterion holds; 1: a criterion fails; 2: an error (a drive that could
not be evaluated, bad arguments). Outputs in --out: summary.json, report.md, junit.xml.
docs/replay.md, "Evaluating a model release", has the details.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from bisenet_core.inference.postprocess import UPSAMPLE_MODES
from bisenet_core.modelfile import ModelFileError
from bisenet_ros.bags import BagError
from bisenet_ros.fleet.criteria import CriteriaError, load_criteria
from bisenet_ros.fleet.distributed import (RankError, World, join, leave, spawn,
                                           torchrun_world)
from bisenet_ros.fleet.drives import DriveError, EvalSettings, find_drives
from bisenet_ros.fleet.report import VERDICTS, write_outputs
from bisenet_ros.fleet.run import EXIT_ERROR, evaluate_fleet, model_runners
from bisenet_ros.cli_args import network_side, positive_int
from bisenet_ros.replay import add_node_options
from bisenet_ros.replay_options import ReplayError
from bisenet_ros.paths import default_model_path

ERRORS = (DriveError, CriteriaError, ReplayError, BagError, ModelFileError, RankError,
          ValueError, OSError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='python -m bisenet_ros.evaluate_drives',
        description='Evaluate a segmentation model over many drives (rosbag2 bags with '
                    'ground truth), check pass/fail criteria, compare with a baseline model, '
                    'and write summary.json, report.md and junit.xml. Exit code 0 when every '
                    'criterion holds, 1 when one fails, 2 on an error. Runs on N processes '
                    '(--workers) or under torchrun. See docs/replay.md.',
        epilog='examples:\n'
               '  python -m bisenet_ros.evaluate_drives corpus/ --model new.pt --out out/r '
               '--criteria config/criteria/release.yaml\n'
               '  python -m bisenet_ros.evaluate_drives corpus/ --model new.pt --baseline '
               'current.pt --regression 2 --out out/ab\n'
               '  torchrun --nproc_per_node 2 -m bisenet_ros.evaluate_drives corpus/ --model '
               'new.pt --out out/r',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('drives', nargs='+', type=Path, metavar='DRIVE',
                        help='rosbag2 bag folders, or folders searched (recursively) for bags')
    parser.add_argument('--model', type=Path, default=None,
                        help='model to judge (.pt or .onnx); default: the shipped model')
    parser.add_argument('--out', type=Path, required=True,
                        help='output folder: summary.json, report.md, junit.xml, plots and the '
                             'per-drive cache (a second run there resumes)')
    parser.add_argument('--criteria', type=Path, default=None,
                        help='pass/fail criteria YAML (example: config/criteria/release.yaml)')
    parser.add_argument('--baseline', type=Path, default=None,
                        help='A/B: the model it must not be worse than, run on the same frames')
    parser.add_argument('--regression', type=float, default=1.0, metavar='POINTS',
                        help='A/B: list drives whose mIoU is below the baseline\'s by more than '
                             'this many mIoU points (default: 1.0)')
    parser.add_argument('--bootstrap', type=int, default=2000, metavar='N',
                        help='A/B: resamples of the drives for the confidence interval '
                             '(default: 2000; 0: none)')
    parser.add_argument('--seed', type=int, default=0, help='bootstrap seed (default: 0)')
    parser.add_argument('--workers', type=positive_int, default=1, metavar='N',
                        help='processes on this machine, each evaluating a share of the drives '
                             '(default: 1); under torchrun use --nproc_per_node instead')
    parser.add_argument('--threads', type=positive_int, default=None, metavar='N',
                        help='CPU threads per process (default: the usable cores divided by '
                             'the processes on this machine)')
    parser.add_argument('--live', action='store_true',
                        help='replay each bag through a launched segment_node as `replay` does '
                             '(latency, drops); default: offline, the Segmenter without ROS')
    add_node_options(parser)
    parser.add_argument('--upsample', choices=UPSAMPLE_MODES, default='bilinear',
                        help='label upsampling (default: bilinear, the node\'s default)')
    parser.add_argument('--width', type=network_side, default=None, help='network input width')
    parser.add_argument('--height', type=network_side, default=None, help='network input height')
    parser.add_argument('--image-topic', default=None, help='camera topic (auto if one)')
    parser.add_argument('--label-topic', default=None,
                        help='mono8 ground-truth topic (auto: named like labels/annotations)')
    parser.add_argument('--max-frames', type=positive_int, default=None, metavar='N',
                        help='evaluate only the first N frames of each drive')
    parser.add_argument('--start-timeout', type=float, default=180.0,
                        help='live: seconds to wait for the node to come up (default: 180)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bars')
    return parser


def settings_from(args: argparse.Namespace) -> EvalSettings:
    size = (args.width, args.height) if args.width else None
    return EvalSettings(
        model=args.model or default_model_path(), out=args.out, baseline=args.baseline,
        criteria=args.criteria, live=args.live, backend=args.backend, device=args.device,
        precision=args.precision, input_size=size, upsample=args.upsample,
        image_topic=args.image_topic, label_topic=args.label_topic,
        max_frames=args.max_frames, rate=args.rate, start_timeout=args.start_timeout,
        regression_points=args.regression, bootstrap=args.bootstrap, seed=args.seed,
        threads=args.threads, progress=not args.no_progress)


def run_rank(world: World, paths: Sequence[Path], settings: EvalSettings) -> dict | None:
    """What every rank runs; rank 0 writes the outputs, prints and returns the summary."""
    summary = evaluate_fleet(world, paths, settings)
    if summary is not None:
        write_outputs(settings.out, summary)
        print('\n'.join(summary_lines(summary)), flush=True)
    return summary


def summary_lines(summary: dict) -> list[str]:
    agg = summary['aggregate']
    lines = [f'aggregate mIoU {_f(agg["miou"])}, pixel accuracy {_f(agg["pixel_accuracy"])}'
             f' over {agg["drives_evaluated"]} drives ({agg["frames_scored"]} frames; '
             f'{agg["drives_cached"]} from the cache)']
    ab = summary.get('ab')
    if ab and ab['miou_diff'] is not None:
        boot = ab.get('bootstrap')
        interval = (f', 95% interval [{100 * boot["low"]:+.2f}, {100 * boot["high"]:+.2f}]'
                    if boot else '')
        lines.append(f'A/B: {100 * ab["miou_diff"]:+.2f} mIoU points vs the baseline'
                     f'{interval}; {len(ab["regressions"])} drive(s) worse by more than '
                     f'{ab["regression_points"]:g}')
    for c in summary['criteria']:
        state = 'skipped' if c.get('skipped') else 'pass' if c['passed'] else 'FAIL'
        lines.append(f'  {state:<7} {c["name"]}: {_f(c["value"])} {c["op"]} '
                     f'{_f(c["threshold"])}')
    for error in summary['errors']:
        lines.append(f'  ERROR   {error["name"]}: {error["error"]}')
    out = Path(summary['settings']['out'])
    lines.append(f'report: {out / "report.md"} (summary.json, junit.xml)')
    lines.append(f'result: {VERDICTS[summary["exit_code"]]}')
    return lines


def _f(value) -> str:
    return 'n/a' if value is None else f'{value:.4f}'


def check_before_work(paths: Sequence[Path], settings: EvalSettings, world: World) -> None:
    """Errors a user can fix, found before any process starts or any frame is read."""
    if settings.out.exists() and not settings.out.is_dir():
        raise DriveError(f'--out {settings.out}: exists and is not a folder')
    runners = model_runners(settings, World())
    load_criteria(settings.criteria, runners[0].spec.class_names)
    if world.is_main:
        find_drives(paths)
    if settings.live and world.local_size > 1:
        raise DriveError('--live measures latency: run one rank per machine (ranks sharing '
                         'its CPU/GPU would slow each other\'s node down)')


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.width is None) != (args.height is None):
        parser.error('give both --width and --height, or neither')
    if args.bootstrap < 0:
        parser.error('--bootstrap must be >= 0')
    settings = settings_from(args)
    world = torchrun_world()
    if args.workers > 1 and world.distributed:
        parser.error('--workers under torchrun: use torchrun\'s --nproc_per_node instead')
    if args.workers > 1:
        world = World(0, args.workers, 0, args.workers)
    try:
        check_before_work(args.drives, settings, world)
        if args.workers > 1:
            (settings.out / 'summary.json').unlink(missing_ok=True)
            spawn(run_rank, args.workers, args.drives, settings)
            summary = json.loads((settings.out / 'summary.json').read_text())
        else:
            join(world)
            try:
                summary = run_rank(world, args.drives, settings)
            finally:
                leave()
            if summary is None:  # not rank 0: its result is in rank 0's outputs
                return 0
    except ERRORS as exc:
        print(f'error: {exc}', file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print('interrupted; drives evaluated so far are cached in '
              f'{settings.out / "cache"}: run again to resume', file=sys.stderr)
        return 130
    return int(summary['exit_code'])


if __name__ == '__main__':
    sys.exit(main())
