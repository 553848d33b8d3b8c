"""segment_node in-process: outputs per encoding, bad input, drops, parameters, start-up errors."""
import math
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from bisenet_core.inference import Segmenter  # noqa: E402
from bisenet_ros.image_conversion import (ENCODINGS, compressed_to_network_input,  # noqa: E402
                                          image_to_network_input, image_to_numpy,
                                          numpy_to_compressed, numpy_to_image)
from bisenet_ros.ros_env import ros_child_env  # noqa: E402
from bisenet_ros.segment_node import SegmentNode, StartupError  # noqa: E402

TIMEOUT = 20.0
BASE = dict(backend='torch', device='cpu', upsample='nearest')


class Harness:
    """A SegmentNode and a test node (publishers, collected outputs) spun on one executor."""

    count = 0

    def __init__(self, context, model, factory=Segmenter, compressed=False, **params):
        Harness.count += 1
        self.ns = f'/t{os.getpid()}_{Harness.count}'
        overrides = [Parameter(k, value=v) for k, v in
                     {**BASE, 'model_path': str(model), 'use_compressed': compressed,
                      'qos_reliability': 'reliable', **params}.items()]
        self.node = SegmentNode(factory, context=context, namespace=self.ns,
                                parameter_overrides=overrides)
        self.client = rclpy.create_node(f'client_{Harness.count}', context=context)
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        msg_type = CompressedImage if compressed else Image
        topic = f'{self.ns}/image' + ('/compressed' if compressed else '')
        self.publisher = self.client.create_publisher(msg_type, topic, qos)
        self.outputs = {name: [] for name in ('label', 'color', 'overlay', 'label_small')}
        self.diagnostics = []
        self.lock = threading.Condition()
        for name in self.outputs:
            self.client.create_subscription(Image, f'{self.ns}/segment_node/{name}',
                                            lambda m, n=name: self._store(self.outputs[n], m),
                                            qos)
        self.client.create_subscription(DiagnosticArray, '/diagnostics',
                                        lambda m: self._store(self.diagnostics, m), 10)
        self.executor = MultiThreadedExecutor(num_threads=2, context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.client)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        self.wait(lambda: self.publisher.get_subscription_count() > 0, 'node subscription')
        self.stamp_sec = 1000

    def _store(self, items, msg):
        with self.lock:
            items.append(msg)
            self.lock.notify_all()

    def wait(self, predicate, what, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        with self.lock:
            while not predicate():
                left = deadline - time.monotonic()
                assert left > 0, f'timed out waiting for {what}'
                self.lock.wait(min(left, 0.1))

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

    def close(self):
        self.executor.shutdown()
        self.thread.join(5)
        self.node.destroy_node()
        self.client.destroy_node()
        assert not self.node.worker.is_alive()


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
    assert h.node.frames_out == len(ENCODINGS) and h.node.errors == 0


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
    stamp = h.publish(numpy_to_image(_scene(), 'rgb8'))
    overlay = h.output_for('overlay', stamp)
    small = h.output_for('label_small', stamp)
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
        h.wait(lambda: h.node.frames_in == count and h.node.latest_frame is None,
               f'the worker to take bad frame {count}')
    before = len(h.diagnostics)
    stamp = h.publish(good)
    assert image_to_numpy(h.output_for('label', stamp)).shape == (72, 100)
    assert h.node.errors == 4
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
    h.wait(lambda: h.node.errors == 1, 'the corrupt frame to be refused')
    stamp = h.publish(numpy_to_compressed(_scene(), 'png'))
    h.output_for('label', stamp)
    assert h.node.errors == 1 and 'cannot decode' in h.node._last_error


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
    h.wait(lambda: h.node.latest_frame is None
           and h.node.frames_out + h.node.frames_dropped == h.node.frames_in, 'settled')
    received = [m.header.stamp.sec for m in h.outputs['label']]
    # No queue: at most the frame in inference and one waiting; the rest were replaced.
    assert h.node.frames_dropped >= len(stamps) // 2 and len(received) <= len(stamps) // 2
    assert received == sorted(received) and received[-1] == stamps[-1]
    assert h.node.frames_out == len(received)
    status = _diagnostic(h, DiagnosticStatus.WARN, 0)
    assert 'dropped' in status.message


def test_startup_errors_in_process(context, tiny_model_file, tmp_path):
    corrupt = tmp_path / 'corrupt.pt'
    corrupt.write_bytes(b'not a model')
    cases = [({'model_path': str(tmp_path / 'missing.pt')}, 'not found'),
             ({'model_path': str(corrupt)}, 'cannot load'),
             ({'model_path': str(tiny_model_file), 'input_width': 100}, 'input_width'),
             ({'model_path': str(tiny_model_file), 'backend': 'caffe'}, 'backend'),
             ({'model_path': str(tiny_model_file), 'input_width': 128}, 'both or neither')]
    for params, message in cases:
        overrides = [Parameter(k, value=v) for k, v in {**BASE, **params}.items()]
        with pytest.raises(StartupError, match=message):
            SegmentNode(context=context, parameter_overrides=overrides)


def test_missing_model_exits_1_with_one_line(tmp_path):
    missing = tmp_path / 'nope.pt'
    proc = subprocess.run(
        [sys.executable, '-m', 'bisenet_ros.segment_node', '--ros-args', '-p',
         f'model_path:={missing}'], env=ros_child_env(), capture_output=True, text=True,
        timeout=120)
    assert proc.returncode == 1
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and 'FATAL' in lines[0] and str(missing) in lines[0], lines
    assert 'Traceback' not in proc.stderr


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
