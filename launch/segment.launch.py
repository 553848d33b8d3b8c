"""Launch the BiSeNet segment_node.

    ros2 launch bisenet_ros segment.launch.py image_topic:=/camera/image_raw
    ros2 launch bisenet_ros segment.launch.py width:=960 height:=720 precision:=fp16
    ros2 launch bisenet_ros segment.launch.py cameras:="[front, left, right, rear]"
    ros2 launch bisenet_ros segment.launch.py --show-args

Parameters come from params_file (default: config/segment.yaml in the package's share dir);
launch arguments given on the command line override its values, and arguments left empty
keep them. Arguments are checked before the node starts: a bad one (a topic name with a '-',
a missing or non-YAML params file, width:=abc) ends the launch with one error line and exit
code 1. `ros2 launch` also exits non-zero when the node fails to start or dies, unless
respawn:=true, which restarts a node that died (a crash, or the node ending itself after an
unrecoverable error) after RESPAWN_DELAY_S.

The node inherits the launching environment, with two defaults the caller can override by
setting them first: ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and FASTDDS_DEFAULT_PROFILES_FILE
(the shipped config/fastdds.xml: shared memory large enough for camera frames).
BISENET_FASTDDS_PROFILE=default (or the variable set empty) runs the node on Fast DDS's own
defaults, with FASTDDS_DEFAULT_PROFILES_FILE unset (an empty one makes Fast DDS print an
XMLPARSER error).

Stopping: Ctrl-C (SIGINT) and SIGTERM both stop the node cleanly (it finishes the frame in
hand); if `ros2 launch` itself is killed, the node stops on its own (no orphan).
"""
import os
import re
import signal

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler,
                            SetEnvironmentVariable, UnsetEnvironmentVariable)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from bisenet_ros.camera_topics import (CameraConfigError, camera_info_beside, check_camera_names,
                                       parse_camera_list)
# The node stops itself when the process with this pid (ros2 launch) is gone.
from bisenet_ros.node_process import PARENT_PID_ENV
from bisenet_ros.topic_names import topic_name_problem

PACKAGE = 'bisenet_ros'
NODE_NAME = 'segment_node'
LOG_LEVELS = ('debug', 'info', 'warn', 'error', 'fatal')
# Fast DDS reads its default participant profile from here: config/fastdds.xml gives shared
# memory large enough for camera frames (docs/node.md, "deploying on a vehicle").
FASTDDS_PROFILES_ENV = 'FASTDDS_DEFAULT_PROFILES_FILE'
# BISENET_FASTDDS_PROFILE=default (scripts/ros_env.sh): Fast DDS's own defaults.
PROFILE_CHOICE_ENV = 'BISENET_FASTDDS_PROFILE'

# name -> (default, description); '' = not given: the params file's value (or the node's default).
ARGUMENTS = {
    'model': ('', 'model file (.pt or .onnx); empty: the shipped model'),
    'backend': ('', 'inference backend: auto, torch, onnxruntime or tensorrt'),
    'device': ('', 'inference device: auto, cpu, cuda or cuda:N (the N-th GPU)'),
    'precision': ('', 'fp32 or fp16 (fp16 needs a GPU; fp32 on the CPU)'),
    'width': ('', 'network input width (e.g. 960; multiples of 32 need no padding)'),
    'height': ('', 'network input height (e.g. 720; multiples of 32 need no padding)'),
    'cameras': ('', 'several cameras in one node, e.g. "[front, left]": camera c reads '
                    'c/image_raw and c/camera_info and publishes ~/c/label, ... (then '
                    'image_topic and camera_info_topic are not used); empty: the params '
                    "file's list, else one camera on image_topic"),
    'image_topic': ('image', 'input image topic (image_topic/compressed with use_compressed)'),
    'camera_info_topic': ('', "the camera's CameraInfo topic; empty: camera_info beside "
                              'image_topic (/camera/image_raw -> /camera/camera_info)'),
    'use_compressed': ('', 'true: subscribe to <image_topic>/compressed (jpeg/png)'),
    'reliability': ('', 'input QoS reliability: best_available, reliable or best_effort'),
    'namespace': ('', 'namespace of the node (outputs: <namespace>/segment_node/label, ...)'),
    'params_file': (None, 'YAML parameter file; default: config/segment.yaml of the package'),
    'log_level': ('info', f'node log level: {", ".join(LOG_LEVELS)} (or logger:=level)'),
    'respawn': ('false', 'true: restart the node when it dies (after 2 s); false: ros2 launch '
                         'then exits with code 1'),
}
RESPAWN_DELAY_S = 2.0
# launch argument -> (node parameter, type), for the ones that become parameters.
PARAMETERS = {'model': ('model_path', str), 'backend': ('backend', str),
              'device': ('device', str), 'precision': ('precision', str),
              'width': ('input_width', int), 'height': ('input_height', int),
              'use_compressed': ('use_compressed', bool),
              'reliability': ('qos_reliability', str)}


class LaunchArgumentError(ValueError):
    """A launch argument the node could not start with; the message is one line."""


def _typed(name: str, value: str, kind: type):
    """Launch arguments are strings; the node declares ints and bools."""
    if kind is int:
        if not re.fullmatch(r'[+-]?\d+', value.strip()):
            raise LaunchArgumentError(f'{name}:={value}: not an integer')
        return int(value)
    if kind is bool:
        if value.lower() not in ('true', 'false'):
            raise LaunchArgumentError(f'{name}:={value}: must be true or false')
        return value.lower() == 'true'
    return value


def _check_topic(name: str, topic: str) -> None:
    reason = topic_name_problem(topic, NODE_NAME)
    if reason:
        raise LaunchArgumentError(f'{name}:={topic}: not a valid ROS topic name: {reason}')


