"""The input side of one camera in segment_node.

Its image and camera_info subscriptions, their QoS following the cameras' (qos_reliability
best_available, one mechanism for both), the checks of who publishes on them (another
message type, QoS that cannot match), its counters and the newest-frame slot the worker takes
frames from.

The executor thread only stores the newest frame of each camera and wakes the worker
(FrameHandover); the worker converts, segments and publishes. A callback never waits for
inference, and a slow model drops old frames instead of queueing them.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Mapping, TypeVar

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSPolicyKind, QoSProfile,
                       ReliabilityPolicy, qos_policy_name_from_kind)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from bisenet_ros.callback_guard import CallbackGuard
from bisenet_ros.camera_info import CameraInfoMatcher, camera_info_problem
from bisenet_ros.camera_stats import CameraStats
from bisenet_ros.node_parameters import DURABILITY, RELIABILITY

MAX_TRACKED_PUBLISHERS = 16
# A camera whose last frame came within this many seconds is waited for by the batch window;
# a silent or vanished one is not (else every cycle would wait the whole window for it).
ACTIVE_S = 1.0
ERROR_LOG_THROTTLE_S = 5.0
K = TypeVar('K')
# What to do when a publisher's QoS policy cannot match this subscription's.
QOS_FIXES = {
    'RELIABILITY': 'A best-effort camera needs qos_reliability best_available or best_effort',
    'DURABILITY': 'qos_durability transient_local needs a transient_local publisher: use '
                  'qos_durability volatile for this camera'}


@dataclass(frozen=True)
class InputSettings:
    """The input parameters every camera shares."""

    use_compressed: bool = False
    reliability: str = 'best_available'  # a key of RELIABILITY
    depth: int = 5
    durability: str = 'volatile'  # a key of DURABILITY


class FrameHandover:
    """Newest frame wins: one slot per camera input, one condition to wake the worker.

    The worker takes the newest waiting frame of every camera that has one, so a camera is
    served in every cycle it has a frame, whatever the other cameras' rates: none starves.

    Args:
        batch_window_s: 0: take() returns as soon as a frame waits (no camera waits for
            another); > 0: it waits up to this long after the first waiting frame for the
            other active cameras' frames (ACTIVE_S), to fill the batch.
    """

    def __init__(self, batch_window_s: float = 0.0):
        self.ready = threading.Condition()
        self.stopping = False
        self.batch_window_s = batch_window_s
        self._last_received: dict = {}  # camera key -> when its last taken frame arrived

    def take(self, inputs: Mapping[K, CameraInput]) -> list[tuple[K, tuple]]:
        """Block until an input has a frame (or the node stops); take every input's newest.

        `inputs` maps the caller's key (its camera) to the input; returns (key, (message,
        time received)) pairs, [] once stopping with no frame waiting: the worker's cue to end.
        """
        with self.ready:
            while not self.stopping and all(i.latest_frame is None for i in inputs.values()):
                self.ready.wait()
            if self.batch_window_s > 0:
                self._fill_batch(inputs)
            taken = [(key, i.latest_frame) for key, i in inputs.items()
                     if i.latest_frame is not None]
            for camera_input in inputs.values():
                camera_input.latest_frame = None
            for key, (_, received) in taken:
                self._last_received[key] = received
            return taken

    def _fill_batch(self, inputs: Mapping[K, CameraInput]) -> None:
        """Wait until every active camera has a frame, or the window has passed.

        The window starts at the first waiting frame; `ready` is released while waiting.
        """
        waiting = [i.latest_frame[1] for i in inputs.values() if i.latest_frame is not None]
        if not waiting:
            return
        end = min(waiting) + self.batch_window_s
        while not self.stopping:
            now = time.perf_counter()
            missing = [key for key, i in inputs.items() if i.latest_frame is None
                       and now - self._last_received.get(key, -ACTIVE_S - 1) <= ACTIVE_S]
            if not missing or now >= end:
                return
            self.ready.wait(end - now)

    def stop(self) -> None:
        """Frames arriving from now on are ignored; the worker finishes what it took."""
        with self.ready:
            self.stopping = True
            self.ready.notify_all()


def type_name(msg_type: type) -> str:
    """'sensor_msgs/msg/Image', as the ROS graph names a topic's type."""
    return f'{msg_type.__module__.split(".")[0]}/msg/{msg_type.__name__}'


def wrong_type_hint(expected: type, found: str, topic: str) -> str:
    """How to read a topic published as `found` instead of `expected`."""
    if expected is Image and found == type_name(CompressedImage):
        if topic.endswith('/compressed'):
            raw = topic[:-len('/compressed')]
            return f'for a compressed camera set use_compressed:=true with image_topic:={raw}'
        return (f'with use_compressed:=true the node reads {topic}/compressed, where '
                'image_transport publishes compressed frames')
    if expected is CompressedImage and found == type_name(Image):
        return 'for raw images set use_compressed:=false'
    return f'remap the input to a topic of type {type_name(expected)}'


