"""Plots of a ConfusionMatrix (bisenet_core.metrics) as PNG files: heat map, per-class IoU.

matplotlib is imported when a plot is drawn, so scoring needs no plotting library.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from bisenet_core.atomic import atomic_write
from bisenet_core.metrics import ConfusionMatrix


def plot_confusion(confusion: ConfusionMatrix, path: str | os.PathLike,
                   class_names: Sequence[str] | None = None, normalize: bool = True) -> Path:
    """Heat map of the matrix (rows: ground truth, columns: prediction) as a PNG.

    normalize=True divides each row by its pixel count (so the diagonal is the class
    accuracy); cells are annotated when there are at most 30 classes.
    """
    names = confusion.names(class_names)
    m = confusion.matrix.astype(np.float64)
    if normalize:
        with np.errstate(invalid='ignore', divide='ignore'):
            m = np.nan_to_num(m / m.sum(1, keepdims=True))
    n = confusion.num_classes
    side = min(4 + 0.45 * n, 40)
    fig, ax = _figure((side + 1.5, side))
    im = ax.imshow(m, cmap='Blues', vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), names, rotation=90, fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    ax.set_xlabel('predicted')
    ax.set_ylabel('ground truth')
    miou = confusion.miou()
    ax.set_title(f'confusion ({"row-normalised" if normalize else "pixels"}), '
                 f'mIoU {"n/a" if math.isnan(miou) else f"{miou * 100:.2f}"}%')
    if n <= 30:
        for r in range(n):
            for c in range(n):
                if m[r, c]:
                    text = f'{m[r, c]:.2f}' if normalize else f'{int(m[r, c])}'
                    ax.text(c, r, text, ha='center', va='center', fontsize=6,
                            color='white' if m[r, c] > 0.5 * m.max() else 'black')
    return _save(fig, path)


def plot_iou_bars(confusion: ConfusionMatrix, path: str | os.PathLike,
                  class_names: Sequence[str] | None = None) -> Path:
    """Horizontal bar chart of per-class IoU (classes with no pixels marked 'n/a')."""
    names = confusion.names(class_names)
    iou = confusion.iou()
    fig, ax = _figure((8, 1.5 + 0.28 * confusion.num_classes))
    y = np.arange(confusion.num_classes)
    ax.barh(y, np.nan_to_num(iou) * 100, color='tab:blue')
    for row, value in zip(y, iou):
        ax.text(0.5 if math.isnan(value) else value * 100 + 0.5, row,
                'n/a' if math.isnan(value) else f'{value * 100:.1f}', va='center', fontsize=7)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 105)
    ax.set_xlabel('IoU (%)')
    miou = confusion.miou()
    if not math.isnan(miou):
        ax.axvline(miou * 100, color='tab:red', linestyle='--', label=f'mIoU {miou * 100:.1f}')
        ax.legend(loc='lower right')
    return _save(fig, path)


def _figure(size):
    # An Agg canvas of its own: no pyplot, no global backend switch, safe in threads and headless.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout='constrained')
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda f: fig.savefig(f, format='png', dpi=100))
