"""COCO-Stuff 164k: stuffthingmaps (COCO-Stuff id - 1) -> 171 contiguous classes."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from bisenet_core.classes import COCOSTUFF_IDS, IGNORE_INDEX
from bisenet_core.data.base import (LabelError, SegmentationDataset, list_images, lookup_table,
                                    pair_by_stem, require_dir, require_files, single_channel)

LAYOUT = """\
  <root>/images/<split>2017/<id>.jpg
  <root>/stuffthingmaps_trainval2017/<split>2017/<id>.png
      uint8 COCO-Stuff id - 1 (0..181), 255 = unlabeled"""

# Stored value (id - 1) -> contiguous class index; the 11 never-annotated thing ids are gone
# (mapped to ignore, should a file hold one). Values 182..254 are not COCO-Stuff ids at all.
VALUE_TO_CLASS = {coco_id - 1: index for index, (coco_id, _) in enumerate(COCOSTUFF_IDS)}
MAX_VALUE = 181


def found_in(root: Path) -> bool:
    """Whether `root` looks like a COCO-Stuff folder (images/ and stuffthingmaps_trainval2017/)."""
    return (root / 'images').is_dir() and (root / 'stuffthingmaps_trainval2017').is_dir()


class COCOStuffDataset(SegmentationDataset):
    """COCO-Stuff 164k (2017 images) in 171 classes (`bisenet_core.classes.COCOSTUFF`).

    Args:
        root: folder holding `images/` and `stuffthingmaps_trainval2017/`.
        split: 'train' or 'val' (or 'train2017', 'val2017').
        transform: optional transform(image, label).
    """

    def __init__(self, root: str | Path, split: str = 'train', transform: Callable | None = None,
                 check_labels: bool = True):
        root = Path(root)
        folder = split if split.endswith('2017') else f'{split}2017'
        images = require_dir(root / 'images' / folder, f'COCO-Stuff {split!r} images', LAYOUT)
        labels = require_dir(root / 'stuffthingmaps_trainval2017' / folder,
                             f'COCO-Stuff {split!r} labels', LAYOUT)
        files = pair_by_stem(list_images(images), labels, layout=LAYOUT)
        super().__init__(require_files(files, root, split, LAYOUT),
                         [n for _, n in COCOSTUFF_IDS], transform, check_labels)
        self.root, self.split = root, split
        self._table = lookup_table(VALUE_TO_CLASS, IGNORE_INDEX)

    def convert_label(self, raw: np.ndarray, path: Path) -> np.ndarray:
        label = single_channel(raw, path)
        bad = (label > MAX_VALUE) & (label != IGNORE_INDEX)
        if bad.any():
            values = ', '.join(str(int(v)) for v in np.unique(label[bad])[:10])
            raise LabelError(f'{path}: values {values} are not COCO-Stuff ids - 1 (0..{MAX_VALUE}) '
                             f'nor 255 (unlabeled)')
        return self._table[label]