class FollowedSubscription:
    """A subscription whose reliability follows its publishers' when asked to.

    The middleware's own BEST_AVAILABLE is resolved once, at creation: with no camera yet
    that is reliable, and a best-effort camera starting later never matches. Here follow()
    (the diagnostics timer) re-subscribes whenever the publishers' reliability changes:
    reliable publishers get a reliable subscription (a lost fragment is re-sent), a
    best-effort one (or a mix) a best-effort subscription (it would not match otherwise).
    """

    def __init__(self, node: Node, msg_type: type, topic: str, callback: Callable,
                 qos: QoSProfile, follow: bool,
                 events: Callable[[], SubscriptionEventCallbacks] | None = None):
        self._node, self.msg_type, self._callback = node, msg_type, callback
        self._events = events
        self.qos = qos
        self.following = follow
        self.topic_name = node.resolve_topic_name(topic)
        self.subscription = None
        if follow:
            qos.reliability = self._wanted(self.publishers(self.graph()))
        self.subscription = self._subscribe()

    def _subscribe(self):
        kwargs = {'event_callbacks': self._events()} if self._events else {}
        return self._node.create_subscription(self.msg_type, self.topic_name, self._callback,
                                              self.qos, **kwargs)

    def graph(self) -> list:
        """Every publisher on this topic now (TopicEndpointInfo), of any type."""
        return self._node.get_publishers_info_by_topic(self.topic_name)

    def publishers(self, graph: list) -> list:
        """The publishers of `graph` whose type is ours."""
        return [p for p in graph if p.topic_type == type_name(self.msg_type)]

    def wrong_types(self, graph: list) -> list[str]:
        """The types of the publishers of `graph` that are not ours."""
        return sorted({p.topic_type for p in graph if p.topic_type != type_name(self.msg_type)})

    def incompatible(self, publishers: list) -> int:
        """How many of `publishers` offer QoS this subscription cannot match, now."""
        def mismatched(qos):
            return (self.qos.reliability == ReliabilityPolicy.RELIABLE
                    and qos.reliability == ReliabilityPolicy.BEST_EFFORT) or (
                self.qos.durability == DurabilityPolicy.TRANSIENT_LOCAL
                and qos.durability == DurabilityPolicy.VOLATILE)
        return sum(mismatched(p.qos_profile) for p in publishers)

    def _wanted(self, publishers: list) -> ReliabilityPolicy:
        """Reliable if every publisher is (or there is none yet), else best effort."""
        if any(p.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for p in publishers):
            return ReliabilityPolicy.BEST_EFFORT
        if publishers or self.subscription is None:
            return ReliabilityPolicy.RELIABLE
        return self.qos.reliability  # no publisher now: keep what matched the last one

    def follow(self, publishers: list) -> bool:
        """Re-subscribe if the publishers' reliability changed; True if it did."""
        if not self.following:
            return False
        wanted = self._wanted(publishers)
        if wanted == self.qos.reliability:
            return False
        self.qos.reliability = wanted
        self._node.destroy_subscription(self.subscription)
        self.subscription = self._subscribe()
        mode = 'reliable' if wanted == ReliabilityPolicy.RELIABLE else 'best effort'
        self._node.get_logger().info(
            f'input {self.topic_name} re-subscribed {mode} to match its publishers '
            '(qos_reliability best_available)')
        return True


