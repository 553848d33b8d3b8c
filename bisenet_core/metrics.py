"""Segmentation metrics from a confusion matrix: per-class IoU, mIoU, pixel and class accuracy.

Rows are ground truth, columns prediction. Pixels labelled `ignore_index` are not counted
(the paper's Cityscapes/CamVid protocol); classes absent from both ground truth and
prediction have IoU NaN and are left out of the mean. Plots of a matrix: metrics_plots.py.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist

from bisenet_core.classes import IGNORE_INDEX


class ConfusionMatrix:
    """Accumulates a num_classes x num_classes int64 confusion matrix (`.matrix`, numpy).

    Args:
        num_classes: number of classes; labels and predictions are ids 0..num_classes-1.
        ignore_index: label value that is not scored.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX):
        if num_classes < 1:
            raise ValueError(f'num_classes must be >= 1, got {num_classes}')
        if 0 <= ignore_index < num_classes:
            raise ValueError(f'ignore_index {ignore_index} collides with a class id')
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.matrix = np.zeros((num_classes, num_classes), np.int64)

    def update(self, pred, label) -> 'ConfusionMatrix':
        """Add predictions and labels of equal shape (numpy or torch, any integer dtype).

        Torch tensors are counted on their own device (bincount), then added on the CPU.
        Raises ValueError on shape mismatch or on ids outside 0..num_classes-1 (labels may
        also be ignore_index).
        """
        if isinstance(pred, torch.Tensor) or isinstance(label, torch.Tensor):
            pred, label = torch.as_tensor(pred), torch.as_tensor(label)
            label = label.to(pred.device)
            counts = self._count(pred.long(), label.long(), torch)
            self.matrix += counts.cpu().numpy()
        else:
            pred, label = np.asarray(pred), np.asarray(label)
            self.matrix += self._count(pred.astype(np.int64, copy=False),
                                       label.astype(np.int64, copy=False), np)
        return self

    def _count(self, pred, label, xp):
        """Bincount of label * n + pred over scored pixels; xp is numpy or torch."""
        if tuple(pred.shape) != tuple(label.shape):
            raise ValueError(f'prediction shape {tuple(pred.shape)} does not match label shape '
                             f'{tuple(label.shape)}')
        n = self.num_classes
        scored = label != self.ignore_index
        bad = scored & ((label < 0) | (label >= n))
        if bad.any():
            values = sorted({int(v) for v in xp.unique(label[bad]).tolist()})
            raise ValueError(f'label values {values[:10]} are outside 0..{n - 1} and not the '
                             f'ignore value {self.ignore_index}')
        pred, label = pred[scored], label[scored]
        if pred.numel() if xp is torch else pred.size:
            if int(pred.min()) < 0 or int(pred.max()) >= n:
                raise ValueError(f'prediction values span {int(pred.min())}..{int(pred.max())}, '
                                 f'outside 0..{n - 1}')
        counts = xp.bincount(label * n + pred, minlength=n * n)
        return counts.reshape(n, n)

    def merge(self, other: 'ConfusionMatrix') -> 'ConfusionMatrix':
        """Add another matrix's counts (same classes) into this one."""
        if not isinstance(other, ConfusionMatrix) or other.num_classes != self.num_classes:
            raise ValueError('can only merge a ConfusionMatrix with the same number of classes')
        self.matrix += other.matrix
        return self

    def __iadd__(self, other: 'ConfusionMatrix') -> 'ConfusionMatrix':
        return self.merge(other)

    def __add__(self, other: 'ConfusionMatrix') -> 'ConfusionMatrix':
        total = ConfusionMatrix(self.num_classes, self.ignore_index)
        return total.merge(self).merge(other)

    def all_reduce(self) -> 'ConfusionMatrix':
        """Sum the matrix over all DDP ranks (no-op unless torch.distributed is initialised).

        Every rank must call it. int64 keeps the counts exact.
        """
        if not (dist.is_available() and dist.is_initialized()):
            return self
        device = torch.device('cpu')
        if dist.get_backend() == 'nccl':
            device = torch.device('cuda', torch.cuda.current_device())
        tensor = torch.from_numpy(self.matrix.copy()).to(device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        self.matrix[...] = tensor.cpu().numpy()
        return self

    @property
    def total(self) -> int:
        """Number of scored pixels."""
        return int(self.matrix.sum())

    def iou(self) -> np.ndarray:
        """Per-class intersection over union; NaN for classes absent from labels and predictions."""
        m = self.matrix.astype(np.float64)
        tp = np.diag(m)
        union = m.sum(0) + m.sum(1) - tp
        with np.errstate(invalid='ignore', divide='ignore'):
            return np.where(union > 0, tp / union, np.nan)

    def miou(self) -> float:
        """Mean IoU over classes that occur (in labels or predictions); NaN if none do."""
        return _nanmean(self.iou())

    def pixel_accuracy(self) -> float:
        """Fraction of scored pixels predicted correctly; NaN before any update."""
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else math.nan

    def class_accuracy(self) -> np.ndarray:
        """Per-class recall (correct / labelled pixels of the class); NaN for unlabelled classes."""
        m = self.matrix.astype(np.float64)
        labelled = m.sum(1)
        with np.errstate(invalid='ignore', divide='ignore'):
            return np.where(labelled > 0, np.diag(m) / labelled, np.nan)

    def mean_class_accuracy(self) -> float:
        return _nanmean(self.class_accuracy())

    def names(self, class_names: Sequence[str] | None = None) -> list[str]:
        """`class_names` checked against the class count, or the ids as text."""
        if class_names is None:
            return [str(i) for i in range(self.num_classes)]
        names = [str(n) for n in class_names]
        if len(names) != self.num_classes:
            raise ValueError(f'{len(names)} class names for {self.num_classes} classes')
        return names

    def table(self, class_names: Sequence[str] | None = None) -> str:
        """Per-class IoU and accuracy as a fixed-width text table, mIoU last."""
        names = self.names(class_names)
        width = max([len(n) for n in names] + [len('pixel accuracy')])
        iou, acc = self.iou(), self.class_accuracy()
        pixels = self.matrix.sum(1)
        lines = [f'{"class":<{width}}  {"IoU":>6}  {"acc":>6}  {"pixels":>12}']
        for name, i, a, p in zip(names, iou, acc, pixels):
            lines.append(f'{name:<{width}}  {_pct(i)}  {_pct(a)}  {int(p):>12d}')
        lines.append(f'{"mIoU":<{width}}  {_pct(self.miou())}  {_pct(self.mean_class_accuracy())}'
                     f'  {self.total:>12d}')
        lines.append(f'{"pixel accuracy":<{width}}  {_pct(self.pixel_accuracy())}')
        return '\n'.join(lines)

    def to_dict(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """Plain JSON types; NaN (no pixels of a class) becomes None."""
        names = self.names(class_names)
        return {
            'miou': _json(self.miou()),
            'pixel_accuracy': _json(self.pixel_accuracy()),
            'mean_class_accuracy': _json(self.mean_class_accuracy()),
            'iou': {n: _json(v) for n, v in zip(names, self.iou())},
            'class_accuracy': {n: _json(v) for n, v in zip(names, self.class_accuracy())},
            'pixels': self.total,
        }

    def __repr__(self) -> str:
        return (f'ConfusionMatrix(num_classes={self.num_classes}, pixels={self.total}, '
                f'miou={self.miou():.4f})')


def _nanmean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan


def _pct(value: float) -> str:
    return '   n/a' if math.isnan(value) else f'{value * 100:6.2f}'


def _json(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value
