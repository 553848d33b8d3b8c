"""segment_node with inputs whose right answer is known by hand.

A model whose labels name the colour the network saw (known_models.ChannelModel) tells
whether every encoding reaches the network in the right channel order; messages built here
byte by byte (not with the node's own conversion code) hold known colours. Also: a message
with extra bytes, an inference that raises, fp16 on the CPU, a model file carrying code.
"""
import os
import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from bisenet_core.inference import Segmenter  # noqa: E402
from bisenet_ros.segment_node import SegmentNode, StartupError  # noqa: E402
from known_models import BLUE, CHANNEL_SPEC, GRAY, RED, ChannelModel  # noqa: E402

WIDTH, HEIGHT = CHANNEL_SPEC.input_size  # frames at the network size: no resize in between
WAIT_S = 20.0


def channel_segmenter(model_path, **options):
    """The node's segmenter factory, with ChannelModel instead of the file's network."""
    return Segmenter.from_model(ChannelModel(), CHANNEL_SPEC, **options)


class NodeUnderTest:
    """A SegmentNode spun with a client that publishes frames and records labels and
    diagnostics."""

    def __init__(self, context, model_path, name, **params):
        self.namespace = f'/known_{os.getpid()}_{name}'
        params = {'model_path': str(model_path), 'backend': 'torch', 'device': 'cpu',
                  'upsample': 'nearest', 'qos_reliability': 'reliable',
                  'latency_budget_ms': 0.0, **params}
        self.node = SegmentNode(channel_segmenter, context=context, namespace=self.namespace,
                                parameter_overrides=[Parameter(k, value=v)
                                                     for k, v in params.items()])
        self.client = rclpy.create_node(f'known_client_{name}', context=context)
        qos = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
        self.publisher = self.client.create_publisher(Image, f'{self.namespace}/image', qos)
        self.labels, self.levels = {}, []
        self.changed = threading.Condition()
        self.client.create_subscription(Image, f'{self.namespace}/segment_node/label',
                                        self._on_label, qos)
        self.client.create_subscription(DiagnosticArray, '/diagnostics', self._on_status, 10)
        self.executor = MultiThreadedExecutor(num_threads=2, context=context)
        for node in (self.node, self.client):
            self.executor.add_node(node)
        self.spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self.spinner.start()
        self.wait_for(lambda: self.publisher.get_subscription_count() > 0, 'the node')
        self.stamp = 0

    def _on_label(self, msg):
        labels = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
        with self.changed:
            self.labels[msg.header.stamp.sec] = labels[:, :msg.width]
            self.changed.notify_all()

    def _on_status(self, msg):
        mine = [s for s in msg.status if s.name.startswith(self.namespace + '/')]
        with self.changed:
            self.levels += [s.level for s in mine]
            self.changed.notify_all()

    def wait_for(self, predicate, what, timeout=WAIT_S):
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate():
                assert time.monotonic() < deadline, f'timed out waiting for {what}'
                self.changed.wait(0.1)

    def send(self, encoding, pixels: np.ndarray, extra_bytes=b'') -> int:
        """Publish `pixels` (already in the encoding's byte layout) with stamp.sec = a new id."""
        self.stamp += 1
        msg = Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding,
                    step=pixels.shape[1] * pixels[0, 0].nbytes,
                    is_bigendian=int(pixels.dtype.byteorder == '>'))
        msg.data = np.ascontiguousarray(pixels).tobytes() + extra_bytes
        msg.header.stamp.sec = self.stamp
        self.publisher.publish(msg)
        return self.stamp

    def label(self, stamp):
        self.wait_for(lambda: stamp in self.labels, f'the label of frame {stamp}')
        return self.labels[stamp]

    def close(self):
        self.executor.shutdown()
        self.spinner.join(5)
        self.node.destroy_node()
        self.client.destroy_node()


@pytest.fixture
def node(context, tiny_model_file, request):
    made = NodeUnderTest(context, tiny_model_file, request.node.name.split('[')[0][-20:])
    yield made
    made.close()


