"""segment.launch.py for real: `ros2 launch bisenet_ros ...`, a frame in, a mask out."""
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

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
from bisenet_ros.ros_env import ros_child_env  # noqa: E402

NAMESPACE = '/launch_test'
INPUT = '/launch_test/camera/image_raw'
START_TIMEOUT = 90.0


def _ros2() -> str:
    beside = Path(sys.executable).parent / 'ros2'
    found = str(beside) if beside.is_file() else shutil.which('ros2')
    if not found:
        pytest.fail('ros2 (ros2cli) is not installed next to this Python or on PATH')
    return found


def _launch_env() -> dict:
    env = ros_child_env()
    # The venv is the ament prefix (scripts/ros_env.sh does the same).
    prefixes = env.get('AMENT_PREFIX_PATH', '').split(os.pathsep)
    if sys.prefix not in prefixes:
        env['AMENT_PREFIX_PATH'] = os.pathsep.join([sys.prefix, *filter(None, prefixes)])
    env['PATH'] = os.pathsep.join([str(Path(sys.executable).parent), env.get('PATH', '')])
    return env


@pytest.fixture
def launched(tiny_model_file, tmp_path):
    params = tmp_path / 'params.yaml'
    # File values that the launch arguments below override (size), and one they do not.
    params.write_text('/**:\n  ros__parameters:\n    input_width: 128\n    input_height: 96\n'
                      '    qos_reliability: reliable\n    latency_budget_ms: 12345.0\n')
    log = open(tmp_path / 'launch.log', 'w+')
    proc = subprocess.Popen(
        [_ros2(), 'launch', 'bisenet_ros', 'segment.launch.py', f'model:={tiny_model_file}',
         'backend:=torch', 'device:=cpu', 'width:=64', 'height:=64', f'image_topic:={INPUT}',
         f'namespace:={NAMESPACE}', f'params_file:={params}'],
        env=_launch_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    yield proc, log
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    log.close()


def test_launch_file_runs_the_node(launched):
    proc, log = launched
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(os.environ['ROS_DOMAIN_ID']))
    try:
        node = rclpy.create_node('launch_test_client', context=context)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        publisher = node.create_publisher(Image, INPUT, qos)
        labels, diagnostics = [], []
        node.create_subscription(Image, f'{NAMESPACE}/segment_node/label', labels.append, qos)
        node.create_subscription(DiagnosticArray, '/diagnostics', diagnostics.append, 10)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()

        image = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
        frame = numpy_to_image(image, 'rgb8')
        frame.header.frame_id = 'launch_camera'
        deadline = time.monotonic() + START_TIMEOUT
        while not labels:
            log.seek(0)
            assert proc.poll() is None, f'ros2 launch exited early:\n{log.read()}'
            assert time.monotonic() < deadline, f'no label within {START_TIMEOUT} s:\n{log.read()}'
            if publisher.get_subscription_count():
                publisher.publish(frame)
            time.sleep(0.5)
        label = labels[0]
        assert (label.encoding, label.header.frame_id) == ('mono8', 'launch_camera')
        assert image_to_numpy(label).shape == (48, 80)

        def ours():
            return [d.status[0] for d in diagnostics
                    if d.status and d.status[0].name.startswith(f'{NAMESPACE}/segment_node')]
        while not ours() and time.monotonic() < deadline:
            time.sleep(0.2)
        values = {kv.key: kv.value for kv in ours()[0].values}
        assert values['network_size'] == '64x64'          # launch arguments win
        assert values['latency_budget_ms'] == '12345.00'  # the params file still applies
        assert values['backend'] == 'torch'
        executor.shutdown()
        spinner.join(5)
    finally:
        context.try_shutdown()
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(30) == 0
    log.seek(0)
    assert 'Traceback' not in log.read()
