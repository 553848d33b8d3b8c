"""Camera frame to labels where the model runs: one torch function, the same on CPU and GPU.

    pipeline = FramePipeline(model, spec, network_size=(640, 360))
    out = pipeline(frame, channels)   # uint8 H x W x C tensor, int64 (3,) channel index
    out['labels']                     # uint8 H x W; plus any requested optional outputs
    out = pipeline(frames, channels)  # uint8 N x H x W x C: N frames of one layout
    out['labels']                     # uint8 N x H x W, from one forward pass of the network

Every step is a torch op, so the whole frame -> labels step can be captured in one CUDA graph,
compiled, or traced to ONNX with a dynamic image size (bisenet_core.export):

1. channels: index_select the R, G, B source channels (bgr, alpha and mono handled the same).
2. resize to the network size as two small matrix products, `rows @ image @ cols.T`, with the
   weights of cv2's INTER_AREA when the image shrinks (each output pixel averages the source
   pixels it covers) and of INTER_LINEAR when it grows (bisenet_core.preprocess.resize_image
   is the host twin). Matrices make the weights exact for any size ratio and export to ONNX
   as MatMul with the weights computed from the input's shape.
3. normalise with bisenet_core.preprocess.normalization_constants; cast to the network's dtype
   and memory format.
4. the network; 1/8 logits.
5. labels: 'nearest' upsamples the 1/8 argmax; 'bilinear' takes the argmax of the bilinearly
   upsampled logits, a few classes at a time with a running maximum, so memory stays at a few
   H x W maps whatever the number of classes (never C x H x W).
6. optional: confidence (max softmax probability at 1/8, upsampled like the labels), colour
   mask (palette lookup), overlay (colour blended over the frame), 1/8 labels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bisenet_core.inference.postprocess import OVERLAY_ALPHA, UPSAMPLE_MODES, palette_lut
from bisenet_core.preprocess import normalization_constants, shrinks
from bisenet_core.spec import ModelSpec

# Pixels x classes interpolated at once in bilinear mode (bounds the extra memory).
_BILINEAR_BUDGET = 1 << 23


def resize_weights(src_size, dst_size: int, area, mixed, device=None) -> torch.Tensor:
    """dst_size x src_size float32 matrix that resizes one axis as cv2.resize does.

    area (cv2's INTER_AREA): each output pixel averages the source pixels its footprint
    covers, by overlap; but when the other axis (or this one) grows (`mixed`), cv2 uses a
    two-tap blend for both axes instead. Otherwise INTER_LINEAR: bilinear weights with
    half-pixel centres, clamped at the borders. While tracing for ONNX, src_size, area and
    mixed are 0-d tensors. No tensor is made from a Python number, so CUDA graph capture never
    copies from the host.
    """
    src = torch.arange(src_size, device=device, dtype=torch.float32)[None]
    dst = torch.arange(dst_size, device=device, dtype=torch.float32)[:, None]
    last = src[:, -1:]
    scale = src_size / dst_size
    start = dst * scale
    box = (torch.minimum(start + scale, src + 1) - torch.maximum(start, src)).clamp(min=0)
    box = box / scale
    # cv2's INTER_AREA when some axis grows: sx = floor(dx * scale), and a fractional weight
    # on sx + 1 only where the output pixel's end passes a source pixel boundary.
    first = torch.floor(start)
    frac = (dst + 1) - (first + 1) / scale
    frac = torch.where(frac <= 0, torch.zeros_like(frac), frac - torch.floor(frac))
    blend = ((1 - frac) * (src == torch.minimum(first, last))
             + frac * (src == torch.minimum(first + 1, last)))
    centre = torch.minimum(((dst + 0.5) * scale - 0.5).clamp(min=0), last)
    linear = (1 - (centre - src).abs()).clamp(min=0)
    if isinstance(area, torch.Tensor):
        return torch.where(area, torch.where(mixed, blend, box), linear)
    return (blend if mixed else box) if area else linear


def resize_channels(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """... x H x W float -> ... x h x w, size = (h, w), with the weights of resize_image (cv2)."""
    height, width = image.shape[-2], image.shape[-1]
    area = shrinks((width, height), (size[1], size[0]))  # resize_image's rule
    mixed = (size[0] > height) | (size[1] > width)
    rows = resize_weights(height, size[0], area, mixed, image.device).to(image.dtype)
    cols = resize_weights(width, size[1], area, mixed, image.device).to(image.dtype)
    return rows @ image @ cols.T


def nearest_labels(small: torch.Tensor, size) -> torch.Tensor:
    """N x h x w uint8 labels -> N x H x W by nearest neighbour (cv2's INTER_NEAREST)."""
    return F.interpolate(small[:, None], size=size, mode='nearest')[:, 0]


def bilinear_labels(logits: torch.Tensor, size, budget: int = _BILINEAR_BUDGET
                    ) -> torch.Tensor:
    """N x C x h x w logits -> N x H x W uint8: argmax of the bilinearly upsampled logits.

    A group of classes at a time (sized so N x group x H x W stays within `budget` values at
    the traced size), keeping the running maximum and its class.
    """
    batch, num_classes = logits.shape[0], logits.shape[1]
    pixels = max(1, int(batch) * int(size[0]) * int(size[1]))
    group = max(1, min(num_classes, budget // pixels))
    best = index = None
    for first in range(0, num_classes, group):
        part = F.interpolate(logits[:, first:first + group], size=size, mode='bilinear',
                             align_corners=False)
        value, arg = part.max(dim=1)
        arg = arg.to(torch.uint8) + first
        if best is None:
            best, index = value, arg
        else:
            better = value > best  # strict: the lower class wins ties, as argmax does
            best = torch.where(better, value, best)
            index = torch.where(better, arg, index)
    return index


class FramePipeline(nn.Module):
    """uint8 frame -> uint8 labels (+ optional outputs), in torch ops only (module docstring).

    Args:
        model: eval-mode BiSeNet, already on its device, dtype and memory format.
        spec: its ModelSpec (normalisation, classes, palette).
        network_size: (width, height) of the network input.
        dtype: the network's input dtype (float16 for an fp16 model).
        channels_last: feed the network NHWC (faster convolutions on GPUs).
    """

    def __init__(self, model: nn.Module, spec: ModelSpec, network_size: tuple[int, int],
                 dtype: torch.dtype = torch.float32, channels_last: bool = False):
        super().__init__()
        self.model = model
        self.network_size = tuple(int(v) for v in network_size)
        self.num_classes = spec.num_classes
        self.dtype = dtype
        self.channels_last = channels_last
        scale, shift = normalization_constants(spec.mean, spec.std)
        device = next(model.parameters()).device
        self.register_buffer('scale', torch.as_tensor(scale, device=device).view(3, 1, 1))
        self.register_buffer('shift', torch.as_tensor(shift, device=device).view(3, 1, 1))
        self.register_buffer('lut', torch.as_tensor(palette_lut(spec), device=device))

    def network_input(self, frames: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
        """uint8 N x H x W x C frames -> normalised N x 3 x h x w network input."""
        width, height = self.network_size
        # Resize in the network's dtype: uint8 values are exact in fp16, the weights nearly.
        rgb = frames.index_select(3, channels).permute(0, 3, 1, 2).to(self.dtype)
        resized = resize_channels(rgb, (height, width)).float()
        x = (resized * self.scale - self.shift).to(self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, frame: torch.Tensor, channels: torch.Tensor, upsample: str = 'nearest',
                outputs: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
        """Frame(s) -> labels and the requested outputs.

        frame: uint8 H x W x C (C in 1, 3, 4), or N x H x W x C for N frames of one layout
        (one forward pass of the network); channels: int64 (3,) source of R, G, B.

        Returns {'labels': uint8 H x W} plus the requested outputs ('confidence', 'color',
        'overlay', 'small_labels'), all on the frame's device, each with a leading N axis
        when the input had one.
        """
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f'upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}')
        single = frame.dim() == 3
        frames = frame[None] if single else frame
        size = (frames.shape[1], frames.shape[2])
        logits = self.model(self.network_input(frames, channels)).logits
        out = self.outputs_from_logits(logits, frames, channels, upsample, outputs, size)
        return {name: value[0] for name, value in out.items()} if single else out

    def outputs_from_logits(self, logits: torch.Tensor, frames: torch.Tensor | None,
                            channels: torch.Tensor | None, upsample: str,
                            outputs: tuple[str, ...], size) -> dict[str, torch.Tensor]:
        """Steps 5 and 6 from N x C x h x w logits, every output with a leading N axis.

        `frames` (N x H x W x C) is needed for 'overlay' only.
        """
        small = logits.argmax(dim=1).to(torch.uint8)
        if upsample == 'nearest':
            labels = nearest_labels(small, size)
        else:
            labels = bilinear_labels(logits, size)
        out = {'labels': labels}
        if 'small_labels' in outputs:
            out['small_labels'] = small
        if 'confidence' in outputs:
            prob = torch.softmax(logits.float(), dim=1).amax(dim=1, keepdim=True)
            mode = 'nearest' if upsample == 'nearest' else 'bilinear'
            extra = {} if mode == 'nearest' else {'align_corners': False}
            prob = F.interpolate(prob, size=size, mode=mode, **extra)[:, 0]
            out['confidence'] = (prob * 255).round().to(torch.uint8)
        if 'color' in outputs or 'overlay' in outputs:
            color = self.lut[labels.long()]
            if 'color' in outputs:
                out['color'] = color
            if 'overlay' in outputs:
                rgb = frames.index_select(3, channels)
                blended = (rgb.float() * (1 - OVERLAY_ALPHA) + color.float() * OVERLAY_ALPHA)
                blended = blended.round().to(torch.uint8)
                void = (labels >= self.num_classes)[..., None]
                out['overlay'] = torch.where(void, rgb, blended)
        return out
