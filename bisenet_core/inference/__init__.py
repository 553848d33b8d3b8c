"""Inference: `Segmenter` (camera frame -> labels) over torch, ONNX Runtime and TensorRT."""
from bisenet_core.inference.frames import COLOR_ORDERS, OUTPUTS
from bisenet_core.inference.postprocess import logits_to_labels
from bisenet_core.inference.onnx_graphs import cache_dir
from bisenet_core.inference.options import SegmenterOptions
from bisenet_core.inference.segmenter import SegmentationResult, Segmenter

__all__ = ['COLOR_ORDERS', 'OUTPUTS', 'SegmentationResult', 'Segmenter', 'SegmenterOptions',
           'cache_dir', 'logits_to_labels']
