"""segment_node with several cameras, in-process: batch invariance against the single-camera
node, cameras of different sizes, a camera slow to decode, each camera's CameraInfo, a silent
and a vanishing camera, a bad frame or a failing batch isolated to its camera, per-camera
diagnostics, parameter errors, the shipped six-camera config."""
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402

from bisenet_core.inference import Segmenter  # noqa: E402
from bisenet_ros.image_conversion import (image_to_network_input, image_to_numpy,  # noqa: E402
                                          numpy_to_compressed, numpy_to_image)
from bisenet_ros.segment_node import SegmentNode, StartupError  # noqa: E402
from collecting import Collecting  # noqa: E402

TIMEOUT = 30.0
BASE = dict(backend='torch', device='cpu', upsample='bilinear', precision='fp32',
            qos_reliability='reliable')


class Rig(Collecting):
    """A SegmentNode and a client with one publisher per camera ('' = the single camera)."""

    count = 0
    timeout = TIMEOUT

    def __init__(self, context, model, cameras=(), factory=Segmenter, compressed=False,
                 **params):
        super().__init__()
        Rig.count += 1
        self.ns = f'/mc{os.getpid()}_{Rig.count}'
        values = {**BASE, 'model_path': str(model), 'use_compressed': compressed, **params}
        if cameras:
            values['cameras'] = list(cameras)
        self.node = SegmentNode(factory, context=context, namespace=self.ns,
                                parameter_overrides=[Parameter(k, value=v)
                                                     for k, v in values.items()])
        self.client = rclpy.create_node(f'mc_client_{Rig.count}', context=context)
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.labels = {}
        self.publishers = {}
        self.info_publishers = {}
        self.infos = {}
        self.diagnostics = []
        for camera in cameras or ('',):
            image = f'{self.ns}/{camera}/image_raw' if camera else f'{self.ns}/image'
            label = f'{self.ns}/segment_node/{camera + "/" if camera else ""}label'
            self.publishers[camera] = self.client.create_publisher(
                CompressedImage if compressed else Image,
                f'{image}/compressed' if compressed else image, qos)
            self.labels[camera] = []
            self.client.create_subscription(
                Image, label, lambda m, c=camera: self._store(self.labels[c], m), qos)
            self.info_publishers[camera] = self.client.create_publisher(
                CameraInfo, image.rpartition('/')[0] + '/camera_info', qos)
            self.infos[camera] = []
            self.client.create_subscription(
                CameraInfo, f'{label}/camera_info',
                lambda m, c=camera: self._store(self.infos[c], m), qos)
        self.client.create_subscription(DiagnosticArray, '/diagnostics',
                                        lambda m: self._store(self.diagnostics, m), 10)
        self.executor = MultiThreadedExecutor(num_threads=2, context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.client)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        self.wait(lambda: all(p.get_subscription_count() for p in self.publishers.values()),
                  'node subscriptions')
        self.stamp_sec = 1000

    def warm_up(self, height=72, width=100):
        """One frame per camera, each labelled: every camera is then active, so a batch
        window waits for all of them."""
        for camera in self.publishers:
            image = numpy_to_image(_scene(height, width, 99), 'rgb8')
            self.label_for(camera, self.publish(camera, image))

    def batch_sizes(self):
        """{batch size: count} so far."""
        text = self.node.batch_stats.values()['batch_sizes_seen']
        return {int(k): int(v) for k, v in (p.split('x') for p in text.split())} \
            if text != '-' else {}

    def camera(self, name):
        return next(c for c in self.node.cameras if c.name == name)

    def publish(self, camera, msg, stamp_sec=None):
        """Publish with a stamp of its own (default: the next one) and frame_id <camera>."""
        if stamp_sec is None:
            self.stamp_sec += 1
            stamp_sec = self.stamp_sec
        msg.header.stamp.sec, msg.header.stamp.nanosec = stamp_sec, 77
        msg.header.frame_id = f'{camera or "single"}_optical'
        self.publishers[camera].publish(msg)
        return stamp_sec

    def label_for(self, camera, stamp_sec):
        def find():
            return [m for m in self.labels[camera] if m.header.stamp.sec == stamp_sec]
        self.wait(find, f'label of {camera or "the camera"} for stamp {stamp_sec}')
        return find()[0]

    def status(self, suffix, level=None, after=0, timeout=8.0):
        """The newest DiagnosticStatus '<node>: segmentation<suffix>' (of `level`)."""
        name = f'{self.node.get_fully_qualified_name()}: segmentation{suffix}'

        def found():
            return [s for d in self.diagnostics[after:] for s in d.status
                    if s.name == name and (level is None or s.level == level)]
        self.wait(found, f'status {name!r} at level {level}', timeout)
        return found()[-1]


