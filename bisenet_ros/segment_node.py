"""segment_node: BiSeNet semantic segmentation of a camera stream.

    ros2 launch bisenet_ros segment.launch.py image_topic:=/camera/image_raw
    ros2 run bisenet_ros segment_node --ros-args -r image:=/camera/image_raw

Subscribes to `image` (sensor_msgs/Image) or `image/compressed` (use_compressed), and to
`camera_info` (optional), and publishes, with the input's header, `~/label` (mono8 class ids,
255 = ignore), `~/color` (rgb8 mask), optionally `~/overlay` and `~/label_small` (network
resolution), the CameraInfo of the masks, what the label ids mean (`~/label_info`,
`~/classes`) and diagnostics on /diagnostics at 1 Hz. The subscription callback only keeps
the newest frame; a worker thread runs inference, so the executor never blocks and a slow
model drops old frames, never queues. See docs/node.md.
"""
from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import rclpy
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterType,
                                SetParametersResult)
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_policy_name_from_kind)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from diagnostic_msgs.msg import DiagnosticArray
from std_msgs.msg import Header, String

from bisenet_core.inference import Segmenter
from bisenet_core.inference.segmenter import STAGES as SEGMENTER_STAGES
from bisenet_core.inference.backends import BACKENDS, DEVICES, PRECISIONS, check_device
from bisenet_core.inference.postprocess import UPSAMPLE_MODES
from bisenet_core.modelfile import ModelFileError
from bisenet_ros.camera_info import CameraInfoMatcher, scale_camera_info
from bisenet_ros.diagnostics import LEVEL_NAMES, build_diagnostic_array, node_level
from bisenet_ros.image_conversion import (ImageConversionError, check_image_pixels,
                                          compressed_to_network_input, image_to_network_input,
                                          labels_to_compressed, numpy_to_image)
from bisenet_ros.label_info import class_table_json, label_info_message, vision_msgs_types
from bisenet_ros.latency import RateMeter, RollingStats
from bisenet_ros.log_forwarding import forward_core_logs, stop_forwarding
from bisenet_ros.node_parameters import param_descriptor, parameter_error, size_range
from bisenet_ros.node_process import (STOP_TIMEOUT_S, StartupError, exit_with_parent,
                                      init_rclpy)
from bisenet_ros.paths import default_model_path

NODE_NAME = 'segment_node'
# Bilinear logits: +10 mIoU points over nearest labels on the 480x360 demo drive, ~3 ms.
DEFAULT_UPSAMPLE = 'bilinear'
# best_available: reliable when every matched publisher is (a reliable camera driver or a bag
# replay: no frame lost in DDS), best effort otherwise (still matches a best-effort camera).
RELIABILITY = {'best_available': ReliabilityPolicy.BEST_AVAILABLE,
               'reliable': ReliabilityPolicy.RELIABLE,
               'best_effort': ReliabilityPolicy.BEST_EFFORT}
DURABILITY = {'volatile': DurabilityPolicy.VOLATILE,
              'transient_local': DurabilityPolicy.TRANSIENT_LOCAL}
# Per-stage times on /diagnostics: message -> numpy, the Segmenter's stages (upload, compute,
# download; see SegmentationResult), publishing, and header stamp -> published.
STAGES = ('decode', *SEGMENTER_STAGES, 'publish', 'end_to_end')
CHOICES = {'backend': BACKENDS, 'precision': PRECISIONS,
           'upsample': UPSAMPLE_MODES, 'qos_reliability': tuple(RELIABILITY),
           'qos_durability': tuple(DURABILITY)}
RUNTIME_PARAMETERS = ('upsample', 'publish_color', 'publish_overlay', 'publish_small_label',
                      'publish_compressed_label', 'publish_confidence', 'latency_budget_ms')
