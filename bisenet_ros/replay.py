"""Replay a rosbag through the segmentation node and score it against ground truth.

Live mode publishes the bag's frames as real ROS 2 messages to a running segment_node (one
this tool launches with `ros2 launch bisenet_ros segment.launch.py`, or one you --attach to),
collects its `~/label` masks, matches them to the ground truth by header stamp and reports
mIoU, per-class IoU, pixel accuracy, drops, end-to-end latency and throughput. Offline mode
runs the same model through `Segmenter` on the same frames without ROS: the reference the
live numbers must reproduce (a gap means lost, late or corrupted frames).

This module is the command line and the report (`evaluate(ReplayOptions(...))`); the offline run
and scoring are in bisenet_ros.replay_offline (no ROS), the ROS client and live run in
bisenet_ros.replay_live, the options in bisenet_ros.replay_options.

    python -m bisenet_ros.replay drive.bag --model models/bisenet_xception39_synthetic.pt
    python -m bisenet_ros.replay drive.bag --mode offline --labels-dir gt/ --out out/eval
    python -m bisenet_ros.replay theirs.bag --image-topic /cam/front/compressed --lockstep
    python -m bisenet_ros.replay drive.bag --attach /bisenet/segment_node --rate 0.5
    python -m bisenet_ros.replay surround.bag --image-topic /front/image_raw \
        --image-topic /left/image_raw                  # several cameras through one node

With several --image-topic, one node segments every camera (bisenet_ros.replay_cameras):
each camera is scored on its own (out/<camera>/report.md) and all together (out/report.md).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from dataclasses import replace
from typing import Sequence

from bisenet_core.inference import Segmenter
from bisenet_core.hardware import PRECISIONS, device_arg
from bisenet_core.inference.backends import BACKENDS
from bisenet_core.inference.postprocess import UPSAMPLE_MODES
from bisenet_core.metrics import ConfusionMatrix
from bisenet_core.model_source import read_spec
from bisenet_core.modelfile import ModelFileError
from bisenet_core.spec import ModelSpec
from bisenet_ros.bags import BagError, bag_info, choose_topics, read_frames
from bisenet_ros.cli_args import network_side, positive_float, positive_int
from bisenet_ros.label_files import LABEL_KEYS
from bisenet_ros.log_forwarding import plain_warnings
from bisenet_ros.paths import DEFAULT_MODEL_NAME, default_model_path
from bisenet_ros.replay_cameras import camera_streams, run_live_cameras
from bisenet_ros.replay_live import LiveResult, replay_parameters, run_live
from bisenet_ros.replay_offline import OfflineRun, Score, run_offline, samples, score
from bisenet_ros.replay_options import MODES, ReplayError, ReplayOptions
from bisenet_ros.report import latency_stats, write_report

__all__ = ['DEFAULT_MODEL', 'ReplayError', 'ReplayOptions', 'add_node_options', 'build_parser',
           'evaluate', 'main', 'summary_lines']

DEFAULT_MODEL = f'models/{DEFAULT_MODEL_NAME}'


def evaluate(options: ReplayOptions) -> dict:
    """Run the replay (live, offline or both), write the report to options.out, return its dict.

    Live masks are compared with the offline ones made with the node's upsampling.
    """
    model = Path(options.model) if options.model else default_model_path()
    try:
        spec = read_spec(model)
    except ModelFileError as exc:
        hint = '' if options.model else ' (pass --model)'
        raise ReplayError(f'{exc}{hint}') from None
    out = Path(options.out)
    if out.exists() and not out.is_dir():
        raise ReplayError(f'--out {out}: exists and is not a folder')
    # The folder is made by what writes into it (node.log, the report): a run that fails
    # before leaves none behind.

    image_topics, label_topics = _topics(options.image_topic), _topics(options.label_topic)
    if len(image_topics) > 1:
        return _evaluate_cameras(options, model, spec, image_topics, label_topics)
    bag, labels_dir = options.bag, options.labels_dir
    image_topic, label_topic = choose_topics(bag, next(iter(image_topics), None),
                                             next(iter(label_topics), None),
                                             want_labels=labels_dir is None)
    frames = read_frames(bag, image_topic, label_topic, labels_dir, options.labels_key,
                         options.max_frames)
    if labels_dir is not None:
        ground_truth = f'folder {labels_dir}'
    else:
        ground_truth = f'topic {label_topic}' if label_topic else 'none'
    params = replay_parameters(options.upsample)
    live = offline = None
    if options.mode in ('live', 'both'):
        live = run_live(frames, model, options, params=params)
    if options.mode in ('offline', 'both'):
        offline = run_offline(frames, _segmenter(model, options), options.progress)
    return _report(options, model, spec, image_topic, ground_truth, frames, live, offline,
                   params['/**']['ros__parameters']['upsample'], out)[0]


def _topics(given: str | Sequence[str] | None) -> list[str]:
    if given is None:
        return []
    return [given] if isinstance(given, str) else list(given)


def _segmenter(model: Path, options: ReplayOptions) -> Segmenter:
    return Segmenter(model, backend=options.backend, device=options.device,
                     precision=options.precision, input_size=options.input_size)


def _evaluate_cameras(options: ReplayOptions, model: Path, spec: ModelSpec,
                      image_topics: list[str], label_topics: list[str]) -> dict:
    """Several cameras through one node: a report per camera and one for all together.

    Each camera's report is in out/<camera>/; out/report.md adds the confusion matrices up
    and pools every camera's latencies.
    """
    if options.labels_dir is not None:
        raise ReplayError('--labels-dir takes one camera\'s ground truth: with several '
                          '--image-topic, give ground truth as topics (--label-topic per '
                          'camera, or /<camera>/labels beside each image topic)')
    out = Path(options.out)
    streams = camera_streams(options.bag, image_topics, label_topics)
    frames = {}
    for stream in streams:
        read = read_frames(options.bag, stream.image_topic, stream.label_topic,
                           max_frames=options.max_frames)
        # No ground truth of its own: never another camera's auto-detected one.
        frames[stream.name] = read if stream.label_topic else [replace(f, label=None)
                                                               for f in read]
    params = replay_parameters(options.upsample)
    upsample = params['/**']['ros__parameters']['upsample']
    lives = (run_live_cameras(frames, model, options, params)
             if options.mode in ('live', 'both') else {})
    segmenter = _segmenter(model, options) if options.mode in ('offline', 'both') else None
    cameras, shown = {}, []
    timings: dict = {'latency_ms': [], 'sent_s': [], 'dropped_s': []}
    for stream in streams:
        offline = (run_offline(frames[stream.name], segmenter, options.progress)
                   if segmenter else None)
        cameras[stream.name], confusion, camera_timings = _report(
            options, model, spec, stream.image_topic,
            f'topic {stream.label_topic}' if stream.label_topic else 'none',
            frames[stream.name], lives.get(stream.name), offline, upsample,
            out / stream.name)
        shown += [confusion] if confusion is not None else []
        for key, values in timings.items():
            values += camera_timings[key]
    # All cameras together: confusion matrices added up, latencies pooled.
    total = ConfusionMatrix(spec.num_classes, spec.ignore_index)
    for confusion in shown:
        total += confusion
    first = next(iter(cameras.values()))
    report = {'bag': {**first['bag'], 'image_topic': ', '.join(s.image_topic for s in streams),
                      'ground_truth': 'per camera',
                      'frames': sum(r['bag']['frames'] for r in cameras.values()),
                      'labelled_frames': sum(r['bag']['labelled_frames']
                                             for r in cameras.values())},
              'model': first['model'], 'cameras': cameras,
              'all_cameras': {'scored_on': 'live' if lives else f'offline ({upsample})',
                              **total.to_dict(spec.class_names),
                              'latency_ms': latency_stats(timings['latency_ms'])}}
    report['paths'] = {k: str(v) for k, v in write_report(
        out, report, total if shown else None, spec.class_names, [], timings['latency_ms'],
        timings['sent_s'], timings['dropped_s'], spec.palette).items()}
    return report


def _report(options: ReplayOptions, model: Path, spec: ModelSpec, image_topic: str,
            ground_truth: str, frames, live: LiveResult | None, offline: OfflineRun | None,
            live_upsample: str, out: Path
            ) -> tuple[dict, ConfusionMatrix | None, dict]:
    """Score one camera's live and offline runs and write its report into `out`.

    Returns the report, the confusion matrix it shows (live, else offline with the node's
    upsampling; None when no frame was scored) and the live timings (LiveResult.timings).
    """
    bag = options.bag
    # Frames without ground truth are replayed (latency, drops, samples), just not scored.
    labelled = sum(f.label is not None for f in frames)
    height, width = frames[0].image.shape[:2]
    report: dict = {
        'bag': {'path': str(bag), 'storage': bag_info(bag)['storage'],
                'image_topic': image_topic, 'ground_truth': ground_truth,
                'frames': len(frames), 'labelled_frames': labelled,
                'width': width, 'height': height},
        'model': {'path': str(model), 'backbone': spec.backbone, 'dataset': spec.dataset,
                  'num_classes': spec.num_classes, 'class_names': list(spec.class_names),
                  'input_size': list(options.input_size or spec.input_size)},
    }

    shown = None
    timings: dict = {'latency_ms': [], 'sent_s': [], 'dropped_s': []}
    pictures: list[dict] = []
    if offline is not None:
        report['offline'] = _offline_entry(offline, spec)
        reference = offline.predictions[live_upsample]
        shown = _shown(offline.scores[live_upsample])
        pictures = samples(frames, reference, spec, 'offline')
    if live is not None:
        masks = {index: live.received[position][2] for index, position in live.match.matched}
        live_score = score(frames, masks, spec)
        timings = live.timings()
        report['live'] = _live_entry(live, live_score, timings, spec, options.rate,
                                     live_upsample)
        shown = _shown(live_score)
        pictures = samples(frames, masks, spec, 'live')
        if offline is not None:
            report['comparison'] = _comparison(report, live, masks, reference, live_upsample)
    report['paths'] = {k: str(v) for k, v in write_report(
        out, report, shown, spec.class_names, pictures, timings['latency_ms'],
        timings['sent_s'], timings['dropped_s'], spec.palette).items()}
    return report, shown, timings


def _shown(result: Score) -> ConfusionMatrix | None:
    """The confusion matrix the report plots: none when no frame was scored."""
    return result.confusion if result.frames_scored else None


def _offline_entry(offline: OfflineRun, spec: ModelSpec) -> dict:
    segmenter = offline.segmenter
    entry = {'backend': segmenter.backend_name, 'device': segmenter.device,
             'precision': segmenter.precision, 'timings_ms': offline.timings_ms}
    for method, result in offline.scores.items():
        entry[method] = result.confusion.to_dict(spec.class_names)
        entry['frames_scored'] = result.frames_scored
    return entry


def _live_entry(live: LiveResult, result: Score, timings: dict, spec: ModelSpec,
                rate: float | None, upsample: str) -> dict:
    return {
        'node': live.node, 'input_topic': live.input_topic, 'label_topic': live.label_topic,
        'pacing': live.pacing, 'rate': rate, 'upsample': upsample,
        'frames_sent': len(live.publish_s), 'frames_received': live.match.num_matched,
        'dropped': len(live.match.dropped), 'dropped_indices': live.match.dropped,
        'unexpected': len(live.match.unexpected), 'duplicates': len(live.match.duplicates),
        'frames_scored': result.frames_scored, **result.confusion.to_dict(spec.class_names),
        'latency_ms': latency_stats(timings['latency_ms']),
        'throughput_fps': live.match.num_matched / timings['duration_s'],
        'duration_s': timings['duration_s'],
    }


def _comparison(report: dict, live: LiveResult, masks: dict, reference: dict,
                upsample: str) -> dict:
    """Live masks against the offline ones made with the same upsampling."""
    agree = total = 0
    for index, _ in live.match.matched:
        agree += int((masks[index] == reference[index]).sum())
        total += masks[index].size
    live_miou, offline_miou = report['live']['miou'], report['offline'][upsample]['miou']
    return {
        'live_miou': live_miou, 'offline_miou': offline_miou, 'offline_upsample': upsample,
        'miou_gap': _gap(live_miou, offline_miou),
        'pixel_agreement': agree / total if total else None,
        'frames_compared': live.match.num_matched,
    }


def _gap(live: float | None, offline: float | None) -> float | None:
    return None if live is None or offline is None else offline - live


# ----------------------------------------------------------------------------- command line

def summary_lines(report: dict) -> list[str]:
    """A few lines for the terminal: accuracy, drops, latency, where the report is."""
    lines = []
    live, offline = report.get('live'), report.get('offline')
    if live:
        lat = live['latency_ms']
        lines.append(f'live    mIoU {_f(live["miou"])} ({live["upsample"]})  '
                     f'pixel acc {_f(live["pixel_accuracy"])}  '
                     f'received {live["frames_received"]}/{live["frames_sent"]} '
                     f'(dropped {live["dropped"]})')
        if lat:
            lines.append(f'latency p50 {lat["p50"]:.1f} ms  p90 {lat["p90"]:.1f} ms  '
                         f'p99 {lat["p99"]:.1f} ms  throughput {live["throughput_fps"]:.2f} fps')
    if offline:
        lines.append(f'offline mIoU {_f(offline["nearest"]["miou"])} (nearest), '
                     f'{_f(offline["bilinear"]["miou"])} (bilinear upsampling)')
    bag = report['bag']
    if bag['labelled_frames'] < bag['frames']:
        lines.append(f'ground truth for {bag["labelled_frames"]} of {bag["frames"]} frames '
                     f'({bag["ground_truth"]}); only those are scored')
    if 'comparison' in report and report['comparison']['pixel_agreement'] is not None:
        lines.append(f'live masks equal offline ones on '
                     f'{100 * report["comparison"]["pixel_agreement"]:.3f} % of pixels')
    lines.append(f'report: {report["paths"]["markdown"]} (and report.json, PNG plots)')
    return lines


def _f(value) -> str:
    return 'n/a' if value is None else f'{value:.4f}'


def add_node_options(parser: argparse.ArgumentParser) -> None:
    """Add the pacing, backend, device and precision options of a live replay.

    One definition for the replay and the demo, so both read them with the same defaults.
    """
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument('--rate', type=positive_float, default=1.0, metavar='R',
                      help='live: publish at R times the bag\'s frame rate, as a camera would '
                           '(frames the node cannot keep up with are dropped and counted); '
                           'default: 1 (real time)')
    pace.add_argument('--lockstep', '--max-rate', dest='rate', action='store_const', const=None,
                      help='live: send the next frame when the previous mask arrived: as fast '
                           'as the node keeps up, no frame lost')
    parser.add_argument('--backend', choices=BACKENDS, default='auto',
                        help='inference backend of the node and the offline reference '
                             '(default: auto, onnxruntime when installed)')
    parser.add_argument('--device', type=device_arg, default='auto',
                        metavar='{auto,cpu,cuda,cuda:N}',
                        help='default: auto (CUDA when available)')
    parser.add_argument('--precision', choices=PRECISIONS, default='fp32',
                        help='fp16 on CUDA only (default: fp32)')


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='python -m bisenet_ros.replay',
        description='Replay a rosbag2 bag through the BiSeNet segment_node (live) and/or the '
                    'same model without ROS (offline), score the masks against ground truth '
                    'and write report.json, report.md and plots. See docs/replay.md.',
        epilog='examples:\n'
               '  python -m bisenet_ros.replay drive_bag --model model.pt\n'
               '  python -m bisenet_ros.replay drive_bag --mode offline --out out/offline\n'
               '  python -m bisenet_ros.replay their_bag --image-topic /cam/image_raw '
               '--labels-dir gt/ --rate 1.0',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('bag', type=Path, help='rosbag2 bag folder (MCAP or sqlite3)')
    parser.add_argument('--model', type=Path, default=None,
                        help=f'model file (.pt or .onnx); default: the shipped {DEFAULT_MODEL}')
    parser.add_argument('--mode', choices=MODES, default='both',
                        help='live: through the ROS 2 node; offline: Segmenter without ROS; '
                             'both (default): live, with offline as the reference')
    add_node_options(parser)
    parser.add_argument('--out', type=Path, default=Path('out/replay'),
                        help='report folder (default: out/replay)')
    parser.add_argument('--image-topic', action='append', default=None, metavar='TOPIC',
                        help='Image or CompressedImage topic of the bag (auto if it has one); '
                             'repeat it for several cameras: one node segments them all, each '
                             'camera is scored on its own (OUT/<camera>/) and all together')
    gt = parser.add_mutually_exclusive_group()
    gt.add_argument('--label-topic', action='append', default=None, metavar='TOPIC',
                    help='mono8 ground-truth topic, matched by header stamp (auto: a topic '
                         'named like labels/annotations/ground truth; with several cameras '
                         'the one beside each image topic, e.g. /front/labels); several '
                         'cameras: one per --image-topic, in the same order')
    gt.add_argument('--labels-dir', type=Path, default=None,
                    help='folder of label PNGs named by stamp in ns, by frame index, or in '
                         'frame order (see --labels-key)')
    parser.add_argument('--labels-key', choices=LABEL_KEYS, default='auto',
                        help='how --labels-dir files map to frames (default: auto)')
    parser.add_argument('--width', type=network_side, default=None,
                        help='network input width (default: the model\'s)')
    parser.add_argument('--height', type=network_side, default=None,
                        help='network input height (default: the model\'s)')
    parser.add_argument('--attach', metavar='NODE', default=None,
                        help='live: use this running node (full name, e.g. '
                             '/bisenet/segment_node) on $ROS_DOMAIN_ID instead of launching one')
    parser.add_argument('--upsample', choices=UPSAMPLE_MODES, default=None,
                        help="live node's label upsampling (default: config/segment.yaml's); "
                             'with --attach, give the setting of that node, which is not asked; '
                             'the report compares it with the offline run made the same way')
    parser.add_argument('--max-frames', type=positive_int, default=None, metavar='N',
                        help='replay only the first N frames (N >= 1)')
    parser.add_argument('--start-timeout', type=float, default=180.0,
                        help='live: seconds to wait for the node to come up (default: 180)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bars')
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    plain_warnings()
    if (args.width is None) != (args.height is None):
        build_parser().error('give both --width and --height, or neither')
    size = (args.width, args.height) if args.width else None
    try:
        report = evaluate(ReplayOptions(
            args.bag, args.model, mode=args.mode, rate=args.rate, out=args.out,
            image_topic=args.image_topic, label_topic=args.label_topic,
            labels_dir=args.labels_dir, labels_key=args.labels_key, backend=args.backend,
            device=args.device, precision=args.precision, input_size=size,
            attach=args.attach, max_frames=args.max_frames, start_timeout=args.start_timeout,
            progress=not args.no_progress, upsample=args.upsample))
    except (ReplayError, BagError, ValueError, RuntimeError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('interrupted; the node was stopped', file=sys.stderr)
        return 130
    print('\n'.join(summary_lines(report)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
