"""segment_node: BiSeNet semantic segmentation of a camera stream.

    ros2 run bisenet_ros segment_node --ros-args -r image:=/camera/image_raw
    ros2 launch bisenet_ros segment.launch.py width:=960 height:=720 precision:=fp16

Subscribes to `image` (sensor_msgs/Image) or `image/compressed` (use_compressed) and publishes,
with the input's header, `~/label` (mono8 class ids, 255 = ignore), `~/color` (rgb8 mask),
optionally `~/overlay` and `~/label_small` (network resolution), and diagnostics on
/diagnostics at 1 Hz. The subscription callback only keeps the newest frame; a worker thread
runs inference, so the executor never blocks and a slow model drops old frames, never queues.
See docs/node.md.
"""
from __future__ import annotations

import math
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Callable

import rclpy
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                ParameterType, SetParametersResult)
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy)
from sensor_msgs.msg import CompressedImage, Image
from diagnostic_msgs.msg import DiagnosticArray

from bisenet_core.inference import Segmenter
from bisenet_core.inference.segmenter import STAGES as SEGMENTER_STAGES
from bisenet_core.inference.backends import BACKENDS, DEVICES, PRECISIONS, check_device
from bisenet_core.inference.postprocess import UPSAMPLE_MODES
from bisenet_core.modelfile import ModelFileError
from bisenet_core.spec import MAX_INPUT_SIDE
from bisenet_ros.diagnostics import LEVEL_NAMES, build_diagnostic_array, node_level
from bisenet_ros.image_conversion import (ImageConversionError, compressed_to_network_input,
                                          image_to_network_input, numpy_to_image)
from bisenet_ros.latency import RateMeter, RollingStats
from bisenet_ros.paths import default_model_path

NODE_NAME = 'segment_node'
# Bilinear logits: +10 mIoU points over nearest labels on the 480x360 demo drive, ~3 ms.
DEFAULT_UPSAMPLE = 'bilinear'
RELIABILITY = ('best_effort', 'reliable')
# Per-stage times on /diagnostics: message -> numpy, the Segmenter's stages (upload, compute,
# download; see SegmentationResult), publishing, and header stamp -> published.
STAGES = ('decode', *SEGMENTER_STAGES, 'publish', 'end_to_end')
CHOICES = {'backend': BACKENDS, 'precision': PRECISIONS,
           'upsample': UPSAMPLE_MODES, 'qos_reliability': RELIABILITY}
RUNTIME_PARAMETERS = ('upsample', 'publish_color', 'publish_overlay', 'publish_small_label',
                      'latency_budget_ms')
DIAGNOSTICS_PERIOD_S = 1.0
SUMMARY_PERIOD_S = 10.0
ERROR_LOG_THROTTLE_S = 5.0


class StartupError(RuntimeError):
    """The node cannot start (model, backend or parameters); the message is one line."""


def _descriptor(description: str, choices: tuple[str, ...] | None = None,
                read_only: bool = True, integer_range: IntegerRange | None = None,
                float_range: FloatingPointRange | None = None) -> ParameterDescriptor:
    if choices:
        description += f' ({"|".join(choices)})'
    if read_only:
        description += '; read-only: needs a restart'
    return ParameterDescriptor(
        description=description, read_only=read_only,
        additional_constraints=f'one of {", ".join(choices)}' if choices else '',
        integer_range=[integer_range] if integer_range else [],
        floating_point_range=[float_range] if float_range else [])


def _size_range() -> IntegerRange:
    # 0 = the model's own input size; the Segmenter refuses 1..31 with a clear message.
    return IntegerRange(from_value=0, to_value=MAX_INPUT_SIDE, step=1)


