"""Replay a rosbag through the segmentation node and score it against ground truth.

Live mode publishes the bag's frames as real ROS 2 messages to a running segment_node (one
this tool launches with `ros2 launch bisenet_ros segment.launch.py`, or one you --attach to),
collects its `~/label` masks, matches them to the ground truth by header stamp and reports
mIoU, per-class IoU, pixel accuracy, drops, end-to-end latency and throughput. Offline mode
runs the same model through `Segmenter` on the same frames without ROS: the reference the
live numbers must reproduce (a gap means lost, late or corrupted frames).

    python -m bisenet_ros.replay drive.bag --model models/bisenet_xception39_synthetic.pt
    python -m bisenet_ros.replay drive.bag --mode offline --labels-dir gt/ --out out/eval
    python -m bisenet_ros.replay theirs.bag --image-topic /cam/front/compressed --lockstep
    python -m bisenet_ros.replay drive.bag --attach /bisenet/segment_node --rate 0.5
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml
from tqdm import tqdm

from bisenet_core.inference.backends import BACKENDS, PRECISIONS
from bisenet_core.inference.postprocess import (UPSAMPLE_MODES, blend_labels, logits_to_labels,
                                                palette_lut)
from bisenet_core.metrics import ConfusionMatrix
from bisenet_core.spec import MAX_INPUT_SIDE, SIZE_DIVISOR, ModelSpec
from bisenet_ros.bags import BagError, BagFrame, bag_info, choose_topics, read_frames
from bisenet_ros.launched_node import LaunchedNode
from bisenet_ros.paths import DEFAULT_MODEL_NAME, default_model_path
from bisenet_ros.report import latency_stats, write_report
from bisenet_ros.stamp_matching import StampMatch, match_stamps

DEFAULT_MODEL = f'models/{DEFAULT_MODEL_NAME}'
MODES = ('live', 'offline', 'both')
# Where a launched node lives; the replay publishes on INPUT_TOPIC, the node answers on
# <namespace>/segment_node/label.
LAUNCH_NAMESPACE = '/bisenet_replay'
INPUT_TOPIC = '/bisenet_replay/image_raw'
NODE_NAME = 'segment_node'
NUM_SAMPLES = 4


class ReplayError(RuntimeError):
    """The replay cannot go on (one-line message saying what and why)."""


@dataclass
class LiveResult:
    """What the live run measured. Times are perf_counter seconds of this process."""

    node: str
    input_topic: str
    label_topic: str
    pacing: str
    publish_s: dict[int, float] = field(default_factory=dict)       # frame index -> publish
    received: list[tuple[int, float, np.ndarray]] = field(default_factory=list)  # stamp, t, mask
    match: StampMatch | None = None


# ----------------------------------------------------------------------------- model

def read_spec(model: Path) -> ModelSpec:
    """The ModelSpec of a .pt model file or an exported .onnx file."""
    if model.suffix.lower() == '.onnx':
        from bisenet_core.onnx_metadata import read_onnx_spec
        return read_onnx_spec(model)
    from bisenet_core.modelfile import read_model_file
    return read_model_file(model)[1]


# ----------------------------------------------------------------------------- offline

def run_offline(frames: Sequence[BagFrame], model: Path, backend: str = 'auto',
                device: str = 'auto', precision: str = 'fp32',
                input_size: tuple[int, int] | None = None, progress: bool = True) -> dict:
    """Segment every frame with Segmenter, no ROS; labels with nearest and bilinear upsampling.

    The network runs once per frame; both upsampling modes are taken from the same logits,
    so the comparison isolates the upsampling.
    """
    from bisenet_core.inference import Segmenter

    segmenter = Segmenter(model, backend=backend, device=device, precision=precision,
                          input_size=input_size, upsample='nearest')
    predictions = {'nearest': [], 'bilinear': []}
    totals = {'preprocess': 0.0, 'inference': 0.0, 'postprocess': 0.0}
    for frame in tqdm(frames, desc='offline reference', unit='frame', disable=not progress):
        t0 = time.perf_counter()
        batch = segmenter.preprocess(frame.image)
        t1 = time.perf_counter()
        logits = segmenter.infer(batch)[0]
        t2 = time.perf_counter()
        predictions['nearest'].append(logits_to_labels(logits, frame.image.shape[:2], 'nearest'))
        t3 = time.perf_counter()
        predictions['bilinear'].append(
            logits_to_labels(logits, frame.image.shape[:2], 'bilinear'))
        totals['preprocess'] += (t1 - t0) * 1e3
        totals['inference'] += (t2 - t1) * 1e3
        totals['postprocess'] += (t3 - t2) * 1e3
    return {'segmenter': segmenter, 'predictions': predictions,
            'timings_ms': {k: v / max(1, len(frames)) for k, v in totals.items()}}


# ----------------------------------------------------------------------------- live

def _replay_parameters(upsample: str | None = None) -> dict:
    """The package's config/segment.yaml (what a robot would run), with reliable input QoS.

    A bag replay must not lose frames on the wire. `upsample` overrides the file's value.
    """
    from bisenet_ros.paths import REPO_ROOT, share_dir
    from bisenet_ros.segment_node import DEFAULT_UPSAMPLE

    params: dict = {}
    for root in (share_dir(), REPO_ROOT):
        path = root / 'config' / 'segment.yaml' if root is not None else None
        if path is not None and path.is_file():
            params = yaml.safe_load(path.read_text()) or {}
            break
    node_params = params.setdefault('/**', {}).setdefault('ros__parameters', {})
    node_params['qos_reliability'] = 'reliable'
    if upsample is not None:
        node_params['upsample'] = upsample
    node_params.setdefault('upsample', DEFAULT_UPSAMPLE)
    return params


class ReplayClient:
    """The replay's own ROS 2 participant: publishes frames, collects the node's masks."""

    def __init__(self, domain_id: int | None, input_topic: str, label_topic: str, depth: int):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        from bisenet_ros.image_conversion import image_to_numpy

        self._to_numpy = image_to_numpy
        self.context = rclpy.Context()
        # No rclpy signal handlers: Ctrl-C stays a KeyboardInterrupt in the main thread, so
        # the replay unwinds and stops the node it launched.
        rclpy.init(context=self.context, domain_id=domain_id,
                   signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node('bisenet_replay', context=self.context)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                         reliability=ReliabilityPolicy.RELIABLE)
        self.publisher = self.node.create_publisher(Image, input_topic, qos)
        self.subscription = self.node.create_subscription(Image, label_topic, self._on_label,
                                                          qos)
        self.received: list[tuple[int, float, np.ndarray]] = []
        self.arrived = threading.Condition()
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spin = threading.Thread(target=self._spin_forever, daemon=True)
        self._spin.start()

    def _spin_forever(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # shutdown while spinning: nothing left to do
            pass

    def _on_label(self, msg) -> None:
        now = time.perf_counter()
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        mask = self._to_numpy(msg)
        with self.arrived:
            self.received.append((stamp, now, mask))
            self.arrived.notify_all()

    def matched(self) -> bool:
        return (self.publisher.get_subscription_count() > 0
                and self.subscription.get_publisher_count() > 0)

    def wait_for(self, count: int, timeout: float) -> bool:
        """Wait until `count` masks arrived in total; False on timeout."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.arrived.wait(min(left, 0.5))
        return True

    def close(self) -> None:
        import rclpy
        try:
            self.executor.shutdown(timeout_sec=1.0)
            self.node.destroy_node()
        except Exception:  # a Ctrl-C may have shut the context down already
            pass
        if self.context.ok():
            rclpy.shutdown(context=self.context)
        self._spin.join(timeout=2.0)