@pytest.fixture
def rig(context, tiny_model_file):
    made = []

    def make(cameras=(), **kw):
        made.append(Rig(context, tiny_model_file, cameras, **kw))
        return made[-1]
    yield make
    for r in made:
        r.close()


def _scene(height, width, seed):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _values(status):
    return {kv.key: kv.value for kv in status.values}


def test_batched_labels_equal_the_single_camera_nodes(rig):
    """Three same-size cameras batched (window), CPU fp32: >= 99.99 % of pixels agree."""
    single = rig()
    multi = rig(['front', 'left', 'right'], batch_window_ms=3000.0)
    multi.warm_up()
    cameras = ['front', 'left', 'right']
    agree = total = 0
    for frame in range(3):
        stamps = {}
        for index, camera in enumerate(cameras):
            image = _scene(72, 100, seed=10 * frame + index)
            stamps[camera] = (multi.publish(camera, numpy_to_image(image, 'rgb8')), image)
        for camera, (stamp, image) in stamps.items():
            batched = image_to_numpy(multi.label_for(camera, stamp))
            alone = image_to_numpy(single.label_for('', single.publish('',
                                                                       numpy_to_image(image,
                                                                                      'rgb8'))))
            assert batched.shape == (72, 100)
            agree += int((batched == alone).sum())
            total += batched.size
    assert agree / total >= 0.9999, agree / total
    sizes = multi.node.batch_stats.values()['batch_sizes_seen']
    assert '3x' in sizes, sizes   # they really ran as one batch


def test_cameras_of_different_sizes(rig, tiny_model_file):
    reference = Segmenter(tiny_model_file, **{k: BASE[k] for k in
                                              ('backend', 'device', 'upsample', 'precision')})
    multi = rig(['wide', 'narrow'], batch_window_ms=3000.0)
    for camera, (height, width) in (('wide', (72, 100)), ('narrow', (40, 56))):
        msg = numpy_to_image(_scene(height, width, seed=width), 'bgr8')
        expected = reference.segment(*image_to_network_input(msg)).labels
        label = multi.label_for(camera, multi.publish(camera, msg))
        assert (label.height, label.width, label.header.frame_id) == (
            height, width, f'{camera}_optical')
        assert np.array_equal(image_to_numpy(label), expected), camera


def test_a_camera_slow_to_decode_does_not_starve_the_other(rig):
    """Compressed input: a 1600x1200 PNG camera (tens of ms to decode) beside a small one,
    both at 10 Hz: both keep being labelled, each frame on its own camera."""
    multi = rig(['big', 'small'], compressed=True, latency_budget_ms=0.0)
    big = numpy_to_compressed(_scene(1200, 1600, 1), 'png')
    small = numpy_to_compressed(_scene(48, 64, 2), 'png')
    for _ in range(15):
        multi.publish('big', big)
        multi.publish('small', small)
        time.sleep(0.1)

    def settled():
        return all(s.frames_out + s.frames_dropped + s.errors == s.frames_in == 15
                   for s in (multi.camera('big').stats, multi.camera('small').stats))
    multi.wait(settled, 'every frame labelled or replaced')
    for camera, (height, width) in (('big', (1200, 1600)), ('small', (48, 64))):
        stats = multi.camera(camera).stats
        assert stats.errors == 0 and stats.frames_out >= 4, (camera, stats.values())
        label = multi.labels[camera][-1]
        assert (label.height, label.width) == (height, width)
        assert label.header.frame_id == f'{camera}_optical'


