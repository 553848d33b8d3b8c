"""What segment_node keeps per camera: its topics, its input side and its outputs.

One camera (the default) reads `image` / `camera_info` (remapped by the launch file) and
publishes `~/label`, ...; a named camera `c` reads `c/image_raw` and `c/camera_info` and
publishes under `~/c/` (bisenet_ros/camera_topics.py). The node's worker takes frames from
every camera's input.
"""
from __future__ import annotations

from rclpy.node import Node

from bisenet_ros.camera_input import CameraInput, FrameHandover, InputSettings
from bisenet_ros.camera_stats import CameraStats
from bisenet_ros.camera_topics import CameraTopics
from bisenet_ros.node_outputs import CameraOutputs

__all__ = ['Camera', 'CameraTopics']


class Camera:
    """One camera: `input` (subscriptions, counters, newest frame) and `outputs`.

    name: '' for the single camera of a node without `cameras`.
    """

    def __init__(self, node: Node, name: str, topics: CameraTopics, settings: InputSettings,
                 handover: FrameHandover):
        self.name = name
        self.topics = topics
        self.outputs = CameraOutputs(node, topics.output_prefix)
        self.input = CameraInput(node, topics.image, topics.camera_info, settings, handover,
                                 self.outputs.publish_camera_infos)

    @property
    def stats(self) -> CameraStats:
        return self.input.stats
