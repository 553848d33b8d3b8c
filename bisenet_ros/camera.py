"""What segment_node keeps per camera: its topics, its input side and its outputs.

One camera (the default) reads `image` / `camera_info` (remapped by the launch file) and
publishes `~/label`, ...; a named camera `c` reads `c/image_raw` and `c/camera_info` and
publishes under `~/c/` (bisenet_ros/camera_topics.py). The node's worker takes frames from
every camera's input.
"""
from __future__ import annotations

from rclpy.node import Node
from rclpy.parameter import Parameter

from bisenet_ros.callback_guard import CallbackGuard
from bisenet_ros.camera_input import CameraInput, FrameHandover, InputSettings
from bisenet_ros.camera_stats import CameraStats
from bisenet_ros.camera_topics import (CAMERA_KEYS, CameraConfigError, CameraTopics,
                                       camera_topics, check_camera_names)
from bisenet_ros.node_outputs import CameraOutputs
from bisenet_ros.node_parameters import param_descriptor, parameter_error
from bisenet_ros.node_process import StartupError

__all__ = ['Camera', 'CameraTopics', 'declare_cameras']

CAMERAS_DESCRIPTOR = param_descriptor(
    'several cameras in one node, e.g. [front, left]: camera c reads c/image_raw and '
    'c/camera_info (<c>.image_topic, <c>.camera_info_topic override them) and publishes '
    '~/c/label, ...; unset or empty: one camera on image and camera_info')


class Camera:
    """One camera: `input` (subscriptions, counters, newest frame) and `outputs`.

    name: '' for the single camera of a node without `cameras`.
    """

    def __init__(self, node: Node, name: str, topics: CameraTopics, settings: InputSettings,
                 handover: FrameHandover, guard: CallbackGuard):
        self.name = name
        self.topics = topics
        self.outputs = CameraOutputs(node, topics.output_prefix)
        self.input = CameraInput(node, topics.image, topics.camera_info, settings, handover,
                                 self.outputs.publish_camera_infos, guard)

    @property
    def stats(self) -> CameraStats:
        return self.input.stats


def declare_cameras(node, node_name: str) -> dict[str, CameraTopics]:
    """Declare `cameras` and each camera's topic parameters on `node`; name -> topics.

    `cameras` is a string array without a default value (rclpy types an empty list as a
    byte array): unset, or `[]` in a params file, is the single camera.
    Raises StartupError (one line) for anything camera_topics refuses.
    """
    try:
        cameras = node.declare_parameter('cameras', Parameter.Type.STRING_ARRAY,
                                         CAMERAS_DESCRIPTOR).value or []
    except Exception as exc:  # e.g. cameras: front (a string, not a list)
        raise StartupError(parameter_error('cameras', CAMERAS_DESCRIPTOR, exc)) from None
    try:
        check_camera_names(cameras)  # before their names make parameter names
    except CameraConfigError as exc:
        raise StartupError(str(exc)) from None
    given = {}
    for name in cameras:
        for key, description in CAMERA_KEYS.items():
            descriptor = param_descriptor(f'camera {name}: {description}')
            try:
                given[f'{name}.{key}'] = node.declare_parameter(f'{name}.{key}', '',
                                                                descriptor).value
            except Exception as exc:
                raise StartupError(parameter_error(f'{name}.{key}', descriptor, exc)) from None
    # Keys given for a camera that it does not have (a typo) are refused, not ignored;
    # rclpy keeps undeclared overrides only in this attribute.
    for key in getattr(node, '_parameter_overrides', {}):
        given.setdefault(key, '')
    try:
        return camera_topics(cameras, given, node_name)
    except CameraConfigError as exc:
        raise StartupError(str(exc)) from None
