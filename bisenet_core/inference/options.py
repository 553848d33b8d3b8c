"""SegmenterOptions: how a Segmenter runs, one validated record built once and passed down.

Usage:
    options = SegmenterOptions(backend='torch', device='cuda', precision='fp16')
    seg = Segmenter('models/camvid_x39.pt', options)           # or Segmenter(path, device=...)
    seg.device, seg.pipeline                                   # what runs ('auto' resolved)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from bisenet_core.hardware import check_device, check_precision
from bisenet_core.inference.backends import BACKENDS
from bisenet_core.inference.postprocess import UPSAMPLE_MODES
from bisenet_core.spec import check_input_size

PIPELINES = ('auto', 'device', 'host')


@dataclass(frozen=True)
class SegmenterOptions:
    """Settings of a Segmenter; every value is checked here, before a model file is read.

    Args:
        backend: 'torch', 'onnxruntime', 'tensorrt' (ONNX Runtime's TensorRT provider), or
            'auto' (onnxruntime when installed, else torch).
        device: 'cpu', 'cuda', 'cuda:N' (the N-th GPU), or 'auto' (CUDA when the backend can
            use it, else CPU with a warning). bisenet_core.hardware resolves it.
        precision: 'fp32' or 'fp16' (GPU only; on the CPU it falls back to fp32 with a warning).
        input_size: network input (width, height), 32..8192 per side; None: the model's
            (an ONNX file of fixed size: its size). Images of any size are resized to it, and
            labels come back at the image's size.
        upsample: 'nearest' (argmax at 1/8, then upsample labels: fast) or 'bilinear'
            (argmax of the upsampled logits: smoother boundaries). Segmenter.upsample may be
            changed at any time.
        threads: CPU threads for inference (torch: process-wide); None: all usable cores.
            Fewer leaves cores to other nodes on a busy robot computer.
        pipeline: 'device' (frame -> labels where the network runs), 'host' (pre- and
            post-processing with cv2/numpy) or 'auto' ('device' on a GPU, else 'host').
        graphs: on CUDA, capture the device pipeline as one CUDA graph per frame layout
            (bisenet_core.inference.device); False runs it eagerly.
        compile: torch.compile the network (backend torch; inductor). Compiling takes tens
            of seconds; it happens in the warm-up and is logged.
        warmup: run the network once at construction (and capture the graph for frames of
            the network's size), so the first real frame is not the slow one.
    """

    backend: str = 'auto'
    device: str = 'auto'
    precision: str = 'fp32'
    input_size: tuple[int, int] | None = None
    upsample: str = 'nearest'
    threads: int | None = None
    pipeline: str = 'auto'
    graphs: bool = True
    compile: bool = False
    warmup: bool = True

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f'backend must be one of {BACKENDS}, got {self.backend!r}')
        check_device(self.device)
        check_precision(self.precision)  # also for ONNX files, whose own precision may win
        if self.upsample not in UPSAMPLE_MODES:
            raise ValueError(f'upsample must be one of {UPSAMPLE_MODES}, got {self.upsample!r}')
        if self.threads is not None and self.threads < 1:
            raise ValueError(f'threads must be >= 1, got {self.threads}')
        if self.pipeline not in PIPELINES:
            raise ValueError(f'pipeline must be one of {PIPELINES}, got {self.pipeline!r}')
        if self.input_size is not None:
            size = tuple(int(v) for v in self.input_size)
            if len(size) != 2:
                raise ValueError(f'input_size must be (width, height), got {self.input_size}')
            check_input_size(*size)
            object.__setattr__(self, 'input_size', size)

    def replace(self, **changes) -> 'SegmenterOptions':
        """A copy with `changes` (checked again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def of(cls, options: 'SegmenterOptions | None' = None, **changes) -> 'SegmenterOptions':
        """`options` (default: the defaults) with keyword settings over it.

        What the Segmenter's constructors take: an options record, keyword arguments
        (Segmenter(path, device='cpu')), or both; an unknown keyword is a TypeError.
        """
        if options is None:
            return cls(**changes)
        if not isinstance(options, cls):
            raise TypeError(f'options must be a {cls.__name__}, got {type(options).__name__} '
                            '(pass settings by keyword: backend=..., device=...)')
        return options.replace(**changes) if changes else options
