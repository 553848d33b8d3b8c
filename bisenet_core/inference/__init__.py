"""Inference: `Segmenter` (image -> labels) over torch, ONNX Runtime and TensorRT backends."""
from bisenet_core.inference.postprocess import logits_to_labels
from bisenet_core.inference.segmenter import SegmentationResult, Segmenter, cache_dir

__all__ = ['SegmentationResult', 'Segmenter', 'cache_dir', 'logits_to_labels']
