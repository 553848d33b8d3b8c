"""End-to-end ONNX export: uint8 camera frame in, uint8 labels out, any frame size.

    export_frame_onnx(model, spec, 'x39_frames.onnx', upsample='bilinear')
    export_frame_onnx(model, spec, 'x39_batch.onnx', batch=True)   # N frames of one layout

The graph is bisenet_core.inference.pipeline.FramePipeline traced as it is, so ONNX Runtime
(CPU, CUDA, TensorRT) runs the same resize, normalisation, upsampling and argmax as torch, on
its device; the host only hands over the message's bytes:

    input  'image':        uint8 H x W x C (C = 1, 3 or 4; H, W and C dynamic)
    input  'channels':     int64 [3], the source channel of R, G, B (frames.channel_index)
    output 'labels':       uint8 H x W
    output 'small_labels': uint8 h/8 x w/8 (the network's own resolution)
    output 'confidence':   uint8 H x W, round(255 x max softmax probability)

With `batch=True` every input and output but 'channels' gets a leading N axis (dynamic): N
frames of one layout (size, channels, colour order) in one run, the network seeing them as
one batch (the Segmenter's own exports are these). The network input size is fixed at export
(`input_size`); the upsampling mode too (one file per mode). The ModelSpec and an export
record ({'output': 'frame', 'upsample', 'batch', ...}) are stored in the metadata as for
export_onnx. Conv+BN are folded first (ONNX Runtime would fold them
too; TensorRT and the fp16 cast then see fewer layers).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from bisenet_core.export import OPSET, export_copy, trace_onnx, write_onnx
from bisenet_core.inference.frames import FRAME_INPUTS, FRAME_OUTPUTS
from bisenet_core.inference.pipeline import FramePipeline
from bisenet_core.inference.postprocess import UPSAMPLE_MODES
from bisenet_core.model.fuse import fold_conv_bn
from bisenet_core.spec import ModelSpec

# Frame size traced at (any works; the graph is dynamic). Large enough that the bilinear
# class groups it fixes stay small at camera resolutions.
TRACE_SIZE = (1280, 720)
# Batch size traced at with batch=True (2, not 1: the tracer may specialise a size-1 axis).
TRACE_BATCH = 2


class _FrameExportWrapper(nn.Module):
    """FramePipeline with a fixed upsampling mode and a tuple of outputs (the graph's)."""

    def __init__(self, pipeline: FramePipeline, upsample: str):
        super().__init__()
        self.pipeline = pipeline
        self.upsample = upsample

    def forward(self, image: torch.Tensor, channels: torch.Tensor):
        out = self.pipeline(image, channels, self.upsample, ('small_labels', 'confidence'))
        return out['labels'], out['small_labels'], out['confidence']


def export_frame_onnx(model: nn.Module, spec: ModelSpec, path: str | os.PathLike,
                      upsample: str = 'bilinear', precision: str = 'fp32',
                      input_size: tuple[int, int] | None = None, opset: int = OPSET,
                      batch: bool = False) -> Path:
    """Export `model` as one frame -> labels graph (module docstring); returns the path.

    Args:
        model: a BiSeNet (a CPU copy in eval mode is exported; the caller's is untouched).
        spec: its ModelSpec.
        upsample: 'nearest' or 'bilinear'.
        precision: 'fp32', or 'fp16' (the network and the resize in half; for the CUDA
            provider; TensorRT picks fp16 kernels itself from an fp32 graph).
        input_size: network input (width, height); default spec.input_size.
        opset: ONNX opset version.
        batch: N x H x W x C frames in, N x ... outputs (module docstring); else one frame.
    """
    if upsample not in UPSAMPLE_MODES:
        raise ValueError(f'upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}')
    module, (width, height) = export_copy(model, spec, precision, input_size)
    fold_conv_bn(module, torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    dtype = torch.float16 if precision == 'fp16' else torch.float32
    pipeline = FramePipeline(module.to(dtype), spec, (width, height), dtype)
    wrapper = _FrameExportWrapper(pipeline, upsample).eval()

    trace_w, trace_h = TRACE_SIZE
    image = torch.zeros(trace_h, trace_w, 3, dtype=torch.uint8)
    channels = torch.tensor([0, 1, 2])
    dynamic_axes = {'image': {0: 'height', 1: 'width', 2: 'channels'},
                    'labels': {0: 'height', 1: 'width'},
                    'confidence': {0: 'height', 1: 'width'}}
    if batch:
        image = image[None].expand(TRACE_BATCH, -1, -1, -1).contiguous()
        dynamic_axes = {name: {0: 'batch', **{axis + 1: label for axis, label in axes.items()}}
                        for name, axes in dynamic_axes.items()}
        dynamic_axes['small_labels'] = {0: 'batch'}
    proto = trace_onnx(wrapper, (image, channels), list(FRAME_INPUTS), list(FRAME_OUTPUTS),
                       dynamic_axes, opset)
    return write_onnx(proto, spec, {'precision': precision, 'output': 'frame',
                                    'upsample': upsample, 'dynamic': True, 'batch': batch,
                                    'input_size': [width, height], 'opset': opset},
                      path, full_check=True)
