"""Reading a model path: our .pt model file or an exported .onnx file, told apart by suffix.

    source = read_model_source('models/camvid_x39.pt')   # ModelFileError (one line) if unusable
    source.spec, source.state (.pt weights), source.onnx_info (.onnx export record)
    spec = read_spec('model.onnx')                        # the spec alone

The one entry point for everything that takes a model path (the Segmenter, the replay
evaluator): the file is checked once (bisenet_core.modelfile.check_file, inside the readers)
and read once.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bisenet_core.onnx_metadata import read_onnx_export_info, read_onnx_metadata, read_onnx_spec
from bisenet_core.modelfile import read_model_file
from bisenet_core.spec import ModelSpec

ONNX_SUFFIX = '.onnx'


@dataclass(frozen=True)
class ModelSource:
    """What a model path holds.

    path: the file (None: a model in memory, as Segmenter.from_model has). spec: its
    ModelSpec. state: the weights of a .pt model file (None for ONNX). onnx_info: the export
    record of an .onnx file (read_onnx_export_info; None for .pt).
    """

    path: Path | None
    spec: ModelSpec
    state: dict | None = None
    onnx_info: dict | None = None

    @property
    def is_onnx(self) -> bool:
        return self.onnx_info is not None


def is_onnx_path(path: str | os.PathLike) -> bool:
    """True for a path named *.onnx (any case): it is read as an ONNX file, else as .pt."""
    return Path(path).suffix.lower() == ONNX_SUFFIX


def read_model_source(path: str | os.PathLike) -> ModelSource:
    """Read a .pt model file or .onnx file, or raise ModelFileError naming it and the problem."""
    path = Path(path)
    if is_onnx_path(path):
        meta = read_onnx_metadata(path)
        return ModelSource(path, read_onnx_spec(path, meta),
                           onnx_info=read_onnx_export_info(path, meta))
    state, spec = read_model_file(path)
    return ModelSource(path, spec, state=state)


def read_spec(path: str | os.PathLike) -> ModelSpec:
    """The ModelSpec of a .pt model file or an exported .onnx file (ModelFileError if unusable)."""
    return read_model_source(path).spec
