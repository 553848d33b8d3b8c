"""What segment_node keeps per camera: its topics, its input side and its outputs.

One camera (the default) reads `image` / `camera_info` (remapped by the launch file) and
publishes `~/label`, ...; a named camera `c` reads `/c/image_raw` and `/c/camera_info` and
publishes under `~/c/`. The node's worker takes frames from every camera's input.
"""
from __future__ import annotations

from dataclasses import dataclass

from rclpy.node import Node

from bisenet_ros.callback_guard import CallbackGuard
from bisenet_ros.camera_input import CameraInput, FrameHandover, InputSettings
from bisenet_ros.camera_stats import CameraStats
from bisenet_ros.node_outputs import CameraOutputs


@dataclass(frozen=True)
class CameraTopics:
    """Input topics and the output prefix of one camera (outputs at `~/<prefix>label`)."""

    image: str = 'image'
    camera_info: str = 'camera_info'
    output_prefix: str = ''

    @classmethod
    def named(cls, name: str) -> CameraTopics:
        """A named camera's defaults: /<name>/image_raw, /<name>/camera_info, ~/<name>/..."""
        return cls(f'/{name}/image_raw', f'/{name}/camera_info', f'{name}/')


class Camera:
    """One camera: `input` (subscriptions, counters, newest frame) and `outputs`."""

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
