"""The replay's ROS 2 half: launch (or attach to) a segment_node, publish frames, collect masks.

`run_live` starts the node with `ros2 launch bisenet_ros segment.launch.py` on a fresh
loopback-only ROS_DOMAIN_ID (or uses a running one, `attach`), publishes the frames as
sensor_msgs/Image with their bag stamps (paced like a camera, or in lockstep), and returns what
arrived when (`LiveResult`); bisenet_ros.replay scores it. rclpy is imported when a run starts.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml
from tqdm import tqdm

from bisenet_ros.bags import BagFrame
from bisenet_ros.launched_node import LaunchedNode
from bisenet_ros.paths import REPO_ROOT, share_dir
from bisenet_ros.replay_options import ReplayError, ReplayOptions
from bisenet_ros.ros_env import fresh_domain_env, join_domain, restore_environ, ros_child_env
from bisenet_ros.stamp_matching import StampMatch, match_stamps

# Where a launched node lives; the replay publishes on INPUT_TOPIC, the node answers on
# <namespace>/segment_node/label.
LAUNCH_NAMESPACE = '/bisenet_replay'
INPUT_TOPIC = '/bisenet_replay/image_raw'
NODE_NAME = 'segment_node'


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

    def timings(self) -> dict:
        """Times of the run, for the report.

        latency_ms (publish -> mask) and sent_s (publish, s after the first) per matched
        frame, dropped_s (publish of each lost frame), duration_s (first publish -> last mask).
        """
        t0 = min(self.publish_s.values())
        latencies, sent = [], []
        for index, position in self.match.matched:  # position: the first mask with its stamp
            latencies.append((self.received[position][1] - self.publish_s[index]) * 1e3)
            sent.append(self.publish_s[index] - t0)
        dropped = [self.publish_s[i] - t0 for i in self.match.dropped if i in self.publish_s]
        last = max((t for _, t, _ in self.received), default=t0)
        return {'latency_ms': latencies, 'sent_s': sent, 'dropped_s': dropped,
                'duration_s': max(last - t0, 1e-9)}


def replay_parameters(upsample: str | None = None) -> dict:
    """The package's config/segment.yaml (what a robot would run), with reliable input QoS.

    A bag replay must not lose frames on the wire. `upsample` overrides the file's value.
    """
    from bisenet_ros.segment_node import DEFAULT_UPSAMPLE  # rclpy: imported when needed

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

    def __init__(self, domain_id: int | None, input_topic: str, label_topic: str, depth: int,
                 name: str = 'bisenet_replay'):
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
        self.node = rclpy.create_node(name, context=self.context)
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


def run_live(frames: Sequence[BagFrame], model: Path, options: ReplayOptions,
             params: dict | None = None, frame_timeout: float = 30.0) -> LiveResult:
    """Publish the frames to the node and collect its masks.

    Args:
        model: the model file a launched node runs (options.model may be None: the default).
        options: pacing (rate: times the bag's frame rate, None: lockstep), attach, the node's
            backend, device, precision and input size, start_timeout, progress, out (node.log).
        params: the launched node's parameter file contents; None = replay_parameters().
        frame_timeout: lockstep only: seconds to wait for one mask before counting it lost.
    """
    rate, attach, progress = options.rate, options.attach, options.progress
    launched = None
    client = None
    env = ros_child_env()  # the caller's domain (an attached node lives there)
    if not attach:
        env = fresh_domain_env()
    # Our own participant must be on the same loopback-only domain as the node (rclpy reads
    # these when it starts; the caller's values come back afterwards).
    saved = join_domain(env)
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
            args = [f'model:={model}', f'backend:={options.backend}',
                    f'device:={options.device}', f'precision:={options.precision}',
                    f'image_topic:={INPUT_TOPIC}', f'namespace:={LAUNCH_NAMESPACE}',
                    'use_compressed:=false']
            if options.input_size is not None:
                width, height = options.input_size
                args += [f'width:={width}', f'height:={height}']
            launched = LaunchedNode(args, env, Path(options.out) / 'node.log',
                                    params if params is not None else replay_parameters())
            input_topic = INPUT_TOPIC
            label_topic = f'{LAUNCH_NAMESPACE}/{NODE_NAME}/label'
            node_desc = (f'launched `ros2 launch {launched.target}` '
                         f'(domain {domain_id}, log {launched.log_path.name})')
        client = ReplayClient(domain_id, input_topic, label_topic, depth=max(10, len(frames)))
        pacing = 'lockstep: next frame when the previous mask arrived' if rate is None else (
            f'{rate:g}x the bag\'s frame rate')
        result = LiveResult(node_desc, input_topic, label_topic, pacing)

        start_timeout = options.start_timeout
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
            # The masks that came after the last frame was sent count too (as in the summary).
            bar.set_postfix(received=sum(1 for r in client.received if r[2] is not None))
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
            restore_environ(saved)


def _max_latency(frames: Sequence[BagFrame], result: LiveResult, client: ReplayClient) -> float:
    """The slowest publish -> mask time so far (s), to size the wait for the last masks."""
    sent = {f.stamp_ns: result.publish_s[f.index] for f in frames if f.index in result.publish_s}
    with client.arrived:
        latencies = [t - sent[stamp] for stamp, t, mask in client.received
                     if mask is not None and stamp in sent]
    return max(latencies, default=0.0)
