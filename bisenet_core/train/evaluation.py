"""Validation: predict label maps and accumulate a confusion matrix, by a named protocol.

Published numbers come from different evaluation protocols; a score is comparable only with
one made the same way:

- 'full' (ours, the default): resize the image to the model's input size (times each scale
  for multi-scale testing), upsample the 1/8 logits bilinearly to the label's full
  resolution, average softmax over scales and flips (the paper's "MS + flip", Table 7). This
  is what the node does.
- 'paper': the paper's real-time protocol (section 4.3, Table 6): Cityscapes images scaled
  from 2048x1024 to 1536x768, single scale, no flip; other datasets at their own resolution
  (CamVid 960x720, section 4.3; COCO-Stuff 640x640 crops of ~640x480 images). Scored at the
  full label resolution.
- 'torchseg': the authors' accuracy evaluation (TorchSeg furnace/engine/evaluator.py
  `sliding_eval`, cityscapes.bisenet.{X39,R18,R101}/config.py @99ab13df): the image at its
  own resolution, 1024x1024 windows with stride ceil(1024 x 5/6) = 854, each window
  zero-padded (centred) to 1024x1024 after normalisation, logits upsampled x8 bilinearly with
  align_corners=True, softmax summed over windows (not averaged), scored at full resolution.
  Multi-scale: scales (0.5 .. 1.75) of the image, each score resized back and summed.
- 'torchseg-speed': the authors' real-time evaluation (cityscapes.bisenet.{X39,R18}.speed
  /eval.py): the image resized (bilinear) to the model's input size (1536x768 in those
  recipes), the labels nearest-resized to 1/8 of it, and the 1/8 logits scored there
  without upsampling. The TorchSeg README's real-time numbers (68.51 / 74.83) are these.
"""
from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from bisenet_core.preprocess import normalize, resize_image, resize_labels
from bisenet_core.spec import OUTPUT_STRIDE, SIZE_DIVISOR, ModelSpec

PROTOCOLS = ('full', 'paper', 'torchseg', 'torchseg-speed')
MULTI_SCALES = (0.75, 1.0, 1.25, 1.5, 1.75)
# Paper section 4.3: "we first scale the input image of 2048x1024 resolution into the
# 1536x768 resolution for testing the speed and accuracy".
PAPER_CITYSCAPES_SIZE = (1536, 768)
# TorchSeg config.py: eval_crop_size = 1024, eval_stride_rate = 5 / 6, multi-scale
# eval_scale_array = [0.5, 0.75, 1, 1.25, 1.5, 1.75] ("multi scales" comment).
TORCHSEG_CROP = 1024
TORCHSEG_STRIDE_RATE = 5 / 6
TORCHSEG_MULTI_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
# What each protocol scores against, for reports.
RESOLUTIONS = {'full': 'full label resolution', 'paper': 'full label resolution',
               'torchseg': 'full label resolution',
               'torchseg-speed': '1/8 of the network input (labels nearest-downsampled)'}


def check_protocol(protocol: str, scales: Sequence[float], flip: bool) -> None:
    """Raise ValueError for an unknown protocol or test-time augmentation it does not allow."""
    if protocol not in PROTOCOLS:
        raise ValueError(f'unknown protocol {protocol!r}; choose one of {PROTOCOLS}')
    if protocol in ('paper', 'torchseg-speed') and (tuple(scales) != (1.0,) or flip):
        raise ValueError(f'protocol {protocol!r} is single scale without flip (the published '
                         'numbers use no test-time augmentation)')


def _run(model, batch: torch.Tensor, autocast) -> torch.Tensor:
    if autocast is not None:
        with autocast():
            return model(batch).logits.float()
    return model(batch).logits.float()


def _to_tensor(image: np.ndarray, spec: ModelSpec, device) -> torch.Tensor:
    return torch.from_numpy(normalize(image, spec.mean, spec.std)).unsqueeze(0).to(device)


@torch.no_grad()
def predict_probabilities(model: torch.nn.Module, image: np.ndarray, spec: ModelSpec,
                          device: torch.device, scales: Sequence[float] = (1.0,),
                          flip: bool = False, autocast=None,
                          size: tuple[int, int] | None = None) -> torch.Tensor:
    """Mean softmax over scales/flips for one uint8 RGB image: C x H x W at image resolution.

    The model must be in eval mode. Each scale resizes the image to scale x `size` (default:
    spec.input_size); the model zero-pads to a multiple of 32 itself.
    """
    height, width = image.shape[:2]
    base_w, base_h = size or spec.input_size
    total = None
    for scale in scales:
        w = max(SIZE_DIVISOR, int(round(base_w * scale)))
        h = max(SIZE_DIVISOR, int(round(base_h * scale)))
        x = _to_tensor(resize_image(image, w, h), spec, device)
        probs = _softmax_at(model, x, (height, width), flip, autocast, align_corners=False)
        total = probs if total is None else total + probs
    return total


def _softmax_at(model, x: torch.Tensor, size, flip: bool, autocast, align_corners: bool
                ) -> torch.Tensor:
    """C x size softmax of a 1 x 3 x h x w input's logits upsampled bilinearly to `size`.

    With flip, plus the flipped input's softmax flipped back. Windows use TorchSeg's
    align_corners=True (their x8 upsampling, then exp(log_softmax)).
    """
    batch = torch.cat([x, x.flip(-1)]) if flip else x
    logits = F.interpolate(_run(model, batch, autocast), size=size, mode='bilinear',
                           align_corners=align_corners)
    probs = logits.softmax(dim=1)
    return probs[0] + probs[1].flip(-1) if flip else probs[0]


