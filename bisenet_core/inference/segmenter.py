"""Segmenter: an image in, a full-size uint8 label map out, on the backend of your choice.

    seg = Segmenter('models/camvid_x39.pt')              # backend='auto', device='auto'
    labels = seg(image_rgb)                              # H x W uint8 class ids
    result = seg.segment(image_bgr, color_order='bgr')   # labels + per-stage timings (ms)
    vis = seg.overlay(image_rgb, result.labels)

A model path is our .pt model file (bisenet_core.modelfile) or an .onnx file written by
bisenet_core.export.export_onnx (the ModelSpec is read from its metadata). Running a .pt file
on ONNX Runtime exports it once to an on-disk cache, keyed by the file's content, so later
starts skip the export: $BISENET_CACHE_DIR/onnx, default ~/.cache/bisenet_ros/onnx.
"""
from __future__ import annotations

import copy
import hashlib
import logging
import os
import shutil
import tempfile
import time
import warnings
import weakref
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from torch import nn

from bisenet_core.export import (export_onnx, read_onnx_export_info, read_onnx_metadata,
                                 read_onnx_spec)
from bisenet_core.inference.backends import (PRECISIONS, OrtBackend, TorchBackend,
                                             resolve_backend, resolve_device, resolve_precision)
from bisenet_core.inference.postprocess import (UPSAMPLE_MODES, blend_labels, check_labels,
                                                logits_to_labels, palette_lut)
from bisenet_core.modelfile import ModelFileError, build_model, read_model_file
from bisenet_core.preprocess import normalize, resize_image
from bisenet_core.spec import ModelSpec, check_input_size

log = logging.getLogger(__name__)

COLOR_ORDERS = ('rgb', 'bgr')
# Bump when the export changes in a way that makes cached ONNX files stale.
_CACHE_FORMAT = 1


class SegmentationResult(NamedTuple):
    """One segmented image.

    labels: uint8 H x W class ids at the input image's size; timings_ms: preprocess,
    inference, postprocess (milliseconds).
    """

    labels: np.ndarray
    timings_ms: dict[str, float]


def cache_dir() -> Path:
    """Where exported ONNX files (and TensorRT engines) are cached."""
    root = os.environ.get('BISENET_CACHE_DIR')
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get('XDG_CACHE_HOME')
    return (Path(xdg).expanduser() if xdg else Path.home() / '.cache') / 'bisenet_ros'


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


