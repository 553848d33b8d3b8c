"""Bad input and misconfigured cameras fed to segment_node as launched (issue 21).

One `ros2 launch bisenet_ros segment.launch.py` for the module; a camera in this process
sends what a broken or misconfigured driver would: a CameraInfo of size 0, CompressedImage on
the raw topic, a best-effort camera_info started after the node, camera_info stamped apart
from the images. The node must say so in its log and on /diagnostics and keep labelling.
"""
import os
import threading
import time

import numpy as np
import pytest

pytest.importorskip('launch')
pytest.importorskip('launch_ros')
rclpy = pytest.importorskip('rclpy')
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402

from bisenet_ros.image_conversion import numpy_to_compressed, numpy_to_image  # noqa: E402
from test_launch import Launch  # noqa: E402

NS = '/hardening'
IMAGE = f'{NS}/camera/image_raw'
INFO = f'{NS}/camera/camera_info'
NODE = f'{NS}/segment_node'
WAIT_S = 30.0
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
BEST_EFFORT = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)


class Camera:
    """A camera driver's side: frames, CameraInfo; collects labels, their CameraInfo, status."""

    def __init__(self):
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=int(os.environ['ROS_DOMAIN_ID']))
        self.node = rclpy.create_node('hardening_camera', context=self.context)
        self.image = self.node.create_publisher(Image, IMAGE, RELIABLE)
        self.info = self.node.create_publisher(CameraInfo, INFO, RELIABLE)
        self.got = {'label': [], 'label/camera_info': [], 'status': []}
        self.changed = threading.Condition()
        for name, msg_type in (('label', Image), ('label/camera_info', CameraInfo)):
            self.node.create_subscription(msg_type, f'{NODE}/{name}',
                                          lambda m, n=name: self._store(n, m), RELIABLE)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_status, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self.spinner.start()
        self.sec = 100

    def _store(self, name, msg):
        with self.changed:
            self.got[name].append(msg)
            self.changed.notify_all()

    def _on_status(self, msg):
        for status in msg.status:
            if status.name.startswith(NODE):
                self._store('status', status)

    def wait(self, predicate, what, launch, timeout=WAIT_S):
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate():
                assert launch.process.poll() is None, f'launch exited:\n{launch.text()}'
                assert time.monotonic() < deadline, f'timed out: {what}\n{launch.text()}'
                self.changed.wait(0.1)

    def next_stamp(self) -> int:
        self.sec += 1
        return self.sec

    def frame(self, sec: int, publisher=None) -> None:
        msg = numpy_to_image(np.full((48, 80, 3), 90, np.uint8), 'rgb8')
        msg.header.stamp.sec, msg.header.frame_id = sec, 'hardening_camera'
        (publisher or self.image).publish(msg)

    def label(self, sec: int, launch) -> Image:
        self.wait(lambda: any(m.header.stamp.sec == sec for m in self.got['label']),
                  f'the label of frame {sec}', launch)
        return next(m for m in self.got['label'] if m.header.stamp.sec == sec)

    def status(self, launch, level, contains, after=0) -> DiagnosticStatus:
        def found():
            return [s for s in self.got['status'][after:]
                    if s.level == level and contains in s.message]
        self.wait(found, f'a status {level!r} with {contains!r}', launch)
        return found()[0]

    def close(self):
        self.executor.shutdown()
        self.spinner.join(5)
        self.node.destroy_node()
        self.context.try_shutdown()


