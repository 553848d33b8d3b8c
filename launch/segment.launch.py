"""Launch the BiSeNet segment_node.

    ros2 launch bisenet_ros segment.launch.py width:=960 height:=720 precision:=fp16
    ros2 launch bisenet_ros segment.launch.py --show-args

Parameters come from params_file (default: config/segment.yaml in the package's share dir);
launch arguments given on the command line override its values, and arguments left empty
keep them. The node inherits the launching environment; ROS_AUTOMATIC_DISCOVERY_RANGE is set
to LOCALHOST only when the caller did not choose a range, so a deliberate SUBNET setup wins.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = 'bisenet_ros'

# name -> (default, description); '' = not given: the params file's value (or the node's default).
ARGUMENTS = {
    'model': ('', 'model file (.pt or .onnx); empty: the shipped model'),
    'backend': ('', 'inference backend: auto, torch, onnxruntime or tensorrt'),
    'device': ('', 'inference device: auto, cuda or cpu'),
    'precision': ('', 'fp32 or fp16 (fp16 needs a GPU; fp32 on the CPU)'),
    'width': ('', 'network input width (e.g. 960; multiples of 32 need no padding)'),
    'height': ('', 'network input height (e.g. 720; multiples of 32 need no padding)'),
    'image_topic': ('image', 'input image topic (image_topic/compressed with use_compressed)'),
    'use_compressed': ('', 'true: subscribe to <image_topic>/compressed (jpeg/png)'),
    'namespace': ('', 'namespace of the node (outputs: <namespace>/segment_node/label, ...)'),
    'params_file': (None, 'YAML parameter file; default: config/segment.yaml of the package'),
    'log_level': ('info', 'node log level: debug, info, warn, error or fatal'),
}
# launch argument -> node parameter, for the ones that become parameters.
PARAMETERS = {'model': 'model_path', 'backend': 'backend', 'device': 'device',
              'precision': 'precision', 'width': 'input_width', 'height': 'input_height',
              'use_compressed': 'use_compressed'}


def _typed(value: str):
    """Launch arguments are strings; the node declares ints and bools."""
    if value.lower() in ('true', 'false'):
        return value.lower() == 'true'
    return int(value) if value.isdigit() else value


def _node(context):
    arg = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    overrides = {param: _typed(arg[name]) for name, param in PARAMETERS.items() if arg[name]}
    topic = arg['image_topic']
    return [Node(
        package=PACKAGE, executable='segment_node', name='segment_node',
        namespace=arg['namespace'], output='screen', emulate_tty=True,
        # Later entries win: the command line's arguments override the file's values.
        parameters=[arg['params_file'], overrides],
        remappings=[('image', topic), ('image/compressed', f'{topic}/compressed')],
        arguments=['--ros-args', '--log-level', arg['log_level']],
    )]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    defaults = {'params_file': os.path.join(share, 'config', 'segment.yaml')}
    actions = [DeclareLaunchArgument(name, default_value=defaults.get(name, default),
                                     description=description)
               for name, (default, description) in ARGUMENTS.items()]
    if 'ROS_AUTOMATIC_DISCOVERY_RANGE' not in os.environ:
        actions.append(SetEnvironmentVariable('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST'))
    actions.append(OpaqueFunction(function=_node))
    return LaunchDescription(actions)
