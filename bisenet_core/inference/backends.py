"""Inference backends: run a normalised float32 N x 3 x H x W batch, return float32 1/8 logits.

- TorchBackend: PyTorch (Conv+BN folded; on CUDA channels_last and fp16; optional compile).
- OrtBackend: ONNX Runtime with the CPU, CUDA or TensorRT execution provider.
- OrtFrameRunner: ONNX Runtime running the end-to-end frame graphs (the device pipeline).

A batch of N frames is one run where the graph's batch axis is free (the graphs the Segmenter
exports itself); an ONNX file fixed to batch 1 runs them one by one, said once in the log.

What 'auto' means for a backend is decided here (resolve_backend); device and precision
names are resolved in bisenet_core.hardware, for inference and training alike.
"""
from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

# DEVICES, PRECISIONS and check_device are named here too: the node and replay take their
# parameter choices from the backends.
from bisenet_core.hardware import (DEVICES, ORT_PROVIDERS, PRECISIONS, TORCH_DTYPES,  # noqa: F401
                                   check_device, cpu_threads, ort_available, ort_providers)
from bisenet_core.inference.frames import FRAME_OUTPUTS, channel_index, to_uint8
from bisenet_core.inference.postprocess import color_outputs
from bisenet_core.model.fuse import FoldError, fold_conv_bn

log = logging.getLogger(__name__)

BACKENDS = ('auto', 'torch', 'onnxruntime', 'tensorrt')


def resolve_backend(backend: str) -> str:
    """'auto' -> 'onnxruntime' when importable (faster on CPU, docs/benchmarks.md), else 'torch'."""
    if backend not in BACKENDS:
        raise ValueError(f'backend must be one of {BACKENDS}, got {backend!r}')
    if backend == 'auto':
        return 'onnxruntime' if ort_available() else 'torch'
    if backend in ('onnxruntime', 'tensorrt') and not ort_available():
        raise RuntimeError(f"backend {backend!r} needs onnxruntime: pip install onnxruntime "
                           "(CPU) or onnxruntime-gpu (CUDA/TensorRT)")
    if backend == 'tensorrt' and ORT_PROVIDERS['tensorrt'] not in ort_providers():
        raise RuntimeError(f"backend 'tensorrt' needs onnxruntime-gpu with the TensorRT "
                           f"execution provider; this onnxruntime has {ort_providers()}")
    return backend


class TorchBackend:
    """PyTorch on the CPU or one GPU: the network alone (normalised batch -> logits).

    The model is prepared once: eval mode, Conv+BN folded (bisenet_core.model.fuse), on the
    device; on CUDA also channels_last memory format (cuDNN's fastest NHWC kernels), fp16
    via `.half()` if asked, and cuDNN autotuning; optionally torch.compile (inductor). `model`
    is the prepared module, also used by the Segmenter's device pipeline.
    """

    name = 'torch'

    def __init__(self, model: nn.Module, device: str, precision: str,
                 threads: int | None = None, compile: bool = False, fold: bool = True):
        self.device = torch.device(device)
        if threads is not None:
            torch.set_num_threads(threads)  # process-wide in torch
        model = model.eval()
        if fold:  # (fold=False: bench_network's "before" rows)
            example = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
            try:
                fold_conv_bn(model.cpu().float(), example)
            except FoldError as exc:
                warnings.warn(f'running without Conv+BN folding: {exc}', RuntimeWarning,
                              stacklevel=3)
        model = model.to(self.device)
        self.channels_last = self.device.type == 'cuda'
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
            if precision == 'fp16':
                model = model.half()
            torch.backends.cudnn.benchmark = True  # fixed network input size: tune once
        self.dtype = TORCH_DTYPES[precision]
        # The network input size is fixed, so one compiled graph serves every frame size;
        # the compilation itself happens at the first call (the Segmenter's warm-up).
        self.model = torch.compile(model, dynamic=False) if compile else model
        self.compiled = compile

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device, non_blocking=True)
            x = x.to(dtype=self.dtype)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            logits = self.model(x).logits
            return logits.float().cpu().numpy()


