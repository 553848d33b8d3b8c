"""Your own data: an images folder, a labels folder matched by file stem, a class list."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from bisenet_core.data.base import (IMAGE_EXTENSIONS, DatasetLayoutError, SegmentationDataset,
                                    list_images, pair_by_stem, require_dir, require_files)

LAYOUT = """\
  <root>/classes.txt                 one class name per line (line n = id n-1; '#' comments)
  <root>/images/<split>/<name>.jpg|png
  <root>/labels/<split>/<name>.png   uint8 ids 0..C-1, 255 = ignore (same stem as the image)
  (without a split: <root>/images/ and <root>/labels/)"""


def read_class_list(path: str | Path) -> list[str]:
    """Class names, one per line; blank lines and '#' comments skipped."""
    path = Path(path)
    if not path.is_file():
        raise DatasetLayoutError(f'{path}: class list not found (one class name per line); '
                                 f'expected layout:\n{LAYOUT}')
    names = [line.split('#', 1)[0].strip() for line in path.read_text().splitlines()]
    names = [n for n in names if n]
    if not names:
        raise ValueError(f'{path}: class list is empty')
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f'{path}: duplicate class names {dupes}')
    if len(names) > 255:
        raise ValueError(f'{path}: {len(names)} classes; at most 255 fit 8-bit labels')
    return names


def found_in(root: Path) -> bool:
    """Whether `root` holds classes.txt, images/ and labels/ (this loader's layout)."""
    return all(p.exists() for p in (root / 'classes.txt', root / 'images', root / 'labels'))


def folder_classes(root: Path) -> list[str]:
    """The class list of the data at `root` (its classes.txt)."""
    return read_class_list(Path(root) / 'classes.txt')


class FolderDataset(SegmentationDataset):
    """Images and single-channel id labels in two folders, paired by file stem.

    Args:
        root: dataset folder (see LAYOUT).
        split: sub-folder of images/ and labels/ ('train', 'val', ...); None or '' for none.
        transform: optional transform(image, label).
        images, labels: folder names under root.
        classes: class list file, relative to root (or absolute).
        label_suffix: text between the stem and '.png' in label names (e.g. '_mask').
    """

    def __init__(self, root: str | Path, split: str | None = None,
                 transform: Callable | None = None, images: str = 'images',
                 labels: str = 'labels', classes: str = 'classes.txt', label_suffix: str = '',
                 check_labels: bool = True):
        root = Path(root)
        image_dir, label_dir = root / images, root / labels
        if split:
            image_dir, label_dir = image_dir / split, label_dir / split
        require_dir(image_dir, 'images', LAYOUT)
        require_dir(label_dir, 'labels', LAYOUT)
        names = read_class_list(root / classes)
        files = pair_by_stem(list_images(image_dir), label_dir, label_suffix,
                             extensions=('.png',) + tuple(e for e in IMAGE_EXTENSIONS
                                                          if e != '.png'),
                             layout=LAYOUT)
        super().__init__(require_files(files, root, split or '', LAYOUT), names, transform,
                         check_labels)
        self.root, self.split = root, split