class CameraInput:
    """One camera's subscriptions, counters (in `stats`) and newest-frame slot.

    Args:
        node: the node that owns the subscriptions.
        image_topic: the raw image topic; `<image_topic>/compressed` with use_compressed.
        camera_info_topic: its CameraInfo (optional input: without it none is published).
        settings: the QoS and transport shared by every camera.
        handover: the worker's frame hand-over (shared by every camera).
        on_camera_info: gets the (info, frame) pairs the stamp matcher completes.
        guard: catches what a callback raises unexpectedly (counted in this camera's errors).
    """

    def __init__(self, node: Node, image_topic: str, camera_info_topic: str,
                 settings: InputSettings, handover: FrameHandover,
                 on_camera_info: Callable[[list], None], guard: CallbackGuard):
        self._node, self._logger = node, node.get_logger()
        self._handover = handover
        self._on_camera_info_pairs = on_camera_info
        self._guard = guard
        self.stats = CameraStats()
        self.latest_frame: tuple[Image | CompressedImage, float] | None = None
        # publisher gid -> last publication sequence number seen: a jump is frames missed.
        self._last_sequence: OrderedDict[bytes, int] = OrderedDict()
        # gid -> (sequence, source stamp) of a publisher's first frame, until its second.
        self._first_frame: dict[bytes, tuple[int, int]] = {}
        # Image publishers in the graph: gid -> when it was last absent (wall clock ns), None
        # for those there at start (discovery may take a moment: also those at the first check).
        self._appeared: dict[bytes, int | None] = {}
        self._checks, self._last_check_ns = 0, 0
        # Problems on the input topics seen at the last check (WARN on /diagnostics).
        self.notes: dict[str, str] = {}
        # DDS holds up to `depth` frames for the executor; the worker gets only the newest.
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=settings.depth,
                         reliability=RELIABILITY[settings.reliability],
                         durability=DURABILITY[settings.durability])
        msg_type, topic = ((CompressedImage, f'{image_topic}/compressed')
                           if settings.use_compressed else (Image, image_topic))
        # The middleware counts frames it lost (a best-effort frame missing a fragment) and
        # tells when a publisher's QoS cannot match ours (reliable vs a best-effort camera).
        self.image = FollowedSubscription(
            node, msg_type, topic, self._guarded('the image callback', self.on_image), qos,
            follow=settings.reliability == 'best_available', events=self._image_events)
        self._note_publishers(self.image.publishers(self.image.graph()))
        self.camera_info_matcher = CameraInfoMatcher()
        self._stamps_lock = threading.Lock()
        # camera_info always follows its publishers: drivers publish it reliable or, like
        # the sensor-data QoS, best effort.
        self.camera_info = FollowedSubscription(
            node, CameraInfo, camera_info_topic,
            self._guarded('the camera_info callback', self._on_camera_info),
            QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5), follow=True)

    @property
    def topic_name(self) -> str:
        return self.image.topic_name

    @property
    def qos(self) -> QoSProfile:
        return self.image.qos

    @property
    def subscription(self):
        return self.image.subscription

    def _guarded(self, what: str, callback: Callable) -> Callable:
        return self._guard.wrap(what, callback, self.stats.error)

    def _image_events(self) -> SubscriptionEventCallbacks:
        return SubscriptionEventCallbacks(
            message_lost=self._guarded('the message-lost event', self.on_message_lost),
            incompatible_qos=self._guarded('the incompatible-QoS event',
                                           self._on_incompatible_qos))

    def report_error(self, message: str) -> None:
        """Bad input or a failed frame: counted (ERROR on /diagnostics) and logged."""
        self.stats.error(message)
        self._logger.error(message, throttle_duration_sec=ERROR_LOG_THROTTLE_S)

    # ------------------------------------------------------------------ the timer's checks
    def check_publishers(self) -> None:
        """Follow the publishers' QoS, and say who publishes what this input cannot read.

        Every diagnostics period: incompatible publishers are those present now (not the
        middleware event's running total), a publisher of another type is named with the fix.
        """
        for subscription in (self.image, self.camera_info):
            graph = subscription.graph()
            subscription.follow(subscription.publishers(graph))
            self._check_types(subscription, subscription.wrong_types(graph))
            if subscription is self.image:
                publishers = subscription.publishers(graph)
                self.stats.incompatible_publishers = subscription.incompatible(publishers)
                self._note_publishers(publishers)

    def _note_publishers(self, publishers: list) -> None:
        """Remember when each image publisher appeared (for _count_before_first)."""
        now = time.time_ns()
        present = {bytes(p.endpoint_gid) for p in publishers}
        for gid in present - self._appeared.keys():
            # At start and at the first check (one period later: discovery takes a moment)
            # a publisher may have been there all along.
            self._appeared[gid] = self._last_check_ns if self._checks >= 2 else None
        for gid in self._appeared.keys() - present:
            del self._appeared[gid]
        self._checks, self._last_check_ns = self._checks + 1, now

    def _check_types(self, subscription: FollowedSubscription, wrong: list[str]) -> None:
        topic = subscription.topic_name
        note = '; '.join(
            f'a {found} publisher on {topic}, which this node reads as '
            f'{type_name(subscription.msg_type)}: none of its messages arrive '
            f'({wrong_type_hint(subscription.msg_type, found, topic)})' for found in wrong)
        if note and self.notes.get(f'type {topic}') != note:
            self._logger.warning(note)  # once per change; /diagnostics says it every period
        if note:
            self.notes[f'type {topic}'] = note
        else:
            self.notes.pop(f'type {topic}', None)

    # ------------------------------------------------------------------ callbacks
    def _count_missed(self, info) -> None:
        """Frames the publisher sent that never reached this callback, from sequence gaps.

        Covers what the middleware reports lost and what it drops silently (a reliable
        camera's history overwriting frames not yet delivered, the input queue's depth), and
        the frames a publisher sent after the node started but before its first frame
        arrived (e.g. before best_available re-subscribed to match it).
        """
        sequence, gid = info.get('publication_sequence_number'), info.get('publisher_gid')
        if sequence is None or not gid:
            return
        key = bytes(gid.get('data', b''))
        last = self._last_sequence.get(key)
        self._last_sequence[key] = sequence
        self._last_sequence.move_to_end(key)
        while len(self._last_sequence) > MAX_TRACKED_PUBLISHERS:
            self._last_sequence.popitem(last=False)
        if last is None:
            self._first_frame[key] = (sequence, info.get('source_timestamp') or 0)
            if len(self._first_frame) > MAX_TRACKED_PUBLISHERS:
                self._first_frame.pop(next(iter(self._first_frame)))
            return
        if key in self._first_frame:
            self._count_before_first(key, *self._first_frame.pop(key), sequence,
                                     info.get('source_timestamp') or 0)
        if sequence > last + 1:
            self.stats.count('frames_missed', sequence - last - 1)

    def _count_before_first(self, key: bytes, first: int, first_ns: int, second: int,
                            second_ns: int) -> None:
        """A new publisher's frames sent after it appeared but before its first one here.

        Only for a publisher that appeared while the node ran (not one there at start, whose
        earlier frames were not meant for it): the frames before its first never arrived.
        Its first two frames give its period: at most the frames that fit between when it
        appeared and its first frame are counted (with slack for an irregular rate), so a
        publisher found late by discovery cannot add its whole history.
        """
        appeared_ns = self._appeared.get(key)
        if appeared_ns is None or first <= 1 or second <= first or not first_ns \
                or second_ns <= first_ns:
            return
        period_ns = (second_ns - first_ns) / (second - first)
        unseen = min(first - 1, round(1.5 * max(0, first_ns - appeared_ns) / period_ns) + 1)
        if unseen:
            self.stats.count('frames_missed', unseen)
            self._logger.warning(
                f'input {self.topic_name}: {unseen} frame(s) a publisher sent before its '
                'first frame arrived here never arrived (sent while the node ran: e.g. before '
                'qos_reliability best_available re-subscribed to match its QoS); counted in '
                'frames_missed')

    def on_image(self, msg: Image | CompressedImage, info) -> None:
        """Executor thread: store the newest frame and wake the worker; never blocks on it."""
        self.stats.rate_in.tick()
        self._count_missed(info)
        with self._handover.ready:
            if self._handover.stopping:
                return  # the worker is finishing its last frame
            self.stats.count('frames_in')
            if self.latest_frame is not None:
                # The worker has not taken the previous frame yet: the newest wins.
                self.stats.count('frames_dropped')
            self.latest_frame = (msg, time.perf_counter())
            self._handover.ready.notify()

    def on_message_lost(self, info) -> None:
        self.stats.count('frames_lost', info.total_count_change)

    def _on_incompatible_qos(self, info) -> None:
        # The count comes from the graph (check_publishers): publishers present now.
        policy = qos_policy_name_from_kind(info.last_policy_kind)
        if self.image.following and info.last_policy_kind == QoSPolicyKind.RELIABILITY:
            return  # the diagnostics timer re-subscribes to match (not inside this event)
        self._logger.warning(
            f'a publisher on {self.topic_name} offers QoS this subscription cannot match '
            f'({policy}): none of its frames arrive. '
            f'{QOS_FIXES.get(policy, "Match the QoS of the camera.")}',
            throttle_duration_sec=ERROR_LOG_THROTTLE_S)

    def _on_camera_info(self, info: CameraInfo) -> None:
        problem = camera_info_problem(info)
        if problem:
            self.report_error(f'bad input on {self.camera_info.topic_name}: CameraInfo '
                              f'{problem}; skipped')
            return
        self._on_camera_info_pairs(self.camera_info_matcher.add_info(info))
        self._check_stamps()

    def frame_done(self, header, frame) -> None:
        """The worker published a frame's masks: pair it with its CameraInfo (by stamp)."""
        self._on_camera_info_pairs(self.camera_info_matcher.add_frame(header, frame))
        self._check_stamps()

    def _check_stamps(self) -> None:
        with self._stamps_lock:  # the executor (infos) and the worker (frames) both call it
            self._check_stamps_locked()

    def _check_stamps_locked(self) -> None:
        offset_ms = self.camera_info_matcher.mismatch_ms()
        if offset_ms is None:
            self.notes.pop('stamps', None)
            return
        note = (f'{self.camera_info.topic_name} stamps differ from the images\' by '
                f'{offset_ms:.1f} ms: no CameraInfo for the masks (they need the same stamp)')
        if 'stamps' not in self.notes:
            self._logger.warning(note)  # once per episode; /diagnostics says it every period
        self.notes['stamps'] = note
