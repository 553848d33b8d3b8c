"""segment_node's outputs, described once: the table and the publishers of one camera.

Each row names an output topic (under `~/`, or `~/<camera>/` with several cameras), its
message type and encoding, the field of the Segmenter's result it carries, the runtime
parameter that enables it (and that parameter's default) and whether it is lazy (computed and
published only while something subscribes). Parameter declaration, publisher creation, the
lazy selection and publishing all read OUTPUTS: a new topic from an existing result field is
one row. The CameraInfo rows are filled by the stamp matcher, not from the result.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header, String

from bisenet_ros.camera_info import scale_camera_info
from bisenet_ros.image_conversion import labels_to_compressed, numpy_to_image
from bisenet_ros.label_info import class_table_json, label_info_message, vision_msgs_types

LABELS = 'labels'  # the result field every frame has; the others are requested by name


@dataclass(frozen=True)
class Output:
    """One output topic.

    name: topic relative to the node's private namespace (`~/<name>`).
    msg_type: message class; encoding: Image encoding, or the CompressedImage format.
    result: SegmentationResult field published (for CameraInfo rows: the image output whose
        calibration it is).
    parameter: runtime parameter enabling it (None: always on); default: its default.
    lazy: computed and published only while the topic has a subscriber.
    description: for the parameter's descriptor and docs/node.md.
    """

    name: str
    msg_type: type
    encoding: str
    result: str
    parameter: str | None = None
    default: bool = True
    lazy: bool = True
    description: str = ''


OUTPUTS: tuple[Output, ...] = (
    Output('label', Image, 'mono8', LABELS, lazy=False,
           description='class ids, 255 = ignore/void'),
    Output('label/compressed', CompressedImage, 'mono8; png compressed', LABELS,
           'publish_compressed_label', True,
           description='publish ~/label/compressed (labels as lossless PNG, for recording)'),
    Output('confidence', Image, 'mono8', 'confidence', 'publish_confidence', True,
           description='publish ~/confidence (mono8: 255 x the largest softmax probability)'),
    Output('color', Image, 'rgb8', 'color', 'publish_color', True,
           description='publish ~/color (rgb8 colour mask)'),
    Output('overlay', Image, 'rgb8', 'overlay', 'publish_overlay', False,
           description='publish ~/overlay (mask blended over the image)'),
    Output('label_small', Image, 'mono8', 'small_labels', 'publish_small_label', False,
           description='publish ~/label_small (labels at network output resolution)'),
    Output('label/camera_info', CameraInfo, '', 'label',
           description="the camera's CameraInfo of ~/label (same size)"),
    Output('label_small/camera_info', CameraInfo, '', 'label_small',
           description='CameraInfo scaled to ~/label_small'),
)
IMAGE_OUTPUTS = tuple(o for o in OUTPUTS if o.msg_type is not CameraInfo)
CAMERA_INFO_OUTPUTS = tuple(o for o in OUTPUTS if o.msg_type is CameraInfo)
# The runtime parameters the table declares: name -> (default, description).
OUTPUT_PARAMETERS = {o.parameter: (o.default, o.description) for o in OUTPUTS if o.parameter}


def to_message(output: Output, array: np.ndarray, header):
    if output.msg_type is CompressedImage:
        return labels_to_compressed(array, header)  # the only compressed row: png labels
    return numpy_to_image(array, output.encoding, header)


class CameraOutputs:
    """The output publishers of one camera, at `~/<prefix><name>` for every row.

    Outputs are reliable: a reliable publisher serves reliable and best-effort subscribers
    alike, so a bag-replay evaluator and RViz both get the masks.
    """

    def __init__(self, node: Node, prefix: str = ''):
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                         reliability=ReliabilityPolicy.RELIABLE)
        self.publishers = {o.name: node.create_publisher(o.msg_type, f'~/{prefix}{o.name}', qos)
                           for o in OUTPUTS}

    def topic_name(self, name: str = 'label') -> str:
        return self.publishers[name].topic_name

    def _wanted(self, output: Output, enabled: Mapping[str, bool]) -> bool:
        if output.parameter and not enabled[output.parameter]:
            return False
        return not output.lazy or self.publishers[output.name].get_subscription_count() > 0

    def requested_results(self, enabled: Mapping[str, bool]) -> tuple[str, ...]:
        """The optional result fields to compute for this frame (the lazy selection).

        A 720p colour mask costs milliseconds to make and serialise: only what is enabled
        and listened to is computed, like image_transport's lazy publishers.
        """
        return tuple(dict.fromkeys(o.result for o in IMAGE_OUTPUTS
                                   if o.result != LABELS and self._wanted(o, enabled)))

    def publish(self, result, header, enabled: Mapping[str, bool]) -> None:
        """Every enabled (and, if lazy, listened-to) output the result holds, with `header`."""
        for output in IMAGE_OUTPUTS:
            array = getattr(result, output.result)
            if array is not None and self._wanted(output, enabled):
                self.publishers[output.name].publish(to_message(output, array, header))

    def publish_camera_infos(self, pairs: Iterable) -> None:
        """Publish the image outputs' CameraInfo from (info, (header, sizes by output)) pairs."""
        for info, (header, sizes) in pairs:
            for output in CAMERA_INFO_OUTPUTS:
                publisher = self.publishers[output.name]
                if publisher.get_subscription_count():
                    publisher.publish(scale_camera_info(info, *sizes[output.result],
                                                        header=header))


def publish_class_tables(node: Node, spec):
    """What the label ids mean, once, transient local: late subscribers get it too.

    `~/classes` (JSON) always, `~/label_info` (vision_msgs/LabelInfo) when vision_msgs is
    importable; returns both publishers (None for the second without vision_msgs).
    """
    latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                         reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    classes = node.create_publisher(String, '~/classes', latched)
    classes.publish(String(data=class_table_json(spec)))
    types = vision_msgs_types()
    if types is None:
        node.get_logger().info('vision_msgs not found: no ~/label_info (LabelInfo); the '
                               'class table is on ~/classes (JSON)')
        return classes, None
    label_info_type, vision_class_type = types
    header = Header(stamp=node.get_clock().now().to_msg())
    label_info = node.create_publisher(label_info_type, '~/label_info', latched)
    label_info.publish(label_info_message(spec, label_info_type, vision_class_type, header))
    return classes, label_info
