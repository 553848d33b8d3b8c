"""Cityscapes fine annotations: labelIds (or labelTrainIds) -> the 19 training classes."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from bisenet_core.classes import CITYSCAPES, IGNORE_INDEX
from bisenet_core.data.base import (DatasetLayoutError, LabelError, SegmentationDataset,
                                    lookup_table, require_dir, require_files, single_channel)

LAYOUT = """\
  <root>/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
  <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
      (or ..._gtFine_labelTrainIds.png, as written by cityscapesscripts' createTrainIdLabelImgs)"""

# The official labelId -> trainId table (cityscapesscripts/helpers/labels.py); ids not listed
# (unlabeled, ego vehicle, ..., parking, rail track, guard rail, bridge, tunnel, polegroup,
# caravan, trailer, license plate) are not trained on -> 255.
LABEL_ID_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
    25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}
MAX_LABEL_ID = 33           # labelIds run 0..33; license plate (-1) is stored as 255
LABEL_TYPES = ('auto', 'labelIds', 'labelTrainIds')


def found_in(root: Path) -> bool:
    """Whether `root` looks like a Cityscapes folder (leftImg8bit/ and gtFine/)."""
    return (root / 'leftImg8bit').is_dir() and (root / 'gtFine').is_dir()


class CityscapesDataset(SegmentationDataset):
    """Cityscapes `leftImg8bit` images with `gtFine` labels, 19 classes.

    Args:
        root: folder holding `leftImg8bit/` and `gtFine/`.
        split: 'train', 'val' or 'test' (test labels are all void).
        transform: optional transform(image, label).
        label_type: 'labelTrainIds' or 'labelIds' files; 'auto' takes labelTrainIds where a
            frame has one, else maps labelIds with the official table.
    """

    def __init__(self, root: str | Path, split: str = 'train', transform: Callable | None = None,
                 label_type: str = 'auto', check_labels: bool = True):
        if label_type not in LABEL_TYPES:
            raise ValueError(f'label_type must be one of {LABEL_TYPES}, got {label_type!r}')
        root = Path(root)
        image_root = require_dir(root / 'leftImg8bit' / split, f'Cityscapes {split!r} images',
                                 LAYOUT)
        label_root = require_dir(root / 'gtFine' / split, f'Cityscapes {split!r} labels', LAYOUT)
        files = []
        for image in sorted(image_root.glob('*/*_leftImg8bit.png')):
            stem = image.name[:-len('_leftImg8bit.png')]
            folder = label_root / image.parent.name
            label = _pick_label(folder, stem, label_type)
            if label is None:
                wanted = 'labelIds' if label_type == 'auto' else label_type
                expected = folder / f'{stem}_gtFine_{wanted}.png'
                raise DatasetLayoutError(f'{image}: no label {expected}; expected layout:\n'
                                         f'{LAYOUT}')
            files.append((image, label))
        super().__init__(require_files(files, root, split, LAYOUT), [n for n, _ in CITYSCAPES],
                         transform, check_labels)
        self.root, self.split, self.label_type = root, split, label_type
        self._table = lookup_table(LABEL_ID_TO_TRAIN_ID, IGNORE_INDEX)

    def convert_label(self, raw: np.ndarray, path: Path) -> np.ndarray:
        label = single_channel(raw, path)
        if path.name.endswith('_labelTrainIds.png'):
            return label  # already train ids; checked against 0..18 / 255 by the base class
        bad = (label > MAX_LABEL_ID) & (label != IGNORE_INDEX)
        if bad.any():
            values = ', '.join(str(int(v)) for v in np.unique(label[bad])[:10])
            raise LabelError(f'{path}: values {values} are not Cityscapes label ids 0..'
                             f'{MAX_LABEL_ID}')
        return self._table[label]


def _pick_label(folder: Path, stem: str, label_type: str) -> Path | None:
    train_ids = folder / f'{stem}_gtFine_labelTrainIds.png'
    label_ids = folder / f'{stem}_gtFine_labelIds.png'
    order = {'auto': (train_ids, label_ids), 'labelIds': (label_ids,),
             'labelTrainIds': (train_ids,)}[label_type]
    return next((p for p in order if p.is_file()), None)
