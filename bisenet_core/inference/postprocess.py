"""1/8 logits -> full-size uint8 labels, and label maps -> colour images."""
from __future__ import annotations

import cv2
import numpy as np

from bisenet_core.preprocess import resize_labels
from bisenet_core.spec import ModelSpec

UPSAMPLE_MODES = ('nearest', 'bilinear')
# The most channels cv2.resize interpolates in one call (OpenCV 4 and 5).
_CV2_MAX_CHANNELS = 128


def logits_to_labels(logits: np.ndarray, size: tuple[int, int], upsample: str = 'nearest'
                     ) -> np.ndarray:
    """One image's C x h x w logits -> uint8 H x W labels, size = (H, W) of the original image.

    'nearest': argmax at 1/8, then nearest-neighbour upsampling of the labels (cheap: one
    channel is resized). 'bilinear': bilinear upsampling of all C logit maps (half-pixel
    centres, as torch's align_corners=False), then argmax (smoother edges, C times the work).
    """
    if logits.ndim != 3:
        raise ValueError(f'expected C x h x w logits, got shape {logits.shape}')
    height, width = size
    if height <= 0 or width <= 0:
        raise ValueError(f'output size must be positive, got {height}x{width}')
    if upsample == 'nearest':
        labels = logits.argmax(axis=0).astype(np.uint8)
        return resize_labels(labels, width, height)
    if upsample == 'bilinear':
        channels = np.ascontiguousarray(logits.transpose(1, 2, 0), dtype=np.float32)
        if channels.shape[:2] == (height, width):
            return channels.argmax(axis=2).astype(np.uint8)
        # cv2.resize takes at most _CV2_MAX_CHANNELS channels (COCO-Stuff has 171, ADE20k
        # 150): resize slices and keep a running argmax (strict '>': ties go to the lower id).
        best = labels = None
        for start in range(0, channels.shape[2], _CV2_MAX_CHANNELS):
            part = cv2.resize(np.ascontiguousarray(channels[:, :, start:start + _CV2_MAX_CHANNELS]),
                              (width, height), interpolation=cv2.INTER_LINEAR)
            if part.ndim == 2:  # cv2 drops a single channel axis
                part = part[:, :, None]
            part_best = part.max(axis=2)
            part_labels = part.argmax(axis=2) + start
            if best is None:
                best, labels = part_best, part_labels
            else:
                better = part_best > best
                best = np.where(better, part_best, best)
                labels = np.where(better, part_labels, labels)
        return labels.astype(np.uint8)
    raise ValueError(f'upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}')


def palette_lut(spec: ModelSpec) -> np.ndarray:
    """256 x 3 uint8 lookup table: class id -> palette colour; ignore and unknown ids -> black."""
    lut = np.zeros((256, 3), np.uint8)
    lut[:spec.num_classes] = np.asarray(spec.palette, np.uint8)
    return lut


def blend_labels(image_rgb: np.ndarray, labels: np.ndarray, lut: np.ndarray, num_classes: int,
                 alpha: float) -> np.ndarray:
    """Colour mask (palette_lut) blended over an H x W x 3 image; void pixels keep the image."""
    blended = cv2.addWeighted(image_rgb, 1.0 - alpha, lut[labels], alpha, 0.0)
    void = labels >= num_classes
    blended[void] = image_rgb[void]
    return blended


def check_labels(labels: np.ndarray) -> None:
    if not isinstance(labels, np.ndarray) or labels.dtype != np.uint8 or labels.ndim != 2:
        desc = (f'{labels.dtype} {labels.shape}' if isinstance(labels, np.ndarray)
                else type(labels).__name__)
        raise ValueError(f'expected a uint8 H x W label map, got {desc}')
