"""Camera frames as the Segmenter takes them: checks, channel order, host-side conversions.

A frame is a numpy array straight from the camera message, often a view of its buffer:
uint8 H x W (mono8), H x W x 1, H x W x 3 (rgb8/bgr8), H x W x 4 (rgba8/bgra8, alpha
ignored), or uint16 H x W (mono16, scaled to 8 bit by >> 8); rows may be padded (a strided
view). Nothing here copies the pixels unless it has to.
"""
from __future__ import annotations

import cv2
import numpy as np

COLOR_ORDERS = ('rgb', 'bgr')
# Optional outputs of Segmenter.segment; the labels always come.
OUTPUTS = ('confidence', 'color', 'overlay', 'small_labels')
# Inputs and outputs of the end-to-end ONNX frame graph (bisenet_core.inference.export_frames).
FRAME_INPUTS = ('image', 'channels')
FRAME_OUTPUTS = ('labels', 'small_labels', 'confidence')


def check_frame(image, color_order: str) -> np.ndarray:
    """The frame as an H x W x C view (C in 1, 3, 4; uint8 or uint16), or a ValueError."""
    if color_order not in COLOR_ORDERS:
        raise ValueError(f'color_order must be one of {COLOR_ORDERS}, got {color_order!r}')
    if not isinstance(image, np.ndarray):
        raise ValueError(f'expected a numpy image, got {type(image).__name__}')
    if image.dtype != np.uint8 and not (image.dtype.kind == 'u' and image.dtype.itemsize == 2):
        raise ValueError(f'expected a uint8 image (or uint16 mono), got dtype {image.dtype} '
                         f'(shape {image.shape})')
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f'expected an H x W mono, H x W x 3 colour or H x W x 4 colour+alpha '
                         f'image, got shape {image.shape}')
    if image.dtype.itemsize == 2 and image.shape[2] != 1:
        raise ValueError(f'uint16 images must be mono (H x W), got shape {image.shape}')
    if image.size == 0:
        raise ValueError(f'empty image (shape {image.shape})')
    return image


def layout_groups(frames, color_orders) -> dict[tuple, list[int]]:
    """Indices of the frames (checked, H x W x C) that can run as one batch.

    A layout is the shape, dtype and colour order; groups come in order of first appearance.
    """
    groups: dict[tuple, list[int]] = {}
    for index, (frame, order) in enumerate(zip(frames, color_orders)):
        groups.setdefault((frame.shape, frame.dtype.str, order), []).append(index)
    return groups


def check_outputs(outputs) -> tuple[str, ...]:
    """The requested optional outputs, validated, in OUTPUTS order (a hashable key)."""
    if isinstance(outputs, str):
        outputs = (outputs,)
    unknown = set(outputs) - set(OUTPUTS)
    if unknown:
        raise ValueError(f'unknown output(s) {sorted(unknown)}; choose from {OUTPUTS}')
    return tuple(name for name in OUTPUTS if name in outputs)


def channel_index(channels: int, color_order: str) -> tuple[int, int, int]:
    """Which frame channel feeds the network's R, G and B (mono feeds all three)."""
    if channels == 1:
        return (0, 0, 0)
    return (2, 1, 0) if color_order == 'bgr' else (0, 1, 2)


def to_uint8(frame: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Copy an H x W x C frame into `out` (e.g. a pinned buffer), 16-bit mono as value >> 8.

    Without `out`, a uint8 frame is returned as it is (no copy).
    """
    if frame.dtype == np.uint8:
        if out is None:
            return frame
        np.copyto(out, frame)
        return out
    if out is None:
        out = np.empty(frame.shape, np.uint8)
    np.right_shift(frame, 8, out=out, casting='unsafe')  # any byte order, full 8-bit range
    return out


_TO_RGB = {(3, 'bgr'): cv2.COLOR_BGR2RGB, (4, 'rgb'): cv2.COLOR_RGBA2RGB,
           (4, 'bgr'): cv2.COLOR_BGRA2RGB}


def to_rgb(frame: np.ndarray, color_order: str) -> np.ndarray:
    """uint8 H x W x C frame (C in 1, 3, 4) -> H x W x 3 RGB (the frame itself if it is one)."""
    channels = frame.shape[2] if frame.ndim == 3 else 1
    if channels == 1:
        return np.repeat(frame.reshape(frame.shape[:2])[:, :, None], 3, axis=2)
    if channels == 3 and color_order == 'rgb':
        return frame
    return cv2.cvtColor(frame, _TO_RGB[channels, color_order])
