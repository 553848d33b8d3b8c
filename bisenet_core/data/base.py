"""What every dataset loader shares: reading files, checking labels, the pair interface.

A loader finds its (image, label) file pairs and says how raw label files become train ids;
`SegmentationDataset` reads, converts, checks and (optionally) transforms them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
from torch.utils.data import Dataset
from tqdm import tqdm

from bisenet_core.classes import IGNORE_INDEX

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


class DatasetLayoutError(FileNotFoundError):
    """A dataset folder is missing, empty or not laid out as the loader expects."""


class LabelError(ValueError):
    """A label file holds values that are neither a class id nor the ignore value."""


class SegmentationDataset(Dataset):
    """(image, label) pairs from files: uint8 H x W x 3 RGB and uint8 H x W train ids.

    Subclasses set `files`, `class_names` and may override `convert_label` (raw label file
    contents -> train ids, ignore = 255).

    Args:
        files: (image path, label path) pairs.
        class_names: one name per train id.
        transform: called as transform(image, label) on every sample if given.
        check_labels: raise LabelError on values outside 0..C-1 that are not ignore_index.
    """

    ignore_index: int = IGNORE_INDEX

    def __init__(self, files: Sequence[tuple[Path, Path]], class_names: Sequence[str],
                 transform: Callable | None = None, check_labels: bool = True):
        self.files = [(Path(i), Path(lbl)) for i, lbl in files]
        self.class_names = tuple(class_names)
        self.transform = transform
        self.check_labels = check_labels

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        image, label = self.load(index)
        if self.transform is not None:
            return self.transform(image, label)
        return image, label

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Pair `index` as (uint8 RGB image, uint8 train ids), checked, without the transform."""
        image_path, label_path = self.files[index]
        image = read_image(image_path)
        label = self.convert_label(read_label(label_path), label_path)
        if label.shape != image.shape[:2]:
            raise ValueError(f'{label_path}: label is {label.shape[1]}x{label.shape[0]} but image '
                             f'{image_path} is {image.shape[1]}x{image.shape[0]}')
        if self.check_labels:
            check_label_values(label, self.num_classes, label_path, self.ignore_index)
        return image, label

    def convert_label(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Raw label file contents -> uint8 H x W train ids (default: already train ids)."""
        return single_channel(raw, path)

    def verify(self, progress: bool = True, max_problems: int = 10) -> np.ndarray:
        """Read every pair once, before a long run finds a bad file hours in.

        Returns per-class pixel counts (length num_classes + 1, the last entry the ignored
        pixels). Raises ValueError listing up to `max_problems` unreadable, mismatched or
        out-of-range files (label values are checked even with check_labels=False).
        """
        counts = np.zeros(256, np.int64)
        problems = []
        for index in tqdm(range(len(self)), desc='checking pairs', unit='pair',
                          disable=not progress):
            try:
                _, label = self.load(index)
                if not self.check_labels:  # load() has checked them otherwise
                    check_label_values(label, self.num_classes, self.files[index][1],
                                       self.ignore_index)
            except (OSError, ValueError) as err:
                problems.append(str(err).splitlines()[0])
                if len(problems) >= max_problems:
                    break
                continue
            counts += np.bincount(label.ravel(), minlength=256)
        if problems:
            raise ValueError(f'{len(problems)} bad pair(s)'
                             f'{" (stopped early)" if len(problems) >= max_problems else ""}:\n  '
                             + '\n  '.join(problems))
        return np.append(counts[:self.num_classes], counts[self.ignore_index])

    def __repr__(self) -> str:
        return (f'{type(self).__name__}({len(self)} pairs, {self.num_classes} classes, '
                f'transform={self.transform!r})')


def read_image(path: str | os.PathLike) -> np.ndarray:
    """uint8 H x W x 3 RGB (grey and RGBA files converted); error naming the file if unreadable."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # always 3-channel BGR, 8 bit
    if image is None:
        raise OSError(f'{path}: cannot read image (missing, corrupt or not an image file)')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label(path: str | os.PathLike) -> np.ndarray:
    """The label file as stored (IMREAD_UNCHANGED): H x W ids, or H x W x 3 RGB colours."""
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise OSError(f'{path}: cannot read label (missing, corrupt or not an image file)')
    if label.ndim == 3:
        channels = label.shape[2]
        if channels == 4:
            label = label[..., :3]
        label = cv2.cvtColor(label, cv2.COLOR_BGR2RGB) if channels in (3, 4) else label[..., 0]
    return label


def single_channel(label: np.ndarray, path: Path) -> np.ndarray:
    """A label of ids must be one 8-bit channel (or three equal ones, as some tools save it)."""
    if label.ndim == 3:
        if not (np.array_equal(label[..., 0], label[..., 1])
                and np.array_equal(label[..., 0], label[..., 2])):
            raise LabelError(f'{path}: expected a single-channel label of class ids, got a '
                             f'colour image (use the loader that maps label colours)')
        label = label[..., 0]
    if label.dtype != np.uint8:
        if label.size and int(label.max()) > 255:
            raise LabelError(f'{path}: {label.dtype} label with values up to {int(label.max())}; '
                             f'labels must be 8-bit ids')
        label = label.astype(np.uint8)
    return label


def check_label_values(label: np.ndarray, num_classes: int, path, ignore_index: int = IGNORE_INDEX
                       ) -> None:
    """Raise LabelError if the label has values other than 0..num_classes-1 and ignore_index.

    Cheap (a max, then a bincount when ignore pixels are present): a bad value would otherwise
    surface as a CUDA device-side assert in the loss, far from the file that caused it.
    """
    if label.size == 0 or int(label.max()) < num_classes:
        return
    counts = np.bincount(label.ravel(), minlength=256)  # O(pixels), unlike np.unique's sort
    counts[:num_classes] = 0
    if 0 <= ignore_index < counts.size:
        counts[ignore_index] = 0
    bad = np.flatnonzero(counts)
    if bad.size:
        shown = ', '.join(str(int(v)) for v in bad[:10]) + (' ...' if bad.size > 10 else '')
        raise LabelError(f'{path}: label values {shown} are not class ids 0..{num_classes - 1} '
                         f'nor the ignore value {ignore_index}')


def lookup_table(mapping: dict[int, int], default: int = IGNORE_INDEX) -> np.ndarray:
    """uint8[256] table: raw value -> train id, `default` for values not in `mapping`."""
    table = np.full(256, default, np.uint8)
    for raw, train_id in mapping.items():
        table[raw] = train_id
    return table


def require_dir(path: Path, what: str, layout: str) -> Path:
    """`path` if it is a folder, else DatasetLayoutError naming it and the expected layout."""
    if not path.is_dir():
        raise DatasetLayoutError(f'{path}: {what} folder not found; expected layout:\n{layout}')
    return path


def require_files(files: list, root: Path, split: str, layout: str) -> list:
    """`files` if not empty, else DatasetLayoutError naming the root, split and layout."""
    if not files:
        raise DatasetLayoutError(f'{root}: no image/label pairs for split {split!r}; '
                                 f'expected layout:\n{layout}')
    return files


def list_images(folder: Path, pattern: str = '*') -> list[Path]:
    """Image files in `folder` matching `pattern`, sorted by name."""
    return sorted(p for p in folder.glob(pattern)
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def pair_by_stem(images: list[Path], label_dir: Path, label_suffix: str = '',
                 extensions: Sequence[str] = ('.png',), layout: str = ''
                 ) -> list[tuple[Path, Path]]:
    """Pair each image with `label_dir/<stem><label_suffix><ext>`; error naming a missing label."""
    pairs = []
    for image in images:
        candidates = [label_dir / f'{image.stem}{label_suffix}{ext}' for ext in extensions]
        label = next((c for c in candidates if c.is_file()), None)
        if label is None:
            raise DatasetLayoutError(f'{image}: no label file {candidates[0]}'
                                     + (f'; expected layout:\n{layout}' if layout else ''))
        pairs.append((image, label))
    return pairs