def test_each_camera_gets_its_own_camera_info_with_its_own_header(rig):
    """Two cameras, the same stamp: each mask's CameraInfo is its own camera's calibration."""
    multi = rig(['front', 'left'])
    multi.wait(lambda: all(p.get_subscription_count() for p in multi.info_publishers.values()),
               'camera_info subscriptions')
    stamp = 7000
    for camera, (height, width, focal) in (('front', (72, 100, 80.0)),
                                           ('left', (48, 64, 40.0))):
        info = CameraInfo(width=width, height=height, distortion_model='plumb_bob')
        info.header.stamp.sec, info.header.stamp.nanosec = stamp, 77
        info.header.frame_id = f'{camera}_optical'
        info.k = [focal, 0.0, width / 2, 0.0, focal, height / 2, 0.0, 0.0, 1.0]
        info.p = [focal, 0.0, width / 2, 0.0, 0.0, focal, height / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
        multi.info_publishers[camera].publish(info)
        multi.publish(camera, numpy_to_image(_scene(height, width, 3), 'rgb8'), stamp)
    for camera, (height, width, focal) in (('front', (72, 100, 80.0)),
                                           ('left', (48, 64, 40.0))):
        multi.wait(lambda c=camera: multi.infos[c], f'{camera} label/camera_info')
        info = multi.infos[camera][0]
        assert (info.header.stamp.sec, info.header.frame_id) == (stamp, f'{camera}_optical')
        assert (info.width, info.height, info.k[0]) == (width, height, focal), camera


def test_a_silent_and_a_vanishing_camera_leave_the_others_running(rig):
    multi = rig(['front', 'left', 'rear'], latency_budget_ms=0.0, camera_timeout_s=2.0)
    image = numpy_to_image(_scene(48, 64, 1), 'rgb8')
    for _ in range(2):                        # left sends two frames, then vanishes
        multi.label_for('left', multi.publish('left', image))
    for _ in range(8):                        # front keeps going; rear never sends
        multi.label_for('front', multi.publish('front', image))
        time.sleep(0.4)
    rear = multi.status(' rear', DiagnosticStatus.WARN)
    assert 'no frame' in rear.message, rear.message
    left = multi.status(' left', DiagnosticStatus.WARN, after=len(multi.diagnostics) - 1)
    assert 'no frame for' in left.message, left.message
    front = multi.status(' front', after=len(multi.diagnostics) - 1)
    assert front.level == DiagnosticStatus.OK, front.message
    assert multi.camera('front').stats.frames_out == 8
    assert multi.camera('left').stats.frames_out == 2
    assert multi.camera('rear').stats.frames_in == 0


def test_a_bad_frame_stays_on_its_camera_and_the_cycle_is_labelled(rig):
    multi = rig(['front', 'left', 'right'], batch_window_ms=3000.0, latency_budget_ms=0.0)
    multi.warm_up()
    before = multi.batch_sizes()
    bad = numpy_to_image(_scene(72, 100, 2), 'rgb8')
    bad.step = 10                             # shorter than a row: bad input
    stamp = 5000
    multi.publish('left', bad, stamp)
    multi.publish('front', numpy_to_image(_scene(72, 100, 3), 'rgb8'), stamp)
    multi.publish('right', numpy_to_image(_scene(72, 100, 4), 'rgb8'), stamp)
    multi.label_for('front', stamp)
    multi.label_for('right', stamp)
    assert not [m for m in multi.labels['left'] if m.header.stamp.sec == stamp]
    assert multi.camera('left').stats.errors == 1
    assert multi.camera('front').stats.errors == multi.camera('right').stats.errors == 0
    after = multi.batch_sizes()
    assert {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)} == {
        2: 1}  # front and right in one batch; left never reached it
    assert multi.node.batch_stats.values()['batch_retries'] == 0
    left = multi.status(' left', DiagnosticStatus.ERROR)
    assert 'bad input' in left.message and 'left' in left.message, left.message
    front = multi.status(' front', after=len(multi.diagnostics) - 1)
    assert front.level != DiagnosticStatus.ERROR, front.message


class CursedFrames(Segmenter):
    """A frame whose first pixel is (13, 13, 13) makes inference raise: alone, and for the
    whole batch it is in (what a shape bug or a CUDA error does)."""

    @staticmethod
    def _check(image):
        if np.all(np.asarray(image)[0, 0, :3] == 13):
            raise RuntimeError('cursed frame')

    def segment(self, image, *args, **kwargs):
        self._check(image)
        return super().segment(image, *args, **kwargs)

    def segment_batch(self, images, *args, **kwargs):
        for image in images:
            self._check(image)
        return super().segment_batch(images, *args, **kwargs)