def camera_info(sec: int, nanosec: int = 0, width: int = 80, height: int = 48) -> CameraInfo:
    info = CameraInfo(width=width, height=height, distortion_model='plumb_bob')
    info.header.stamp.sec, info.header.stamp.nanosec = sec, nanosec
    info.k = [50.0, 0.0, 39.5, 0.0, 50.0, 23.5, 0.0, 0.0, 1.0]
    info.p = [50.0, 0.0, 39.5, 0.0, 0.0, 50.0, 23.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


@pytest.fixture(scope='module')
def launched(tmp_path_factory, tiny_model_file):
    """(launch, camera): the node launched once, the camera matched to it."""
    log = tmp_path_factory.mktemp('hardening') / 'launch.log'
    launch = Launch(log, f'model:={tiny_model_file}', 'backend:=torch', 'device:=cpu',
                    f'image_topic:={IMAGE}', f'namespace:={NS}')
    camera = Camera()
    try:
        launch.wait_ready()
        camera.wait(lambda: camera.image.get_subscription_count()
                    and camera.info.get_subscription_count()
                    and camera.node.count_publishers(f'{NODE}/label'),
                    'the node and the camera matched', launch, timeout=90)
        time.sleep(0.5)  # discovery is two-sided: let the node's readers see us too
        yield launch, camera
    finally:
        camera.close()
        launch.close()


def _log_lines(launch, *words):
    return [line for line in launch.text().splitlines() if all(w in line for w in words)]


def test_zero_size_camera_info_is_bad_input_and_labelling_goes_on(launched):
    """Width/height 0 raised ZeroDivisionError: before its frame it killed the worker (no
    label ever again, diagnostics OK), after it the node exited with a traceback."""
    launch, cam = launched
    before = cam.next_stamp()
    cam.info.publish(camera_info(before, width=0, height=0))  # info first: the worker path
    time.sleep(0.3)
    cam.frame(before)
    cam.label(before, launch)
    after = cam.next_stamp()
    cam.frame(after)
    cam.label(after, launch)
    cam.info.publish(camera_info(after, width=640, height=0))  # after: the executor path
    status = cam.status(launch, DiagnosticStatus.ERROR, 'CameraInfo width x height is 640x0')
    assert 'bad input on /hardening/camera/camera_info' in status.message
    good = cam.next_stamp()
    cam.frame(good)
    cam.info.publish(camera_info(good))
    cam.wait(lambda: any(m.header.stamp.sec == good for m in cam.got['label/camera_info']),
             'the CameraInfo of a good frame', launch)
    assert not [m for m in cam.got['label/camera_info'] if m.header.stamp.sec in (before, after)]
    assert len(_log_lines(launch, 'ERROR', 'CameraInfo width x height is')) >= 1
    assert 'Traceback' not in launch.text() and launch.process.poll() is None


def test_compressed_publisher_on_the_raw_topic_is_named_with_the_fix(launched):
    launch, cam = launched
    # Another process's participant: DDS refuses two types for one topic in one participant.
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(os.environ['ROS_DOMAIN_ID']))
    driver = rclpy.create_node('compressed_driver', context=context)
    try:
        # The easiest mistake: image_topic:=/camera/image_raw/compressed, read as raw.
        wrong = driver.create_publisher(CompressedImage, IMAGE, RELIABLE)
        wrong.publish(numpy_to_compressed(np.zeros((48, 80, 3), np.uint8), 'jpeg'))
        status = cam.status(launch, DiagnosticStatus.WARN, 'sensor_msgs/msg/CompressedImage')
        assert 'use_compressed:=true' in status.message
        assert f'image_topic:={IMAGE}' in status.message
        time.sleep(2.5)  # more diagnostics periods: still one log line
        warnings = _log_lines(launch, 'WARN', 'sensor_msgs/msg/CompressedImage', IMAGE,
                              'use_compressed:=true')
        assert len(warnings) == 1, launch.text()
    finally:
        driver.destroy_node()
        context.try_shutdown()
    after = len(cam.got['status'])
    cam.status(launch, DiagnosticStatus.OK, 'ok', after)  # gone with the publisher


def test_best_effort_camera_info_started_after_the_node_is_matched(launched):
    """The node subscribed to camera_info before any camera existed (resolved reliable):
    a best-effort camera_info, as most drivers publish it, never matched."""
    launch, cam = launched
    late = cam.node.create_publisher(CameraInfo, INFO, BEST_EFFORT)
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            sec = cam.next_stamp()
            late.publish(camera_info(sec))
            cam.frame(sec)
            time.sleep(0.3)
            with cam.changed:
                if any(m.header.stamp.sec == sec for m in cam.got['label/camera_info']):
                    break
            assert time.monotonic() < deadline, f'no CameraInfo matched:\n{launch.text()}'
    finally:
        cam.node.destroy_publisher(late)
    assert _log_lines(launch, INFO, 're-subscribed best effort')


def test_camera_info_stamped_apart_from_the_images_is_warned_with_the_offset(launched):
    launch, cam = launched
    for _ in range(7):
        sec = cam.next_stamp()
        cam.info.publish(camera_info(sec, nanosec=1_000_000))  # 1.0 ms after the image
        cam.frame(sec)
        cam.label(sec, launch)
    status = cam.status(launch, DiagnosticStatus.WARN, "stamps differ from the images' by 1.0 ms")
    assert INFO in status.message
    assert len(_log_lines(launch, 'WARN', "stamps differ from the images' by 1.0 ms")) == 1