def _halves(left, right, dtype=np.uint8):
    """H x W x C (or H x W for one value per pixel) with `left` and `right` halves."""
    pixels = np.empty((HEIGHT, WIDTH, len(left)), dtype)
    pixels[:, :WIDTH // 2] = left
    pixels[:, WIDTH // 2:] = right
    return pixels[:, :, 0] if len(left) == 1 else pixels


def _expected(left_id, right_id):
    labels = np.full((HEIGHT, WIDTH), right_id, np.uint8)
    labels[:, :WIDTH // 2] = left_id
    return labels


# Pure red | pure blue, written in each encoding's own byte order (alpha = 7, ignored).
RED_BLUE = {
    'rgb8': _halves((255, 0, 0), (0, 0, 255)),
    'bgr8': _halves((0, 0, 255), (255, 0, 0)),
    '8UC3': _halves((0, 0, 255), (255, 0, 0)),   # OpenCV's BGR convention
    'rgba8': _halves((255, 0, 0, 7), (0, 0, 255, 7)),
    'bgra8': _halves((0, 0, 255, 7), (255, 0, 0, 7)),
}


def test_every_colour_encoding_reaches_the_network_in_rgb_order(node):
    for encoding, pixels in RED_BLUE.items():
        np.testing.assert_array_equal(node.label(node.send(encoding, pixels)),
                                      _expected(RED, BLUE), err_msg=encoding)
    # One channel: the network sees the same value in R, G and B.
    np.testing.assert_array_equal(node.label(node.send('mono8', _halves((200,), (50,)))),
                                  _expected(GRAY, GRAY))
    mono16 = _halves((200 * 256,), (50 * 256,), np.dtype('<u2'))
    np.testing.assert_array_equal(node.label(node.send('mono16', mono16)),
                                  _expected(GRAY, GRAY))
    assert node.node.cameras[0].stats.errors == 0


def test_extra_data_bytes_are_refused_and_the_next_frame_is_labelled(node):
    bad = node.send('rgb8', RED_BLUE['rgb8'], extra_bytes=bytes(7))
    node.wait_for(lambda: DiagnosticStatus.ERROR in node.levels, 'an ERROR on /diagnostics')
    assert node.node.cameras[0].stats.errors == 1
    good = node.send('bgr8', RED_BLUE['bgr8'])
    np.testing.assert_array_equal(node.label(good), _expected(RED, BLUE))
    assert bad not in node.labels


def test_an_inference_that_raises_is_survived(node):
    ChannelModel.failures_left = 1
    try:
        failed = node.send('rgb8', RED_BLUE['rgb8'])
        node.wait_for(lambda: DiagnosticStatus.ERROR in node.levels,
                      'an ERROR on /diagnostics')
        assert ChannelModel.failures_left == 0  # the frame did reach the model
        assert 'injected inference failure' in node.node.cameras[0].stats.last_error
    finally:
        ChannelModel.failures_left = 0
    after = node.send('rgb8', RED_BLUE['rgb8'])
    np.testing.assert_array_equal(node.label(after), _expected(RED, BLUE))
    assert failed not in node.labels and node.node.worker.is_alive()


def test_fp16_on_cpu_warns_and_runs_fp32(context, tiny_model_file, capfd):
    made = NodeUnderTest(context, tiny_model_file, 'fp16', precision='fp16')
    try:
        assert made.node.segmenter.precision == 'fp32'
        err = capfd.readouterr().err
        warnings = [line for line in err.splitlines() if 'WARN' in line and 'fp16' in line]
        assert warnings, err
    finally:
        made.close()


def test_a_model_file_carrying_code_is_refused_plainly(context, tmp_path):
    import torch

    ran = tmp_path / 'payload_ran'

    class Payload:
        def __reduce__(self):
            return (os.system, (f'touch {ran}',))

    evil = tmp_path / 'evil.pt'
    torch.save({'format': 'bisenet-ros-model', 'version': 1, 'spec': {}, 'x': Payload()}, evil)
    overrides = [Parameter('model_path', value=str(evil)),
                 Parameter('backend', value='torch'), Parameter('device', value='cpu')]
    with pytest.raises(StartupError) as info:
        SegmentNode(context=context, parameter_overrides=overrides)
    message = str(info.value)
    assert 'not a plain weights file' in message and 'refused for safety' in message
    assert 'truncated' not in message and '\n' not in message
    assert not ran.exists()