def _node_topics(client: ReplayClient, attach: str) -> tuple[str, str]:
    """(input image topic, label topic) of a running node given by its full name."""
    attach = '/' + attach.strip('/')
    namespace, _, name = attach.rpartition('/')
    namespace = namespace or '/'
    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline:
        names = client.node.get_node_names_and_namespaces()
        if (name, namespace) in names:
            subs = client.node.get_subscriber_names_and_types_by_node(name, namespace)
            images = [t for t, types in subs if 'sensor_msgs/msg/Image' in types]
            if images:
                return images[0], f'{attach}/label'
        time.sleep(0.5)
    raise ReplayError(f'no node {attach} with an Image subscription on ROS_DOMAIN_ID='
                      f'{os.environ.get("ROS_DOMAIN_ID", "0")} (is it running, with '
                      f'use_compressed false, on this domain?)')


def _publish(client: ReplayClient, frame: BagFrame, frame_id: str = 'camera') -> float:
    from bisenet_ros.image_conversion import numpy_to_image

    msg = numpy_to_image(frame.image, 'rgb8')
    msg.header.stamp.sec = frame.stamp_ns // 10**9
    msg.header.stamp.nanosec = frame.stamp_ns % 10**9
    msg.header.frame_id = frame_id
    sent = time.perf_counter()
    client.publisher.publish(msg)
    return sent


