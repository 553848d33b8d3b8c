"""Datasets in their on-disk formats, and the training/evaluation transforms.

Every dataset gives (uint8 H x W x 3 RGB image, uint8 H x W label) pairs, or transform(image,
label) when given a transform. Labels hold train ids 0..C-1 and 255 (ignore). The formats
(name -> loader, class list, how to recognise one on disk) are registered in formats.py.
"""
from bisenet_core.data.base import (DatasetLayoutError, LabelError, SegmentationDataset,
                                    check_label_values, read_image, read_label)
from bisenet_core.data.camvid import CamVidDataset
from bisenet_core.data.cityscapes import CityscapesDataset
from bisenet_core.data.cocostuff import COCOStuffDataset
from bisenet_core.data.folder import FolderDataset, read_class_list
from bisenet_core.data.transforms import EvalTransform, TrainTransform

__all__ = [
    'CamVidDataset', 'CityscapesDataset', 'COCOStuffDataset', 'DatasetLayoutError',
    'EvalTransform', 'FolderDataset', 'LabelError', 'SegmentationDataset', 'TrainTransform',
    'check_label_values', 'read_class_list', 'read_image', 'read_label',
]