def _check_params_file(path: str) -> None:
    if not os.path.isfile(path):
        raise LaunchArgumentError(f'params_file:={path}: file not found')
    try:
        with open(path, encoding='utf-8') as stream:
            content = yaml.safe_load(stream)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = ' '.join(str(exc).split())
        raise LaunchArgumentError(f'params_file:={path}: not a YAML file: {reason}') from None
    if not _has_ros_parameters(content):
        raise LaunchArgumentError(
            f'params_file:={path}: not a ROS 2 parameter file (expected "/**:" or '
            '"<node name>:" with a "ros__parameters:" mapping, as config/segment.yaml)')


def _has_ros_parameters(content) -> bool:
    return isinstance(content, dict) and (
        'ros__parameters' in content or any(_has_ros_parameters(v) for v in content.values()))


def _check_log_level(level: str) -> None:
    # --log-level takes a level or <logger>:=<level>.
    if level.rpartition(':=')[2].lower() not in LOG_LEVELS:
        raise LaunchArgumentError(f'log_level:={level}: must be one of {", ".join(LOG_LEVELS)}')


def _cameras(text: str) -> list[str]:
    names = parse_camera_list(text)
    try:
        check_camera_names(names, where=f'cameras:={text}')
    except CameraConfigError as exc:
        raise LaunchArgumentError(str(exc)) from None
    return names


def _node(context):
    arg = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    overrides = {param: _typed(name, arg[name], kind)
                 for name, (param, kind) in PARAMETERS.items() if arg[name]}
    topic = arg['image_topic']
    info_topic = arg['camera_info_topic'] or camera_info_beside(topic)
    cameras = _cameras(arg['cameras'])
    if cameras:  # [] leaves the params file's list (or the single camera)
        overrides['cameras'] = cameras
        for name in ('image_topic', 'camera_info_topic'):
            if arg[name] != ARGUMENTS[name][0]:  # given, and would be ignored
                raise LaunchArgumentError(
                    f'{name}:={arg[name]}: applies to the single camera; with cameras:=, set '
                    f'<camera>.{name} in the params file (config/surround_6cam.yaml)')
    _check_topic('image_topic', topic)
    _check_topic('camera_info_topic', info_topic)
    if arg['namespace']:
        _check_topic('namespace', arg['namespace'])
    _check_params_file(arg['params_file'])
    _check_log_level(arg['log_level'])
    respawn = _typed('respawn', arg['respawn'], bool)
    node = Node(
        package=PACKAGE, executable=NODE_NAME, name=NODE_NAME,
        namespace=arg['namespace'], output='screen', emulate_tty=True,
        # Later entries win: the command line's arguments override the file's values.
        parameters=[arg['params_file'], overrides],
        remappings=[('image', topic), ('image/compressed', f'{topic}/compressed'),
                    ('camera_info', info_topic)],
        ros_arguments=['--log-level', arg['log_level']],
        additional_env={PARENT_PID_ENV: str(os.getpid())},
        respawn=respawn, respawn_delay=RESPAWN_DELAY_S,
    )
    if respawn:  # launch restarts it; a failed exit must not end the launch
        return [node]
    return [node, RegisterEventHandler(OnProcessExit(target_action=node, on_exit=_on_node_exit))]


def _on_node_exit(event, context):
    # Without this, `ros2 launch` exits 0 when the node fails to start or dies, and a script
    # cannot tell a failed start from a clean stop. Raising makes launch end with code 1.
    if event.returncode != 0:
        raise RuntimeError(f'{NODE_NAME} exited with code {event.returncode} (its log above '
                           'says why)')


def _stop_on_sigterm(context):
    """Treat SIGTERM like Ctrl-C: stop the node, wait for it, then exit.

    launch itself handles SIGTERM by abandoning its processes (orphans) or, with no Python
    handler installed, dies at once. Its signal manager is not public API, hence the
    getattr: where it is missing, the node still stops itself when launch is gone.
    """
    from launch.utilities import signal_management

    manager = getattr(signal_management.AsyncSafeSignalManager,
                      '_AsyncSafeSignalManager__current', None)
    if manager is None:
        return None
    stopping = []

    def on_sigterm(signum):
        if not stopping:
            stopping.append(signum)
            context.emit_event_sync(Shutdown(reason='SIGTERM', due_to_sigint=False))

    manager.handle(signal.SIGTERM, on_sigterm)
    # The manager only sees signals that have a Python-level handler.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    return None


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    defaults = {'params_file': os.path.join(share, 'config', 'segment.yaml')}
    actions = [DeclareLaunchArgument(name, default_value=defaults.get(name, default),
                                     description=description)
               for name, (default, description) in ARGUMENTS.items()]
    if 'ROS_AUTOMATIC_DISCOVERY_RANGE' not in os.environ:
        actions.append(SetEnvironmentVariable('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST'))
    profile = os.environ.get(FASTDDS_PROFILES_ENV)
    if os.environ.get(PROFILE_CHOICE_ENV) == 'default' or profile == '':
        # Fast DDS's defaults: the variable unset, as an empty one prints an XMLPARSER error.
        actions.append(UnsetEnvironmentVariable(FASTDDS_PROFILES_ENV))
    elif profile is None:  # a profile the user set wins
        actions.append(SetEnvironmentVariable(FASTDDS_PROFILES_ENV,
                                              os.path.join(share, 'config', 'fastdds.xml')))
    actions += [OpaqueFunction(function=_stop_on_sigterm), OpaqueFunction(function=_node)]
    return LaunchDescription(actions)
