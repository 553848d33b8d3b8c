"""BiSeNet's training loss: OHEM cross-entropy on the main output and the two auxiliary heads.

The paper (section 3.3) sums a principal loss and two auxiliary losses on the Context Path,
weighted by alpha = 1. The authors' code (TorchSeg, furnace/seg_opr/loss_opr.py) makes each
an online-hard-example-mined cross-entropy (`ProbOhemCrossEntropy2d`): only pixels whose
true-class probability is below a threshold (0.7) count, but never fewer than the min_kept
hardest pixels. TorchSeg sets min_kept = (images per GPU) x crop height x width // 16, a
sixteenth of *all* pixels of the batch, void included (cityscapes.bisenet.*/train.py); when
that exceeds the labelled pixels, every labelled pixel counts.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bisenet_core.classes import IGNORE_INDEX

# What OHEM's minimum kept fraction is of: the labelled pixels, or all of them (TorchSeg).
MIN_KEPT_OF = ('valid', 'all')


class OhemCrossEntropy(nn.Module):
    """Cross-entropy averaged over the hard pixels of the whole batch.

    Args:
        thresh: keep pixels whose softmax probability of the true class is < thresh.
        min_kept_fraction: keep at least this fraction of the pixels, the ones with the
            highest loss (1/16 as in TorchSeg's min_kept).
        ignore_index: label value that never counts.
        min_kept_of: 'valid': the fraction is of the labelled pixels; 'all': of all pixels,
            void included (TorchSeg; if the count exceeds the labelled pixels, all count).
    """

    def __init__(self, thresh: float = 0.7, min_kept_fraction: float = 1 / 16,
                 ignore_index: int = IGNORE_INDEX, min_kept_of: str = 'valid'):
        super().__init__()
        if min_kept_of not in MIN_KEPT_OF:
            raise ValueError(f'min_kept_of must be one of {MIN_KEPT_OF}, got {min_kept_of!r}')
        self.thresh = thresh
        self.min_kept_fraction = min_kept_fraction
        self.ignore_index = ignore_index
        self.min_kept_of = min_kept_of
        # p < thresh  <=>  -log p > -log thresh: compare losses, no softmax needed.
        self.loss_thresh = -math.log(thresh)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """logits: N x C x H x W (any float dtype), labels: N x H x W int64 at the same size."""
        losses = F.cross_entropy(logits.float(), labels, ignore_index=self.ignore_index,
                                 reduction='none').flatten()
        valid = labels.flatten() != self.ignore_index
        losses = losses[valid]
        if losses.numel() == 0:
            # No labelled pixel: a zero that still joins the graph (DDP needs every grad).
            return logits.sum() * 0.0
        hard = losses[losses > self.loss_thresh]
        counted = losses.numel() if self.min_kept_of == 'valid' else labels.numel()
        n_min = min(int(counted * self.min_kept_fraction), losses.numel())
        if hard.numel() < n_min:
            hard = losses.topk(n_min).values
        if hard.numel() == 0:
            return logits.sum() * 0.0
        return hard.mean()


def upsample_to(logits: torch.Tensor, size: tuple[int, int], align_corners: bool = False
                ) -> torch.Tensor:
    """Bilinear upsampling of logits to the label resolution (the loss sees full-size labels).

    align_corners: as the layout's authors train (model.architectures.Layout).
    """
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode='bilinear', align_corners=align_corners)


def downsample_labels(labels: torch.Tensor, factor: int) -> torch.Tensor:
    """Nearest-neighbour label downsampling by an integer factor.

    Pixel (i, j) of the result is (factor * i, factor * j), as cv2.INTER_NEAREST picks it
    (TorchSeg's gt_down_sampling).
    """
    return labels if factor == 1 else labels[..., ::factor, ::factor]


def bisenet_loss(logits: torch.Tensor, aux: Sequence[torch.Tensor], labels: torch.Tensor,
                 criterion: nn.Module, aux_weight: float = 1.0, label_downsample: int = 1,
                 align_corners: bool = False) -> tuple[torch.Tensor, dict[str, float]]:
    """Principal + aux_weight * (each auxiliary) loss, all at label resolution.

    label_downsample > 1 first downsamples the labels (nearest), so the logits are resized
    to labels / label_downsample instead of the full label size. align_corners: of that
    bilinear resize (TorchSeg's layout: True; the shipped 'bisenet-ros-v1' model: False).
    Returns the total loss and its parts as floats for logging.
    """
    labels = downsample_labels(labels, label_downsample)
    size = tuple(labels.shape[-2:])
    principal = criterion(upsample_to(logits, size, align_corners), labels)
    total = principal
    parts = {'loss_principal': principal.detach()}
    for i, aux_logits in enumerate(aux):
        aux_loss = criterion(upsample_to(aux_logits, size, align_corners), labels)
        total = total + aux_weight * aux_loss
        parts[f'loss_aux{i}'] = aux_loss.detach()
    return total, {k: float(v) for k, v in parts.items()}
