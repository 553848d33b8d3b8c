"""segment_node: BiSeNet semantic segmentation of a camera stream.

    ros2 launch bisenet_ros segment.launch.py image_topic:=/camera/image_raw
    ros2 launch bisenet_ros segment.launch.py cameras:="[front, left, right, rear]"
    ros2 run bisenet_ros segment_node --ros-args -r image:=/camera/image_raw

Subscribes to `image` (sensor_msgs/Image) or `image/compressed` (use_compressed), and to
`camera_info` (optional), and publishes, with the input's header, the outputs of
bisenet_ros/node_outputs.py (`~/label`: mono8 class ids, 255 = ignore; `~/color`, ...), what
the label ids mean (`~/label_info`, `~/classes`) and diagnostics on /diagnostics at 1 Hz.
Per camera, bisenet_ros/camera_input.py keeps only the newest frame; a worker thread runs
inference, so the executor never blocks and a slow model drops old frames, never queues.
With `cameras` (several cameras in one node), the worker takes the newest frame of every
camera that has one, decodes and checks each on its own, and runs the frames of one layout
as one batch (bisenet_ros/batching.py). See docs/node.md.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Callable

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage

from bisenet_core.inference import Segmenter
from bisenet_core.inference.segmenter import STAGES as SEGMENTER_STAGES
from bisenet_core.modelfile import ModelFileError
from bisenet_ros.batching import Prepared, group_by_layout, segment_group
from bisenet_ros.callback_guard import CallbackGuard, describe
from bisenet_ros.camera import Camera, declare_cameras
from bisenet_ros.camera_input import ERROR_LOG_THROTTLE_S, FrameHandover, InputSettings
from bisenet_ros.camera_topics import CameraTopics
from bisenet_ros.diagnostics import build_diagnostic_array
from bisenet_ros.image_conversion import (ImageConversionError, check_image_pixels,
                                          compressed_to_network_input, image_to_network_input)
from bisenet_ros.log_forwarding import forward_core_logs, stop_forwarding
from bisenet_ros.node_outputs import OUTPUT_PARAMETERS, publish_class_tables
from bisenet_ros.node_parameters import (DEFAULT_UPSAMPLE, PARAMETERS, RUNTIME_PARAMETERS,
                                         check_startup_parameters, parameter_error,
                                         runtime_refusal)
from bisenet_ros.node_process import (STOP_TIMEOUT_S, StartupError, exit_with_parent,
                                      init_rclpy)
from bisenet_ros.node_diagnostics import StatusReport
from bisenet_ros.node_status import BatchStats
from bisenet_ros.paths import default_model_path

__all__ = ['DEFAULT_UPSAMPLE', 'SegmentNode', 'StartupError', 'main']

NODE_NAME = 'segment_node'
DIAGNOSTICS_PERIOD_S = 1.0
SUMMARY_PERIOD_S = 10.0
# main() polls for a stop request this often (its own signal handlers run between polls).
SPIN_POLL_S = 0.1


class SegmentNode(Node):
    """Image in, BiSeNet labels out; inference on a worker thread, newest frame wins.

    `cameras` holds a Camera per camera (bisenet_ros/camera.py: input side, outputs,
    counters; one unnamed camera without the `cameras` parameter); the worker takes the newest
    frame of every camera that has one and batches them by layout.

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
            params = self._declare_parameters()
            check_startup_parameters(params)
            topics = declare_cameras(self, NODE_NAME)
            self.segmenter = self._create_segmenter(segmenter_factory, params)
        except StartupError:
            stop_forwarding(self._core_log_handler)
            super().destroy_node()  # no worker yet; release the node's handles
            raise
        # The runtime parameters the node reads at every frame (upsample lives in the
        # Segmenter): publish_color, ..., latency_budget_ms.
        for name in RUNTIME_PARAMETERS:
            if name != 'upsample':
                setattr(self, name, params[name])
        self.max_image_pixels = params['max_image_pixels']
        self._show_model_path(params['model_path'])
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.diagnostics_publisher = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.classes_publisher, self.label_info_publisher = publish_class_tables(
            self, self.segmenter.spec)

        self.use_compressed = params['use_compressed']
        self._input_settings = InputSettings(
            use_compressed=self.use_compressed, reliability=params['qos_reliability'],
            depth=params['qos_depth'], durability=params['qos_durability'])
        self._handover = FrameHandover(params['batch_window_ms'] / 1e3)
        # Whatever a callback or the worker raises unexpectedly is logged once, counted, survived.
        self._guard = CallbackGuard(self.get_logger())
        self.cameras = [self._add_camera(name, t) for name, t in topics.items()]
        self.batch_stats = BatchStats()
        self.status_report = StatusReport(self, params['camera_timeout_s'])
        self.last_level = None
        self.worker_failure = ''

        self.worker = threading.Thread(target=self._work, name='segment_worker', daemon=True)
        self.worker.start()
        self.diagnostics_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._guard.wrap(
            'the diagnostics timer', self._publish_diagnostics, self._count_node_error))
        self.summary_timer = self.create_timer(SUMMARY_PERIOD_S, self._guard.wrap(
            'the summary timer', self._log_summary, self._count_node_error))
        width, height = self.segmenter.input_size
        wiring = self.status_report.wiring(f'{params["qos_reliability"]}, depth '
                                           f'{params["qos_depth"]}')
        self.get_logger().info(f'ready: {self.segmenter!r} from {params["model_path"]}; '
                               f'{wiring} at {width}x{height} network input')

    def _add_camera(self, name: str, topics: CameraTopics) -> Camera:
        """A camera's subscriptions and publishers (outputs at ~/<topics.output_prefix>...)."""
        return Camera(self, name, topics, self._input_settings, self._handover, self._guard)

    def _count_node_error(self, message: str) -> None:
        """A failure of the node's own (a timer): an error of every camera."""
        for camera in self.cameras:
            camera.stats.error(message)

    # ------------------------------------------------------------------ parameters
    def _declare_parameters(self) -> dict:
        """Declare PARAMETERS (node_parameters.py); returns their values."""
        for name, default, descriptor in PARAMETERS:
            if name == 'model_path':  # made read-only once it shows the file in use
                descriptor = ParameterDescriptor(description='model file')
            try:
                self.declare_parameter(name, default, descriptor)
            except Exception as exc:  # bad values or types in a params file / launch argument
                raise StartupError(parameter_error(name, descriptor, exc)) from None
        return {name: self.get_parameter(name).value for name, _, _ in PARAMETERS}

    def _show_model_path(self, given: str) -> None:
        """`ros2 param get model_path` shows the file in use (the shipped one for '').

        model_path is read-only; rclpy lets only a writable parameter change, so it is
        declared writable, set here, then given its read-only descriptor.
        """
        in_use = str(self._model_path(given))
        if in_use != given:
            self.set_parameters([Parameter('model_path', value=in_use)])
        self.set_descriptor('model_path', ParameterDescriptor(
            type=self.describe_parameter('model_path').type, read_only=True,
            description=dict((n, d) for n, _, d in PARAMETERS)['model_path'].description))

    @staticmethod
    def _model_path(given: str) -> Path:
        return Path(given).expanduser() if given else default_model_path()

    def _create_segmenter(self, factory: Callable[..., Segmenter], params: dict) -> Segmenter:
        model_path = self._model_path(params['model_path'])
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
            reason = runtime_refusal(param)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        # upsample first: the only one the Segmenter may still refuse (nothing applied yet).
        for param in sorted(parameters, key=lambda p: p.name != 'upsample'):
            if param.name == 'upsample':
                try:
                    self.segmenter.upsample = param.value  # read at every frame by segment
                except ValueError as exc:  # e.g. an exported frame graph has one mode
                    return SetParametersResult(successful=False, reason=str(exc))
                except Exception as exc:  # refused, counted, logged once: never a dead spin
                    self._guard.report('setting upsample', exc, self._count_node_error)
                    return SetParametersResult(successful=False,
                                               reason=f'upsample: {describe(exc)}')
            else:
                setattr(self, param.name, param.value)
        return SetParametersResult(successful=True)

    def _enabled_outputs(self) -> dict[str, bool]:
        return {name: getattr(self, name) for name in OUTPUT_PARAMETERS}

    # ------------------------------------------------------------------ processing
    def _work(self) -> None:
        try:
            while True:
                taken = self._handover.take({camera: camera.input for camera in self.cameras})
                if not taken:  # stopping, and no frame in hand
                    return
                if not self._segment_cycle(taken):
                    return
        except BaseException as exc:  # never unnoticed: ERROR on /diagnostics, main() exits 1
            self.worker_failure = describe(exc)

    def worker_failed(self) -> bool:
        """True once the worker thread has ended without being asked to stop."""
        return not self.worker.is_alive() and not self._handover.stopping

    def _segment_cycle(self, taken: list[tuple[Camera, tuple]]) -> bool:
        """Segment and publish the newest frame of every camera that had one.

        Each frame is decoded and checked on its own first: a bad one is its camera's error
        and never reaches a batch. The good ones run in batches of one layout; a failed
        batch is retried frame by frame (segment_group), so only the failing frame is lost.
        Returns False when the context was shut down under the worker (by its owner).
        """
        frames = []
        for camera, (msg, received) in taken:
            t0 = time.perf_counter()
            try:
                check_image_pixels(msg, self.max_image_pixels)
                if isinstance(msg, CompressedImage):
                    image, color_order = compressed_to_network_input(msg)
                else:
                    image, color_order = image_to_network_input(msg)  # a view of msg.data
            except (ImageConversionError, ValueError) as exc:
                camera.input.report_error(f'bad input on {camera.input.topic_name}: {exc}')
                continue
            decode_ms = (time.perf_counter() - t0) * 1e3
            frames.append(Prepared(camera.name, image, color_order,
                                   (camera, msg, received, decode_ms)))
        enabled = self._enabled_outputs()
        for group in group_by_layout(frames):
            # Optional outputs any camera of the group listens to (lazy, like
            # image_transport); each camera publishes only its own wanted ones.
            requested = tuple(dict.fromkeys(
                r for f in group for r in f.context[0].outputs.requested_results(enabled)))
            t0 = time.perf_counter()
            outcomes, batch_error = segment_group(self.segmenter, group, requested)
            if batch_error is None:
                self.batch_stats.add(len(group), (time.perf_counter() - t0) * 1e3)
            else:
                self.batch_stats.add_retry()
                self.get_logger().warning(
                    f'a batch of {len(group)} frames failed ({type(batch_error).__name__}: '
                    f'{batch_error}); ran them one by one, failed: '
                    f'{", ".join(o.frame.camera for o in outcomes if o.error) or "none"}',
                    throttle_duration_sec=ERROR_LOG_THROTTLE_S)
            for outcome in outcomes:
                if not self._publish_outcome(outcome, enabled):
                    return False
        return True

    def _publish_outcome(self, outcome, enabled: dict[str, bool]) -> bool:
        """Publish one frame's outputs, or record its error; False if the context is gone."""
        camera, msg, received, decode_ms = outcome.frame.context
        where = f' on {camera.name}' if camera.name else ''
        try:
            if outcome.error is not None:
                raise outcome.error
            result = outcome.result
            t0 = time.perf_counter()
            camera.outputs.publish(result, msg.header, enabled)
            t1 = time.perf_counter()
        except Exception as exc:  # a failed inference must not stop the node
            if not self.context.ok():
                return False  # not an error: the node is being destroyed
            camera.input.report_error(f'inference failed{where}: {type(exc).__name__}: {exc}')
            return True
        # Frame -> numpy (a view, or a jpeg decode), then the Segmenter's own stages.
        camera.stats.frame_done({
            'decode': decode_ms,
            **{stage: result.timings_ms[stage] for stage in SEGMENTER_STAGES},
            'publish': (t1 - t0) * 1e3,
            'end_to_end': self._end_to_end_ms(msg.header, received, t1)})
        try:
            sizes = {'label': (result.labels.shape[1], result.labels.shape[0]),
                     'label_small': self._small_label_size()}
            camera.input.frame_done(msg.header, (msg.header, sizes))
        except Exception as exc:
            self._guard.report('publishing the masks\' CameraInfo', exc, camera.stats.error)
        return True

    def _small_label_size(self) -> tuple[int, int]:
        """(width, height) of ~/label_small: the network output."""
        width, height = self.segmenter.input_size
        stride = self.segmenter.spec.output_stride
        return width // stride, height // stride

    def _end_to_end_ms(self, header, received: float, published: float) -> float:
        """Header stamp -> publish on the node's clock; receive -> publish if unstamped."""
        stamp_ns = header.stamp.sec * 10**9 + header.stamp.nanosec
        if stamp_ns:
            age_ms = (self.get_clock().now().nanoseconds - stamp_ns) / 1e6
            if 0 <= age_ms < 3.6e6:  # a stamp from another clock (sim time, no sync) is ignored
                return age_ms
        return (published - received) * 1e3

    # ------------------------------------------------------------------ diagnostics
    def diagnostic_values(self, camera: Camera | None = None) -> dict[str, object]:
        """The model's settings and one camera's counters and timings (default: the first)."""
        seg = self.segmenter
        width, height = seg.input_size
        camera = camera or self.cameras[0]
        return {'backend': seg.backend_name, 'device': seg.device, 'precision': seg.precision,
                'network_size': f'{width}x{height}', 'upsample': seg.upsample,
                **camera.stats.values(), 'latency_budget_ms': float(self.latency_budget_ms)}

    def _publish_diagnostics(self) -> None:
        for camera in self.cameras:
            camera.input.check_publishers()
        statuses, self.last_level = self.status_report.statuses()
        self.diagnostics_publisher.publish(build_diagnostic_array(
            self.get_clock().now().to_msg(), statuses))

    def summary_line(self) -> str:
        return self.status_report.summary_line()

    def _log_summary(self) -> None:
        self.get_logger().info(self.summary_line())

    # ------------------------------------------------------------------ shutdown
    def stop_worker(self, timeout: float = 10.0) -> bool:
        """Let the worker finish the frames in hand (and those waiting) and join it.

        Returns False if it is still running after `timeout` seconds.
        """
        self._handover.stop()
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
            if node.worker_failed():
                code = _worker_ended(node, logger)
                break
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


def _worker_ended(node: SegmentNode, logger) -> int:
    """The worker thread died: ERROR on /diagnostics, one FATAL line, exit code 1."""
    node._publish_diagnostics()
    reason = node.worker_failure or 'it returned'
    logger.fatal(f'the worker thread ended ({reason}): no frame can be labelled any more; '
                 'exiting with code 1 so that ros2 launch (respawn) or systemd can restart '
                 'the node')
    return 1


if __name__ == '__main__':
    sys.exit(main())
