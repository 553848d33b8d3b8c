"""segment.launch.py for real: `ros2 launch bisenet_ros ...` in its own process, a camera
publisher in this one, the shipped config unless a test says otherwise.

Covers: a frame in, a mask out; bad launch arguments (one error line, exit 1, no node);
a node that fails to start makes `ros2 launch` fail; SIGINT, Ctrl-C twice, SIGTERM and a
killed launch all stop the node (no orphan); 20 launch/stop cycles with every exit code
checked (the demo's shutdown SIGSEGV).
"""
import os
import re
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
NODE_NAME = 'segment_node'
LABEL = f'{NAMESPACE}/{NODE_NAME}/label'
START_TIMEOUT = 90.0
# launch's own start-up chatter, not about the node.
LAUNCH_BANNER = ('All log files can be found', 'Default logging verbosity')


def ros2() -> str:
    beside = Path(sys.executable).parent / 'ros2'
    found = str(beside) if beside.is_file() else shutil.which('ros2')
    if not found:
        pytest.fail('ros2 (ros2cli) is not installed next to this Python or on PATH')
    return found


def launch_env() -> dict:
    env = ros_child_env()
    # The venv is the ament prefix (scripts/ros_env.sh does the same).
    prefixes = env.get('AMENT_PREFIX_PATH', '').split(os.pathsep)
    if sys.prefix not in prefixes:
        env['AMENT_PREFIX_PATH'] = os.pathsep.join([sys.prefix, *filter(None, prefixes)])
    env['PATH'] = os.pathsep.join([str(Path(sys.executable).parent), env.get('PATH', '')])
    env['PYTHONFAULTHANDLER'] = '1'  # a crash at shutdown leaves its stack in the log
    return env


def _default_signals():
    # A test run from a background shell inherits SIGINT ignored; a real terminal does not.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its new parent) counts as gone.
    try:
        return Path(f'/proc/{pid}/stat').read_text().split(')')[-1].split()[0] != 'Z'
    except OSError:
        return False


class Launch:
    """`ros2 launch bisenet_ros segment.launch.py ARGS` in a session of its own."""

    def __init__(self, log_path: Path, *args: str):
        self.log_path = log_path
        self._log = open(log_path, 'w')
        self.process = subprocess.Popen(
            [ros2(), 'launch', 'bisenet_ros', 'segment.launch.py', *args], env=launch_env(),
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_default_signals)

    def text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors='replace')

    def lines(self) -> list[str]:
        return [line for line in self.text().splitlines()
                if line.strip() and not any(b in line for b in LAUNCH_BANNER)]

    def wait_ready(self) -> int:
        """The node's pid, once it logged 'ready'."""
        deadline = time.monotonic() + START_TIMEOUT
        while 'ready:' not in self.text():
            assert self.process.poll() is None, f'ros2 launch exited early:\n{self.text()}'
            assert time.monotonic() < deadline, f'node not ready in time:\n{self.text()}'
            time.sleep(0.2)
        return int(re.search(r'process started with pid \[(\d+)\]', self.text()).group(1))

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f'ros2 launch still running after {timeout} s:\n{self.text()}')

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self._log.close()


@pytest.fixture
def launches(tmp_path):
    made = []

    def start(*args):
        made.append(Launch(tmp_path / f'launch{len(made)}.log', *args))
        return made[-1]
    yield start
    for launch in made:
        launch.close()


class Camera:
    """A camera driver's side: publishes frames, collects the node's labels and diagnostics."""

    def __init__(self):
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=int(os.environ['ROS_DOMAIN_ID']))
        self.node = rclpy.create_node('test_camera', context=self.context)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.publisher = self.node.create_publisher(Image, INPUT, qos)
        self.labels, self.diagnostics = [], []
        self.arrival = {}
        self.node.create_subscription(Image, LABEL, self._on_label, qos)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self.diagnostics.append,
                                      10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self.spinner.start()

    def _on_label(self, msg):
        self.arrival[msg.header.frame_id] = time.monotonic()
        self.labels.append(msg)

    def wait_matched(self, launch: Launch):
        deadline = time.monotonic() + START_TIMEOUT
        while not (self.publisher.get_subscription_count()
                   and self.node.count_publishers(LABEL)):
            assert launch.process.poll() is None, f'launch exited:\n{launch.text()}'
            assert time.monotonic() < deadline, f'node not matched:\n{launch.text()}'
            time.sleep(0.1)
        time.sleep(0.5)  # discovery is two-sided: let the node's reader see us too

    def publish(self, image: np.ndarray, frame_id: str):
        msg = numpy_to_image(image, 'rgb8')
        msg.header.frame_id = frame_id
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.publisher.publish(msg)

    def wait_labels(self, count: int, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.labels) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(self.labels) >= count

    def close(self):
        self.executor.shutdown()
        self.spinner.join(5)
        self.node.destroy_node()
        self.context.try_shutdown()


