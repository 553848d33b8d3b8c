"""Several cameras through one node as users run it: `ros2 launch ... cameras:=[...]` in its
own process, the cameras publishing from this one; bad camera lists refused in one line."""
import os
import signal
import threading
import time

import numpy as np
import pytest

pytest.importorskip('launch')
pytest.importorskip('launch_ros')
rclpy = pytest.importorskip('rclpy')
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from bisenet_ros.image_conversion import image_to_numpy, numpy_to_image  # noqa: E402
from test_launch import START_TIMEOUT, Launch  # noqa: E402,I100 (test/ is on sys.path)

NAMESPACE = '/multicam_test'
NODE = f'{NAMESPACE}/segment_node'


@pytest.fixture
def launches(tmp_path):
    made = []

    def start(*args):
        made.append(Launch(tmp_path / f'launch{len(made)}.log', *args))
        return made[-1]
    yield start
    for launch in made:
        launch.close()


class Cameras:
    """Camera drivers' side: one publisher per camera, the node's labels per camera."""

    def __init__(self, names, sizes):
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=int(os.environ['ROS_DOMAIN_ID']))
        self.node = rclpy.create_node('test_cameras', context=self.context)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.sizes = dict(zip(names, sizes))
        self.publishers = {n: self.node.create_publisher(Image, f'{NAMESPACE}/{n}/image_raw',
                                                         qos) for n in names}
        self.labels = {n: [] for n in names}
        self.diagnostics = []
        for name in names:
            self.node.create_subscription(Image, f'{NODE}/{name}/label',
                                          self.labels[name].append, qos)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self.diagnostics.append,
                                      10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self.spinner.start()

    def wait_matched(self, launch):
        deadline = time.monotonic() + START_TIMEOUT
        while not all(p.get_subscription_count() for p in self.publishers.values()) or not all(
                self.node.count_publishers(f'{NODE}/{n}/label') for n in self.publishers):
            assert launch.process.poll() is None, f'launch exited:\n{launch.text()}'
            assert time.monotonic() < deadline, f'node not matched:\n{launch.text()}'
            time.sleep(0.1)
        time.sleep(0.5)  # discovery is two-sided: let the node's readers see us too

    def publish(self, name, seed):
        width, height = self.sizes[name]
        image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
        msg = numpy_to_image(image, 'rgb8')
        msg.header.frame_id = f'{name}_optical'
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.publishers[name].publish(msg)

    def statuses(self):
        return {s.name: s for d in list(self.diagnostics) for s in d.status
                if s.name.startswith(NODE)}

    def close(self):
        self.executor.shutdown()
        self.spinner.join(5)
        self.node.destroy_node()
        self.context.try_shutdown()


def test_four_cameras_through_ros2_launch(launches, tiny_model_file):
    names = ['front', 'left', 'right', 'rear']
    sizes = [(80, 48), (80, 48), (80, 48), (64, 40)]
    launch = launches(f'model:={tiny_model_file}', 'backend:=torch', 'device:=cpu',
                      f'namespace:={NAMESPACE}', 'cameras:=[front, left, right, rear]')
    cams = Cameras(names, sizes)
    try:
        cams.wait_matched(launch)
        deadline = time.monotonic() + 60
        seed = 0
        while not all(len(v) >= 3 for v in cams.labels.values()):
            assert time.monotonic() < deadline, (
                {n: len(v) for n, v in cams.labels.items()}, launch.text())
            for name in names:
                seed += 1
                cams.publish(name, seed)
            time.sleep(0.2)
        for name, (width, height) in zip(names, sizes):
            label = cams.labels[name][-1]
            assert label.header.frame_id == f'{name}_optical'   # its own camera's header
            assert image_to_numpy(label).shape == (height, width)

        def frames_out(statuses, name):
            status = statuses.get(f'{NODE}: segmentation {name}')
            return int({kv.key: kv.value for kv in status.values}['frames_out']) if status else 0
        deadline = time.monotonic() + 10   # the next 1 Hz diagnostics count them all
        while not all(frames_out(cams.statuses(), n) >= 3 for n in names):
            assert time.monotonic() < deadline, cams.statuses()
            time.sleep(0.2)
        statuses = cams.statuses()
        node_values = {kv.key: kv.value for kv in statuses[f'{NODE}: segmentation'].values}
        assert node_values['cameras'] == 'front, left, right, rear'
        assert float(node_values['memory_rss_mb']) > 50
        os.killpg(launch.process.pid, signal.SIGINT)
        assert launch.wait(30) == 0
        assert 'Traceback' not in launch.text()
    finally:
        cams.close()


@pytest.mark.parametrize('arguments, reason', [
    (['cameras:=[front, front]'], "camera 'front' is listed twice"),
    (['cameras:=[front, , left]'], "camera 2 (''): empty name"),
    (['cameras:=[front, left-1]'], 'one ROS name token'),
    (['cameras:=[front, left]', 'image_topic:=/cam/image'], 'applies to the single camera'),
])
def test_bad_camera_list_is_one_error_line(launches, arguments, reason):
    launch = launches(*arguments)
    assert launch.wait(60) == 1
    lines = launch.lines()
    assert len(lines) == 1 and reason in lines[0], lines
    assert 'process started' not in launch.text()


@pytest.mark.parametrize('cameras, extra, reason', [
    ('[front, left]', '    left:\n      image_topic: /cams/left-image\n',
     'left.image_topic=/cams/left-image: not a valid ROS topic'),
    ('[front, front]', '', "camera 'front' is listed twice"),
    ('[front, "", left]', '', "camera 2 (''): empty name"),
])
def test_bad_cameras_in_a_params_file_are_one_fatal_line(launches, tiny_model_file, tmp_path,
                                                         cameras, extra, reason):
    params = tmp_path / 'cams.yaml'
    params.write_text(f'/**:\n  ros__parameters:\n    cameras: {cameras}\n{extra}')
    launch = launches(f'model:={tiny_model_file}', 'backend:=torch', f'params_file:={params}')
    assert launch.wait(90) == 1
    fatal = [line for line in launch.lines() if 'FATAL' in line]
    assert len(fatal) == 1 and reason in fatal[0], launch.text()
    assert 'Traceback' not in launch.text()