def run_live(frames: Sequence[BagFrame], model: Path, out_dir: Path, rate: float | None,
             attach: str | None = None, backend: str = 'auto', device: str = 'auto',
             precision: str = 'fp32', input_size: tuple[int, int] | None = None,
             start_timeout: float = 180.0, frame_timeout: float = 30.0,
             progress: bool = True, params: dict | None = None) -> LiveResult:
    """Publish the frames to the node and collect its masks.

    Args:
        rate: replay speed relative to the bag's stamps (1.0 = real time); None = lockstep,
            the next frame goes out when the previous mask arrived (as fast as the node keeps
            up, no frame lost).
        attach: full name of a running node to use instead of launching one.
        start_timeout: seconds to wait for the node to start and match our topics.
        frame_timeout: lockstep only: seconds to wait for one mask before counting it lost.
        params: the launched node's parameter file contents; None = _replay_parameters().
    """
    from bisenet_ros.ros_env import fresh_domain_id, ros_child_env

    launched = None
    client = None
    env = ros_child_env()  # the caller's domain (an attached node lives there)
    if not attach:
        env = ros_child_env(fresh_domain_id(avoid=int(env['ROS_DOMAIN_ID'])))
    # Our own participant must be on the same loopback-only domain as the node (rclpy reads
    # these when it starts; the caller's values come back afterwards).
    saved = {k: os.environ.get(k) for k in ('ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_DOMAIN_ID')}
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = env['ROS_AUTOMATIC_DISCOVERY_RANGE']
    os.environ['ROS_DOMAIN_ID'] = env['ROS_DOMAIN_ID']
    domain_id = int(env['ROS_DOMAIN_ID'])
    try:
        if attach:
            probe = ReplayClient(domain_id, '/bisenet_replay/unused', '/bisenet_replay/unused', 1)
            try:
                input_topic, label_topic = _node_topics(probe, attach)
            finally:
                probe.close()
            node_desc = f'attached to {attach} (domain {domain_id})'
        else:
            args = [f'model:={model}', f'backend:={backend}', f'device:={device}',
                    f'precision:={precision}', f'image_topic:={INPUT_TOPIC}',
                    f'namespace:={LAUNCH_NAMESPACE}', 'use_compressed:=false']
            if input_size is not None:
                args += [f'width:={input_size[0]}', f'height:={input_size[1]}']
            launched = LaunchedNode(args, env, out_dir / 'node.log',
                                    params if params is not None else _replay_parameters())
            input_topic = INPUT_TOPIC
            label_topic = f'{LAUNCH_NAMESPACE}/{NODE_NAME}/label'
            node_desc = (f'launched `ros2 launch {launched.target}` '
                         f'(domain {domain_id}, log {launched.log_path.name})')
        client = ReplayClient(domain_id, input_topic, label_topic, depth=max(10, len(frames)))
        pacing = 'lockstep: next frame when the previous mask arrived' if rate is None else (
            f'{rate:g}x the bag\'s frame rate')
        result = LiveResult(node_desc, input_topic, label_topic, pacing)

        deadline = time.monotonic() + start_timeout
        while not client.matched():
            if launched:
                launched.check_alive()
            if time.monotonic() > deadline:
                tail = f'\nnode log:\n{launched.log_tail()}' if launched else ''
                raise ReplayError(f'the node did not subscribe to {input_topic} and publish '
                                  f'{label_topic} within {start_timeout:.0f} s{tail}')
            time.sleep(0.2)
        # Discovery is two-sided: our side sees the match a moment before the node's reader
        # may see our writer, and a volatile reader never gets what was sent before that.
        time.sleep(1.0)

        bar = tqdm(total=len(frames), desc='live replay', unit='frame', disable=not progress)
        try:
            first_stamp = frames[0].stamp_ns
            start = time.perf_counter()
            for count, frame in enumerate(frames):
                if rate is not None:
                    due = start + (frame.stamp_ns - first_stamp) / 1e9 / rate
                    delay = due - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                result.publish_s[frame.index] = _publish(client, frame)
                if rate is None and not client.wait_for(count + 1, frame_timeout):
                    if launched:
                        launched.check_alive()
                    # Lost: keep the count in step so the next frame waits for its own mask.
                    with client.arrived:
                        client.received.append((-1, time.perf_counter(), None))
                bar.update(1)
                bar.set_postfix(received=sum(1 for r in client.received if r[2] is not None))
            # Let the last masks arrive: keep waiting while they come, until none came for
            # a few times the slowest latency so far (at least 5 s).
            while len(client.received) < len(frames):
                before = len(client.received)
                idle = max(5.0, 3 * _max_latency(frames, result, client))
                if not client.wait_for(before + 1, idle):
                    break
        finally:
            bar.close()
        if launched:
            launched.check_alive()
        with client.arrived:
            result.received = [r for r in client.received if r[2] is not None]
        result.match = match_stamps([f.stamp_ns for f in frames],
                                    [stamp for stamp, _, _ in result.received])
        return result
    finally:
        try:
            if client is not None:
                client.close()
        finally:
            if launched is not None:
                launched.stop()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _max_latency(frames: Sequence[BagFrame], result: LiveResult, client: ReplayClient) -> float:
    """The slowest publish -> mask time so far (s), to size the wait for the last masks."""
    sent = {f.stamp_ns: result.publish_s[f.index] for f in frames if f.index in result.publish_s}
    with client.arrived:
        latencies = [t - sent[stamp] for stamp, t, mask in client.received
                     if mask is not None and stamp in sent]
    return max(latencies, default=0.0)


