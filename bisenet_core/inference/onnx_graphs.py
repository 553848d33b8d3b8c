"""The ONNX graphs a Segmenter runs on ONNX Runtime, exported once and cached on disk.

Two kinds (bisenet_core.export, bisenet_core.inference.export_frames), both exported with a
free batch axis: 'logits' (normalised N x 3 x h x w batch -> 1/8 logits; the host pipeline)
and 'frame' (N uint8 frames of one layout -> uint8 labels, one file per upsampling mode; the
device pipeline). A .pt model file is exported on first use into $BISENET_CACHE_DIR/onnx
(default ~/.cache/bisenet_ros/onnx), named by the file's content, so later starts skip the
export and an edited file is exported again. An in-memory model is exported into a temporary
folder that lives as long as the Segmenter. An .onnx file is used
as it is (it is one kind, and one upsampling mode if it is a frame graph).
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import weakref
from pathlib import Path

from torch import nn

from bisenet_core.export import export_onnx
from bisenet_core.inference.export_frames import export_frame_onnx
from bisenet_core.modelfile import ModelFileError, build_model
from bisenet_core.onnx_metadata import read_onnx_spec
from bisenet_core.spec import ModelSpec

log = logging.getLogger(__name__)

# Bump when the export changes in a way that makes cached ONNX files stale
# (3: both kinds take a batch of frames).
_CACHE_FORMAT = 3


def cache_dir() -> Path:
    """Where exported ONNX files (and TensorRT engines) are cached."""
    root = os.environ.get('BISENET_CACHE_DIR')
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get('XDG_CACHE_HOME')
    return (Path(xdg).expanduser() if xdg else Path.home() / '.cache') / 'bisenet_ros'


def _file_digest(path: Path) -> str:
    with open(path, 'rb') as f:
        return hashlib.file_digest(f, 'sha256').hexdigest()


class OnnxGraphs:
    """Paths of the logits graph and the frame graphs of one model, exporting on demand.

    Args:
        spec: the model's ModelSpec.
        precision: precision of the exported graphs ('fp32' or 'fp16').
        input_size: network input (width, height).
        path: the .pt or .onnx file, or None for an in-memory `model`.
        state: the .pt file's weights (read once by the caller), to build the model from.
        model: the in-memory model (from_model).
        onnx_info: the .onnx file's export record (read_onnx_export_info).
    """

    def __init__(self, spec: ModelSpec, precision: str, input_size: tuple[int, int],
                 path: Path | None = None, state: dict | None = None,
                 model: nn.Module | None = None, onnx_info: dict | None = None):
        self.spec = spec
        self.precision = precision
        self.input_size = tuple(input_size)
        self.path = path
        self._state = state
        self._model = model
        self._info = onnx_info
        self._tmpdir = None
        self._digest = None

    @property
    def given_kind(self) -> str | None:
        """'logits' or 'frame' for an .onnx file, None when graphs are exported here."""
        return self._info['output'] if self._info is not None else None

    def logits(self) -> Path:
        """The logits graph (normalised batch -> 1/8 logits)."""
        if self._info is not None:
            return self._given('logits', 'the host pipeline and Segmenter.infer')
        return self._export('logits')

    def frame(self, upsample: str) -> Path:
        """The frame graph for one upsampling mode (uint8 frame -> uint8 labels)."""
        if self._info is not None:
            path = self._given('frame', 'the device pipeline on ONNX Runtime')
            if self._info.get('upsample') != upsample:
                raise ValueError(f"ONNX file {self.path} upsamples {self._info.get('upsample')!r}"
                                 f'; {upsample!r} needs another export (or the .pt file)')
            return path
        return self._export('frame', upsample)

    def _given(self, kind: str, user: str) -> Path:
        if self._info['output'] != kind:
            raise ValueError(f"ONNX file {self.path} was exported with output="
                             f"{self._info['output']!r}; {user} needs a {kind} graph "
                             '(or the .pt file)')
        return self.path

    def _export(self, kind: str, upsample: str | None = None) -> Path:
        width, height = self.input_size
        what = kind if upsample is None else f'{kind}-{upsample}'
        if self.path is None:  # in-memory model: a private temporary folder
            if self._tmpdir is None:
                self._tmpdir = tempfile.mkdtemp(prefix='bisenet_onnx_')
                weakref.finalize(self, shutil.rmtree, self._tmpdir, True)
            target = Path(self._tmpdir) / f'{what}.onnx'
            if target.is_file():
                return target
            return self._write(kind, upsample, target, self._model)
        # The cache key is the file's content, so edits invalidate it.
        if self._digest is None:
            self._digest = _file_digest(self.path)
        size = self.path.stat().st_size
        name = (f'{self.path.stem}-{self._digest[:16]}-{size}-{self.precision}-{what}-'
                f'{width}x{height}-v{_CACHE_FORMAT}.onnx')
        cached = cache_dir() / 'onnx' / name
        if cached.is_file():
            try:
                read_onnx_spec(cached)
                return cached
            except ModelFileError as exc:  # e.g. a disk filled up mid-copy by another tool
                log.warning('re-exporting: %s', exc)
        log.info('exporting %s to %s (once; later starts reuse it)', self.path, cached)
        return self._write(kind, upsample, cached,
                           build_model(self._state, self.spec, self.path))

    def _write(self, kind: str, upsample: str | None, target: Path, model: nn.Module) -> Path:
        if kind == 'logits':
            return export_onnx(model, self.spec, target, precision=self.precision,
                               input_size=self.input_size, dynamic_batch=True)
        return export_frame_onnx(model, self.spec, target, upsample=upsample,
                                 precision=self.precision, input_size=self.input_size,
                                 batch=True)
