"""Dataset formats: one registry line each (name -> loader, class list, how to recognise one).

The training config (`data.format`), the loaders of bisenet_core.train.data and
training.evaluate's format guess read REGISTRY; nothing else lists the formats. Adding one:
write its loader module (like cityscapes.py: a SegmentationDataset subclass, its LAYOUT and
a `found_in(root)`), put a new class list in bisenet_core/classes.py if it brings one, then
add one `DatasetFormat(...)` line here (docs/design.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bisenet_core.data import camvid, cityscapes, cocostuff, folder, synthetic
from bisenet_core.data.base import SegmentationDataset


@dataclass(frozen=True)
class DatasetFormat:
    """One on-disk dataset format.

    Args:
        loader: loader(root, split) -> a SegmentationDataset.
        class_list: its class list in bisenet_core.classes.DATASETS; '' when the data
            folder holds its own (read_classes).
        found_in: found_in(root) -> whether a folder is laid out this way.
        read_classes: read_classes(root) -> class names, for formats without a class_list.
        spec_dataset: what ModelSpec.dataset records for models trained on it (default: the
            class list's name).
    """

    loader: Callable[[Path, str], SegmentationDataset]
    class_list: str
    found_in: Callable[[Path], bool]
    read_classes: Callable[[Path], list[str]] | None = None
    spec_dataset: str = ''


REGISTRY: dict[str, DatasetFormat] = {
    'cityscapes': DatasetFormat(cityscapes.CityscapesDataset, 'cityscapes', cityscapes.found_in),
    'camvid': DatasetFormat(camvid.CamVidDataset, 'camvid', camvid.found_in),
    'cocostuff': DatasetFormat(cocostuff.COCOStuffDataset, 'cocostuff', cocostuff.found_in),
    'folder': DatasetFormat(folder.FolderDataset, '', folder.found_in, folder.folder_classes),
    # Procedural drives in the CamVid layout, rendered into data.root on first use.
    'synthetic': DatasetFormat(camvid.CamVidDataset, 'camvid', synthetic.found_in,
                               spec_dataset='synthetic-camvid'),
}


def dataset_format(name: str) -> DatasetFormat:
    """The registry entry of `name`, or ValueError naming the known formats."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f'unknown dataset format {name!r}; choose one of {tuple(REGISTRY)}'
                         ) from None


def guess_format(root: str | Path, dataset_name: str = '') -> str:
    """The name of the format of the data at `root`.

    The first format whose layout is found there, else the first whose class list
    `dataset_name` (a ModelSpec.dataset) names, e.g. 'synthetic-camvid' -> 'camvid', else
    'folder' (whose loader then says what it expected).
    """
    root = Path(root)
    for name, entry in REGISTRY.items():
        if root.is_dir() and entry.found_in(root):
            return name
    for name, entry in REGISTRY.items():
        if entry.class_list and entry.class_list in dataset_name:
            return name
    return 'folder'