# ----------------------------------------------------------------------------- evaluation

def _score(frames: Sequence[BagFrame], predictions: dict[int, np.ndarray], spec: ModelSpec
           ) -> tuple[ConfusionMatrix, int]:
    confusion = ConfusionMatrix(spec.num_classes, spec.ignore_index)
    scored = 0
    for frame in frames:
        prediction = predictions.get(frame.index)
        if frame.label is None or prediction is None:
            continue
        if prediction.shape != frame.label.shape:
            raise ReplayError(f'frame {frame.index}: prediction is {prediction.shape[1]}x'
                              f'{prediction.shape[0]}, ground truth {frame.label.shape[1]}x'
                              f'{frame.label.shape[0]}')
        # Ids the model does not have (e.g. CamVid's void 11) are void too: not scored.
        label = np.where(frame.label < spec.num_classes, frame.label, spec.ignore_index)
        confusion.update(prediction, label)
        scored += 1
    return confusion, scored


def _samples(frames: Sequence[BagFrame], predictions: dict[int, np.ndarray], spec: ModelSpec,
             which: str) -> list[dict]:
    """Up to NUM_SAMPLES evenly spaced frames that have a prediction, as overlay pictures."""
    lut = palette_lut(spec)
    usable = [f for f in frames if f.index in predictions]
    if not usable:
        return []
    count = min(NUM_SAMPLES, len(usable))
    positions = sorted({round(i * (len(usable) - 1) / max(1, count - 1)) for i in range(count)})

    def blend(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return blend_labels(image, labels, lut, spec.num_classes, alpha=0.65)

    samples = []
    for frame in (usable[p] for p in positions):
        samples.append({
            'title': f'frame {frame.index} ({which})',
            'image': frame.image,
            'truth': None if frame.label is None else blend(frame.image, frame.label),
            'prediction': blend(frame.image, predictions[frame.index]),
        })
    return samples


def evaluate(bag: str | os.PathLike, model: str | os.PathLike | None = None,
             mode: str = 'both', rate: float | None = None, out: str | os.PathLike = 'out/replay',
             image_topic: str | None = None, label_topic: str | None = None,
             labels_dir: str | os.PathLike | None = None, labels_key: str = 'auto',
             backend: str = 'auto', device: str = 'auto', precision: str = 'fp32',
             input_size: tuple[int, int] | None = None, attach: str | None = None,
             max_frames: int | None = None, start_timeout: float = 180.0,
             progress: bool = True, upsample: str | None = None) -> dict:
    """Run the replay (live, offline or both), write the report to `out`, return its dict.

    `upsample` is the live node's upsampling (None: config/segment.yaml's); live masks are
    compared with the offline ones made the same way.
    """
    if mode not in MODES:
        raise ReplayError(f'mode must be one of {MODES}, got {mode!r}')
    if rate is not None and not rate > 0:
        raise ReplayError(f'rate must be > 0, got {rate}')
    if max_frames is not None and max_frames < 1:
        raise ReplayError(f'max_frames must be >= 1, got {max_frames}')
    model = Path(model) if model else default_model_path()
    if not model.is_file():
        raise ReplayError(f'model file {model}: not found (pass --model)')
    spec = read_spec(model)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ReplayError(f'--out {out}: exists and is not a folder')
    # The folder is made by what writes into it (node.log, the report): a run that fails
    # before leaves none behind.

    image_topic, label_topic = choose_topics(bag, image_topic, label_topic,
                                             want_labels=labels_dir is None)
    frames = read_frames(bag, image_topic, label_topic, labels_dir, labels_key, max_frames)
    # Frames without ground truth are replayed (latency, drops, samples), just not scored.
    labelled = sum(f.label is not None for f in frames)
    info = bag_info(bag)
    height, width = frames[0].image.shape[:2]
    if labels_dir is not None:
        ground_truth = f'folder {labels_dir}'
    else:
        ground_truth = f'topic {label_topic}' if label_topic else 'none'
    report: dict = {
        'bag': {'path': str(bag), 'storage': info['storage'], 'image_topic': image_topic,
                'ground_truth': ground_truth,
                'frames': len(frames), 'labelled_frames': labelled,
                'width': width, 'height': height},
        'model': {'path': str(model), 'backbone': spec.backbone, 'dataset': spec.dataset,
                  'num_classes': spec.num_classes, 'class_names': list(spec.class_names),
                  'input_size': list(input_size or spec.input_size)},
    }

    live = offline = None
    params = _replay_parameters(upsample)
    live_upsample = params['/**']['ros__parameters']['upsample']
    if mode in ('live', 'both'):
        live = run_live(frames, model, out, rate, attach, backend, device, precision,
                        input_size, start_timeout=start_timeout, progress=progress,
                        params=params)
    if mode in ('offline', 'both'):
        offline = run_offline(frames, model, backend, device, precision, input_size, progress)

    shown = None
    latencies: list[float] = []
    sent_s: list[float] = []
    dropped_s: list[float] = []
    samples: list[dict] = []
    if offline is not None:
        segmenter = offline['segmenter']
        entry = {'backend': segmenter.backend_name, 'device': segmenter.device,
                 'precision': segmenter.precision, 'timings_ms': offline['timings_ms']}
        for method in ('nearest', 'bilinear'):
            preds = dict(zip((f.index for f in frames), offline['predictions'][method]))
            confusion, scored = _score(frames, preds, spec)
            entry[method] = confusion.to_dict(spec.class_names)
            entry['frames_scored'] = scored
            if method == live_upsample:
                shown, reference = (confusion if scored else None), preds
        report['offline'] = entry
        samples = _samples(frames, reference, spec, 'offline')
    if live is not None:
        masks = {index: live.received[position][2] for index, position in live.match.matched}
        confusion, scored = _score(frames, masks, spec)
        t0 = min(live.publish_s.values())
        for index, position in live.match.matched:  # position: the first mask with its stamp
            latencies.append((live.received[position][1] - live.publish_s[index]) * 1e3)
            sent_s.append(live.publish_s[index] - t0)
        dropped_s = [live.publish_s[i] - t0 for i in live.match.dropped if i in live.publish_s]
        last = max((t for _, t, _ in live.received), default=t0)
        duration = max(last - t0, 1e-9)
        report['live'] = {
            'node': live.node, 'input_topic': live.input_topic, 'label_topic': live.label_topic,
            'pacing': live.pacing, 'rate': rate, 'upsample': live_upsample,
            'frames_sent': len(live.publish_s), 'frames_received': live.match.num_matched,
            'dropped': len(live.match.dropped), 'dropped_indices': live.match.dropped,
            'unexpected': len(live.match.unexpected), 'duplicates': len(live.match.duplicates),
            'frames_scored': scored, **confusion.to_dict(spec.class_names),
            'latency_ms': latency_stats(latencies),
            'throughput_fps': live.match.num_matched / duration, 'duration_s': duration,
        }
        shown = confusion if scored else None
        samples = _samples(frames, masks, spec, 'live')
        if offline is not None:
            agree = total = 0
            for index, _ in live.match.matched:
                agree += int((masks[index] == reference[index]).sum())
                total += masks[index].size
            report['comparison'] = {
                'live_miou': report['live']['miou'],
                'offline_miou': report['offline'][live_upsample]['miou'],
                'offline_upsample': live_upsample,
                'miou_gap': _gap(report['live']['miou'], report['offline'][live_upsample]['miou']),
                'pixel_agreement': agree / total if total else None,
                'frames_compared': live.match.num_matched,
            }
    report['paths'] = {k: str(v) for k, v in write_report(
        out, report, shown, spec.class_names, samples, latencies, sent_s, dropped_s,
        spec.palette).items()}
    return report


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


def _size(text: str) -> int:
    value = int(text)
    if not SIZE_DIVISOR <= value <= MAX_INPUT_SIDE:
        raise argparse.ArgumentTypeError(f'{text} is not in {SIZE_DIVISOR}..{MAX_INPUT_SIDE}')
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'{text} is not >= 1')
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:  # also NaN
        raise argparse.ArgumentTypeError(f'{text} is not > 0')
    return value