class OrtBackend:
    """ONNX Runtime session on one execution provider ('cpu', 'cuda' or 'tensorrt')."""

    def __init__(self, onnx_path: str | os.PathLike, provider: str, precision: str = 'fp32',
                 trt_cache_dir: str | os.PathLike | None = None, threads: int | None = None,
                 device_id: int = 0):
        import onnxruntime as ort

        self.name = 'tensorrt' if provider == 'tensorrt' else 'onnxruntime'
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or cpu_threads()
        options.log_severity_level = 3  # errors only; ORT's warnings are about its own fusions
        providers: list = []
        if provider == 'tensorrt':
            cache = Path(trt_cache_dir) if trt_cache_dir else Path(onnx_path).parent / 'trt'
            cache.mkdir(parents=True, exist_ok=True)
            providers.append((ORT_PROVIDERS['tensorrt'], {
                'device_id': device_id,
                'trt_fp16_enable': precision == 'fp16',
                # Building an engine takes minutes; cache it next to the ONNX file.
                'trt_engine_cache_enable': True,
                'trt_engine_cache_path': str(cache),
                'trt_timing_cache_enable': True,
                'trt_timing_cache_path': str(cache),
            }))
        if provider in ('tensorrt', 'cuda'):
            providers.append((ORT_PROVIDERS['cuda'], {'device_id': device_id,
                                                      'cudnn_conv_algo_search': 'EXHAUSTIVE'}))
        providers.append(ORT_PROVIDERS['cpu'])
        try:
            self.session = ort.InferenceSession(str(onnx_path), options, providers=providers)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise RuntimeError(f'onnxruntime cannot load {onnx_path} on {provider}: '
                               f'{first[:300]}') from None
        wanted = ORT_PROVIDERS[provider]
        if wanted not in self.session.get_providers():
            raise RuntimeError(f'onnxruntime did not enable {wanted} for {onnx_path} '
                               f'(enabled: {self.session.get_providers()})')
        self.path = Path(onnx_path)
        self._said_one_at_a_time = False
        meta = self.session.get_inputs()[0]
        self.input_name = meta.name
        # [N, 3, H, W] with ints for fixed axes, names (str) for dynamic ones.
        self.input_shape = list(meta.shape)

    def fixed_input_size(self) -> tuple[int, int] | None:
        """(width, height) of a fixed-size graph, None for a dynamic one."""
        height, width = self.input_shape[2], self.input_shape[3]
        if isinstance(width, int) and isinstance(height, int):
            return width, height
        return None

    def takes_one_frame(self) -> bool:
        """True when the graph's batch axis is fixed to 1 (one frame per run)."""
        return self.input_shape[0] == 1

    def one_at_a_time(self, frames: int) -> None:
        """Log, once per session, that a batch of `frames` runs frame by frame."""
        if not self._said_one_at_a_time:
            self._said_one_at_a_time = True
            log.info('%s takes one frame at a time (its batch axis is fixed to 1), so the %d '
                     'frames of a batch run one by one; re-export it with a free batch axis '
                     '(python -m training.export ... --dynamic-batch) to run them in one pass',
                     self.path, frames)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) > 1 and self.takes_one_frame():
            self.one_at_a_time(len(batch))
            return np.concatenate([self.session.run(None, {self.input_name: batch[i:i + 1]})[0]
                                   for i in range(len(batch))])
        return self.session.run(None, {self.input_name: batch})[0]


class OrtFrameRunner:
    """Frame graphs (bisenet_core.inference.export_frames) on ONNX Runtime: frame -> numpy outputs.

    The graph takes the uint8 frame and returns labels, 1/8 labels and confidence, so resize,
    normalisation and upsampling run on the provider's device. The colour mask and overlay
    are a table lookup and a blend of the labels, made on the host only when asked for.

    Args:
        session_for: makes the OrtBackend of the frame graph for an upsampling mode (called
            once per mode, at its first frame).
        lut: palette_lut of the spec; num_classes: ids from it up are void.
    """

    def __init__(self, session_for: Callable[[str], 'OrtBackend'], lut: np.ndarray,
                 num_classes: int):
        self._session_for = session_for
        self._sessions: dict[str, OrtBackend] = {}
        self._lut = lut
        self._num_classes = num_classes

    def __call__(self, frame: np.ndarray, color_order: str, upsample: str,
                 outputs: tuple[str, ...]) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """One H x W x C frame -> its outputs and the stage timings (a batch of one)."""
        results, timings = self.run_batch([frame], color_order, upsample, outputs)
        return results[0], timings

    def run_batch(self, frames, color_order: str, upsample: str, outputs: tuple[str, ...]
                  ) -> tuple[list[dict[str, np.ndarray]], dict[str, float]]:
        """N frames of one layout -> their outputs in order, and the batch's stage timings.

        A batch graph (N x H x W x C in) runs them at once; a one-frame graph (an exported
        file without a batch axis) one by one, said once in the log.
        """
        session = self._sessions.get(upsample)
        if session is None:
            session = self._sessions[upsample] = self._session_for(upsample)
        t0 = time.perf_counter()
        batched = len(session.input_shape) == 4
        if batched:  # one copy per frame, straight into the batch ORT reads
            images = np.empty((len(frames), *frames[0].shape), np.uint8)
            for index, frame in enumerate(frames):
                to_uint8(frame, out=images[index])
        else:  # ORT reads contiguous buffers only
            images = [np.ascontiguousarray(to_uint8(frame)) for frame in frames]
        channels = np.asarray(channel_index(frames[0].shape[2], color_order), np.int64)
        t1 = time.perf_counter()
        names = list(FRAME_OUTPUTS)
        if batched:
            labels, small, confidence = session.session.run(
                names, {'image': images, 'channels': channels})
        else:
            if len(frames) > 1:
                session.one_at_a_time(len(frames))
            runs = [session.session.run(names, {'image': image, 'channels': channels})
                    for image in images]
            labels, small, confidence = ([run[i] for run in runs] for i in range(3))
        t2 = time.perf_counter()
        results = []
        for index, image in enumerate(images):
            result = {'labels': labels[index]}
            if 'confidence' in outputs:
                result['confidence'] = confidence[index]
            if 'small_labels' in outputs:
                result['small_labels'] = small[index]
            result.update(color_outputs(labels[index], image, color_order, self._lut,
                                        self._num_classes, outputs))
            results.append(result)
        t3 = time.perf_counter()
        return results, {'upload': (t1 - t0) * 1e3, 'compute': (t2 - t1) * 1e3,
                         'download': (t3 - t2) * 1e3}