# 8192 x 8192: an 8K camera (7680 x 4320) fits with room to spare.
DEFAULT_MAX_IMAGE_PIXELS = 8192 * 8192
# Frames DDS may hold until the executor thread takes them: with 1, a frame arriving while
# the executor is busy replaces the previous one in DDS (measured: 2-10 % of the frames of a
# 30 Hz camera on a loaded 2-core CPU; 0.1-0.2 % with 5). The node still infers only the
# newest frame, so latency does not grow with the depth.
DEFAULT_QOS_DEPTH = 5
MAX_QOS_DEPTH = 100
MAX_TRACKED_PUBLISHERS = 16
DIAGNOSTICS_PERIOD_S = 1.0
SUMMARY_PERIOD_S = 10.0
ERROR_LOG_THROTTLE_S = 5.0
# main() polls for a stop request this often (its own signal handlers run between polls).
SPIN_POLL_S = 0.1


class SegmentNode(Node):
    """Image in, BiSeNet labels out; inference on a worker thread, newest frame wins.

    Args:
        segmenter_factory: builds the Segmenter from (model_path, backend=, device=,
            precision=, input_size=, upsample=, compile=); tests pass a wrapper (e.g. a slow
            one).
        **kwargs: passed to rclpy's Node (context, parameter_overrides, namespace, ...).
    """

    def __init__(self, segmenter_factory: Callable[..., Segmenter] = Segmenter, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        # Graph captures, compile times and exports are logged by the core (Python logging).
        self._core_log_handler = forward_core_logs(self.get_logger())
        try:
            self._declare_parameters()
            params = {name: self.get_parameter(name).value for name in self._parameter_names}
            self._check_startup_parameters(params)
            self.segmenter = self._create_segmenter(segmenter_factory, params)
        except StartupError:
            stop_forwarding(self._core_log_handler)
            super().destroy_node()  # no worker yet; release the node's handles
            raise
        self.publish_color = params['publish_color']
        self.publish_overlay = params['publish_overlay']
        self.publish_small_label = params['publish_small_label']
        self.publish_compressed_label = params['publish_compressed_label']
        self.publish_confidence = params['publish_confidence']
        self.latency_budget_ms = params['latency_budget_ms']
        self.max_image_pixels = params['max_image_pixels']
        self.add_on_set_parameters_callback(self._on_set_parameters)

        # Outputs are reliable: a reliable publisher serves reliable and best-effort
        # subscribers alike, so a bag-replay evaluator and RViz both get the masks.
        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                             reliability=ReliabilityPolicy.RELIABLE)
        self.label_publisher = self.create_publisher(Image, '~/label', out_qos)
        self.color_publisher = self.create_publisher(Image, '~/color', out_qos)
        self.overlay_publisher = self.create_publisher(Image, '~/overlay', out_qos)
        self.small_label_publisher = self.create_publisher(Image, '~/label_small', out_qos)
        self.compressed_label_publisher = self.create_publisher(
            CompressedImage, '~/label/compressed', out_qos)
        self.confidence_publisher = self.create_publisher(Image, '~/confidence', out_qos)
        self.camera_info_publishers = {
            'label': self.create_publisher(CameraInfo, '~/label/camera_info', out_qos),
            'label_small': self.create_publisher(CameraInfo, '~/label_small/camera_info',
                                                 out_qos)}
        self.diagnostics_publisher = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._publish_class_tables()

        # Input: DDS holds up to qos_depth frames for the executor; the worker gets only the
        # newest (one slot below).
        in_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=params['qos_depth'],
                            reliability=RELIABILITY[params['qos_reliability']],
                            durability=DURABILITY[params['qos_durability']])
        self._input_qos = in_qos
        self.use_compressed = params['use_compressed']
        self._follow_publishers = params['qos_reliability'] == 'best_available'
        if self._follow_publishers:
            # Resolved here, not by the middleware (which resolves once, at creation: with no
            # camera yet that is reliable, and a best-effort camera starting later never
            # matches); the diagnostics timer re-checks it as cameras come and go.
            in_qos.reliability = self._best_available(self.resolve_topic_name(
                'image/compressed' if self.use_compressed else 'image'))
        self.subscription = self._subscribe()
        # camera_info is optional: without it the masks' CameraInfo is simply not published.
        self.camera_info_matcher = CameraInfoMatcher()
        self.camera_info_subscription = self.create_subscription(
            CameraInfo, 'camera_info', self._on_camera_info,
            QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                       reliability=ReliabilityPolicy.BEST_AVAILABLE))

        # latest_frame is the hand-over between the executor and the worker thread.
        self._frame_ready = threading.Condition()
        self.latest_frame: tuple[Image | CompressedImage, float] | None = None
        self._stopping = False
        self._stats_lock = threading.Lock()
        self.frames_in = self.frames_out = self.frames_dropped = self.errors = 0
        self.frames_lost = self.frames_missed = self.incompatible_publishers = 0
        self._period_dropped = self._period_errors = self._period_lost = 0
        self._period_missed = 0
        # publisher gid -> last publication sequence number seen: a jump is frames missed.
        self._last_sequence: OrderedDict[bytes, int] = OrderedDict()
        self._period_start = time.perf_counter()
        self._last_error = ''
        self.stage_ms = {stage: RollingStats() for stage in STAGES}
        self.rate_in, self.rate_out = RateMeter(), RateMeter()

        self.worker = threading.Thread(target=self._work, name='segment_worker', daemon=True)
        self.worker.start()
        self.diagnostics_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)
        self.summary_timer = self.create_timer(SUMMARY_PERIOD_S, self._log_summary)
        width, height = self.segmenter.input_size
        self.get_logger().info(
            f'ready: {self.segmenter!r} from {params["model_path"]}; input '
            f'{self.subscription.topic_name} ({params["qos_reliability"]}, depth '
            f'{params["qos_depth"]}), output {self.label_publisher.topic_name} at '
            f'{width}x{height} network input')

    def _publish_class_tables(self) -> None:
        """What the label ids mean, once, transient local: late subscribers get it too."""
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                             reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        spec = self.segmenter.spec
        self.classes_publisher = self.create_publisher(String, '~/classes', latched)
        self.classes_publisher.publish(String(data=class_table_json(spec)))
        types = vision_msgs_types()
        self.label_info_publisher = None
        if types is None:
            self.get_logger().info('vision_msgs not found: no ~/label_info (LabelInfo); the '
                                   'class table is on ~/classes (JSON)')
            return
        label_info_type, vision_class_type = types
        header = Header(stamp=self.get_clock().now().to_msg())
        self.label_info_publisher = self.create_publisher(label_info_type, '~/label_info',
                                                          latched)
        self.label_info_publisher.publish(
            label_info_message(spec, label_info_type, vision_class_type, header))

    # ------------------------------------------------------------------ parameters
    def _declare_parameters(self) -> None:
        budget = FloatingPointRange(from_value=0.0, to_value=60000.0, step=0.0)
        declarations = [
            ('model_path', str(default_model_path()),
             param_descriptor('BiSeNet model file (.pt or .onnx); empty = the shipped model')),
            ('backend', 'auto', param_descriptor('inference backend', BACKENDS)),
            ('device', 'auto', param_descriptor('inference device', (*DEVICES, 'cuda:N'))),
            ('precision', 'fp32', param_descriptor('fp16 needs a GPU (fp32 on the CPU)',
                                                   PRECISIONS)),
            ('input_width', 0, param_descriptor(
                "network input width (multiple of 32: no padding); 0 = the model's own",
                integer_range=size_range())),
            ('input_height', 0, param_descriptor(
                "network input height (multiple of 32: no padding); 0 = the model's own",
                integer_range=size_range())),
            ('upsample', DEFAULT_UPSAMPLE, param_descriptor(
                'labels to image size: nearest (argmax at 1/8, fast) or bilinear (smoother '
                'boundaries, slower)', UPSAMPLE_MODES, read_only=False)),
            ('publish_color', True, param_descriptor('publish ~/color (rgb8 colour mask)',
                                                     read_only=False)),
            ('publish_overlay', False, param_descriptor(
                'publish ~/overlay (mask blended over the image)', read_only=False)),
            ('publish_small_label', False, param_descriptor(
                'publish ~/label_small (labels at network output resolution)',
                read_only=False)),
            ('publish_confidence', True, param_descriptor(
                'publish ~/confidence (mono8: 255 x the largest softmax probability)',
                read_only=False)),
            ('publish_compressed_label', True, param_descriptor(
                'publish ~/label/compressed (labels as lossless PNG, for recording)',
                read_only=False)),
            ('use_compressed', False, param_descriptor(
                'subscribe to image/compressed (jpeg/png) instead of image')),
            ('compile', False, param_descriptor(
                'torch.compile the network (backend torch; mostly for GPUs): compiling takes '
                'tens of seconds at start-up, before the first frame')),
            ('qos_reliability', 'best_available', param_descriptor(
                'input QoS reliability: best_available (reliable if the publisher is, so '
                'large frames are repaired; still matches a best-effort camera), reliable or '
                'best_effort', tuple(RELIABILITY))),
            ('qos_depth', DEFAULT_QOS_DEPTH, param_descriptor(
                'input QoS history depth: frames that may wait in DDS for the executor (the '
                'node itself keeps only the newest for inference)',
                integer_range=IntegerRange(from_value=1, to_value=MAX_QOS_DEPTH, step=1))),
            ('qos_durability', 'volatile', param_descriptor(
                'input QoS durability (transient_local: also gets the last frame a latched '
                'publisher sent before the node started)', tuple(DURABILITY))),
            ('max_image_pixels', DEFAULT_MAX_IMAGE_PIXELS, param_descriptor(
                'frames with more pixels (width x height, read from the header before '
                'decoding) are refused as bad input; 0 = no limit',
                integer_range=IntegerRange(from_value=0, to_value=2**40, step=1))),
            ('latency_budget_ms', 100.0, param_descriptor(
                'diagnostics WARN when the end-to-end latency p90 exceeds this; 0 = off',
                read_only=False, float_range=budget)),
        ]
        self._parameter_names = [name for name, _, _ in declarations]
        for name, default, descriptor in declarations:
            try:
                self.declare_parameter(name, default, descriptor)
            except Exception as exc:  # bad values or types in a params file / launch argument
                raise StartupError(parameter_error(name, descriptor, exc)) from None

    def _check_startup_parameters(self, params: dict) -> None:
        for name, choices in CHOICES.items():
            if params[name] not in choices:
                raise StartupError(f'parameter {name}={params[name]!r}: must be one of '
                                   f'{", ".join(choices)}')
        try:
            check_device(params['device'])
        except ValueError as exc:
            raise StartupError(f'parameter device={params["device"]!r}: {exc}') from None
        if not params['model_path']:
            params['model_path'] = str(default_model_path())
        if (params['input_width'] == 0) != (params['input_height'] == 0):
            raise StartupError(f'input_width={params["input_width"]}, input_height='
                               f'{params["input_height"]}: set both or neither (0 = the '
                               "model's own size)")

    def _create_segmenter(self, factory: Callable[..., Segmenter], params: dict) -> Segmenter:
        model_path = Path(params['model_path']).expanduser()
        if not model_path.exists():  # a folder or bad file: the reader says what it is
            raise StartupError(f'model file {model_path}: not found (parameter model_path)')
        size = (params['input_width'], params['input_height'])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            try:
                segmenter = factory(model_path, backend=params['backend'],
                                    device=params['device'], precision=params['precision'],
                                    input_size=size if size[0] else None,
                                    upsample=params['upsample'], compile=params['compile'])
            except (ModelFileError, RuntimeError, ValueError, OSError) as exc:
                raise StartupError(f'cannot load {model_path} on backend '
                                   f'{params["backend"]}/{params["device"]}: {exc}') from None
        # e.g. "fp16 requested on the CPU; using fp32", "no GPU ... running on the CPU".
        for warning in caught:
            self.get_logger().warning(str(warning.message))
        return segmenter

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        for param in parameters:
            if param.name not in RUNTIME_PARAMETERS:
                return SetParametersResult(
                    successful=False, reason=f'{param.name} is read-only: it needs a restart')
            choices = CHOICES.get(param.name)
            if choices and param.value not in choices:
                return SetParametersResult(
                    successful=False,
                    reason=f'{param.name}={param.value!r}: must be one of {", ".join(choices)}')
            if param.name.startswith('publish_') and param.type_ != ParameterType.PARAMETER_BOOL:
                return SetParametersResult(successful=False,
                                           reason=f'{param.name} must be true or false')
            if param.name == 'latency_budget_ms' and (
                    param.type_ != ParameterType.PARAMETER_DOUBLE or not math.isfinite(
                        param.value) or param.value < 0):
                return SetParametersResult(
                    successful=False,
                    reason=f'latency_budget_ms={param.value!r}: must be a float >= 0')
        # upsample first: the only one the Segmenter may still refuse (nothing applied yet).
        for param in sorted(parameters, key=lambda p: p.name != 'upsample'):
            if param.name == 'upsample':
                try:
                    self.segmenter.upsample = param.value  # read at every frame by segment
                except ValueError as exc:  # e.g. an exported frame graph has one mode
                    return SetParametersResult(successful=False, reason=str(exc))
            else:
                setattr(self, param.name, param.value)
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ input
    def _subscribe(self):
        """The input subscription, with the middleware's loss and QoS-mismatch events."""
        # The middleware counts frames it lost (a best-effort frame missing a fragment) and
        # tells when a publisher's QoS cannot match ours (reliable vs a best-effort camera).
        events = SubscriptionEventCallbacks(message_lost=self._on_message_lost,
                                            incompatible_qos=self._on_incompatible_qos)
        if self.use_compressed:
            return self.create_subscription(CompressedImage, 'image/compressed', self._on_image,
                                            self._input_qos, event_callbacks=events)
        return self.create_subscription(Image, 'image', self._on_image, self._input_qos,
                                        event_callbacks=events)

    def _best_available(self, topic: str) -> ReliabilityPolicy:
        """Reliable if every publisher of `topic` is (or there is none yet), else best effort."""
        publishers = self.get_publishers_info_by_topic(topic)
        if any(p.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for p in publishers):
            return ReliabilityPolicy.BEST_EFFORT
        if publishers or not hasattr(self, 'subscription'):
            return ReliabilityPolicy.RELIABLE
        return self._input_qos.reliability  # no publisher now: keep what matched the last one

    def _follow_publisher_reliability(self) -> None:
        """qos_reliability best_available: re-subscribe when the cameras' reliability changes.

        Reliable publishers get a reliable subscription (a lost fragment is re-sent), a
        best-effort one (or a mix) a best-effort subscription (it would not match otherwise).
        """
        if not self._follow_publishers:
            return
        topic = self.subscription.topic_name
        wanted = self._best_available(topic)
        if wanted == self._input_qos.reliability:
            return
        self._input_qos.reliability = wanted
        self.destroy_subscription(self.subscription)
        self.subscription = self._subscribe()
        with self._stats_lock:
            self.incompatible_publishers = 0
        mode = 'reliable' if wanted == ReliabilityPolicy.RELIABLE else 'best effort'
        self.get_logger().info(f'input {topic} re-subscribed {mode} to match its publishers '
                               '(qos_reliability best_available)')

    def _count_missed(self, info) -> None:
        """Frames the publisher sent that never reached this callback, from sequence gaps.

        Covers what the middleware reports lost and what it drops silently (a reliable
        camera's history overwriting frames not yet delivered, the input queue's depth).
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
        if last is not None and sequence > last + 1:
            with self._stats_lock:
                self.frames_missed += sequence - last - 1
                self._period_missed += sequence - last - 1

    def _on_image(self, msg: Image | CompressedImage, info) -> None:
        """Executor thread: store the newest frame and wake the worker; never blocks on it."""
        self.rate_in.tick()
        self._count_missed(info)
        with self._frame_ready:
            if self._stopping:
                return  # the worker is finishing its last frame
            self.frames_in += 1
            if self.latest_frame is not None:
                # The worker has not taken the previous frame yet: the newest wins.
                self.frames_dropped += 1
                self._period_dropped += 1
            self.latest_frame = (msg, time.perf_counter())
            self._frame_ready.notify()

    def _on_message_lost(self, info) -> None:
        with self._stats_lock:
            self.frames_lost += info.total_count_change
            self._period_lost += info.total_count_change

    def _on_incompatible_qos(self, info) -> None:
        with self._stats_lock:
            self.incompatible_publishers = info.total_count
        if self._follow_publishers:
            return  # the diagnostics timer re-subscribes to match (not inside this event)
        self.get_logger().warning(
            f'a publisher on {self.subscription.topic_name} offers QoS this subscription '
            f'cannot match ({qos_policy_name_from_kind(info.last_policy_kind)}): none of '
            'its frames arrive. '
            'A best-effort camera needs qos_reliability best_available or best_effort',
            throttle_duration_sec=ERROR_LOG_THROTTLE_S)

    def _on_camera_info(self, info: CameraInfo) -> None:
        self._publish_camera_infos(self.camera_info_matcher.add_info(info))

    def _publish_camera_infos(self, pairs) -> None:
        """Publish the CameraInfo of ~/label (image size) and ~/label_small (network output)."""
        for info, (header, image_size, small_size) in pairs:
            for name, size in (('label', image_size), ('label_small', small_size)):
                publisher = self.camera_info_publishers[name]
                if publisher.get_subscription_count():
                    publisher.publish(scale_camera_info(info, *size, header=header))

    def _small_label_size(self) -> tuple[int, int]:
        """(width, height) of ~/label_small: the network output."""
        width, height = self.segmenter.input_size
        stride = self.segmenter.spec.output_stride
        return width // stride, height // stride

    def _work(self) -> None:
        while True:
            with self._frame_ready:
                while self.latest_frame is None and not self._stopping:
                    self._frame_ready.wait()
                if self.latest_frame is None:  # stopping, and no frame in hand
                    return
                msg, received = self.latest_frame
                self.latest_frame = None
            try:
                check_image_pixels(msg, self.max_image_pixels)
                label_size = self._process(msg, received)
            except (ImageConversionError, ValueError) as exc:
                self._record_error(f'bad input on {self.subscription.topic_name}: {exc}')
                continue
            except Exception as exc:  # a failed inference must not stop the node
                if not self.context.ok():
                    return  # the context was shut down under us (by its owner): not an error
                self._record_error(f'inference failed: {type(exc).__name__}: {exc}')
                continue
            self._publish_camera_infos(self.camera_info_matcher.add_frame(
                msg.header, (msg.header, label_size, self._small_label_size())))

    def _record_error(self, message: str) -> None:
        with self._stats_lock:
            self.errors += 1
            self._period_errors += 1
            self._last_error = message
        self.get_logger().error(message, throttle_duration_sec=ERROR_LOG_THROTTLE_S)

    # ------------------------------------------------------------------ processing
    def _process(self, msg: Image | CompressedImage, received: float) -> tuple[int, int]:
        """Segment one frame and publish its outputs; returns the label's (width, height)."""
        t0 = time.perf_counter()
        if isinstance(msg, CompressedImage):
            image, color_order = compressed_to_network_input(msg)
        else:
            image, color_order = image_to_network_input(msg)  # a view of msg.data
        # The optional outputs are only computed when someone listens (like image_transport's
        # lazy publishers): a 720p colour mask costs milliseconds to make and serialise.
        wanted = (('confidence', self.publish_confidence, self.confidence_publisher),
                  ('color', self.publish_color, self.color_publisher),
                  ('overlay', self.publish_overlay, self.overlay_publisher),
                  ('small_labels', self.publish_small_label, self.small_label_publisher))
        outputs = tuple(name for name, enabled, publisher in wanted
                        if enabled and publisher.get_subscription_count())
        t1 = time.perf_counter()
        result = self.segmenter.segment(image, color_order, outputs=outputs)
        t2 = time.perf_counter()

        header = msg.header
        self.label_publisher.publish(numpy_to_image(result.labels, 'mono8', header))
        self._publish_compressed_label(result.labels, header)
        if result.confidence is not None:
            self.confidence_publisher.publish(numpy_to_image(result.confidence, 'mono8', header))
        if result.color is not None:
            self.color_publisher.publish(numpy_to_image(result.color, 'rgb8', header))
        if result.overlay is not None:
            self.overlay_publisher.publish(numpy_to_image(result.overlay, 'rgb8', header))
        if result.small_labels is not None:
            self.small_label_publisher.publish(
                numpy_to_image(result.small_labels, 'mono8', header))
        t3 = time.perf_counter()

        self.rate_out.tick()
        with self._stats_lock:
            self.frames_out += 1
        # Frame -> numpy (a view, or a jpeg decode), then the Segmenter's own stages; their
        # sum may be a little less than t2 - t1 (argument checks).
        self.stage_ms['decode'].add((t1 - t0) * 1e3)
        for stage in SEGMENTER_STAGES:
            self.stage_ms[stage].add(result.timings_ms[stage])
        self.stage_ms['publish'].add((t3 - t2) * 1e3)
        self.stage_ms['end_to_end'].add(self._end_to_end_ms(header, received, t3))
        return result.labels.shape[1], result.labels.shape[0]

    def _publish_compressed_label(self, labels, header) -> None:
        """~/label/compressed: the labels as a lossless PNG, for recording (lazy)."""
        if self.publish_compressed_label and \
                self.compressed_label_publisher.get_subscription_count():
            self.compressed_label_publisher.publish(labels_to_compressed(labels, header))

    def _end_to_end_ms(self, header, received: float, published: float) -> float:
        """Header stamp -> publish on the node's clock; receive -> publish if unstamped."""
        stamp_ns = header.stamp.sec * 10**9 + header.stamp.nanosec
        if stamp_ns:
            age_ms = (self.get_clock().now().nanoseconds - stamp_ns) / 1e6
            if 0 <= age_ms < 3.6e6:  # a stamp from another clock (sim time, no sync) is ignored
                return age_ms
        return (published - received) * 1e3

    # ------------------------------------------------------------------ diagnostics
    def diagnostic_values(self) -> dict[str, object]:
        seg = self.segmenter
        width, height = seg.input_size
        values = {'backend': seg.backend_name, 'device': seg.device, 'precision': seg.precision,
                  'network_size': f'{width}x{height}', 'upsample': seg.upsample,
                  'fps_in': self.rate_in.rate(), 'fps_out': self.rate_out.rate(),
                  'frames_in': self.frames_in, 'frames_out': self.frames_out,
                  'frames_dropped': self.frames_dropped, 'frames_lost': self.frames_lost,
                  'frames_missed': self.frames_missed,
                  'incompatible_publishers': self.incompatible_publishers,
                  'errors': self.errors, 'latency_budget_ms': float(self.latency_budget_ms)}
        for stage in STAGES:
            for key, ms in self.stage_ms[stage].summary().items():
                values[f'{stage}_{key}_ms'] = ms
        return values

    def _publish_diagnostics(self) -> None:
        self._follow_publisher_reliability()
        now = time.perf_counter()
        with self._stats_lock, self._frame_ready:
            errors, dropped, lost, missed, last_error = (
                self._period_errors, self._period_dropped, self._period_lost,
                self._period_missed, self._last_error)
            self._period_errors = self._period_dropped = self._period_lost = 0
            self._period_missed = 0
            period_start, self._period_start = self._period_start, now
        values = self.diagnostic_values()
        # The level judges this period's frames only: two slow warm-up frames must not keep
        # the status WARN while no frame comes (the reported p90 is over the last 300).
        period_p90 = self.stage_ms['end_to_end'].summary(since=period_start)['p90']
        level, message = node_level(errors, dropped, period_p90, self.latency_budget_ms,
                                    last_error, lost=lost, missed=missed,
                                    incompatible=self.incompatible_publishers)
        self.last_level = level
        self.diagnostics_publisher.publish(build_diagnostic_array(
            self.get_clock().now().to_msg(), f'{self.get_fully_qualified_name()}: segmentation',
            f'{values["backend"]}/{values["device"]}', level, message, values))

    def summary_line(self) -> str:
        v = self.diagnostic_values()
        timing = ('no frame segmented yet' if not v['frames_out'] else
                  f'compute p50 {v["compute_p50_ms"]:.1f} ms, end-to-end p50 '
                  f'{v["end_to_end_p50_ms"]:.1f} / p99 {v["end_to_end_p99_ms"]:.1f} ms')
        return (f'{v["fps_in"]:.1f} fps in, {v["fps_out"]:.1f} out, {v["frames_out"]} frames, '
                f'{v["frames_dropped"]} dropped, {v["frames_missed"]} never arrived, '
                f'{v["errors"]} errors; {timing}; status '
                f'{LEVEL_NAMES.get(getattr(self, "last_level", None), "-")}')

    def _log_summary(self) -> None:
        self.get_logger().info(self.summary_line())

    # ------------------------------------------------------------------ shutdown
    def stop_worker(self, timeout: float = 10.0) -> bool:
        """Let the worker finish the frame in hand (and one waiting) and join it.

        Returns False if it is still running after `timeout` seconds.
        """
        with self._frame_ready:
            self._stopping = True
            self._frame_ready.notify_all()
        if self.worker.is_alive() and self.worker is not threading.current_thread():
            self.worker.join(timeout)
        return not self.worker.is_alive()

    def destroy_node(self) -> None:
        self.stop_worker()
        stop_forwarding(self._core_log_handler)
        super().destroy_node()