@pytest.fixture
def camera():
    cam = Camera()
    yield cam
    cam.close()


def _image(height=48, width=80, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _node_args(model, *extra):
    return [f'model:={model}', 'backend:=torch', 'device:=cpu', f'image_topic:={INPUT}',
            f'namespace:={NAMESPACE}', *extra]


REPO = Path(__file__).resolve().parent.parent


def _launch_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location('segment_launch',
                                                  REPO / 'launch' / 'segment.launch.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_config_and_launch_defaults_equal_the_nodes_declared_defaults():
    """config/segment.yaml and the launch arguments repeat the node's defaults for the
    reader: read from the files, they must be the declared ones (node_parameters.PARAMETERS)."""
    import yaml

    from bisenet_ros.camera import CameraTopics
    from bisenet_ros.camera_topics import camera_info_beside
    from bisenet_ros.node_parameters import DEFAULTS

    config = yaml.safe_load((REPO / 'config' / 'segment.yaml').read_text())
    values = config['/**']['ros__parameters']
    assert set(values) == set(DEFAULTS)  # every parameter, and only those, in the file
    for name, value in values.items():
        assert value == DEFAULTS[name] and type(value) is type(DEFAULTS[name]), name

    launch_file = _launch_module()
    for argument, (parameter, kind) in launch_file.PARAMETERS.items():
        default = launch_file.ARGUMENTS[argument][0]
        assert parameter in DEFAULTS, argument
        # Empty: not given, the params file's value (checked above) applies.
        assert default == '' or launch_file._typed(argument, default, kind) == \
            DEFAULTS[parameter], argument
    # The topics the launch file remaps default to the node's own names.
    topics = CameraTopics()
    assert launch_file.ARGUMENTS['image_topic'][0] == topics.image
    assert camera_info_beside(topics.image) == topics.camera_info


def test_launch_file_runs_the_node(launches, camera, tiny_model_file, tmp_path):
    params = tmp_path / 'params.yaml'
    # File values that the launch arguments below override (size), and one they do not.
    params.write_text('/**:\n  ros__parameters:\n    input_width: 128\n    input_height: 96\n'
                      '    latency_budget_ms: 12345.0\n')
    launch = launches(*_node_args(tiny_model_file, 'width:=64', 'height:=64',
                                  f'params_file:={params}'))
    cam = camera
    cam.wait_matched(launch)
    cam.publish(_image(), 'launch_camera')
    assert cam.wait_labels(1), launch.text()
    label = cam.labels[0]
    assert (label.encoding, label.header.frame_id) == ('mono8', 'launch_camera')
    assert image_to_numpy(label).shape == (48, 80)

    def ours():
        return [d.status[0] for d in cam.diagnostics
                if d.status and d.status[0].name.startswith(f'{NAMESPACE}/segment_node')]
    deadline = time.monotonic() + 10
    while not ours() and time.monotonic() < deadline:
        time.sleep(0.2)
    values = {kv.key: kv.value for kv in ours()[0].values}
    assert values['network_size'] == '64x64'          # launch arguments win
    assert values['latency_budget_ms'] == '12345.00'  # the params file still applies
    assert values['backend'] == 'torch'
    os.killpg(launch.process.pid, signal.SIGINT)
    assert launch.wait(30) == 0
    assert 'Traceback' not in launch.text()


@pytest.mark.parametrize('argument, reason', [
    ('image_topic:=/cam/my-image', "must not contain characters other than alphanumerics"),
    ('image_topic:=/cam/', 'must not end with a forward slash'),
    ('log_level:=verbose', 'must be one of debug, info, warn, error, fatal'),
    ('params_file:={tmp}/missing.yaml', 'file not found'),
    ('params_file:={tmp}/broken.yaml', 'not a YAML file'),
    ('params_file:={tmp}/plain.yaml', 'not a ROS 2 parameter file'),
    ('width:=abc', 'not an integer'),
])
def test_bad_launch_argument_is_one_error_line(launches, tmp_path, argument, reason):
    (tmp_path / 'broken.yaml').write_text('/**:\n  ros__parameters: [unclosed\n')
    (tmp_path / 'plain.yaml').write_text('input_width: 640\n')
    argument = argument.format(tmp=tmp_path)
    launch = launches(argument)
    assert launch.wait(60) == 1
    lines = launch.lines()
    assert len(lines) == 1, lines
    assert reason in lines[0] and argument.split(':=')[1] in lines[0], lines
    assert 'process started' not in launch.text()  # refused before the node starts


@pytest.mark.parametrize('argument, reason', [
    ('model:=/nonexistent/model.pt', 'not found (parameter model_path)'),
    ('width:=-32', 'parameter input_width=-32: out of range 0..8192'),
])
def test_node_failing_to_start_fails_the_launch(launches, argument, reason):
    launch = launches('backend:=torch', argument)
    assert launch.wait(90) == 1
    fatal = [line for line in launch.lines() if 'FATAL' in line]
    assert len(fatal) == 1 and reason in fatal[0], launch.text()
    assert 'Traceback' not in launch.text()


def _stop(launch: Launch, how: str) -> None:
    if how == 'SIGINT':          # what the replay tool does: to ros2 launch only
        launch.process.send_signal(signal.SIGINT)
    elif how == 'SIGTERM':       # a process supervisor (systemd, docker stop)
        launch.process.send_signal(signal.SIGTERM)
    elif how == 'Ctrl-C twice':  # a terminal: to the whole process group, twice
        os.killpg(launch.process.pid, signal.SIGINT)
        time.sleep(0.2)
        os.killpg(launch.process.pid, signal.SIGINT)


def _assert_stopped_cleanly(launch: Launch, node_pid: int, how: str) -> None:
    code = launch.wait(30)
    deadline = time.monotonic() + 10
    while pid_alive(node_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    text = launch.text()
    assert not pid_alive(node_pid), f'{how}: the node outlived ros2 launch (orphan)\n{text}'
    assert code == 0, f'{how}: ros2 launch exited {code}\n{text}'
    assert 'process has finished cleanly' in text, f'{how}: node exit not clean\n{text}'
    for bad in ('Traceback', 'Fatal Python error', 'exit code -', '[ERROR]'):
        assert bad not in text, f'{how}: {bad!r} in the log\n{text}'


def test_twenty_launch_stop_cycles_all_exit_cleanly(launches, camera, tiny_model_file):
    """The demo's shutdown, 20 times: launch, a few frames, stop; every exit code checked.

    The three ways a node is stopped take turns: SIGINT to launch, SIGTERM to launch (used to
    orphan the node) and Ctrl-C twice to the process group.
    """
    cam = camera
    ways = ('SIGINT', 'SIGTERM', 'Ctrl-C twice')
    for cycle in range(20):
        launch = launches(*_node_args(tiny_model_file))
        node_pid = launch.wait_ready()
        cam.wait_matched(launch)
        cam.labels.clear()
        for frame in range(3):
            cam.publish(_image(seed=frame), f'cycle{cycle}_{frame}')
            time.sleep(0.05)
        assert cam.wait_labels(1), launch.text()
        how = ways[cycle % len(ways)]
        _stop(launch, how)
        _assert_stopped_cleanly(launch, node_pid, f'cycle {cycle} ({how})')


def test_killed_launch_takes_the_node_with_it(launches, tiny_model_file):
    launch = launches(*_node_args(tiny_model_file))
    node_pid = launch.wait_ready()
    launch.process.send_signal(signal.SIGKILL)
    launch.wait(10)
    deadline = time.monotonic() + 15
    while pid_alive(node_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    orphan = pid_alive(node_pid)
    if orphan:
        os.kill(node_pid, signal.SIGKILL)  # leave nothing running, even when this fails
    assert not orphan, 'the node outlived a killed ros2 launch'


def _ros2_cli(*args: str, expect: str = '', timeout: float = 60.0) -> str:
    """stdout + stderr of `ros2 ARGS`; retried while `expect` is not in it (discovery)."""
    deadline = time.monotonic() + timeout
    while True:
        proc = subprocess.run([ros2(), *args], env=launch_env(), capture_output=True,
                              text=True, timeout=timeout)
        out = proc.stdout + proc.stderr
        if expect in out or time.monotonic() > deadline:
            return out
        time.sleep(0.5)


@pytest.fixture
def ros2_daemon():
    """The ros2 CLI's discovery daemon, as a user's shell would have it; stopped after."""
    subprocess.run([ros2(), 'daemon', 'start'], env=launch_env(), capture_output=True,
                   timeout=60)
    yield
    subprocess.run([ros2(), 'daemon', 'stop'], env=launch_env(), capture_output=True,
                   timeout=60)


@pytest.mark.usefixtures('ros2_daemon')
def test_ros2_cli_works_against_the_launched_node(launches, camera, tiny_model_file):
    launch = launches(*_node_args(tiny_model_file))
    launch.wait_ready()
    node = f'{NAMESPACE}/segment_node'
    assert node in _ros2_cli('node', 'list', expect=node).split()
    info = _ros2_cli('node', 'info', node, expect=LABEL)
    assert f'{LABEL}: sensor_msgs/msg/Image' in info and f'{INPUT}: sensor_msgs/msg/Image' in info

    params = _ros2_cli('param', 'list', node, expect='upsample').split()
    assert {'upsample', 'qos_reliability', 'max_image_pixels', 'model_path'} <= set(params)
    assert 'String value is: bilinear' in _ros2_cli('param', 'get', node, 'upsample')
    assert 'successful' in _ros2_cli('param', 'set', node, 'upsample', 'nearest')
    assert 'String value is: nearest' in _ros2_cli('param', 'get', node, 'upsample')
    refused = _ros2_cli('param', 'set', node, 'backend', 'torch')
    assert 'failed' in refused and 'read-only parameter: backend' in refused

    topics = _ros2_cli('topic', 'list', expect=LABEL).split()
    assert {LABEL, f'{node}/classes', '/diagnostics'} <= set(topics)
    classes = _ros2_cli('topic', 'echo', '--once', f'{node}/classes', '--field', 'data')
    assert '"name": "sky"' in classes, classes

    cam = camera
    cam.wait_matched(launch)
    keep_publishing = threading.Event()

    def publish():
        while not keep_publishing.wait(0.2):
            cam.publish(_image(), 'cli')
    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    try:
        echo = _ros2_cli('topic', 'echo', '--once', LABEL, '--field', 'encoding')
        assert echo.split()[:1] == ['mono8'], echo
        # hz runs until stopped: let it report a few diagnostics periods (1 Hz), then Ctrl-C.
        hz = subprocess.Popen([ros2(), 'topic', 'hz', '/diagnostics'], env=launch_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              preexec_fn=_default_signals)
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(hz.stdout), daemon=True)
        reader.start()
        deadline = time.monotonic() + 60
        while sum('average rate' in line for line in lines) < 3 and time.monotonic() < deadline:
            time.sleep(0.5)
        hz.send_signal(signal.SIGINT)
        hz.wait(20)
        reader.join(5)
        out = ''.join(lines)
    finally:
        keep_publishing.set()
        publisher.join(5)
    rates = [float(r) for r in re.findall(r'average rate: ([\d.]+)', out)]
    assert rates and 0.8 < rates[-1] < 1.25, out
    assert 'Traceback' not in out and 'No module named' not in out
    launch.process.send_signal(signal.SIGINT)
    assert launch.wait(30) == 0


def test_node_dying_fails_the_launch(launches, tiny_model_file):
    """A node killed while running (a crash, the OOM killer) makes ros2 launch exit 1."""
    launch = launches(*_node_args(tiny_model_file))
    node_pid = launch.wait_ready()
    os.kill(node_pid, signal.SIGKILL)
    assert launch.wait(30) == 1
    assert f'{NODE_NAME} exited with code -9' in launch.text()


def test_respawn_restarts_a_node_that_died(launches, tiny_model_file):
    """respawn:=true: a node that died (here killed; also one whose worker ended, exit 1) is
    started again and the launch keeps running; Ctrl-C still stops everything with code 0."""
    launch = launches(*_node_args(tiny_model_file, 'respawn:=true'))
    first = launch.wait_ready()
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + START_TIMEOUT
    while launch.text().count('ready:') < 2:
        assert launch.process.poll() is None, launch.text()
        assert time.monotonic() < deadline, f'not respawned:\n{launch.text()}'
        time.sleep(0.2)
    pids = [int(p) for p in re.findall(r'process started with pid \[(\d+)\]', launch.text())]
    assert len(pids) == 2 and first == pids[0] and pid_alive(pids[1])
    launch.process.send_signal(signal.SIGINT)
    assert launch.wait(30) == 0, launch.text()
