"""segment_node in-process: outputs per encoding, bad input, drops, parameters, start-up errors."""
import math
import signal
import os
import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

rclpy = pytest.importorskip('rclpy')
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402

from bisenet_core.inference import Segmenter  # noqa: E402
from bisenet_ros.image_conversion import (ENCODINGS, compressed_to_network_input,  # noqa: E402
                                          image_to_network_input, image_to_numpy,
                                          numpy_to_compressed, numpy_to_image)
from bisenet_ros.ros_env import ros_child_env  # noqa: E402
from bisenet_ros.segment_node import SegmentNode, StartupError  # noqa: E402
from collecting import Collecting  # noqa: E402

TIMEOUT = 20.0
BASE = dict(backend='torch', device='cpu', upsample='nearest')


OUTPUT_TYPES = {'label': Image, 'color': Image, 'overlay': Image, 'label_small': Image,
                'label/camera_info': CameraInfo, 'label_small/camera_info': CameraInfo,
                'label/compressed': CompressedImage, 'confidence': Image}


class Harness(Collecting):
    """A SegmentNode and a test node (publishers, collected outputs) spun on one executor."""

    count = 0
    timeout = TIMEOUT

    def __init__(self, context, model, factory=Segmenter, compressed=False, **params):
        super().__init__()
        Harness.count += 1
        self.ns = f'/t{os.getpid()}_{Harness.count}'
        overrides = [Parameter(k, value=v) for k, v in
                     {**BASE, 'model_path': str(model), 'use_compressed': compressed,
                      'qos_reliability': 'reliable', **params}.items()]
        self.node = SegmentNode(factory, context=context, namespace=self.ns,
                                parameter_overrides=overrides)
        self.input = self.node.cameras[0].input  # the one camera's input side and counters
        self.stats = self.input.stats
        self.client = rclpy.create_node(f'client_{Harness.count}', context=context)
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        msg_type = CompressedImage if compressed else Image
        topic = f'{self.ns}/image' + ('/compressed' if compressed else '')
        self.publisher = self.client.create_publisher(msg_type, topic, qos)
        self.outputs = {name: [] for name in OUTPUT_TYPES}
        self.diagnostics = []
        for name in self.outputs:
            self.client.create_subscription(
                OUTPUT_TYPES[name], f'{self.ns}/segment_node/{name}',
                lambda m, n=name: self._store(self.outputs[n], m), qos)
        self.client.create_subscription(DiagnosticArray, '/diagnostics',
                                        lambda m: self._store(self.diagnostics, m), 10)
        self.executor = MultiThreadedExecutor(num_threads=2, context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.client)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        self.wait(lambda: self.publisher.get_subscription_count() > 0, 'node subscription')
        self.stamp_sec = 1000

    def publish(self, msg):
        self.stamp_sec += 1
        msg.header.stamp.sec, msg.header.stamp.nanosec = self.stamp_sec, 123
        msg.header.frame_id = 'camera_optical'
        self.publisher.publish(msg)
        return self.stamp_sec

    def output_for(self, name, stamp_sec):
        def find():
            return [m for m in self.outputs[name] if m.header.stamp.sec == stamp_sec]
        self.wait(find, f'{name} for stamp {stamp_sec}')
        return find()[0]


@pytest.fixture
def harness(context, tiny_model_file):
    made = []

    def make(**kw):
        made.append(Harness(context, tiny_model_file, **kw))
        return made[-1]
    yield make
    for h in made:
        h.close()


