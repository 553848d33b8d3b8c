"""bisenet_core: BiSeNet model, data, training recipe, metrics, export and inference.

Pure Python (torch, numpy, OpenCV, ONNX Runtime); nothing here imports ROS.
"""
from bisenet_core.spec import OUTPUT_STRIDE, SIZE_DIVISOR, ModelSpec

__all__ = ['OUTPUT_STRIDE', 'SIZE_DIVISOR', 'ModelSpec']