class Segmenter:
    """BiSeNet inference: preprocess -> backend -> postprocess.

    Args:
        model_path: .pt model file or .onnx file from export_onnx.
        backend: 'torch' (eager), 'onnxruntime', 'tensorrt' (ONNX Runtime's TensorRT provider),
            or 'auto' (onnxruntime when installed, else torch).
        device: 'cpu', 'cuda', or 'auto' (CUDA when the backend can use it, else CPU with a
            warning).
        precision: 'fp32' or 'fp16' (GPU only; on the CPU it falls back to fp32 with a warning).
        input_size: network input (width, height), 32..8192 per side; default spec.input_size.
            Images of any size are resized to it, and labels come back at the image's size.
        upsample: 'nearest' (argmax at 1/8, then upsample labels: fast) or 'bilinear'
            (upsample logits, then argmax: smoother boundaries, slower).
        threads: CPU threads for inference (torch: process-wide); default all usable cores.
            Fewer leaves cores to other nodes on a busy robot computer.
    """

    def __init__(self, model_path: str | os.PathLike, backend: str = 'auto',
                 device: str = 'auto', precision: str = 'fp32',
                 input_size: tuple[int, int] | None = None, upsample: str = 'nearest',
                 threads: int | None = None):
        path = Path(model_path)
        if not path.is_file():
            raise ModelFileError(f'model file {path}: not found')
        self._setup(path, None, None, backend, device, precision, input_size, upsample,
                    threads)

    @classmethod
    def from_model(cls, model: nn.Module, spec: ModelSpec, backend: str = 'auto',
                   device: str = 'auto', precision: str = 'fp32',
                   input_size: tuple[int, int] | None = None,
                   upsample: str = 'nearest', threads: int | None = None) -> 'Segmenter':
        """A Segmenter for an in-memory model (e.g. straight after training)."""
        self = cls.__new__(cls)
        self._setup(None, model, spec, backend, device, precision, input_size, upsample,
                    threads)
        return self

    # ---------------------------------------------------------------- construction
    def _setup(self, path: Path | None, model: nn.Module | None, spec: ModelSpec | None,
               backend: str, device: str, precision: str,
               input_size: tuple[int, int] | None, upsample: str,
               threads: int | None) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f'threads must be >= 1, got {threads}')
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f'upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}')
        backend = resolve_backend(backend)
        device = resolve_device(device, backend)
        if precision not in PRECISIONS:  # also for ONNX files, whose own precision wins below
            raise ValueError(f'precision must be one of {PRECISIONS}, got {precision!r}')
        is_onnx = path is not None and path.suffix.lower() == '.onnx'
        onnx_info = state = None
        if is_onnx:
            meta = read_onnx_metadata(path)
            onnx_info = read_onnx_export_info(path, meta)
            spec = read_onnx_spec(path, meta)
            if backend == 'torch':
                raise ValueError(f'backend torch needs a .pt model file, got the ONNX file '
                                 f'{path}; use backend onnxruntime or tensorrt')
            if onnx_info['output'] != 'logits':
                raise ValueError(f"ONNX file {path} was exported with output="
                                 f"{onnx_info['output']!r}; the Segmenter needs output='logits'")
            if backend == 'onnxruntime' and onnx_info['precision'] != precision:
                # The file fixes the precision of the graph ORT runs.
                if precision != 'fp32' or device != 'cpu':
                    warnings.warn(f"ONNX file {path} is {onnx_info['precision']}; precision "
                                  f"{precision!r} ignored", RuntimeWarning, stacklevel=3)
                precision = onnx_info['precision']
            else:
                precision = resolve_precision(precision, device)
        else:
            precision = resolve_precision(precision, device)
            if path is not None:
                state, spec = read_model_file(path)
                if backend == 'torch':
                    model = build_model(state, spec, path)

        if input_size is None:
            fixed = onnx_info.get('input_size') if onnx_info and not onnx_info['dynamic'] else None
            input_size = tuple(fixed) if fixed else spec.input_size
        input_size = tuple(int(v) for v in input_size)
        if len(input_size) != 2:
            raise ValueError(f'input_size must be (width, height), got {input_size}')
        check_input_size(*input_size)

        self.upsample = upsample
        self.device = device
        self.precision = precision
        self.input_size = input_size
        self.backend_name = backend
        self._tmpdir = None

        if backend == 'torch':
            if path is None:  # from_model: moving/halving must not change the caller's model
                model = copy.deepcopy(model)
            self._backend = TorchBackend(model, device, precision, threads)
        else:
            provider = 'tensorrt' if backend == 'tensorrt' else device
            # TensorRT makes its own fp16 engine from the fp32 graph (trt_fp16_enable);
            # the CUDA provider runs the graph as exported, so it needs the fp16 graph.
            graph_precision = 'fp16' if precision == 'fp16' and provider == 'cuda' else 'fp32'
            if is_onnx:
                onnx_path = path
            elif path is not None:
                onnx_path = self._cached_onnx(path, state, spec, graph_precision, input_size)
            else:
                self._tmpdir = tempfile.mkdtemp(prefix='bisenet_onnx_')
                weakref.finalize(self, shutil.rmtree, self._tmpdir, True)
                onnx_path = export_onnx(model, spec, Path(self._tmpdir) / 'model.onnx',
                                        precision=graph_precision, input_size=input_size)
            trt_cache = cache_dir() / 'tensorrt' if path is not None else None
            self._backend = OrtBackend(onnx_path, provider, precision, trt_cache, threads)
            fixed = self._backend.fixed_input_size()
            if fixed is not None and fixed != input_size:
                raise ValueError(f'ONNX file {onnx_path} has a fixed input size '
                                 f'{fixed[0]}x{fixed[1]}; input_size {input_size[0]}x'
                                 f'{input_size[1]} needs a re-export (or dynamic=True)')
        self.spec = spec
        self._lut = palette_lut(spec)

    def _cached_onnx(self, path: Path, state: dict, spec: ModelSpec, precision: str,
                     input_size: tuple[int, int]) -> Path:
        """Export a .pt file (read as state, spec) to ONNX once.

        The cache key is the file's content, so edits invalidate it.
        """
        digest = _file_digest(path)
        size = path.stat().st_size
        width, height = input_size
        name = (f'{path.stem}-{digest[:16]}-{size}-{precision}-logits-{width}x{height}'
                f'-v{_CACHE_FORMAT}.onnx')
        cached = cache_dir() / 'onnx' / name
        if cached.is_file():
            try:
                read_onnx_spec(cached)
                return cached
            except ModelFileError as exc:  # e.g. a disk filled up mid-copy by another tool
                log.warning('re-exporting: %s', exc)
        log.info('exporting %s to %s (once; later starts reuse it)', path, cached)
        return export_onnx(build_model(state, spec, path), spec, cached, precision=precision,
                           input_size=input_size)

    # ---------------------------------------------------------------- pipeline
    def preprocess(self, image: np.ndarray, color_order: str = 'rgb') -> np.ndarray:
        """uint8 H x W x 3 (RGB or BGR) or H x W mono image -> float32 1 x 3 x h x w batch."""
        if color_order not in COLOR_ORDERS:
            raise ValueError(f'color_order must be one of {COLOR_ORDERS}, got {color_order!r}')
        _check_image(image)
        width, height = self.input_size
        resized = resize_image(image, width, height)
        # Colour conversion after the resize: fewer pixels to convert.
        if resized.ndim == 2 or resized.shape[2] == 1:
            resized = cv2.cvtColor(resized.reshape(height, width), cv2.COLOR_GRAY2RGB)
        elif color_order == 'bgr':
            resized = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
        return normalize(resized, self.spec.mean, self.spec.std)[None]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """float32 N x 3 x h x w normalised batch -> float32 N x C x h/8 x w/8 logits."""
        if (not isinstance(batch, np.ndarray) or batch.dtype != np.float32 or batch.ndim != 4
                or batch.shape[1] != 3):
            desc = (f'{batch.dtype} {batch.shape}' if isinstance(batch, np.ndarray)
                    else type(batch).__name__)
            raise ValueError(f'infer expects a float32 N x 3 x H x W batch (from preprocess), '
                             f'got {desc}')
        return self._backend(np.ascontiguousarray(batch))

    def postprocess(self, logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """1 x C x h x w (or C x h x w) logits -> uint8 labels of size = (H, W)."""
        if logits.ndim == 4:
            if logits.shape[0] != 1:
                raise ValueError(f'postprocess takes one image, got a batch of {logits.shape[0]}')
            logits = logits[0]
        return logits_to_labels(logits, size, self.upsample)

    def segment(self, image: np.ndarray, color_order: str = 'rgb') -> SegmentationResult:
        """Labels at the image's size, with the time each stage took."""
        t0 = time.perf_counter()
        batch = self.preprocess(image, color_order)
        t1 = time.perf_counter()
        logits = self.infer(batch)
        t2 = time.perf_counter()
        labels = self.postprocess(logits, image.shape[:2])
        t3 = time.perf_counter()
        timings = {'preprocess': (t1 - t0) * 1e3, 'inference': (t2 - t1) * 1e3,
                   'postprocess': (t3 - t2) * 1e3}
        return SegmentationResult(labels, timings)

    def __call__(self, image: np.ndarray, color_order: str = 'rgb') -> np.ndarray:
        return self.segment(image, color_order).labels

    # ---------------------------------------------------------------- visualisation
    def colorize(self, labels: np.ndarray) -> np.ndarray:
        """uint8 H x W labels -> H x W x 3 RGB from the spec's palette (ignore -> black)."""
        check_labels(labels)
        return self._lut[labels]

    def overlay(self, image_rgb: np.ndarray, labels: np.ndarray, alpha: float = 0.5
                ) -> np.ndarray:
        """Blend the colour mask over an RGB image; ignore pixels show the image unchanged."""
        _check_image(image_rgb)
        check_labels(labels)
        if image_rgb.shape[:2] != labels.shape:
            raise ValueError(f'image {image_rgb.shape[:2]} and labels {labels.shape} differ '
                             'in size')
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f'alpha must be in [0, 1], got {alpha}')
        if image_rgb.ndim == 2 or image_rgb.shape[2] == 1:
            image_rgb = cv2.cvtColor(image_rgb.reshape(labels.shape), cv2.COLOR_GRAY2RGB)
        return blend_labels(image_rgb, labels, self._lut, self.spec.num_classes, alpha)

    def __repr__(self) -> str:
        w, h = self.input_size
        return (f'Segmenter({self.spec.backbone}, {self.spec.num_classes} classes, '
                f'backend={self.backend_name}, device={self.device}, '
                f'precision={self.precision}, input={w}x{h}, upsample={self.upsample})')


def _check_image(image) -> None:
    """uint8, H x W or H x W x {1, 3}, non-empty; ValueError naming what was wrong."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f'expected a numpy image, got {type(image).__name__}')
    if image.dtype != np.uint8:
        raise ValueError(f'expected a uint8 image, got dtype {image.dtype} (shape {image.shape})')
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3)):
        raise ValueError(f'expected an H x W x 3 colour or H x W mono image, got shape '
                         f'{image.shape}')
    if image.size == 0:
        raise ValueError(f'empty image (shape {image.shape})')