class SegmentNode(Node):
    """Image in, BiSeNet labels out; inference on a worker thread, newest frame wins.

    Args:
        segmenter_factory: builds the Segmenter from (model_path, backend=, device=,
            precision=, input_size=, upsample=); tests pass a wrapper (e.g. a slow one).
        **kwargs: passed to rclpy's Node (context, parameter_overrides, namespace, ...).
    """

    def __init__(self, segmenter_factory: Callable[..., Segmenter] = Segmenter, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        try:
            self._declare_parameters()
            params = {name: self.get_parameter(name).value for name in self._parameter_names}
            self._check_startup_parameters(params)
            self.segmenter = self._create_segmenter(segmenter_factory, params)
        except StartupError:
            super().destroy_node()  # no worker yet; release the node's handles
            raise
        self.publish_color = params['publish_color']
        self.publish_overlay = params['publish_overlay']
        self.publish_small_label = params['publish_small_label']
        self.latency_budget_ms = params['latency_budget_ms']
        self.add_on_set_parameters_callback(self._on_set_parameters)

        # Outputs are reliable: a reliable publisher serves reliable and best-effort
        # subscribers alike, so a bag-replay evaluator and RViz both get the masks.
        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                             reliability=ReliabilityPolicy.RELIABLE)
        self.label_publisher = self.create_publisher(Image, '~/label', out_qos)
        self.color_publisher = self.create_publisher(Image, '~/color', out_qos)
        self.overlay_publisher = self.create_publisher(Image, '~/overlay', out_qos)
        self.small_label_publisher = self.create_publisher(Image, '~/label_small', out_qos)
        self.diagnostics_publisher = self.create_publisher(DiagnosticArray, '/diagnostics', 10)

        # Input: keep only the newest frame anywhere (DDS depth 1 here, one slot below).
        reliability = (ReliabilityPolicy.RELIABLE if params['qos_reliability'] == 'reliable'
                       else ReliabilityPolicy.BEST_EFFORT)
        in_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=reliability,
                            durability=DurabilityPolicy.VOLATILE)
        self.use_compressed = params['use_compressed']
        if self.use_compressed:
            self.subscription = self.create_subscription(
                CompressedImage, 'image/compressed', self._on_image, in_qos)
        else:
            self.subscription = self.create_subscription(Image, 'image', self._on_image, in_qos)

        # latest_frame is the hand-over between the executor and the worker thread.
        self._frame_ready = threading.Condition()
        self.latest_frame: tuple[Image | CompressedImage, float] | None = None
        self._stopping = False
        self._stats_lock = threading.Lock()
        self.frames_in = self.frames_out = self.frames_dropped = self.errors = 0
        self._period_dropped = self._period_errors = 0
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
            f'{self.subscription.topic_name} ({params["qos_reliability"]}), output '
            f'{self.label_publisher.topic_name} at {width}x{height} network input')

    # ------------------------------------------------------------------ parameters
    def _declare_parameters(self) -> None:
        budget = FloatingPointRange(from_value=0.0, to_value=60000.0, step=0.0)
        declarations = [
            ('model_path', str(default_model_path()),
             _descriptor('BiSeNet model file (.pt or .onnx); empty = the shipped model')),
            ('backend', 'auto', _descriptor('inference backend', BACKENDS)),
            ('device', 'auto', _descriptor('inference device', (*DEVICES, 'cuda:N'))),
            ('precision', 'fp32', _descriptor('fp16 needs a GPU (fp32 on the CPU)', PRECISIONS)),
            ('input_width', 0, _descriptor('network input width (multiple of 32: no padding); '
                                           "0 = the model's own", integer_range=_size_range())),
            ('input_height', 0, _descriptor('network input height (multiple of 32: no padding); '
                                            "0 = the model's own", integer_range=_size_range())),
            ('upsample', DEFAULT_UPSAMPLE, _descriptor(
                'labels to image size: nearest (argmax at 1/8, fast) or bilinear (smoother '
                'boundaries, slower)', UPSAMPLE_MODES, read_only=False)),
            ('publish_color', True, _descriptor('publish ~/color (rgb8 colour mask)',
                                                read_only=False)),
            ('publish_overlay', False, _descriptor('publish ~/overlay (mask blended over the '
                                                   'image)', read_only=False)),
            ('publish_small_label', False, _descriptor(
                'publish ~/label_small (labels at network output resolution)',
                read_only=False)),
            ('use_compressed', False, _descriptor('subscribe to image/compressed (jpeg/png) '
                                                  'instead of image')),
            ('qos_reliability', 'best_effort', _descriptor(
                'input QoS: best_effort (sensor data) or reliable (bag replay)', RELIABILITY)),
            ('latency_budget_ms', 100.0, _descriptor(
                'diagnostics WARN when the end-to-end latency p90 exceeds this; 0 = off',
                read_only=False, float_range=budget)),
        ]
        self._parameter_names = [name for name, _, _ in declarations]
        try:
            self.declare_parameters('', declarations)
        except Exception as exc:  # bad values or types in a params file / launch argument
            raise StartupError(f'invalid parameter: {exc}') from None

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
        if not model_path.is_file():
            raise StartupError(f'model file {model_path}: not found (parameter model_path)')
        size = (params['input_width'], params['input_height'])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            try:
                segmenter = factory(model_path, backend=params['backend'],
                                    device=params['device'], precision=params['precision'],
                                    input_size=size if size[0] else None,
                                    upsample=params['upsample'])
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
        for param in parameters:
            if param.name == 'upsample':
                self.segmenter.upsample = param.value  # read at every frame by segment
            else:
                setattr(self, param.name, param.value)
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ input
    def _on_image(self, msg: Image | CompressedImage) -> None:
        """Executor thread: store the newest frame and wake the worker; never blocks on it."""
        self.rate_in.tick()
        with self._frame_ready:
            self.frames_in += 1
            if self.latest_frame is not None:
                # The worker has not taken the previous frame yet: the newest wins.
                self.frames_dropped += 1
                self._period_dropped += 1
            self.latest_frame = (msg, time.perf_counter())
            self._frame_ready.notify()

    def _work(self) -> None:
        while True:
            with self._frame_ready:
                while self.latest_frame is None and not self._stopping:
                    self._frame_ready.wait()
                if self._stopping:
                    return
                msg, received = self.latest_frame
                self.latest_frame = None
            try:
                self._process(msg, received)
            except (ImageConversionError, ValueError) as exc:
                self._record_error(f'bad input on {self.subscription.topic_name}: {exc}')
            except Exception as exc:  # a failed inference must not stop the node
                self._record_error(f'inference failed: {type(exc).__name__}: {exc}')

    def _record_error(self, message: str) -> None:
        with self._stats_lock:
            self.errors += 1
            self._period_errors += 1
            self._last_error = message
        self.get_logger().error(message, throttle_duration_sec=ERROR_LOG_THROTTLE_S)

    # ------------------------------------------------------------------ processing
    def _process(self, msg: Image | CompressedImage, received: float) -> None:
        t0 = time.perf_counter()
        if isinstance(msg, CompressedImage):
            image, color_order = compressed_to_network_input(msg)
        else:
            image, color_order = image_to_network_input(msg)  # a view of msg.data
        # The optional outputs are only computed when someone listens (like image_transport's
        # lazy publishers): a 720p colour mask costs milliseconds to make and serialise.
        wanted = (('color', self.publish_color, self.color_publisher),
                  ('overlay', self.publish_overlay, self.overlay_publisher),
                  ('small_labels', self.publish_small_label, self.small_label_publisher))
        outputs = tuple(name for name, enabled, publisher in wanted
                        if enabled and publisher.get_subscription_count())
        t1 = time.perf_counter()
        result = self.segmenter.segment(image, color_order, outputs=outputs)
        t2 = time.perf_counter()

        header = msg.header
        self.label_publisher.publish(numpy_to_image(result.labels, 'mono8', header))
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
                  'frames_dropped': self.frames_dropped, 'errors': self.errors,
                  'latency_budget_ms': float(self.latency_budget_ms)}
        for stage in STAGES:
            for key, ms in self.stage_ms[stage].summary().items():
                values[f'{stage}_{key}_ms'] = ms
        return values

    def _publish_diagnostics(self) -> None:
        with self._stats_lock, self._frame_ready:
            errors, dropped, last_error = self._period_errors, self._period_dropped, \
                self._last_error
            self._period_errors = self._period_dropped = 0
        values = self.diagnostic_values()
        level, message = node_level(errors, dropped, values['end_to_end_p90_ms'],
                                    self.latency_budget_ms, last_error)
        self.last_level = level
        self.diagnostics_publisher.publish(build_diagnostic_array(
            self.get_clock().now().to_msg(), f'{self.get_fully_qualified_name()}: segmentation',
            f'{values["backend"]}/{values["device"]}', level, message, values))

    def summary_line(self) -> str:
        v = self.diagnostic_values()
        return (f'{v["fps_in"]:.1f} fps in, {v["fps_out"]:.1f} out, {v["frames_out"]} frames, '
                f'{v["frames_dropped"]} dropped, {v["errors"]} errors; compute p50 '
                f'{v["compute_p50_ms"]:.1f} ms, end-to-end p50 {v["end_to_end_p50_ms"]:.1f} / '
                f'p99 {v["end_to_end_p99_ms"]:.1f} ms; status '
                f'{LEVEL_NAMES.get(getattr(self, "last_level", None), "-")}')

    def _log_summary(self) -> None:
        self.get_logger().info(self.summary_line())

    # ------------------------------------------------------------------ shutdown
    def stop_worker(self, timeout: float = 10.0) -> None:
        """Let the worker finish its frame and join it."""
        with self._frame_ready:
            self._stopping = True
            self._frame_ready.notify_all()
        if self.worker.is_alive() and self.worker is not threading.current_thread():
            self.worker.join(timeout)

    def destroy_node(self) -> None:
        self.stop_worker()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    node = None
    executor = SingleThreadedExecutor()
    code = 0
    try:
        node = SegmentNode()
        executor.add_node(node)
        executor.spin()
    except StartupError as exc:
        rclpy.logging.get_logger(NODE_NAME).fatal(str(exc))
        code = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # Ctrl-C, SIGTERM (rclpy's handler shuts the context down) or launch shutdown
    finally:
        try:
            # The executor lets go of the node's handles first, so destroying them does not wait.
            executor.shutdown(timeout_sec=5.0)
            if node is not None:
                node.destroy_node()
            rclpy.try_shutdown()
        except KeyboardInterrupt:
            # A second Ctrl-C (a terminal's, and `ros2 launch` forwarding it) during clean-up:
            # the process is ending anyway, so no traceback.
            pass
    return code


if __name__ == '__main__':
    sys.exit(main())