def _pad_centred(x: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, tuple]:
    """Zero-pad a 1 x 3 x h x w tensor to at least height x width, centred.

    As TorchSeg's pad_image_to_shape: the extra pixel of an odd margin goes bottom/right.
    """
    pad_h, pad_w = max(0, height - x.shape[-2]), max(0, width - x.shape[-1])
    top, left = pad_h // 2, pad_w // 2
    margin = (top, pad_h - top, left, pad_w - left)
    return F.pad(x, (left, pad_w - left, top, pad_h - top)), margin


@torch.no_grad()
def sliding_window_scores(model: torch.nn.Module, x: torch.Tensor, crop: int = TORCHSEG_CROP,
                          stride_rate: float = TORCHSEG_STRIDE_RATE, flip: bool = False,
                          autocast=None) -> torch.Tensor:
    """Summed window scores (C x H x W) of a normalised 1 x 3 x H x W tensor.

    TorchSeg's scale_process: crop x crop windows, stride ceil(crop x stride_rate).
    """
    height, width = x.shape[-2:]
    padded, (top, bottom, left, right) = _pad_centred(x, crop, crop)
    if max(height, width) <= crop:
        score = _softmax_at(model, padded, padded.shape[-2:], flip, autocast, True)
    else:
        stride = int(math.ceil(crop * stride_rate))
        rows, cols = padded.shape[-2:]
        score = None
        for gy in range(int(math.ceil((rows - crop) / stride)) + 1):
            for gx in range(int(math.ceil((cols - crop) / stride)) + 1):
                y1, x1 = min(gy * stride + crop, rows), min(gx * stride + crop, cols)
                y0, x0 = y1 - crop, x1 - crop
                window = padded[..., y0:y1, x0:x1]
                window = _softmax_at(model, window, window.shape[-2:], flip, autocast, True)
                if score is None:
                    score = torch.zeros((window.shape[0], rows, cols), device=window.device)
                score[:, y0:y1, x0:x1] += window
    return score[:, top:score.shape[-2] - bottom, left:score.shape[-1] - right]


@torch.no_grad()
def predict_torchseg(model: torch.nn.Module, image: np.ndarray, spec: ModelSpec,
                     device: torch.device, scales: Sequence[float] = (1.0,),
                     flip: bool = False, autocast=None) -> torch.Tensor:
    """Scores (summed softmax, C x H x W) at image resolution, as TorchSeg's sliding_eval."""
    height, width = image.shape[:2]
    total = torch.zeros((spec.num_classes, height, width), device=device)
    for scale in scales:
        scaled = image if scale == 1 else cv2.resize(image, None, fx=scale, fy=scale,
                                                     interpolation=cv2.INTER_LINEAR)
        score = sliding_window_scores(model, _to_tensor(scaled, spec, device), flip=flip,
                                      autocast=autocast)
        if score.shape[-2:] != (height, width):
            # cv2.INTER_LINEAR resize back to the image = bilinear, half-pixel centres.
            score = F.interpolate(score[None], size=(height, width), mode='bilinear',
                                  align_corners=False)[0]
        total += score
    return total


def predict_labels(model: torch.nn.Module, image: np.ndarray, label: np.ndarray,
                   spec: ModelSpec, device: torch.device, protocol: str = 'full',
                   scales: Sequence[float] = (1.0,), flip: bool = False, autocast=None,
                   data_format: str = '') -> tuple[np.ndarray, np.ndarray]:
    """(predicted uint8 labels, ground truth) as the protocol scores them (same shape)."""
    if protocol == 'full':
        probs = predict_probabilities(model, image, spec, device, scales, flip, autocast)
    elif protocol == 'paper':
        size = PAPER_CITYSCAPES_SIZE if data_format == 'cityscapes' else \
            (image.shape[1], image.shape[0])
        probs = predict_probabilities(model, image, spec, device, (1.0,), False, autocast,
                                      size=size)
    elif protocol == 'torchseg':
        probs = predict_torchseg(model, image, spec, device, scales, flip, autocast)
    elif protocol == 'torchseg-speed':
        width, height = spec.input_size
        resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        with torch.no_grad():
            probs = _run(model, _to_tensor(resized, spec, device), autocast)[0]
        label = resize_labels(np.asarray(label), width // OUTPUT_STRIDE,
                              height // OUTPUT_STRIDE)
        probs = probs[:, :label.shape[0], :label.shape[1]]
    else:
        raise ValueError(f'unknown protocol {protocol!r}; choose one of {PROTOCOLS}')
    return probs.argmax(0).to(torch.uint8).cpu().numpy(), np.asarray(label)


def evaluate_dataset(model: torch.nn.Module, dataset, spec: ModelSpec, device: torch.device,
                     confusion, scales: Sequence[float] = (1.0,), flip: bool = False,
                     indices: Sequence[int] | None = None, autocast=None,
                     progress: bool = True, desc: str = 'val', protocol: str = 'full',
                     data_format: str = ''):
    """Update `confusion` (a ConfusionMatrix) with predictions on dataset[i] for i in indices.

    `dataset[i]` gives (uint8 H x W x 3 RGB image, uint8 H x W label) at full resolution;
    `protocol` is one of PROTOCOLS, `data_format` the dataset's (the 'paper' protocol scales
    Cityscapes only).
    """
    check_protocol(protocol, scales, flip)
    # Each module's own mode comes back afterwards (frozen BatchNorm in a training model stays
    # frozen), not one flag for the whole model.
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    indices = range(len(dataset)) if indices is None else indices
    for i in tqdm(indices, desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
        image, label = dataset[i]
        prediction, truth = predict_labels(model, image, label, spec, device, protocol, scales,
                                           flip, autocast, data_format)
        confusion.update(prediction, truth)
    for module, training in modes:
        module.training = training
    return confusion