def main(args: list[str] | None = None,
         segmenter_factory: Callable[..., Segmenter] = Segmenter) -> int:
    """Run the node until SIGINT/SIGTERM; 0 on a clean stop, 1 on a failed start.

    rclpy's own signal handlers would shut the context down at once, under a frame in
    inference (a false "context is invalid" error, the frame's label lost). Here a signal
    only asks the spin loop to stop; the worker finishes its frame, then things are
    destroyed in order: worker, executor, node, context.
    """
    stop = threading.Event()

    def request_stop(signum, frame):
        stop.set()  # a second Ctrl-C while stopping changes nothing: no traceback

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request_stop)
    logger = rclpy.logging.get_logger(NODE_NAME)
    if not exit_with_parent():
        logger.warning('the ros2 launch that started this node is gone; not starting')
        return 1
    try:
        init_rclpy(args)
    except StartupError as exc:
        logger.fatal(str(exc))
        return 1
    node = None
    executor = SingleThreadedExecutor()
    code = 0
    try:
        node = SegmentNode(segmenter_factory)
        executor.add_node(node)
        while not stop.is_set():
            executor.spin_once(timeout_sec=SPIN_POLL_S)
    except StartupError as exc:
        logger.fatal(str(exc))
        code = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # the context was shut down by someone else
    if node is not None and not node.stop_worker(STOP_TIMEOUT_S):
        # Destroying the handles under a running inference could crash: leave at once.
        logger.warning(f'the frame in inference did not finish within {STOP_TIMEOUT_S:g} s; '
                       'exiting without waiting for it')
        os._exit(code)
    executor.shutdown(timeout_sec=5.0)
    if node is not None:
        node.destroy_node()
    rclpy.try_shutdown(uninstall_handlers=False)  # ours, not rclpy's: keep them
    # Python resets handled signals to their default while it tears down, so one more Ctrl-C
    # (a terminal sends one to the whole group, launch another) would kill the process with
    # -2 after a clean stop; ignored signals are left ignored.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    return code


if __name__ == '__main__':
    sys.exit(main())
