"""Segmenter: a camera frame in, a full-size uint8 label map out, on the backend of your choice.

    seg = Segmenter('models/camvid_x39.pt')              # backend='auto', device='auto'
    labels = seg(image_rgb)                              # H x W uint8 class ids
    result = seg.segment(frame_bgra, color_order='bgr', outputs=('color', 'confidence'))
    result.labels, result.color, result.confidence, result.timings_ms
    results = seg.segment_batch([front, left, rear], 'bgr')   # several cameras, input order

segment_batch runs the frames of one layout (shape, dtype, colour order) as one batch: one
forward pass of the network (one CUDA graph per batch size and layout on a GPU); different
layouts run in a pass each. An ONNX file whose batch axis is fixed to 1 runs them one by one.

Two pipelines compute the same thing (the tests hold both to an independent reference):
- 'device': the whole frame -> labels step where the model runs. On torch it is
  bisenet_core.inference.pipeline (upload the uint8 frame, resize, normalise, network,
  upsample, argmax, colour, download uint8), captured as one CUDA graph per frame layout on a
  GPU (bisenet_core.inference.device); on ONNX Runtime (CUDA, TensorRT) the same function
  exported as one graph (inference/export_frames.py). What a GPU needs: no pixel loop on the
  host, hundreds of kernel launches made one.
- 'host': resize and normalise with cv2/numpy, the network on its backend, upsampling with
  numpy/cv2 (bisenet_core.inference.postprocess). Faster on a CPU, where "the device" is the
  host anyway (docs/benchmarks.md).
`pipeline='auto'` picks 'device' on a GPU and 'host' on the CPU.

A model path is our .pt model file (bisenet_core.modelfile) or an .onnx file written by
bisenet_core.export.export_onnx (logits: host pipeline) or export_frame_onnx (frames: device
pipeline); the ModelSpec is read from its metadata. Running a .pt file on ONNX Runtime
exports the graphs it needs once to an on-disk cache (bisenet_core.inference.onnx_graphs).
"""
from __future__ import annotations

import copy
import logging
import os
import time
import warnings
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from bisenet_core.hardware import device_index, resolve_device, resolve_precision
from bisenet_core.inference.backends import (OrtBackend, OrtFrameRunner, TorchBackend,
                                             resolve_backend)
from bisenet_core.inference.device import DeviceRunner
from bisenet_core.inference.frames import (check_frame, check_outputs, layout_groups, to_rgb,
                                           to_uint8)
from bisenet_core.inference.onnx_graphs import OnnxGraphs, cache_dir
from bisenet_core.inference.options import SegmenterOptions
from bisenet_core.inference.pipeline import FramePipeline
from bisenet_core.inference.postprocess import (OVERLAY_ALPHA, UPSAMPLE_MODES, blend_labels,
                                                check_labels, frame_outputs, palette_lut)
from bisenet_core.model_source import ModelSource, read_model_source
from bisenet_core.modelfile import build_model
from bisenet_core.preprocess import normalize, resize_image
from bisenet_core.spec import ModelSpec

log = logging.getLogger(__name__)

# Stage timings in SegmentationResult.timings_ms, in order.
STAGES = ('upload', 'compute', 'download')


class SegmentationResult(NamedTuple):
    """One segmented frame; the optional outputs are None unless requested.

    labels: uint8 H x W class ids at the frame's size.
    timings_ms: milliseconds per stage: 'upload' (the frame into the network's input: on a
        GPU the copy to the device, on the host path the resize and normalisation),
        'compute' (network and upsampling; on a GPU everything up to the outputs),
        'download' (outputs back into numpy).
    confidence: uint8 H x W, round(255 x the largest softmax probability), taken at the
        network's output resolution and upsampled like the labels.
    color: uint8 H x W x 3 RGB colour mask (the spec's palette; void is black).
    overlay: uint8 H x W x 3 RGB, the colour mask blended 50/50 over the frame (void pixels
        keep the frame).
    small_labels: uint8 labels at the network output size (1/8 of the network input).
    """

    labels: np.ndarray
    timings_ms: dict[str, float]
    confidence: np.ndarray | None = None
    color: np.ndarray | None = None
    overlay: np.ndarray | None = None
    small_labels: np.ndarray | None = None


