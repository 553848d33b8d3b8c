"""ONNX export of a BiSeNet, with its ModelSpec stored in the ONNX metadata.

    export_onnx(model, spec, 'model.onnx')                      # fp32 1/8 logits, fixed size
    export_onnx(model, spec, 'batch.onnx', dynamic_batch=True)  # fixed size, any batch
    export_onnx(model, spec, 'labels.onnx', output='labels')    # uint8 1/8 argmax labels
    spec = read_onnx_spec('model.onnx')                          # bisenet_core.onnx_metadata

The graph is a thin wrapper around the eval-mode model (`_ExportWrapper`), never a mode flag in
the model itself. Its interface does not depend on the precision:

    input  'image':  float32 N x 3 x H x W, normalised RGB (bisenet_core.preprocess.normalize)
    output 'logits': float32 N x C x H/8 x W/8       (output='logits')
    output 'labels': uint8   N x H/8 x W/8           (output='labels'; ArgMax + Cast, standard ops)

precision='fp16' converts the model's weights to half (`model.half()`) and puts a Cast to half
after the input and a Cast back to float32 before the output, so callers always feed and
receive float32 (the two casts cost next to nothing next to the convolutions), and one
pre/post-processing path serves both precisions. fp16 graphs are meant for GPU execution
providers; on CPU use fp32. For TensorRT, export fp32 and let TensorRT pick fp16 kernels
(`trt_fp16_enable`), which is what `bisenet_core.inference` does.

Uses the TorchScript-based exporter (`dynamo=False`): it is fast, works offline and handles
the model's shape arithmetic (padding to a multiple of 32, cropping) for dynamic H/W.
"""
from __future__ import annotations

import copy
import io
import json
import os
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from bisenet_core.atomic import atomic_write_bytes
from bisenet_core.modelfile import unwrap_model
from bisenet_core.onnx_metadata import EXPORT_KEY, SPEC_KEY
from bisenet_core.spec import ModelSpec, check_input_size

INPUT_NAME = 'image'
PRECISIONS = ('fp32', 'fp16')
OUTPUTS = ('logits', 'labels')
OPSET = 17


class _ExportWrapper(nn.Module):
    """Eval-mode BiSeNet -> float32 1/8 logits or uint8 1/8 labels (the exported graph)."""

    def __init__(self, model: nn.Module, output: str, half: bool):
        super().__init__()
        self.model = model
        self.output = output
        self.half = half

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.half() if self.half else image
        logits = self.model(x).logits.float()
        if self.output == 'labels':
            # ArgMax gives int64; classes fit in uint8 (ModelSpec allows at most 255).
            return logits.argmax(dim=1).to(torch.uint8)
        return logits


def export_onnx(model: nn.Module, spec: ModelSpec, path: str | os.PathLike,
                precision: str = 'fp32', output: str = 'logits', dynamic: bool = False,
                input_size: tuple[int, int] | None = None, opset: int = OPSET,
                dynamic_batch: bool = False) -> Path:
    """Export `model` to an ONNX file at `path` (written atomically) and return the path.

    Args:
        model: a BiSeNet (any mode and device; a CPU copy in eval mode is exported).
        spec: its ModelSpec, stored as JSON in metadata_props['bisenet_spec'].
        precision: 'fp32', or 'fp16' (half weights, float32 input/output; see module doc).
        output: 'logits' (float32 1/8 logits) or 'labels' (uint8 1/8 argmax).
        dynamic: if True, batch, height and width are free (any H, W; multiples of 32 are
            cheapest); else the graph is fixed to `input_size`.
        input_size: (width, height) traced at; default spec.input_size.
        opset: ONNX opset version.
        dynamic_batch: the batch axis free at a fixed `input_size` (the Segmenter runs
            several camera frames as one batch); without it or `dynamic` the graph takes
            batch 1 only.
    """
    if output not in OUTPUTS:
        raise ValueError(f'output must be one of {OUTPUTS}, got {output!r}')
    module, (width, height) = export_copy(model, spec, precision, input_size)
    if precision == 'fp16':
        module = module.half()
    wrapper = _ExportWrapper(module, output, half=precision == 'fp16').eval()

    dummy = torch.zeros(1, 3, height, width)
    out_name = output
    dynamic_axes = None
    if dynamic:
        dynamic_axes = {INPUT_NAME: {0: 'batch', 2: 'height', 3: 'width'}}
        dynamic_axes[out_name] = ({0: 'batch', 2: 'height_8', 3: 'width_8'} if output == 'logits'
                                  else {0: 'batch', 1: 'height_8', 2: 'width_8'})
    elif dynamic_batch:
        dynamic_axes = {INPUT_NAME: {0: 'batch'}, out_name: {0: 'batch'}}
    proto = trace_onnx(wrapper, (dummy,), [INPUT_NAME], [out_name], dynamic_axes, opset)
    return write_onnx(proto, spec, {'precision': precision, 'output': output,
                                    'dynamic': bool(dynamic),
                                    'dynamic_batch': bool(dynamic or dynamic_batch),
                                    'input_size': [width, height], 'opset': opset},
                      path, full_check=True)


def export_copy(model: nn.Module, spec: ModelSpec, precision: str,
                input_size: tuple[int, int] | None) -> tuple[nn.Module, tuple[int, int]]:
    """An fp32 CPU eval-mode copy of the model and the network input (width, height).

    Checks the arguments; the caller's model keeps its device, dtype and mode.
    """
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {PRECISIONS}, got {precision!r}')
    width, height = tuple(input_size) if input_size is not None else spec.input_size
    check_input_size(width, height)
    module = unwrap_model(model)
    num_classes = getattr(module, 'num_classes', spec.num_classes)
    if num_classes != spec.num_classes:
        raise ValueError(f'model has {num_classes} classes but the spec lists '
                         f'{spec.num_classes}')
    return copy.deepcopy(module).cpu().float().eval(), (width, height)


def trace_onnx(module: nn.Module, args: tuple, input_names: list[str],
               output_names: list[str], dynamic_axes: dict | None, opset: int):
    """The ONNX ModelProto of `module` traced on `args` (TorchScript exporter)."""
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about shape arithmetic turned into constants; with dynamic axes
        # the shapes are traced as values, and the tests check other sizes still work.
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        # We choose the TorchScript exporter on purpose (see module doc); its notices are noise.
        warnings.filterwarnings('ignore', message='.*legacy TorchScript-based ONNX export')
        warnings.filterwarnings('ignore', message='The feature will be removed')
        torch.onnx.export(module, args, buffer, input_names=input_names,
                          output_names=output_names, dynamic_axes=dynamic_axes,
                          opset_version=opset, do_constant_folding=True, dynamo=False)
    return onnx.load_from_string(buffer.getvalue())


def write_onnx(proto, spec: ModelSpec, export_info: dict, path: str | os.PathLike,
               full_check: bool = False) -> Path:
    """Stamp the spec and the export record into `proto`, check it, write it atomically."""
    for key, value in ((SPEC_KEY, json.dumps(spec.to_dict(), sort_keys=True)),
                       (EXPORT_KEY, json.dumps(export_info, sort_keys=True))):
        entry = next((p for p in proto.metadata_props if p.key == key), None)
        if entry is None:
            entry = proto.metadata_props.add()
            entry.key = key
        entry.value = value
    proto.producer_name = 'bisenet_ros'
    onnx.checker.check_model(proto, full_check=full_check)
    return atomic_write_bytes(proto.SerializeToString(), path)
