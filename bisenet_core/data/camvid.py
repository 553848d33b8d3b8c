"""CamVid: the 11-class SegNet layout, or the original 32-class colour labels mapped to 11."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from bisenet_core.classes import CAMVID, CAMVID32_TO_11, IGNORE_INDEX
from bisenet_core.data.base import (DatasetLayoutError, LabelError, SegmentationDataset,
                                    list_images, pair_by_stem, require_dir, require_files)

LAYOUT = """\
  11-class ids (SegNet layout; also what bisenet_core.data.synthetic writes):
    <root>/<split>/<name>.png          RGB images, split = train | val | test
    <root>/<split>annot/<name>.png     uint8 ids 0..10, 11 = void
  32-class colour labels (original release):
    <root>/701_StillsRaw_full/<name>.png
    <root>/LabeledApproved_full/<name>_L.png    RGB colours of the 32 classes
    <root>/<split>.txt                 frame names of a split, one per line ('all': every frame)
  or split folders with colour labels:
    <root>/<split>/<name>.png  +  <root>/<split>_labels/<name>_L.png"""

VOID_ID = 11                # the 11-class files mark void with 11
RAW_DIR, COLOUR_DIR = '701_StillsRaw_full', 'LabeledApproved_full'


def _colour_code(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


_NAMES = [n for n, _ in CAMVID]
_CODES = _colour_code(np.array([c for _, c, _ in CAMVID32_TO_11]))
_ORDER = np.argsort(_CODES)
SORTED_CODES = _CODES[_ORDER]
SORTED_IDS = np.array([IGNORE_INDEX if t is None else _NAMES.index(t)
                       for _, _, t in CAMVID32_TO_11], np.uint8)[_ORDER]


def colours_to_ids(rgb: np.ndarray, path) -> np.ndarray:
    """H x W x 3 CamVid 32-class colours -> uint8 11-class ids (Void -> 255).

    A colour that is not one of the 32 raises LabelError naming it (e.g. a JPEG-compressed label).
    """
    code = _colour_code(rgb)
    index = np.clip(np.searchsorted(SORTED_CODES, code), 0, len(SORTED_CODES) - 1)
    known = SORTED_CODES[index] == code
    if not known.all():
        bad = np.unique(code[~known])[:5]
        shown = ', '.join(f'({v >> 16}, {(v >> 8) & 255}, {v & 255})' for v in bad.tolist())
        raise LabelError(f'{path}: colours {shown} are not CamVid class colours')
    return SORTED_IDS[index]


def found_in(root: Path) -> bool:
    """Whether `root` looks like CamVid: a split folder with its labels, or the original release."""
    if (root / RAW_DIR).is_dir() and (root / COLOUR_DIR).is_dir():
        return True
    splits = [d for d in root.iterdir() if d.is_dir()] if root.is_dir() else []
    return any((root / f'{d.name}annot').is_dir() or (root / f'{d.name}_labels').is_dir()
               for d in splits)


class CamVidDataset(SegmentationDataset):
    """CamVid in the 11 classes of `bisenet_core.classes.CAMVID` (void -> 255).

    Args:
        root: dataset folder (see LAYOUT: SegNet's 11-class folders, or the original
            `701_StillsRaw_full/` + `LabeledApproved_full/` colour labels).
        split: 'train', 'val', 'test'; for the original layout also 'all', or any name with a
            `<root>/<split>.txt` list of frame names.
        transform: optional transform(image, label).
    """

    def __init__(self, root: str | Path, split: str = 'train', transform: Callable | None = None,
                 check_labels: bool = True):
        root = require_dir(Path(root), 'CamVid', LAYOUT)
        if (root / split).is_dir() and (root / f'{split}annot').is_dir():
            files = pair_by_stem(list_images(root / split), root / f'{split}annot', layout=LAYOUT)
        elif (root / split).is_dir() and (root / f'{split}_labels').is_dir():
            files = pair_by_stem(list_images(root / split), root / f'{split}_labels', '_L',
                                 layout=LAYOUT)
        elif (root / RAW_DIR).is_dir() and (root / COLOUR_DIR).is_dir():
            images = list_images(root / RAW_DIR)
            if split != 'all':
                images = _select(images, root / f'{split}.txt')
            files = pair_by_stem(images, root / COLOUR_DIR, '_L', layout=LAYOUT)
        else:
            raise DatasetLayoutError(f'{root}: no CamVid split {split!r} (looked for {split}/ with '
                                     f'{split}annot/ or {split}_labels/, and {RAW_DIR}/ with '
                                     f'{COLOUR_DIR}/); expected layout:\n{LAYOUT}')
        super().__init__(require_files(files, root, split, LAYOUT), _NAMES, transform,
                         check_labels)
        self.root, self.split = root, split

    def convert_label(self, raw: np.ndarray, path: Path) -> np.ndarray:
        if raw.ndim == 3 and not (np.array_equal(raw[..., 0], raw[..., 1])
                                  and np.array_equal(raw[..., 0], raw[..., 2])):
            return colours_to_ids(raw, path)
        label = super().convert_label(raw, path)
        return np.where(label == VOID_ID, np.uint8(IGNORE_INDEX), label)


def _select(images: list[Path], split_file: Path) -> list[Path]:
    """The images named in a split list (SegNet's train.txt lines or bare frame names)."""
    if not split_file.is_file():
        raise DatasetLayoutError(f'{split_file}: split list not found; use split="all" or write '
                                 f'the frame names of the split there, one per line; expected '
                                 f'layout:\n{LAYOUT}')
    wanted = set()
    for line in split_file.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith('#'):
            wanted.add(Path(line.split()[0]).stem)
    by_stem = {p.stem: p for p in images}
    missing = sorted(wanted - by_stem.keys())
    if missing:
        raise DatasetLayoutError(f'{split_file}: frames {missing[:5]} are not in '
                                 f'{images[0].parent if images else RAW_DIR}')
    return [by_stem[s] for s in sorted(wanted)]
