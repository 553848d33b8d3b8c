"""Validation: predict full-resolution label maps and accumulate a confusion matrix.

Prediction follows what the node does: resize the image to the network input size (or a
multiple of it for multi-scale testing), run the network, upsample the 1/8 logits bilinearly
to the label's full resolution, argmax. Multi-scale testing averages softmax probabilities
over scales (and horizontal flips), as in the paper's Table 7 ("MS + flip").
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from bisenet_core.preprocess import normalize, resize_image
from bisenet_core.spec import ModelSpec, round_to_divisor

MULTI_SCALES = (0.75, 1.0, 1.25, 1.5, 1.75)


@torch.no_grad()
def predict_probabilities(model: torch.nn.Module, image: np.ndarray, spec: ModelSpec,
                          device: torch.device, scales: Sequence[float] = (1.0,),
                          flip: bool = False, autocast=None) -> torch.Tensor:
    """Mean softmax over scales/flips for one uint8 RGB image: C x H x W at image resolution.

    The model must be in eval mode. Each scale resizes the image to scale * spec.input_size
    (rounded to a multiple of 32).
    """
    height, width = image.shape[:2]
    total = None
    for scale in scales:
        w = round_to_divisor(int(spec.input_size[0] * scale))
        h = round_to_divisor(int(spec.input_size[1] * scale))
        x = torch.from_numpy(normalize(resize_image(image, w, h), spec.mean, spec.std))
        x = x.unsqueeze(0).to(device)
        batch = torch.cat([x, x.flip(-1)]) if flip else x
        if autocast is not None:
            with autocast():
                logits = model(batch).logits
        else:
            logits = model(batch).logits
        logits = F.interpolate(logits.float(), size=(height, width), mode='bilinear',
                               align_corners=False)
        probs = logits.softmax(dim=1)
        if flip:
            probs = probs[0:1] + probs[1:2].flip(-1)
        total = probs[0] if total is None else total + probs[0]
    return total


def evaluate_dataset(model: torch.nn.Module, dataset, spec: ModelSpec, device: torch.device,
                     confusion, scales: Sequence[float] = (1.0,), flip: bool = False,
                     indices: Sequence[int] | None = None, autocast=None,
                     progress: bool = True, desc: str = 'val'):
    """Update `confusion` (a ConfusionMatrix) with predictions on dataset[i] for i in indices.

    `dataset[i]` gives (uint8 H x W x 3 RGB image, uint8 H x W label) at full resolution.
    """
    was_training = model.training
    model.eval()
    indices = range(len(dataset)) if indices is None else indices
    for i in tqdm(indices, desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
        image, label = dataset[i]
        probs = predict_probabilities(model, image, spec, device, scales, flip, autocast)
        prediction = probs.argmax(0).to(torch.uint8).cpu().numpy()
        confusion.update(prediction, np.asarray(label))
    model.train(was_training)
    return confusion
