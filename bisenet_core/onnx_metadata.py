"""What an ONNX file exported here says about itself: its ModelSpec and export record.

`export_onnx` and `export_frame_onnx` store both as JSON in the file's metadata_props;
the Segmenter, the replay evaluator and the tests read them back with these functions.
Reading a model file is not exporting one, so the readers live apart from the exporters.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import onnx

from bisenet_core.modelfile import ModelFileError, check_file
from bisenet_core.spec import ModelSpec

# ONNX metadata_props keys.
SPEC_KEY = 'bisenet_spec'
EXPORT_KEY = 'bisenet_export'  # {"precision", "output", "dynamic", "input_size", ...}


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, str]:
    """All metadata_props of an ONNX file, or ModelFileError naming the file and the problem."""
    path = check_file(path, 'ONNX file')
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise ModelFileError(f'ONNX file {path}: cannot be read (truncated or corrupt?): '
                             f'{type(exc).__name__}') from None
    if not proto.graph.node:
        raise ModelFileError(f'ONNX file {path}: not an ONNX model (empty graph)')
    meta = {prop.key: prop.value for prop in proto.metadata_props}
    _check_output_classes(proto, meta, path)
    return meta


def _check_output_classes(proto, meta: dict[str, str], path: Path) -> None:
    """A graph whose logits have another class count than its spec lists is refused.

    Otherwise the node would publish label ids its class list (and palette) does not have.
    Only fixed class axes of float N x C x h x w outputs are checked.
    """
    try:
        listed = len(json.loads(meta[SPEC_KEY])['class_names'])
    except (KeyError, TypeError, ValueError):
        return  # no or bad spec: read_onnx_spec says so
    for output in proto.graph.output:
        tensor = output.type.tensor_type
        dims = tensor.shape.dim
        if (tensor.elem_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
                and len(dims) == 4 and dims[1].HasField('dim_value')
                and dims[1].dim_value != listed):
            raise ModelFileError(f'ONNX file {path}: output {output.name!r} has '
                                 f'{dims[1].dim_value} classes but its {SPEC_KEY!r} metadata '
                                 f'lists {listed}; re-export it with the matching spec')


def read_onnx_spec(path: str | os.PathLike, meta: dict[str, str] | None = None) -> ModelSpec:
    """The ModelSpec stored by export_onnx, or ModelFileError if absent or unreadable.

    `meta`: the file's read_onnx_metadata when the caller has it already (saves a read).
    """
    meta = read_onnx_metadata(path) if meta is None else meta
    if SPEC_KEY not in meta:
        raise ModelFileError(f'ONNX file {path}: no {SPEC_KEY!r} metadata '
                             '(not exported by bisenet_core.export.export_onnx?)')
    try:
        return ModelSpec.from_dict(json.loads(meta[SPEC_KEY]))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise ModelFileError(f'ONNX file {path}: bad {SPEC_KEY!r} metadata: {exc}') from None


def read_onnx_export_info(path: str | os.PathLike, meta: dict[str, str] | None = None) -> dict:
    """How the file was exported: {'precision', 'output', 'dynamic', 'input_size', 'opset'}.

    Files without the record (exported elsewhere) are taken as fp32 logits. `meta` as in
    read_onnx_spec.
    """
    meta = read_onnx_metadata(path) if meta is None else meta
    info = {'precision': 'fp32', 'output': 'logits', 'dynamic': None, 'input_size': None}
    if EXPORT_KEY in meta:
        try:
            info.update(json.loads(meta[EXPORT_KEY]))
        except json.JSONDecodeError as exc:
            raise ModelFileError(f'ONNX file {path}: bad {EXPORT_KEY!r} metadata: {exc}') from None
    return info