def add_node_options(parser: argparse.ArgumentParser) -> None:
    """Add the pacing, backend, device and precision options of a live replay.

    One definition for the replay and the demo, so both read them with the same defaults.
    """
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument('--rate', type=_positive_float, default=1.0, metavar='R',
                      help='live: publish at R times the bag\'s frame rate, as a camera would '
                           '(frames the node cannot keep up with are dropped and counted); '
                           'default: 1 (real time)')
    pace.add_argument('--lockstep', '--max-rate', dest='rate', action='store_const', const=None,
                      help='live: send the next frame when the previous mask arrived: as fast '
                           'as the node keeps up, no frame lost')
    parser.add_argument('--backend', choices=BACKENDS, default='auto',
                        help='inference backend of the node and the offline reference '
                             '(default: auto, onnxruntime when installed)')
    parser.add_argument('--device', default='auto', metavar='{auto,cpu,cuda,cuda:N}',
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
    parser.add_argument('--image-topic', default=None,
                        help='Image or CompressedImage topic of the bag (auto if it has one)')
    gt = parser.add_mutually_exclusive_group()
    gt.add_argument('--label-topic', default=None,
                    help='mono8 ground-truth topic, matched by header stamp (auto: a topic '
                         'named like labels/annotations/ground truth)')
    gt.add_argument('--labels-dir', type=Path, default=None,
                    help='folder of label PNGs named by stamp in ns, by frame index, or in '
                         'frame order (see --labels-key)')
    parser.add_argument('--labels-key', choices=('auto', 'stamp', 'index', 'order'),
                        default='auto',
                        help='how --labels-dir files map to frames (default: auto)')
    parser.add_argument('--width', type=_size, default=None,
                        help='network input width (default: the model\'s)')
    parser.add_argument('--height', type=_size, default=None,
                        help='network input height (default: the model\'s)')
    parser.add_argument('--attach', metavar='NODE', default=None,
                        help='live: use this running node (full name, e.g. '
                             '/bisenet/segment_node) on $ROS_DOMAIN_ID instead of launching one')
    parser.add_argument('--upsample', choices=UPSAMPLE_MODES, default=None,
                        help="live node's label upsampling (default: config/segment.yaml's); "
                             'with --attach, give the setting of that node, which is not asked; '
                             'the report compares it with the offline run made the same way')
    parser.add_argument('--max-frames', type=_positive_int, default=None, metavar='N',
                        help='replay only the first N frames (N >= 1)')
    parser.add_argument('--start-timeout', type=float, default=180.0,
                        help='live: seconds to wait for the node to come up (default: 180)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bars')
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if (args.width is None) != (args.height is None):
        build_parser().error('give both --width and --height, or neither')
    size = (args.width, args.height) if args.width else None
    try:
        report = evaluate(args.bag, args.model, args.mode, args.rate, args.out,
                          args.image_topic, args.label_topic, args.labels_dir, args.labels_key,
                          args.backend, args.device, args.precision, size, args.attach,
                          args.max_frames, args.start_timeout, not args.no_progress,
                          args.upsample)
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
