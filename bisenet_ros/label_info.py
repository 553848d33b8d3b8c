"""What the label ids mean, for any subscriber: vision_msgs/LabelInfo and a JSON class table.

vision_msgs (LabelInfo, published once, transient local, as vision_msgs recommends) is not on
PyPI; it is used when importable (a sourced system ROS 2 has it). The JSON table on
`~/classes` (std_msgs/String) is always published: any tool reads it, and it carries what
LabelInfo has no field for (palette, ignore id).
"""
from __future__ import annotations

import importlib
import json

from bisenet_core.spec import ModelSpec


def vision_msgs_types():
    """(LabelInfo, VisionClass) from vision_msgs.msg, or None when vision_msgs is absent."""
    try:
        module = importlib.import_module('vision_msgs.msg')
        return module.LabelInfo, module.VisionClass
    except (ImportError, AttributeError):
        return None


def label_info_message(spec: ModelSpec, label_info_type, vision_class_type, header=None):
    """A LabelInfo with one VisionClass (class_id = label value, class_name) per class.

    threshold is 0: every pixel gets its argmax class (see ~/confidence for the score).
    """
    message = label_info_type()
    if header is not None:
        message.header = header
    message.class_map = [vision_class_type(class_id=class_id, class_name=name)
                         for class_id, name in enumerate(spec.class_names)]
    message.threshold = 0.0
    return message


def class_table_json(spec: ModelSpec) -> str:
    """The class table as JSON: ids, names and rgb colours of ~/label and ~/color."""
    return json.dumps({
        'classes': [{'id': class_id, 'name': name, 'color': list(color)}
                    for class_id, (name, color) in enumerate(zip(spec.class_names,
                                                                 spec.palette))],
        'ignore_id': spec.ignore_index,
        'dataset': spec.dataset,
    })