def _scene(height=72, width=100, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _as_encoding(rgb, encoding):
    if ENCODINGS[encoding].channels == 1:
        mono = rgb[..., 0]
        return mono.astype(np.uint16) * 257 if ENCODINGS[encoding].dtype == 'u2' else mono
    if ENCODINGS[encoding].color_order == 'bgr':
        rgb = rgb[..., ::-1]
    if ENCODINGS[encoding].channels == 4:
        rgb = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    return np.ascontiguousarray(rgb)


def test_every_encoding_matches_offline_segmenter(harness, tiny_model_file):
    h = harness()
    reference = Segmenter(tiny_model_file, **BASE)
    for i, encoding in enumerate(sorted(ENCODINGS)):
        msg = numpy_to_image(_as_encoding(_scene(seed=i), encoding), encoding)
        expected = reference.segment(*image_to_network_input(msg)).labels
        stamp = h.publish(msg)
        label = h.output_for('label', stamp)
        color = h.output_for('color', stamp)
        assert (label.encoding, label.height, label.width) == ('mono8', 72, 100), encoding
        assert (label.header.stamp.nanosec, label.header.frame_id) == (123, 'camera_optical')
        assert np.array_equal(image_to_numpy(label), expected), encoding
        assert color.encoding == 'rgb8' and color.header.frame_id == 'camera_optical'
        assert np.array_equal(image_to_numpy(color), reference.colorize(expected)), encoding
    assert h.stats.frames_out == len(ENCODINGS) and h.stats.errors == 0


def test_compressed_input_png_and_jpeg(harness, tiny_model_file):
    h = harness(compressed=True)
    reference = Segmenter(tiny_model_file, **BASE)
    for fmt in ('png', 'jpeg'):
        msg = numpy_to_compressed(_scene(seed=3), fmt)
        expected = reference.segment(*compressed_to_network_input(msg)).labels
        label = h.output_for('label', h.publish(msg))
        assert np.array_equal(image_to_numpy(label), expected), fmt


def test_optional_outputs_and_runtime_parameters(harness):
    h = harness(publish_color=False, publish_overlay=True, publish_small_label=True)
    assert 'no frame segmented yet' in h.node.summary_line()  # not "p50 nan ms"
    stamp = h.publish(numpy_to_image(_scene(), 'rgb8'))
    overlay = h.output_for('overlay', stamp)
    small = h.output_for('label_small', stamp)
    assert re.search(r'compute p50 \d+\.\d ms', h.node.summary_line())
    assert (overlay.encoding, overlay.height, overlay.width) == ('rgb8', 72, 100)
    # The tiny model's network input is 128x96: output stride 8 -> 16x12.
    assert (small.encoding, small.width, small.height) == ('mono8', 16, 12)
    assert not h.outputs['color']

    results = h.node.set_parameters([Parameter('publish_color', value=True),
                                     Parameter('upsample', value='bilinear')])
    assert all(r.successful for r in results)
    assert h.node.segmenter.upsample == 'bilinear'
    stamp = h.publish(numpy_to_image(_scene(), 'rgb8'))
    assert h.output_for('color', stamp).encoding == 'rgb8'


def test_parameter_validation_refuses_bad_values(harness):
    node = harness().node
    bad = [Parameter('upsample', value='cubic'), Parameter('latency_budget_ms', value=-1.0),
           Parameter('publish_color', value='yes'), Parameter('backend', value='torch'),
           Parameter('input_width', value=320)]
    for param in bad:
        result = node.set_parameters([param])[0]
        assert not result.successful, param.name
        assert result.reason, param.name
    assert 'must be one of' in node.set_parameters([bad[0]])[0].reason
    assert node.get_parameter('upsample').value == 'nearest'
    assert node.segmenter.upsample == 'nearest'
    assert node.set_parameters([Parameter('latency_budget_ms', value=25.0)])[0].successful
    assert node.latency_budget_ms == 25.0


def _diagnostic(h, level, after):
    def found():
        return [d for d in h.diagnostics[after:] if d.status
                and d.status[0].name.startswith(h.node.get_fully_qualified_name())
                and d.status[0].level == level]
    h.wait(found, f'diagnostics level {level!r}', timeout=6)
    return found()[-1].status[0]


def test_bad_input_is_survived_and_reported(harness):
    # No latency budget: on a loaded machine a slow frame would turn the status to WARN,
    # not OK; this test is about errors and recovery.
    h = harness(latency_budget_ms=0.0)
    good = numpy_to_image(_scene(), 'rgb8')
    empty = Image(encoding='rgb8')
    short = numpy_to_image(_scene(), 'rgb8')
    short.height = 80  # data no longer step * height
    unknown = numpy_to_image(_scene(), 'rgb8')
    unknown.encoding = 'yuv422'
    narrow = numpy_to_image(_scene(), 'rgb8')
    narrow.step = 10
    for count, msg in enumerate((empty, short, unknown, narrow), 1):
        h.publish(msg)
        # One at a time, so that none is replaced (dropped) before the worker sees it.
        h.wait(lambda: h.stats.frames_in == count and h.input.latest_frame is None,
               f'the worker to take bad frame {count}')
    before = len(h.diagnostics)
    stamp = h.publish(good)
    assert image_to_numpy(h.output_for('label', stamp)).shape == (72, 100)
    assert h.stats.errors == 4
    status = _diagnostic(h, DiagnosticStatus.ERROR, 0)
    assert 'bad input' in status.message
    values = {kv.key: kv.value for kv in status.values}
    assert values['errors'] == '4' and values['backend'] == 'torch'
    for key in ('compute_p50_ms', 'upload_p50_ms', 'end_to_end_p99_ms', 'publish_max_ms',
                'fps_in'):
        assert key in values
    _diagnostic(h, DiagnosticStatus.OK, before)


def test_corrupt_compressed_then_good(harness):
    h = harness(compressed=True)
    h.publish(CompressedImage(format='jpeg', data=b'\xff\xd8 definitely not a jpeg'))
    h.wait(lambda: h.stats.errors == 1, 'the corrupt frame to be refused')
    stamp = h.publish(numpy_to_compressed(_scene(), 'png'))
    h.output_for('label', stamp)
    assert h.stats.errors == 1 and 'cannot decode' in h.stats.last_error


def test_a_tiff_is_refused_whatever_its_format_string(harness, monkeypatch):
    import cv2
    decoded = []
    real_imdecode = cv2.imdecode
    monkeypatch.setattr(cv2, 'imdecode', lambda *a: decoded.append(1) or real_imdecode(*a))
    h = harness(compressed=True, latency_budget_ms=0.0)
    ok, tiff = cv2.imencode('.tiff', _scene(8, 8))
    h.publish(CompressedImage(format='png', data=tiff.tobytes()))
    h.wait(lambda: h.stats.errors == 1, 'the tiff to be refused')
    assert 'is TIFF data; only jpeg and png are decoded' in h.stats.last_error
    assert not decoded
    stamp = h.publish(numpy_to_compressed(_scene(), 'png'))
    h.output_for('label', stamp)  # and the node goes on


class SlowSegmenter(Segmenter):
    """Inference slower than the input rate."""

    def infer(self, batch):
        time.sleep(0.25)
        return super().infer(batch)


def test_burst_drops_old_frames_and_newest_wins(harness):
    h = harness(factory=SlowSegmenter)
    stamps = []
    for seed in range(12):
        stamps.append(h.publish(numpy_to_image(_scene(seed=seed), 'rgb8')))
        time.sleep(0.03)  # 33 Hz: faster than inference (4 Hz), slower than the executor
    h.wait(lambda: any(m.header.stamp.sec == stamps[-1] for m in h.outputs['label']),
           'the newest frame')
    h.wait(lambda: h.input.latest_frame is None
           and h.stats.frames_out + h.stats.frames_dropped == h.stats.frames_in, 'settled')
    received = [m.header.stamp.sec for m in h.outputs['label']]
    # No queue: at most the frame in inference and one waiting; the rest were replaced.
    assert h.stats.frames_dropped >= len(stamps) // 2 and len(received) <= len(stamps) // 2
    assert received == sorted(received) and received[-1] == stamps[-1]
    assert h.stats.frames_out == len(received)
    status = _diagnostic(h, DiagnosticStatus.WARN, 0)
    assert 'dropped' in status.message


def test_startup_errors_in_process(context, tiny_model_file, tmp_path):
    corrupt = tmp_path / 'corrupt.pt'
    corrupt.write_bytes(b'not a model')
    cases = [({'model_path': str(tmp_path / 'missing.pt')}, 'not found'),
             ({'model_path': str(corrupt)}, 'cannot load'),
             ({'model_path': str(tiny_model_file), 'input_width': 100}, 'input_width'),
             ({'model_path': str(tiny_model_file), 'backend': 'caffe'}, 'backend'),
             ({'model_path': str(tiny_model_file), 'input_width': 128}, 'both or neither'),
             # launch's width:=-32: the real reason, not "type STRING"
             ({'model_path': str(tiny_model_file), 'input_width': -32},
              r'input_width=-32: out of range 0\.\.8192'),
             ({'model_path': str(tiny_model_file), 'input_width': 'abc'},
              "input_width='abc': a string where an integer is expected"),
             ({'model_path': str(tiny_model_file), 'qos_depth': 0}, 'qos_depth=0: out of range'),
             ({'model_path': str(tiny_model_file), 'qos_durability': 'forever'},
              'qos_durability'),
             # a GPU index this machine does not have (none here; GPU 64 nowhere)
             ({'model_path': str(tiny_model_file), 'device': 'cuda:64'},
              r"device.*'cuda:64'"),
             ({'model_path': str(tiny_model_file), 'device': 'gpu'},
              r"device='gpu'.*cuda:N")]
    for params, message in cases:
        overrides = [Parameter(k, value=v) for k, v in {**BASE, **params}.items()]
        with pytest.raises(StartupError, match=message):
            SegmentNode(context=context, parameter_overrides=overrides)


@pytest.mark.parametrize('ros_args, reason', [
    (['-p', 'model_path:={tmp}/nope.pt'], '{tmp}/nope.pt: not found'),
    # rclpy.init used to run outside the try: a 22-line traceback for each of these.
    (['-r', 'image:=/cam/my-image'], 'must not contain characters other than alphanumerics'),
    (['-r', 'image:=/cam/'], 'must not end with a forward slash'),
    (['--log-level', 'verbose'], "Couldn't parse log level: '--log-level verbose'"),
    (['--params-file', '{tmp}/broken.yaml'], "Couldn't parse params file"),
])
def test_failed_start_is_one_fatal_line(tmp_path, ros_args, reason):
    (tmp_path / 'broken.yaml').write_text('/**:\n  ros__parameters: [unclosed\n')
    proc = subprocess.run(
        [sys.executable, '-m', 'bisenet_ros.segment_node', '--ros-args',
         *(arg.format(tmp=tmp_path) for arg in ros_args)],
        env=ros_child_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and 'FATAL' in lines[0], lines
    assert reason.format(tmp=tmp_path) in lines[0], lines


def test_diagnostic_level_rules():
    from bisenet_ros.diagnostics import ERROR, OK, WARN, node_level

    assert node_level(0, 0, 10.0, 100.0) == (OK, 'ok')
    assert node_level(0, 0, float('nan'), 100.0)[0] == OK
    assert node_level(0, 0, 150.0, 0.0)[0] == OK  # budget 0 = off
    level, message = node_level(0, 0, 150.0, 100.0)
    assert level == WARN and 'over budget' in message
    assert node_level(0, 3, 10.0, 100.0)[0] == WARN
    level, message = node_level(2, 3, 150.0, 100.0, 'bad input: x')
    assert level == ERROR and 'bad input: x' in message


def test_rolling_stats_and_rate():
    from bisenet_ros.latency import RateMeter, RollingStats

    stats = RollingStats(window=100)
    assert math.isnan(stats.summary()['p50'])
    for value in range(200):  # only the last 100 count
        stats.add(value)
    summary = stats.summary()
    assert summary['max'] == 199 and summary['p50'] == pytest.approx(149.5)
    now = [0.0]
    meter = RateMeter(window_s=5.0, clock=lambda: now[0])
    for _ in range(11):
        meter.tick()
        now[0] += 0.1
    assert meter.rate() == pytest.approx(10 / 1.1)
    now[0] += 10
    assert meter.rate() == 0.0


def test_child_env_and_default_model(monkeypatch):
    from bisenet_ros.paths import DEFAULT_MODEL_NAME, default_model_path

    monkeypatch.setenv('ROS_DOMAIN_ID', '42')
    monkeypatch.setenv('ROS_AUTOMATIC_DISCOVERY_RANGE', 'SUBNET')
    env = ros_child_env()
    assert env['ROS_DOMAIN_ID'] == '42' and env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    assert ros_child_env(7)['ROS_DOMAIN_ID'] == '7'
    with pytest.raises(ValueError, match='ROS_DOMAIN_ID'):
        ros_child_env(500)
    assert default_model_path().name == DEFAULT_MODEL_NAME
    assert default_model_path().parent.name == 'models'


# ---------------------------------------------------------------------- stopping mid-frame
SLOW_NODE = '''
import sys, time
from bisenet_core.inference import Segmenter
from bisenet_ros.segment_node import main

class Slow(Segmenter):
    """Every frame's inference takes 1.5 s and says when it starts."""
    _inside = False

    def _slow(self):
        print('INFERENCE STARTED', flush=True)
        time.sleep(1.5)

    def segment(self, *args, **kwargs):
        self._slow()
        self._inside = True
        try:
            return super().segment(*args, **kwargs)
        finally:
            self._inside = False

    def infer(self, batch):
        if not self._inside:
            self._slow()
        return super().infer(batch)

sys.exit(main(sys.argv[1:], segmenter_factory=Slow))
'''


def test_stop_during_inference_publishes_the_frame(context, tiny_model_file, tmp_path):
    """SIGINT while a frame is in inference: its label still comes out, no false error.

    rclpy's own handler used to shut the context down at once: "[ERROR] inference failed:
    RCLError ... context is invalid" and the frame's label lost.
    """
    script = tmp_path / 'slow_node.py'
    script.write_text(SLOW_NODE)
    ns = f'/stop{os.getpid()}'
    proc = subprocess.Popen(
        [sys.executable, str(script), '--ros-args', '-r', f'__ns:={ns}', '-p',
         f'model_path:={tiny_model_file}', '-p', 'backend:=torch', '-p', 'device:=cpu',
         '-p', 'qos_reliability:=reliable'],
        env=ros_child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)
    reader.start()
    client = rclpy.create_node('stop_client', context=context)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    labels = []
    try:
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        publisher = client.create_publisher(Image, f'{ns}/image', qos)
        client.create_subscription(Image, f'{ns}/segment_node/label', labels.append, qos)
        executor.add_node(client)
        threading.Thread(target=executor.spin, daemon=True).start()
        deadline = time.monotonic() + 90
        while not (publisher.get_subscription_count()
                   and client.count_publishers(f'{ns}/segment_node/label')):
            assert proc.poll() is None and time.monotonic() < deadline, ''.join(output)
            time.sleep(0.1)
        time.sleep(0.5)
        msg = numpy_to_image(_scene(), 'rgb8')
        msg.header.frame_id = 'in-flight'
        publisher.publish(msg)
        while not any('INFERENCE STARTED' in line for line in output):
            assert time.monotonic() < deadline, ''.join(output)
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, ''.join(output)
        reader.join(5)
        deadline = time.monotonic() + 10
        while not labels and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        executor.shutdown()
        client.destroy_node()
    log = ''.join(output)
    assert [m.header.frame_id for m in labels] == ['in-flight'], log
    assert 'inference failed' not in log and 'Traceback' not in log, log


# ---------------------------------------------------------------------- latency warning
class SlowWarmUp(Segmenter):
    """The first two frames take 300 ms (a cold start), the rest run at full speed."""

    slow_frames = 2

    def infer(self, batch):
        if self.slow_frames:
            self.slow_frames -= 1
            time.sleep(0.3)
        return super().infer(batch)

    def segment(self, *args, **kwargs):
        if self.slow_frames:
            self.slow_frames -= 1
            time.sleep(0.3)
        return super().segment(*args, **kwargs)


def test_latency_warning_clears_after_a_clean_second(harness):
    """Two slow warm-up frames, then no input: WARN once, then OK (it stayed WARN for 30 s+)."""
    h = harness(factory=SlowWarmUp, latency_budget_ms=100.0)
    for seed in range(2):
        h.output_for('label', h.publish(numpy_to_image(_scene(seed=seed), 'rgb8')))
    status = _diagnostic(h, DiagnosticStatus.WARN, 0)
    assert 'latency p90' in status.message and 'over budget 100' in status.message
    after = len(h.diagnostics)
    status = _diagnostic(h, DiagnosticStatus.OK, after)
    values = {kv.key: kv.value for kv in status.values}
    # The reported figures still show the slow frames; only the level judges the period.
    assert float(values['end_to_end_max_ms']) >= 300.0


# ---------------------------------------------------------------------- input QoS, DDS events
def test_transient_local_input_gets_the_frame_sent_before_start(context, tiny_model_file):
    ns = f'/latched{os.getpid()}'
    client = rclpy.create_node('latched_camera', context=context)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    publisher = client.create_publisher(Image, f'{ns}/image', latched)
    frame = numpy_to_image(_scene(), 'rgb8')
    frame.header.frame_id = 'sent before the node existed'
    publisher.publish(frame)
    labels = []
    client.create_subscription(Image, f'{ns}/segment_node/label', labels.append,
                               QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
    params = {**BASE, 'model_path': str(tiny_model_file), 'qos_reliability': 'reliable',
              'qos_durability': 'transient_local', 'qos_depth': 3}
    node = SegmentNode(context=context, namespace=ns,
                       parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(node)
    executor.add_node(client)
    threading.Thread(target=executor.spin, daemon=True).start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while not labels and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [m.header.frame_id for m in labels] == ['sent before the node existed']
        qos = node.cameras[0].input.subscription.qos_profile
        assert qos.depth == 3 and qos.durability == DurabilityPolicy.TRANSIENT_LOCAL
    finally:
        executor.shutdown()
        node.destroy_node()
        client.destroy_node()


def test_incompatible_publisher_turns_diagnostics_warn(harness):
    """A best-effort camera and a reliable subscription never match: say so, do not stay OK."""
    h = harness(latency_budget_ms=0.0)  # the harness's node subscribes reliable
    best_effort = h.client.create_publisher(
        Image, f'{h.ns}/image', QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
    h.wait(lambda: h.stats.incompatible_publishers == 1, 'the incompatible-QoS event')
    status = _diagnostic(h, DiagnosticStatus.WARN, 0)
    assert 'incompatible QoS' in status.message
    assert {kv.key: kv.value for kv in status.values}['incompatible_publishers'] == '1'
    h.client.destroy_publisher(best_effort)


class LostInfo:
    total_count, total_count_change = 7, 3


def test_frames_lost_in_transport_turn_diagnostics_warn(harness):
    h = harness(latency_budget_ms=0.0)
    h.input.on_message_lost(LostInfo())  # what rclpy calls on the middleware's event
    status = _diagnostic(h, DiagnosticStatus.WARN, 0)
    assert '3 frame(s) from the camera never reached the node (3 reported lost' in status.message
    assert {kv.key: kv.value for kv in status.values}['frames_lost'] == '3'
    after = len(h.diagnostics)
    _diagnostic(h, DiagnosticStatus.OK, after)  # per period: clears when nothing more is lost


# ---------------------------------------------------------------------- pixel cap
def _jpeg_claiming(width, height):
    """A real 8x8 jpeg whose frame header (SOF0) is patched to claim width x height."""
    data = bytearray(numpy_to_compressed(_scene(8, 8), 'jpeg').data)
    sof = data.index(b'\xff\xc0')
    data[sof + 5:sof + 9] = height.to_bytes(2, 'big') + width.to_bytes(2, 'big')
    return CompressedImage(format='jpeg', data=bytes(data))


def test_oversized_frames_are_refused_before_decoding(harness, monkeypatch):
    import cv2
    decoded = []
    real_imdecode = cv2.imdecode
    monkeypatch.setattr(cv2, 'imdecode', lambda *a: decoded.append(1) or real_imdecode(*a))
    h = harness(compressed=True, latency_budget_ms=0.0)  # default cap: 8192 x 8192
    h.publish(_jpeg_claiming(65500, 65500))
    h.wait(lambda: h.stats.errors == 1, 'the 65500x65500 jpeg to be refused')
    assert 'bad input' in h.stats.last_error and '65500x65500' in h.stats.last_error
    assert 'max_image_pixels=67108864' in h.stats.last_error
    assert not decoded  # refused from the header: nothing decoded or allocated
    stamp = h.publish(numpy_to_compressed(_scene(), 'png'))
    h.output_for('label', stamp)  # and the node goes on
    assert decoded == [1]


def test_pixel_cap_is_a_parameter_for_png_and_raw_frames(harness):
    h = harness(compressed=True, max_image_pixels=5000, latency_budget_ms=0.0)
    h.publish(numpy_to_compressed(_scene(72, 100), 'png'))  # 7200 px
    h.wait(lambda: h.stats.errors == 1, 'the 100x72 png to be refused')
    assert '100x72 image' in h.stats.last_error
    stamp = h.publish(numpy_to_compressed(_scene(50, 60), 'png'))  # 3000 px
    assert image_to_numpy(h.output_for('label', stamp)).shape == (50, 60)

    raw = harness(max_image_pixels=5000, latency_budget_ms=0.0)
    raw.publish(numpy_to_image(_scene(72, 100), 'rgb8'))
    raw.wait(lambda: raw.stats.errors == 1, 'the 100x72 raw frame to be refused')
    assert 'max_image_pixels=5000' in raw.stats.last_error


# ---------------------------------------------------------------------- camera_info
def _camera_info(stamp_sec):
    info = CameraInfo(width=100, height=72, distortion_model='plumb_bob')
    info.header.stamp.sec, info.header.stamp.nanosec = stamp_sec, 123
    info.header.frame_id = 'camera_optical'
    info.d = [0.1, -0.2, 0.0, 0.0, 0.0]
    info.k = [100.0, 0.0, 49.5, 0.0, 100.0, 35.5, 0.0, 0.0, 1.0]
    info.p = [100.0, 0.0, 49.5, -10.0, 0.0, 100.0, 35.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def test_camera_info_matched_by_stamp_and_scaled_for_the_small_label(harness):
    h = harness(publish_small_label=True)
    info_publisher = h.client.create_publisher(
        CameraInfo, f'{h.ns}/camera_info',
        QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
    h.wait(lambda: info_publisher.get_subscription_count() > 0, 'camera_info subscription')
    # Info first, then the image; and the image first, then its info: both are paired.
    info_publisher.publish(_camera_info(h.stamp_sec + 1))
    time.sleep(0.2)
    first = h.publish(numpy_to_image(_scene(), 'rgb8'))
    h.output_for('label', first)
    second = h.publish(numpy_to_image(_scene(seed=1), 'rgb8'))
    h.output_for('label', second)
    info_publisher.publish(_camera_info(second))
    for stamp in (first, second):
        label_info = h.output_for('label/camera_info', stamp)
        small_info = h.output_for('label_small/camera_info', stamp)
        assert (label_info.width, label_info.height) == (100, 72)
        assert list(label_info.k) == [100.0, 0.0, 49.5, 0.0, 100.0, 35.5, 0.0, 0.0, 1.0]
        assert label_info.header.frame_id == 'camera_optical'
        # Tiny model: network 128x96 -> 16x12 labels. sx = 16/100, sy = 12/72, by hand:
        # fx 100 -> 16, cx (49.5 + 0.5) * 0.16 - 0.5 = 7.5 (the centre of 16 columns),
        # fy 100 -> 16.667, cy (35.5 + 0.5) / 6 - 0.5 = 5.5, Tx -10 -> -1.6.
        assert (small_info.width, small_info.height) == (16, 12)
        assert np.allclose(small_info.k, [16.0, 0, 7.5, 0, 100 / 6, 5.5, 0, 0, 1])
        assert np.allclose(small_info.p, [16.0, 0, 7.5, -1.6, 0, 100 / 6, 5.5, 0, 0, 0, 1, 0])
        assert list(small_info.d) == [0.1, -0.2, 0.0, 0.0, 0.0]
    # A frame with no matching info gets none.
    lone = h.publish(numpy_to_image(_scene(seed=2), 'rgb8'))
    h.output_for('label', lone)
    time.sleep(0.3)
    assert not [m for m in h.outputs['label/camera_info'] if m.header.stamp.sec == lone]


def test_camera_info_with_binning_and_roi():
    from bisenet_ros.camera_info import scale_camera_info

    # Sensor 200 x 144; the published image is the ROI x 20..119, y 10..81, binned 2x: 50x36.
    info = CameraInfo(width=200, height=144, binning_x=2, binning_y=2)
    info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = 20, 10, 100, 72
    info.k = [200.0, 0.0, 119.5, 0.0, 200.0, 81.5, 0.0, 0.0, 1.0]
    out = scale_camera_info(info, 25, 18)  # half of the 50x36 image
    # By hand: binned cx = (119.5 - 20 + 0.5) / 2 - 0.5 = 49.5 -> (49.5 + 0.5) / 2 - 0.5 = 24.5;
    # cy = (81.5 - 10 + 0.5) / 2 - 0.5 = 35.5 -> 17.5; fx 200 / 2 / 2 = 50.
    assert np.allclose(out.k, [50.0, 0, 24.5, 0, 50.0, 17.5, 0, 0, 1])
    assert (out.width, out.height, out.binning_x, out.roi.width) == (25, 18, 0, 0)


# ---------------------------------------------------------------------- what the ids mean
CAMVID_NAMES = ['sky', 'building', 'pole', 'road', 'sidewalk', 'tree', 'sign_symbol', 'fence',
                'car', 'pedestrian', 'bicyclist']


def test_class_table_is_latched_on_classes(harness):
    import json
    from std_msgs.msg import String

    h = harness()
    tables = []
    # Subscribing after the node published it: transient local delivers it anyway.
    h.client.create_subscription(
        String, f'{h.ns}/segment_node/classes', lambda m: h._store(tables, m),
        QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                   durability=DurabilityPolicy.TRANSIENT_LOCAL))
    h.wait(lambda: tables, 'the class table')
    table = json.loads(tables[0].data)
    assert [c['name'] for c in table['classes']] == CAMVID_NAMES
    assert [c['id'] for c in table['classes']] == list(range(11))
    assert table['classes'][3]['color'] == [128, 64, 128] and table['ignore_id'] == 255


class FakeVisionClass:
    def __init__(self, class_id=0, class_name=''):
        self.class_id, self.class_name = class_id, class_name


class FakeLabelInfo:
    def __init__(self):
        self.header, self.class_map, self.threshold = None, [], -1.0


def test_label_info_published_when_vision_msgs_is_importable(context, tiny_model_file,
                                                             monkeypatch):
    """vision_msgs is not on PyPI: a stand-in module checks what the node would publish."""
    import types

    import bisenet_ros.label_info as label_info
    import bisenet_ros.segment_node as segment_node

    fake = types.ModuleType('vision_msgs.msg')
    fake.LabelInfo, fake.VisionClass = FakeLabelInfo, FakeVisionClass
    monkeypatch.setitem(sys.modules, 'vision_msgs', types.ModuleType('vision_msgs'))
    monkeypatch.setitem(sys.modules, 'vision_msgs.msg', fake)
    assert label_info.vision_msgs_types() == (FakeLabelInfo, FakeVisionClass)

    published = []

    class Recorder:
        topic_name = '~/label_info'

        def __init__(self, topic, qos):
            self.topic, self.qos = topic, qos

        def publish(self, msg):
            published.append((self.topic, self.qos, msg))

    real_create_publisher = segment_node.SegmentNode.create_publisher

    def create_publisher(self, msg_type, topic, qos, **kwargs):
        if msg_type is FakeLabelInfo:  # the fake has no type support; record instead
            return Recorder(topic, qos)
        return real_create_publisher(self, msg_type, topic, qos, **kwargs)
    monkeypatch.setattr(segment_node.SegmentNode, 'create_publisher', create_publisher)
    node = SegmentNode(context=context, namespace=f'/vision{os.getpid()}',
                       parameter_overrides=[Parameter(k, value=v) for k, v in
                                            {**BASE, 'model_path': str(tiny_model_file)}.items()])
    try:
        [(topic, qos, msg)] = published
        assert topic == '~/label_info' and qos.durability == DurabilityPolicy.TRANSIENT_LOCAL
        assert [(c.class_id, c.class_name) for c in msg.class_map] == list(
            enumerate(CAMVID_NAMES))
        assert msg.threshold == 0.0 and msg.header.stamp.sec > 0
    finally:
        node.destroy_node()


def test_without_vision_msgs_there_is_no_label_info(harness):
    from bisenet_ros.label_info import vision_msgs_types

    if vision_msgs_types() is not None:
        pytest.skip('vision_msgs is installed here')
    assert harness().node.label_info_publisher is None


def test_best_available_follows_the_cameras_reliability(harness):
    """A best-effort camera starting after the node still matches; a reliable one is repaired."""
    h = harness(qos_reliability='best_available', latency_budget_ms=0.0)
    node = h.node
    # Only the harness's reliable publisher: a reliable subscription (lost fragments re-sent).
    assert node.cameras[0].input.qos.reliability == ReliabilityPolicy.RELIABLE
    best_effort = h.client.create_publisher(
        Image, f'{h.ns}/image', QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
    # A middleware-resolved best_available would stay reliable and never match this camera.
    h.wait(lambda: node.cameras[0].input.qos.reliability == ReliabilityPolicy.BEST_EFFORT
           and best_effort.get_subscription_count() == 1, 're-subscribed best effort', 10)
    frame = numpy_to_image(_scene(), 'rgb8')
    frame.header.stamp.sec = 4242
    deadline = time.monotonic() + TIMEOUT
    while not [m for m in h.outputs['label'] if m.header.stamp.sec == 4242]:
        assert time.monotonic() < deadline, 'no label for the best-effort camera'
        best_effort.publish(frame)
        time.sleep(0.2)
    h.client.destroy_publisher(best_effort)
    h.wait(lambda: node.cameras[0].input.qos.reliability == ReliabilityPolicy.RELIABLE,
           'back to reliable once only reliable cameras are left', 10)
    h.wait(lambda: h.publisher.get_subscription_count() == 1, 'the reliable camera matched')
    h.output_for('label', h.publish(numpy_to_image(_scene(), 'rgb8')))


def test_frames_that_never_arrived_are_counted_from_sequence_gaps(harness):
    """Publication sequence numbers 1, 2, 5, 6, 9 from one camera: 2 + 2 frames missing."""
    h = harness(latency_budget_ms=0.0)
    camera = {'implementation_identifier': 'rmw_fastrtps_cpp', 'data': b'camera-a'}
    other = {'implementation_identifier': 'rmw_fastrtps_cpp', 'data': b'camera-b'}
    frame = numpy_to_image(_scene(), 'rgb8')
    for sequence, gid in ((1, camera), (2, camera), (100, other), (5, camera), (6, camera),
                          (101, other), (9, camera)):
        h.input.on_image(frame, {'publication_sequence_number': sequence,
                                 'publisher_gid': gid})
    assert h.stats.frames_missed == 4  # per publisher: camera-b's 100 -> 101 is no gap
    status = _diagnostic(h, DiagnosticStatus.WARN, 0)
    assert '4 frame(s) from the camera never reached the node (0 reported lost' in status.message
    assert {kv.key: kv.value for kv in status.values}['frames_missed'] == '4'


def test_compressed_label_decodes_to_the_same_labels(harness):
    import cv2

    h = harness(upsample='bilinear')
    for seed in range(3):
        stamp = h.publish(numpy_to_image(_scene(seed=seed), 'rgb8'))
        label = image_to_numpy(h.output_for('label', stamp))
        compressed = h.output_for('label/compressed', stamp)
        assert compressed.format == 'mono8; png compressed'
        assert compressed.header.frame_id == 'camera_optical'
        decoded = cv2.imdecode(np.frombuffer(compressed.data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(decoded, label), seed  # lossless, value for value
    assert h.node.set_parameters([Parameter('publish_compressed_label', value=False)])[0] \
        .successful
    before = len(h.outputs['label/compressed'])
    h.output_for('label', h.publish(numpy_to_image(_scene(), 'rgb8')))
    time.sleep(0.3)
    assert len(h.outputs['label/compressed']) == before


class ThreeClassConstant(torch.nn.Module):
    """Logits ln 3, 0, 0 everywhere: softmax 3/5, 1/5, 1/5, so the confidence is 0.6."""

    num_classes = 3

    def forward(self, x):
        from bisenet_core.model.bisenet import BiSeNetOutput

        logits = torch.zeros(x.shape[0], 3, x.shape[2] // 8, x.shape[3] // 8)
        logits[:, 0] = math.log(3.0)
        return BiSeNetOutput(logits, ())


def _constant_factory(path, **options):
    from bisenet_core.spec import spec_for_classes

    spec = spec_for_classes(['a', 'b', 'c'], input_size=(64, 32))
    return Segmenter.from_model(ThreeClassConstant(), spec, **options)


@pytest.mark.parametrize('upsample', ['nearest', 'bilinear'])
def test_confidence_is_the_max_softmax_probability(harness, upsample):
    h = harness(factory=_constant_factory, upsample=upsample)
    stamp = h.publish(numpy_to_image(_scene(), 'rgb8'))
    confidence = h.output_for('confidence', stamp)
    assert (confidence.encoding, confidence.width, confidence.height) == ('mono8', 100, 72)
    assert confidence.header.frame_id == 'camera_optical'
    # round(255 x 3/5) = 153 at every pixel, by hand.
    assert np.all(image_to_numpy(confidence) == 153)
    assert np.all(image_to_numpy(h.output_for('label', stamp)) == 0)


def test_frame_graph_file_runs_and_refuses_another_upsampling(harness, tiny_model_file,
                                                              tmp_path):
    """An exported frame -> labels graph (training.export --output frame) in the node: it has
    one upsampling mode, so switching it at run time is refused, and nothing else in that
    request is applied."""
    from bisenet_core.onnx_metadata import read_onnx_export_info
    from training.export import main as export_main

    path = tmp_path / 'frames_nearest.onnx'
    assert export_main(['--model', str(tiny_model_file), '--out', str(path),
                        '--output', 'frame', '--upsample', 'nearest']) == 0
    info = read_onnx_export_info(path)
    assert (info['output'], info['upsample'], info['dynamic']) == ('frame', 'nearest', True)

    h = harness(model_path=str(path), backend='onnxruntime')
    frame = _scene(seed=5)
    label = image_to_numpy(h.output_for('label', h.publish(numpy_to_image(frame, 'rgb8'))))
    expected = Segmenter(tiny_model_file, **BASE).segment(frame).labels
    assert label.shape == (72, 100)
    assert (label == expected).mean() >= 0.995

    result = h.node.set_parameters_atomically([Parameter('publish_color', value=False),
                                               Parameter('upsample', value='bilinear')])
    assert not result.successful and 'needs another export' in result.reason
    assert h.node.get_parameter('upsample').value == 'nearest'
    assert h.node.segmenter.upsample == 'nearest'
    assert h.node.publish_color is True


# ---------------------------------------------------------------------- hardening (issue 21)
def test_camera_info_problems_and_stamp_mismatch_by_hand():
    from bisenet_ros.camera_info import (MISMATCH_AFTER, CameraInfoMatcher,
                                         camera_info_problem, scale_camera_info)

    assert camera_info_problem(_camera_info(1)) == ''
    assert 'is 0x72' in camera_info_problem(CameraInfo(width=0, height=72))
    sensor_roi = CameraInfo(width=100, height=72)
    sensor_roi.roi.x_offset, sensor_roi.roi.width, sensor_roi.roi.height = 50, 60, 10
    assert 'outside the 100x72 sensor' in camera_info_problem(sensor_roi)
    with pytest.raises(ValueError, match='is 100x0'):  # was ZeroDivisionError
        scale_camera_info(CameraInfo(width=100, height=0), 16, 12)

    matcher = CameraInfoMatcher()
    for sec in range(1, MISMATCH_AFTER + 1):
        info = _camera_info(sec)
        info.header.stamp.nanosec = 123 + 1_500_000  # 1.5 ms after the image's stamp
        matcher.add_info(info)
        assert matcher.mismatch_ms() is None  # no frame yet
        header = _camera_info(sec).header
        assert matcher.add_frame(header, sec) == []
    assert matcher.mismatch_ms() == pytest.approx(1.5)
    matcher.add_info(_camera_info(MISMATCH_AFTER))  # a match clears it
    assert matcher.mismatch_ms() is None


class PlantedError(RuntimeError):
    pass


def test_an_unexpected_exception_in_a_callback_is_logged_once_counted_and_survived(
        harness, monkeypatch, capfd):
    """What a callback raises unexpectedly ended the executor's spin: no frame after it."""
    from bisenet_ros.camera_info import CameraInfoMatcher

    def broken(self, info):
        raise PlantedError('planted in add_info')
    monkeypatch.setattr(CameraInfoMatcher, 'add_info', broken)
    h = harness(latency_budget_ms=0.0)
    info_publisher = h.client.create_publisher(
        CameraInfo, f'{h.ns}/camera_info',
        QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
    h.wait(lambda: info_publisher.get_subscription_count() > 0, 'camera_info subscription')
    for sec in (1, 2):
        info_publisher.publish(_camera_info(sec))
    h.wait(lambda: h.stats.errors == 2, 'both failures counted')
    status = _diagnostic(h, DiagnosticStatus.ERROR, 0)
    assert 'the camera_info callback failed unexpectedly: PlantedError: planted in add_info' \
        in status.message
    h.output_for('label', h.publish(numpy_to_image(_scene(), 'rgb8')))  # and it goes on
    logged = [line for line in capfd.readouterr().err.splitlines()
              if 'failed unexpectedly: PlantedError' in line]
    assert len(logged) == 1 and 'test_segment_node.py' in logged[0], logged


class WorkerKiller(Segmenter):
    """An inference that raises what `except Exception` does not catch."""

    def segment(self, *args, **kwargs):
        raise SystemExit('planted: the worker thread is gone')


def test_a_dead_worker_is_an_error_on_diagnostics(harness):
    h = harness(factory=WorkerKiller, latency_budget_ms=0.0)
    h.publish(numpy_to_image(_scene(), 'rgb8'))
    h.wait(lambda: not h.node.worker.is_alive(), 'the worker to end')
    assert h.node.worker_failed()
    status = _diagnostic(h, DiagnosticStatus.ERROR, 0)
    assert 'the worker thread ended (SystemExit: planted: the worker thread is gone' \
        in status.message


DYING_NODE = '''
import sys
from bisenet_core.inference import Segmenter
from bisenet_ros.segment_node import main

class WorkerKiller(Segmenter):
    def segment(self, *args, **kwargs):
        raise SystemExit('planted: the worker thread is gone')

sys.exit(main(sys.argv[1:], segmenter_factory=WorkerKiller))
'''


def test_a_dead_worker_ends_the_process_with_code_1(context, tiny_model_file, tmp_path):
    """The worker thread used to die while the process stayed up: never restarted."""
    script = tmp_path / 'dying_node.py'
    script.write_text(DYING_NODE)
    ns = f'/dying{os.getpid()}'
    proc = subprocess.Popen(
        [sys.executable, str(script), '--ros-args', '-r', f'__ns:={ns}', '-p',
         f'model_path:={tiny_model_file}', '-p', 'backend:=torch', '-p', 'device:=cpu',
         '-p', 'qos_reliability:=reliable'],
        env=ros_child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    client = rclpy.create_node('dying_client', context=context)
    try:
        publisher = client.create_publisher(
            Image, f'{ns}/image', QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
        deadline = time.monotonic() + 90
        while not publisher.get_subscription_count():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(0.5)
        publisher.publish(numpy_to_image(_scene(), 'rgb8'))
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        client.destroy_node()
    assert proc.returncode == 1, output
    fatal = [line for line in output.splitlines() if 'FATAL' in line]
    assert len(fatal) == 1 and 'the worker thread ended (SystemExit: planted' in fatal[0], output
    assert 'Traceback' not in output


def test_incompatible_publishers_are_the_ones_present_now(harness):
    """The event's running total kept the WARN after a best-effort camera left, and grew."""
    h = harness(latency_budget_ms=0.0)  # subscribes reliable
    for _ in range(2):
        camera = h.client.create_publisher(Image, f'{h.ns}/image', QoSProfile(
            depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
        h.wait(lambda: h.stats.incompatible_publishers == 1, 'one incompatible publisher')
        h.client.destroy_publisher(camera)
        h.wait(lambda: h.stats.incompatible_publishers == 0, 'none once it is gone', 10)
    after = len(h.diagnostics)
    status = _diagnostic(h, DiagnosticStatus.OK, after)
    assert {kv.key: kv.value for kv in status.values}['incompatible_publishers'] == '0'


def test_frames_sent_before_best_available_matched_a_new_camera_are_counted(harness, capfd):
    """A best-effort camera started after the node: its frames before the re-subscription
    were neither received nor counted."""
    h = harness(qos_reliability='best_available', latency_budget_ms=0.0)
    # Publishers found at start or at the first check may have been there all along (their
    # earlier frames were not meant for the node): this camera comes after that.
    h.wait(lambda: h.input._checks >= 2, 'the first check of the publishers')
    camera = h.client.create_publisher(
        Image, f'{h.ns}/image', QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
    sent = []
    deadline = time.monotonic() + TIMEOUT
    while len([m for m in h.outputs['label'] if m.header.stamp.sec in sent]) < 3:
        assert time.monotonic() < deadline, 'no labels for the best-effort camera'
        frame = numpy_to_image(_scene(), 'rgb8')
        frame.header.stamp.sec = 5000 + len(sent)
        sent.append(frame.header.stamp.sec)
        camera.publish(frame)
        time.sleep(0.1)
    h.wait(lambda: h.input.latest_frame is None, 'settled')
    time.sleep(0.3)
    missed = len(sent) - h.stats.frames_in
    assert missed > 0  # the frames sent before it matched (best effort: nothing re-sent)
    assert h.stats.frames_missed == missed
    assert 'a publisher sent before its first frame arrived here never arrived' in \
        capfd.readouterr().err


def test_durability_mismatch_under_best_available_is_a_log_line_naming_it(
        context, tiny_model_file, capfd):
    params = {**BASE, 'model_path': str(tiny_model_file), 'qos_reliability': 'best_available',
              'qos_durability': 'transient_local'}
    ns = f'/durability{os.getpid()}'
    node = SegmentNode(context=context, namespace=ns,
                       parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    client = rclpy.create_node('volatile_camera', context=context)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(node)
    executor.add_node(client)
    threading.Thread(target=executor.spin, daemon=True).start()
    try:
        client.create_publisher(Image, f'{ns}/image',
                                QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        deadline, err, ours = time.monotonic() + TIMEOUT, '', []
        while not ours:  # the node's line, not the camera's own (rclpy's) warning
            assert time.monotonic() < deadline, err
            time.sleep(0.2)
            err += capfd.readouterr().err
            ours = [line for line in err.splitlines()
                    if 'segment_node]' in line and 'DURABILITY' in line]
        assert 'WARN' in ours[0] and 'qos_durability volatile' in ours[0], ours
        while node.cameras[0].stats.incompatible_publishers != 1:
            assert time.monotonic() < deadline, 'the durability mismatch not counted'
            time.sleep(0.1)
    finally:
        executor.shutdown()
        node.destroy_node()
        client.destroy_node()


def test_model_path_shows_the_file_in_use(context):
    """The shipped config says model_path: "" (the shipped model); the parameter said ''."""
    from bisenet_ros.paths import default_model_path

    node = SegmentNode(_constant_factory, context=context, namespace=f'/shown{os.getpid()}',
                       parameter_overrides=[Parameter(k, value=v) for k, v in
                                            {**BASE, 'model_path': ''}.items()])
    try:
        assert node.get_parameter('model_path').value == str(default_model_path())
        assert node.describe_parameter('model_path').read_only
        refused = node.set_parameters([Parameter('model_path', value='/x.pt')])[0]
        assert not refused.successful and 'read-only' in refused.reason
    finally:
        node.destroy_node()


def test_an_unexpected_failure_setting_a_parameter_is_a_refusal(harness, monkeypatch):
    """`ros2 param set` must not end the executor's spin (the node would exit)."""
    h = harness(latency_budget_ms=0.0)

    def broken(self, mode):
        raise PlantedError('planted in the upsample setter')
    monkeypatch.setattr(Segmenter, 'upsample', property(lambda self: 'nearest', broken))
    result = h.node.set_parameters([Parameter('upsample', value='bilinear')])[0]
    assert not result.successful and 'PlantedError: planted in the upsample setter' in \
        result.reason
    assert h.stats.errors == 1
    h.output_for('label', h.publish(numpy_to_image(_scene(), 'rgb8')))