def test_a_failing_batch_is_retried_and_the_failing_camera_named(rig):
    multi = rig(['front', 'left', 'right'], factory=CursedFrames, batch_window_ms=3000.0,
                latency_budget_ms=0.0)
    multi.warm_up()
    cursed = _scene(72, 100, 5)
    cursed[0, 0] = 13
    stamp = 6000
    multi.publish('front', numpy_to_image(_scene(72, 100, 6), 'rgb8'), stamp)
    multi.publish('left', numpy_to_image(cursed, 'rgb8'), stamp)
    multi.publish('right', numpy_to_image(_scene(72, 100, 7), 'rgb8'), stamp)
    multi.label_for('front', stamp)
    multi.label_for('right', stamp)
    assert not [m for m in multi.labels['left'] if m.header.stamp.sec == stamp]
    left = multi.status(' left', DiagnosticStatus.ERROR)
    assert 'inference failed' in left.message and 'cursed' in left.message, left.message
    node = _values(multi.status('', after=len(multi.diagnostics) - 1))
    assert node['batch_retries'] == '1'
    assert multi.camera('front').stats.errors == 0


def test_per_camera_and_node_diagnostics(rig):
    multi = rig(['front', 'rear'], latency_budget_ms=0.0)
    for camera in ('front', 'rear', 'front'):
        multi.label_for(camera, multi.publish(camera, numpy_to_image(_scene(48, 64, 0),
                                                                     'rgb8')))
    after = len(multi.diagnostics)
    front = _values(multi.status(' front', after=after))
    rear = _values(multi.status(' rear', after=after))
    assert (front['frames_in'], front['frames_out'], rear['frames_out']) == ('2', '2', '1')
    for values in (front, rear):
        for key in ('fps_in', 'fps_out', 'frames_dropped', 'frames_lost', 'frames_missed',
                    'errors', 'end_to_end_p50_ms', 'end_to_end_p90_ms', 'end_to_end_p99_ms'):
            assert key in values, key
    assert float(front['end_to_end_p50_ms']) > 0
    node = _values(multi.status('', after=after))
    assert node['cameras'] == 'front, rear' and node['backend'] == 'torch'
    assert node['batches'] == '3' and node['batch_sizes_seen'] == '1x3'
    assert float(node['batch_compute_p50_ms']) > 0 and float(node['memory_rss_mb']) > 50
    summary = multi.node.summary_line()
    assert 'front' in summary and 'rear' in summary


@pytest.mark.parametrize('params, reason', [
    ({'cameras': ['front', 'front']}, "camera 'front' is listed twice"),
    ({'cameras': ['front', '']}, "camera 2 (''): empty name"),
    ({'cameras': ['front', 'le ft']}, 'one ROS name token'),
    ({'cameras': ['front'], 'front.image_topic': '/a/b-c'}, 'not a valid ROS topic name'),
    ({'cameras': ['front'], 'front.imagetopic': '/a/b'}, "no parameter 'imagetopic'"),
    ({'batch_window_ms': -5.0}, 'batch_window_ms=-5.0: out of range'),
])
def test_camera_parameter_errors(context, tiny_model_file, params, reason):
    overrides = [Parameter(k, value=v) for k, v in
                 {**BASE, 'model_path': str(tiny_model_file), **params}.items()]
    with pytest.raises(StartupError) as caught:
        SegmentNode(context=context, parameter_overrides=overrides)
    assert reason in str(caught.value) and '\n' not in str(caught.value), str(caught.value)


def test_the_shipped_six_camera_config_starts_a_six_camera_node(tiny_model_file):
    """config/surround_6cam.yaml as a params file: six cameras, its per-camera topics."""
    config = Path(__file__).resolve().parents[1] / 'config' / 'surround_6cam.yaml'
    context = rclpy.Context()
    rclpy.init(args=['--ros-args', '--params-file', str(config)], context=context,
               domain_id=int(os.environ['ROS_DOMAIN_ID']))
    node = None
    try:
        node = SegmentNode(context=context, namespace=f'/six{os.getpid()}', parameter_overrides=[
            Parameter(k, value=v) for k, v in
            {**BASE, 'model_path': str(tiny_model_file)}.items()])
        topics = {c.name: (c.input.topic_name, c.outputs.topic_name('label'))
                  for c in node.cameras}
        assert list(topics) == ['front', 'front_left', 'front_right', 'back', 'back_left',
                                'back_right']
        assert topics['front'] == ('/sensing/camera/front/image_rect_color',
                                   f'/six{os.getpid()}/segment_node/front/label')
        assert topics['back_left'][0] == f'/six{os.getpid()}/back_left/image_raw'
        infos = {c.name: c.input.camera_info.topic_name for c in node.cameras}
        assert infos['back'] == '/sensing/camera/back/camera_info_rect'
        assert infos['front'] == '/sensing/camera/front/camera_info'
        assert node.segmenter.input_size == (640, 384)
    finally:
        if node is not None:
            node.destroy_node()
        context.try_shutdown()
