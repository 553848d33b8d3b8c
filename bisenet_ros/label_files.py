"""Ground truth from a folder of label PNGs: which file labels which frame of a bag."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from bisenet_ros.bag_files import BagError

# How files are matched to frames (match_label_files).
LABEL_KEYS = ('auto', 'stamp', 'index', 'order')


def label_files(labels_dir: str | os.PathLike) -> list[Path]:
    """Label PNGs of a folder, in name order."""
    labels_dir = Path(labels_dir)
    if not labels_dir.is_dir():
        raise BagError(f'labels folder {labels_dir}: not found')
    files = sorted(p for p in labels_dir.iterdir() if p.suffix.lower() == '.png')
    if not files:
        raise BagError(f'labels folder {labels_dir}: no .png files')
    return files


def match_label_files(files: Sequence[Path], stamps: Sequence[int], key: str = 'auto'
                      ) -> dict[int, Path]:
    """Frame index -> label file.

    Files are keyed by 'stamp' (name = stamp in ns), 'index' (name = 0-based frame index,
    e.g. 000012.png) or 'order' (n-th file in name order labels the n-th frame). 'auto':
    order unless every name is a number, else whichever of stamp and index names more
    frames (stamp on a tie: a bag whose first stamp is 0 has a frame 0 both ways).
    """
    numbered = {}
    for path in files:
        if path.stem.isdigit():
            numbered[int(path.stem)] = path
    if key == 'auto':
        if len(numbered) < len(files):
            key = 'order'
        else:
            by_stamp = len(set(numbered) & set(stamps))
            by_index = sum(0 <= n < len(stamps) for n in numbered)
            key = 'stamp' if by_stamp >= by_index else 'index'
    if key == 'stamp':
        by_stamp = {s: i for i, s in enumerate(stamps)}
        return {by_stamp[s]: p for s, p in numbered.items() if s in by_stamp}
    if key == 'index':
        return {i: p for i, p in numbered.items() if 0 <= i < len(stamps)}
    if key == 'order':
        return dict(enumerate(list(files)[:len(stamps)]))
    raise BagError(f'unknown labels key {key!r}; choose one of {", ".join(LABEL_KEYS)}')
