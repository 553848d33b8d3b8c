"""Training and evaluation transforms: (uint8 RGB, uint8 label) -> (float tensor, int64 tensor).

The training augmentation is the paper's (Sec. 4.1): random scale from {0.75, 1, 1.5, 1.75, 2},
random horizontal flip, random crop to a fixed size. Normalisation is
`bisenet_core.preprocess.normalize`, the same one export and the node use.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from bisenet_core.classes import IGNORE_INDEX
from bisenet_core.preprocess import normalize, resize_image, resize_labels
from bisenet_core.spec import IMAGENET_MEAN, IMAGENET_STD

PAPER_SCALES = (0.75, 1.0, 1.5, 1.75, 2.0)


class TrainTransform:
    """Random scale, horizontal flip, crop (padding with ignore) and optional colour jitter.

    Args:
        crop_size: output (width, height).
        scales: one is drawn uniformly per sample; the image is resized bilinearly (area when
            shrinking), the label by nearest neighbour so no class id is invented.
        flip: flip image and label left-right with probability 0.5.
        mean, std: RGB normalisation of [0, 1] images (from the ModelSpec).
        ignore_index: label value of padded pixels (not scored by the loss).
        color_jitter: strength j of brightness, contrast and saturation jitter (factors drawn
            from [1 - j, 1 + j]); 0 disables it. Applied to the image only.
        seed, rng: a private NumPy generator for reproducible draws. Without them the global
            NumPy RNG is used at call time, which is what `SeededDataset` seeds per sample;
            a private generator would be copied into every DataLoader worker and repeat itself.
    """

    def __init__(self, crop_size: Sequence[int] = (960, 720),
                 scales: Sequence[float] = PAPER_SCALES, flip: bool = True,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 ignore_index: int = IGNORE_INDEX, color_jitter: float = 0.0,
                 seed: int | None = None, rng: np.random.Generator | None = None):
        width, height = (int(v) for v in crop_size)
        if width <= 0 or height <= 0:
            raise ValueError(f'crop_size must be positive (width, height), got {crop_size!r}')
        self.crop_size = (width, height)
        self.scales = tuple(float(s) for s in scales)
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f'scales must be a non-empty list of positive numbers, got {scales!r}')
        if not 0.0 <= color_jitter < 1.0:
            raise ValueError(f'color_jitter must be in [0, 1), got {color_jitter}')
        if not 0 <= ignore_index <= 255:
            raise ValueError(f'ignore_index must fit a uint8 label (0..255), got {ignore_index}')
        self.flip = bool(flip)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.ignore_index = int(ignore_index)
        self.color_jitter = float(color_jitter)
        if rng is None and seed is not None:
            rng = np.random.default_rng(seed)
        self._rng = rng
        # The padding colour: normalises to (almost) 0; padded pixels are set to exactly 0 below.
        self._pad_colour = np.round(np.asarray(self.mean) * 255).astype(np.uint8)

    def _uniform(self) -> float:
        """One draw from [0, 1): the private generator, else the (per-sample seeded) global one."""
        return float(self._rng.random() if self._rng is not None else np.random.random())

    def _index(self, n: int) -> int:
        return min(int(self._uniform() * n), n - 1)

    def __call__(self, image: np.ndarray, label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        check_pair(image, label)
        height, width = label.shape
        scale = self.scales[self._index(len(self.scales))]
        if scale != 1.0:
            w, h = max(1, int(round(width * scale))), max(1, int(round(height * scale)))
            image, label = resize_image(image, w, h), resize_labels(label, w, h)
        if self.flip and self._uniform() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]

        # Random crop window; where the scaled image is smaller than the crop, it is placed at
        # a random offset inside the crop instead (padding on both sides in random amounts).
        crop_w, crop_h = self.crop_size
        h, w = label.shape
        src_x, dst_x, span_x = self._window(w, crop_w)
        src_y, dst_y, span_y = self._window(h, crop_h)
        image = image[src_y:src_y + span_y, src_x:src_x + span_x]
        label = label[src_y:src_y + span_y, src_x:src_x + span_x]
        if self.color_jitter > 0:
            image = self._jitter(image)

        out_image = np.empty((crop_h, crop_w, 3), np.uint8)
        out_image[...] = self._pad_colour
        out_image[dst_y:dst_y + span_y, dst_x:dst_x + span_x] = image
        out_label = np.full((crop_h, crop_w), self.ignore_index, np.int64)
        out_label[dst_y:dst_y + span_y, dst_x:dst_x + span_x] = label
        tensor = normalize(out_image, self.mean, self.std)
        if span_x < crop_w or span_y < crop_h:
            valid = np.zeros((crop_h, crop_w), bool)
            valid[dst_y:dst_y + span_y, dst_x:dst_x + span_x] = True
            tensor[:, ~valid] = 0.0  # exact zero, not the uint8-rounded mean
        return torch.from_numpy(tensor), torch.from_numpy(out_label)

    def _window(self, size: int, crop: int) -> tuple[int, int, int]:
        """(source offset, destination offset, length) of the crop along one axis."""
        if size >= crop:
            return self._index(size - crop + 1), 0, crop
        return 0, self._index(crop - size + 1), size

    def _jitter(self, image: np.ndarray) -> np.ndarray:
        """Brightness, contrast and saturation jitter in random order (as torchvision's)."""
        j = self.color_jitter
        x = image.astype(np.float32)
        for op in sorted(range(3), key=lambda _: self._uniform()):
            factor = 1.0 + j * (2.0 * self._uniform() - 1.0)
            if op == 0:
                x = x * factor
            elif op == 1:
                x = (x - _gray(x).mean()) * factor + _gray(x).mean()
            else:
                gray = _gray(x)[..., None]
                x = (x - gray) * factor + gray
            x = np.clip(x, 0.0, 255.0)
        return np.round(x).astype(np.uint8)

    def __repr__(self) -> str:
        return (f'TrainTransform(crop_size={self.crop_size}, scales={self.scales}, '
                f'flip={self.flip}, color_jitter={self.color_jitter})')


class EvalTransform:
    """Normalise (and optionally resize) for evaluation; no randomness.

    Args:
        mean, std: RGB normalisation of [0, 1] images (from the ModelSpec).
        size: network input (width, height) to resize the image to; None keeps its size.
        resize_label: also resize the label (nearest) to `size`. Off by default: BiSeNet is
            scored at the label's full resolution, predictions are upsampled to it.
    """

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, size: Sequence[int] | None = None,
                 resize_label: bool = False):
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.size = None if size is None else tuple(int(v) for v in size)
        if self.size is not None and (len(self.size) != 2 or min(self.size) <= 0):
            raise ValueError(f'size must be a positive (width, height), got {size!r}')
        self.resize_label = bool(resize_label)

    def __call__(self, image: np.ndarray, label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        check_pair(image, label)
        if self.size is not None:
            image = resize_image(image, *self.size)
            if self.resize_label:
                label = resize_labels(label, *self.size)
        tensor = torch.from_numpy(normalize(np.ascontiguousarray(image), self.mean, self.std))
        return tensor, torch.from_numpy(label.astype(np.int64))

    def __repr__(self) -> str:
        return f'EvalTransform(size={self.size}, resize_label={self.resize_label})'


def check_pair(image: np.ndarray, label: np.ndarray) -> None:
    """Raise ValueError unless image is uint8 HxWx3 and label an HxW map of the same size."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'expected a uint8 HxWx3 image, got {image.dtype} {image.shape}')
    if label.ndim != 2 or label.shape != image.shape[:2]:
        raise ValueError(f'label {label.shape} does not match image {image.shape[:2]}')


def _gray(x: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of an RGB float image."""
    return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114