class Segmenter:
    """BiSeNet inference on camera frames (module docstring).

    Args:
        model_path: .pt model file or .onnx file from export_onnx.
        options: a SegmenterOptions (backend, device, precision, input_size, upsample,
            threads, pipeline, graphs, compile, warmup; its docstring says what each does).
        **settings: the same settings by keyword, over `options`:
            Segmenter(path, backend='torch', device='cuda', precision='fp16').

    `options` keeps the settings asked for; what runs ('auto' resolved, an ONNX file's own
    precision) is in backend_name, device, precision, input_size, pipeline, compiled, graphs.
    """

    def __init__(self, model_path: str | os.PathLike, options: SegmenterOptions | None = None,
                 **settings):
        options = SegmenterOptions.of(options, **settings)  # bad settings fail before the read
        self._setup(read_model_source(model_path), None, options)

    @classmethod
    def from_model(cls, model: nn.Module, spec: ModelSpec,
                   options: SegmenterOptions | None = None, **settings) -> 'Segmenter':
        """A Segmenter for an in-memory model (e.g. straight after training).

        The model itself is left as it is: the Segmenter folds and moves a copy.
        """
        self = cls.__new__(cls)
        self._setup(ModelSource(None, spec), model, SegmenterOptions.of(options, **settings))
        return self

    # ---------------------------------------------------------------- construction
    def _setup(self, source: ModelSource, model: nn.Module | None,
               options: SegmenterOptions) -> None:
        """Resolve the options against the model and this machine, then set up the backend.

        `source`: what the model path holds (path None for from_model's in-memory `model`).
        """
        backend = resolve_backend(options.backend)
        device = resolve_device(options.device, backend)
        if source.is_onnx:
            precision = self._onnx_precision(source, backend, device, options)
        else:
            precision = resolve_precision(options.precision, device)
        input_size = options.input_size or self._model_input_size(source)
        compile = options.compile
        if compile and backend != 'torch':
            warnings.warn(f'compile applies to backend torch; ignored for {backend!r}',
                          RuntimeWarning, stacklevel=3)
            compile = False
        self.spec = source.spec
        self._lut = palette_lut(self.spec)
        self.upsample = options.upsample
        self.device = device
        self.precision = precision
        self.input_size = input_size
        self.backend_name = backend
        self.compiled = compile
        self._graphs = self._backend = self._runner = None
        if backend == 'torch':
            pipeline = self._setup_torch(source, model, options)
        else:
            pipeline = self._setup_onnxruntime(source, model, options)
        self.pipeline = pipeline
        self.graphs = bool(getattr(self._runner, 'graphs', False))
        self.options = options
        if options.warmup:
            self.warm_up()
        elif compile:
            warnings.warn('compile without warm-up: the first frame will take the compile '
                          'time (tens of seconds)', RuntimeWarning, stacklevel=3)

    @staticmethod
    def _onnx_precision(source: ModelSource, backend: str, device: str,
                        options: SegmenterOptions) -> str:
        """Check an ONNX file suits the Segmenter and `backend`; the precision to run in."""
        path, info, precision = source.path, source.onnx_info, options.precision
        if backend == 'torch':
            raise ValueError(f'backend torch needs a .pt model file, got the ONNX file '
                             f'{path}; use backend onnxruntime or tensorrt')
        if info['output'] not in ('logits', 'frame'):
            raise ValueError(f"ONNX file {path} was exported with output={info['output']!r}; "
                             "the Segmenter needs output='logits' (export_onnx) or a frame "
                             'graph (export_frame_onnx)')
        if backend == 'onnxruntime' and info['precision'] != precision:
            # The file fixes the precision of the graph ORT runs.
            if precision != 'fp32' or device != 'cpu':
                warnings.warn(f"ONNX file {path} is {info['precision']}; precision "
                              f'{precision!r} ignored', RuntimeWarning, stacklevel=4)
            return info['precision']
        return resolve_precision(precision, device)

    @staticmethod
    def _model_input_size(source: ModelSource) -> tuple[int, int]:
        """The network input size the model was made for (fixed-size ONNX: its own)."""
        info = source.onnx_info
        fixed = info.get('input_size') if info and not info['dynamic'] else None
        return tuple(int(v) for v in fixed) if fixed else source.spec.input_size

    def _setup_torch(self, source: ModelSource, model: nn.Module | None,
                     options: SegmenterOptions) -> str:
        """TorchBackend, and on the device pipeline its DeviceRunner; returns the pipeline."""
        if model is None:
            model = build_model(source.state, source.spec, source.path)
        else:  # from_model: folding/moving must not change the caller's model
            model = copy.deepcopy(model)
        pipeline = options.pipeline
        if pipeline == 'auto':
            pipeline = 'device' if self.device.startswith('cuda') else 'host'
        self._backend = TorchBackend(model, self.device, self.precision, options.threads,
                                     self.compiled)
        if pipeline == 'device':
            frames = FramePipeline(self._backend.model, self.spec, self.input_size,
                                   self._backend.dtype, self._backend.channels_last)
            self._runner = DeviceRunner(frames, torch.device(self.device), options.graphs)
        return pipeline

    def _setup_onnxruntime(self, source: ModelSource, model: nn.Module | None,
                           options: SegmenterOptions) -> str:
        """ONNX Runtime (CPU, CUDA or TensorRT provider); returns the pipeline.

        It runs the graphs the pipeline needs: the ONNX file given, or graphs exported once
        to the cache.
        """
        device, precision = self.device, self.precision
        provider = 'tensorrt' if self.backend_name == 'tensorrt' else device.split(':')[0]
        # TensorRT makes its own fp16 engine from the fp32 graph (trt_fp16_enable);
        # the CUDA provider runs the graph as exported, so it needs the fp16 graph.
        graph_precision = 'fp16' if precision == 'fp16' and provider == 'cuda' else 'fp32'
        self._graphs = OnnxGraphs(self.spec, graph_precision, self.input_size, source.path,
                                  source.state, model, source.onnx_info)
        trt_cache = cache_dir() / 'tensorrt' if source.path is not None else None

        def session(onnx_path: Path) -> OrtBackend:
            return OrtBackend(onnx_path, provider, precision, trt_cache, options.threads,
                              device_index(device))
        self._session = session
        pipeline = options.pipeline
        if pipeline == 'auto':
            on_gpu = provider != 'cpu' or self._graphs.given_kind == 'frame'
            pipeline = 'device' if on_gpu else 'host'
        if pipeline == 'device':
            file_mode = (source.onnx_info or {}).get('upsample')
            if self._graphs.given_kind == 'frame' and file_mode != self.upsample:
                warnings.warn(f'ONNX file {source.path} upsamples {file_mode!r}; upsample '
                              f'{self.upsample!r} ignored', RuntimeWarning, stacklevel=4)
                self._upsample = file_mode  # the file's own mode
            self._runner = OrtFrameRunner(lambda mode: session(self._graphs.frame(mode)),
                                          self._lut, self.spec.num_classes)
        else:
            self._network()  # the logits session now: errors at start-up, not later
        return pipeline

    def warm_up(self) -> float:
        """Run the network once (compiling, autotuning, capturing); returns the seconds.

        On the device pipeline this segments a blank frame of the network's size, which also
        captures its CUDA graph; other frame sizes are captured at their first frame.
        """
        start = time.perf_counter()
        width, height = self.input_size
        if self._runner is not None:
            self._runner(np.zeros((height, width, 3), np.uint8), 'rgb', self.upsample, ())
        else:
            self.infer(np.zeros((1, 3, height, width), np.float32))
        seconds = time.perf_counter() - start
        if self.compiled:
            log.info('torch.compile and warm-up of the network took %.1f s', seconds)
        return seconds

    # ---------------------------------------------------------------- settings
    @property
    def upsample(self) -> str:
        """'nearest' or 'bilinear'; read at every frame, so it may change between frames."""
        return self._upsample

    @upsample.setter
    def upsample(self, mode: str) -> None:
        if mode not in UPSAMPLE_MODES:
            raise ValueError(f'upsample must be one of {UPSAMPLE_MODES}, got {mode!r}')
        graphs = getattr(self, '_graphs', None)
        if graphs is not None and graphs.given_kind == 'frame':
            graphs.frame(mode)  # a frame graph file has one mode: a clear error now
        self._upsample = mode

    # ---------------------------------------------------------------- frames
    def segment(self, image: np.ndarray, color_order: str = 'rgb', *,
                outputs=()) -> SegmentationResult:
        """Labels (and the requested `outputs`, see OUTPUTS) at the frame's size.

        image: uint8 H x W, H x W x 1, H x W x 3 or H x W x 4 (alpha ignored), or uint16 H x W
        (mono16, used as value >> 8); any strided view (row padding) of a message buffer.
        color_order: 'rgb' or 'bgr' for 3/4-channel frames.
        The same as segment_batch([image], color_order, outputs=outputs)[0].
        """
        return self.segment_batch([image], color_order, outputs=outputs)[0]

    def segment_batch(self, images: Sequence[np.ndarray],
                      color_orders: Sequence[str] | str = 'rgb', *,
                      outputs=()) -> list[SegmentationResult]:
        """Several frames (e.g. one per camera) -> their results, in input order.

        Frames of one layout (shape, dtype, colour order) run through the network as one
        batch, one forward pass; frames of other layouts in a pass per layout. Each result's
        timings_ms are those of its batch. Frames as `segment` takes them; color_orders: one
        per frame, or one for all.
        """
        if isinstance(color_orders, str):
            color_orders = [color_orders] * len(images)
        elif len(color_orders) != len(images):
            raise ValueError(f'{len(color_orders)} colour orders for {len(images)} frames')
        frames = []
        for index, (image, order) in enumerate(zip(images, color_orders)):
            try:
                frames.append(check_frame(image, order))
            except ValueError as exc:
                if len(images) == 1:
                    raise
                raise ValueError(f'frame {index}: {exc}') from None
        outputs = check_outputs(outputs)
        upsample = self.upsample  # one value for the whole call
        run = self._segment_on_device if self.pipeline == 'device' else self._segment_on_host
        results: list = [None] * len(frames)
        for (_, _, order), indices in layout_groups(frames, color_orders).items():
            made = run([frames[i] for i in indices], order, upsample, outputs)
            for index, result in zip(indices, made):
                results[index] = result
        return results

    def __call__(self, image: np.ndarray, color_order: str = 'rgb') -> np.ndarray:
        return self.segment(image, color_order).labels

    def _segment_on_device(self, frames: list[np.ndarray], color_order: str, upsample: str,
                           outputs: tuple[str, ...]) -> list[SegmentationResult]:
        made, timings = self._runner.run_batch(frames, color_order, upsample, outputs)
        return [SegmentationResult(result.pop('labels'), dict(timings), **result)
                for result in made]

    def _segment_on_host(self, frames: list[np.ndarray], color_order: str, upsample: str,
                         outputs: tuple[str, ...]) -> list[SegmentationResult]:
        t0 = time.perf_counter()
        frames = [to_uint8(frame) for frame in frames]
        batch = np.concatenate([self._network_input(frame, color_order) for frame in frames])
        t1 = time.perf_counter()
        logits = self.infer(batch)  # one forward pass for the N frames
        made = [frame_outputs(frame_logits, frame, color_order, upsample, outputs, self._lut,
                              self.spec.num_classes)
                for frame_logits, frame in zip(logits, frames)]
        t2 = time.perf_counter()
        timings = {'upload': (t1 - t0) * 1e3, 'compute': (t2 - t1) * 1e3, 'download': 0.0}
        return [SegmentationResult(result.pop('labels'), dict(timings), **result)
                for result in made]

    # ---------------------------------------------------------------- network alone
    def preprocess(self, image: np.ndarray, color_order: str = 'rgb') -> np.ndarray:
        """A frame (as segment takes it) -> the float32 1 x 3 x h x w network input."""
        return self._network_input(to_uint8(check_frame(image, color_order)), color_order)

    def _network_input(self, frame: np.ndarray, color_order: str) -> np.ndarray:
        width, height = self.input_size
        resized = resize_image(frame, width, height)
        if resized.ndim == 2:  # cv2 drops a single channel axis
            resized = resized[:, :, None]
        # Colour conversion after the resize: fewer pixels to convert.
        return normalize(to_rgb(resized, color_order), self.spec.mean, self.spec.std)[None]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """float32 N x 3 x h x w normalised batch -> float32 N x C x h/8 x w/8 logits."""
        if (not isinstance(batch, np.ndarray) or batch.dtype != np.float32 or batch.ndim != 4
                or batch.shape[1] != 3):
            desc = (f'{batch.dtype} {batch.shape}' if isinstance(batch, np.ndarray)
                    else type(batch).__name__)
            raise ValueError(f'infer expects a float32 N x 3 x H x W batch (from preprocess), '
                             f'got {desc}')
        return self._network()(np.ascontiguousarray(batch))

    def _network(self):
        """The network alone (torch, or the ONNX logits graph, made at first use)."""
        if self._backend is None:
            self._backend = self._session(self._graphs.logits())
            fixed = self._backend.fixed_input_size()
            if fixed is not None and fixed != self.input_size:
                raise ValueError(f'ONNX file {self._graphs.path} has a fixed input size '
                                 f'{fixed[0]}x{fixed[1]}; input_size {self.input_size[0]}x'
                                 f'{self.input_size[1]} needs a re-export (or dynamic=True)')
        return self._backend

    # ---------------------------------------------------------------- visualisation
    def colorize(self, labels: np.ndarray) -> np.ndarray:
        """uint8 H x W labels -> H x W x 3 RGB from the spec's palette (ignore -> black)."""
        check_labels(labels)
        return self._lut[labels]

    def overlay(self, image_rgb: np.ndarray, labels: np.ndarray, alpha: float = OVERLAY_ALPHA
                ) -> np.ndarray:
        """Blend the colour mask over an RGB (or mono) image; ignore pixels show the image."""
        frame = check_frame(image_rgb, 'rgb')
        check_labels(labels)
        if frame.shape[:2] != labels.shape:
            raise ValueError(f'image {frame.shape[:2]} and labels {labels.shape} differ '
                             'in size')
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f'alpha must be in [0, 1], got {alpha}')
        return blend_labels(to_rgb(to_uint8(frame), 'rgb'), labels, self._lut,
                            self.spec.num_classes, alpha)

    def __repr__(self) -> str:
        w, h = self.input_size
        return (f'Segmenter({self.spec.backbone}, {self.spec.num_classes} classes, '
                f'backend={self.backend_name}, device={self.device}, '
                f'precision={self.precision}, input={w}x{h}, upsample={self.upsample}, '
                f'pipeline={self.pipeline}, graphs={self.graphs}, compile={self.compiled})')
