"""Input normalisation: the one definition shared by training, evaluation, export and inference."""
from __future__ import annotations

import cv2
import numpy as np


def normalize(image_rgb: np.ndarray, mean, std) -> np.ndarray:
    """uint8 HxWx3 RGB -> float32 3xHxW, (x/255 - mean) / std, contiguous."""
    if image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f'expected a uint8 HxWx3 image, got {image_rgb.dtype} {image_rgb.shape}')
    scale = 1.0 / (255.0 * np.asarray(std, np.float32))
    shift = np.asarray(mean, np.float32) / np.asarray(std, np.float32)
    out = image_rgb.astype(np.float32) * scale - shift
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def resize_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an image to the network size (area when shrinking, bilinear when enlarging)."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    interp = cv2.INTER_AREA if width * height < w * h else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interp)


def resize_labels(labels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Nearest-neighbour resize of a label map (never invents class ids)."""
    if labels.shape[1] == width and labels.shape[0] == height:
        return labels
    return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)
