"""Input normalisation: the one definition shared by training, evaluation, export and inference.

The host (numpy/cv2) functions here serve training, evaluation and the CPU inference path; the
device pipeline (`bisenet_core.inference.pipeline`) computes the same thing in torch from the
same constants (`normalization_constants`) and the same resize rule (area when shrinking,
bilinear when enlarging).
"""
from __future__ import annotations

import cv2
import numpy as np


def normalization_constants(mean, std) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift), float32 per RGB channel: normalised = uint8 value * scale - shift."""
    std = np.asarray(std, np.float32)
    return 1.0 / (255.0 * std), np.asarray(mean, np.float32) / std


def normalize(image_rgb: np.ndarray, mean, std) -> np.ndarray:
    """uint8 HxWx3 RGB -> float32 3xHxW, (x/255 - mean) / std, contiguous."""
    if image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f'expected a uint8 HxWx3 image, got {image_rgb.dtype} {image_rgb.shape}')
    scale, shift = normalization_constants(mean, std)
    out = image_rgb.astype(np.float32) * scale - shift
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def shrinks(src_size: tuple[int, int], dst_size: tuple[int, int]) -> bool:
    """True when resizing (width, height) src_size to dst_size loses pixels (area filter)."""
    return dst_size[0] * dst_size[1] < src_size[0] * src_size[1]


def resize_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an image to the network size (area when shrinking, bilinear when enlarging)."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    interp = cv2.INTER_AREA if shrinks((w, h), (width, height)) else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interp)


def resize_labels(labels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Nearest-neighbour resize of a label map (never invents class ids)."""
    if labels.shape[1] == width and labels.shape[0] == height:
        return labels
    return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)
