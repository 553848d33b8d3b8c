"""1/8 logits -> full-size uint8 labels and the optional outputs, on the host (numpy/cv2).

The CPU path of the Segmenter; `bisenet_core.inference.pipeline` computes the same outputs in
torch where the model runs (GPU). Both are checked against an independent reference in the
tests.

Bilinear upsampling is exact but never interpolates all C logit maps at full size (that cost
56-90 ms and C x H x W x 4 bytes of memory at 1080p). Bilinear interpolation is separable and
linear, so: interpolate the logits along the rows only (C x H x w, w = logit width), take the
argmax there, and along each row look at the segments between two neighbouring logit columns.
Every output pixel is a convex combination of the two ends of its segment, so where both ends
have the same argmax class, that class is the pixel's label. Where they differ (class
boundaries, ~10 % of the segments), the label is the top of C straight lines; usually only
the two end classes reach it, and the label switches where their lines cross. Only segments
where a third class wins somewhere (exact test in _segment_labels) get all C lines evaluated
per pixel, in blocks of bounded size.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from bisenet_core.inference.frames import to_rgb
from bisenet_core.preprocess import resize_labels
from bisenet_core.spec import ModelSpec

UPSAMPLE_MODES = ('nearest', 'bilinear')
# Weight of the colour mask in the overlay output.
OVERLAY_ALPHA = 0.5
# Floats evaluated at once for the boundary segments: bounds the extra memory (16 MB) whatever
# the number of classes and the output size.
_BLOCK_FLOATS = 1 << 22


def logits_to_labels(logits: np.ndarray, size: tuple[int, int], upsample: str = 'nearest'
                     ) -> np.ndarray:
    """One image's C x h x w logits -> uint8 H x W labels, size = (H, W) of the original image.

    'nearest': argmax at 1/8, then nearest-neighbour upsampling of the labels. 'bilinear':
    the argmax of the bilinearly upsampled logits (half-pixel centres, as torch's
    align_corners=False and cv2's INTER_LINEAR), computed without upsampling all of them
    (module docstring).
    """
    _check_logits(logits, size)
    if upsample == 'nearest':
        return resize_labels(_argmax_classes(logits), size[1], size[0])
    if upsample == 'bilinear':
        return bilinear_labels(logits, size)
    raise ValueError(f'upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}')


def bilinear_labels(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (H, W): the argmax over classes of the bilinearly upsampled C x h x w logits."""
    _check_logits(logits, size)
    height, width = size
    num_classes, h, w = logits.shape
    # Along the columns only (cv2 keeps the width: no horizontal interpolation), C x H x w.
    stacked = np.ascontiguousarray(logits.transpose(1, 0, 2), np.float32)
    rows = cv2.resize(stacked.reshape(h, num_classes * w), (num_classes * w, height),
                      interpolation=cv2.INTER_LINEAR)
    rows = rows.reshape(height, num_classes, w).transpose(1, 0, 2)
    ends = _argmax_classes(rows)                                # H x w
    cols = _columns(width, w)
    labels = np.repeat(ends, cols.counts, axis=1)               # right where both ends agree
    flat = labels.reshape(-1)
    ys, js = np.nonzero(ends[:, :-1] != ends[:, 1:])
    keep = cols.counts[js] > 0                                  # (empty when shrinking)
    ys, js = ys[keep], js[keep]
    block = max(1, _BLOCK_FLOATS // (num_classes * cols.index.shape[1]))
    for start in range(0, len(ys), block):
        _fill_segments(flat, rows, ends, ys[start:start + block], js[start:start + block],
                       cols, width / w)
    return labels


def _fill_segments(flat: np.ndarray, rows: np.ndarray, ends: np.ndarray, y: np.ndarray,
                   j: np.ndarray, cols: '_Columns', stretch: float) -> None:
    """Write the labels of K row segments whose two ends disagree into `flat` (H * W).

    Along a segment every class is a straight line a_c + (b_c - a_c) t, t in [0, 1]. p wins at
    t = 0, q at t = 1; their upper envelope is convex with its one kink where they cross.
    Another line minus that envelope is concave, so it is largest at 0, the crossing or 1, and
    it is <= 0 at both ends: a third class wins somewhere exactly when it beats p at the
    crossing. Without one, the segment's pixels are p (there already) up to the crossing and
    q from there on; with one, every class is evaluated at every pixel of the segment.
    """
    width = flat.size // ends.shape[0]
    a, b = rows[:, y, j], rows[:, y, j + 1]                    # C x K line ends
    p, q = ends[y, j], ends[y, j + 1]                           # the winners at each end
    k = np.arange(len(y))
    ap, aq, bp, bq = a[p, k], a[q, k], b[p, k], b[q, k]
    with np.errstate(divide='ignore', invalid='ignore'):
        cross = np.clip((ap - aq) / ((ap - aq) - (bp - bq)), 0.0, 1.0)
    at_cross = a + (b - a) * cross                              # every line at the crossing
    envelope = at_cross[p, k]
    at_cross[p, k] = -np.inf
    at_cross[q, k] = -np.inf
    general = at_cross.max(axis=0) > envelope

    # Two classes: pixel x of segment j sits at t = (x + 0.5) * w / W - 0.5 - j, so q starts
    # at the first x with t >= cross; write q from there to the segment's end.
    s = np.nonzero(~general)[0]
    js = j[s]
    end = cols.starts[js] + cols.counts[js]
    first = np.ceil((js + cross[s] + 0.5) * stretch - 0.5).astype(np.int64)
    first = np.clip(first, cols.starts[js], end)
    lengths = end - first
    offsets = y[s] * width + first - (np.cumsum(lengths) - lengths)
    flat[np.repeat(offsets, lengths) + np.arange(lengths.sum())] = np.repeat(q[s], lengths)

    g = np.nonzero(general)[0]
    if len(g):
        t = cols.t[j[g]]                                        # G x L pixel positions
        lines = a[:, g, None] + (b[:, g, None] - a[:, g, None]) * t[None]
        flat[y[g, None] * width + cols.index[j[g]]] = _argmax_classes(lines)


class _Columns:
    """For upsampling w logit columns to `width` pixels: the pixels of each segment."""

    def __init__(self, width: int, w: int):
        x0, _, wx = _source_index(width, w)
        self.counts = np.bincount(x0, minlength=w)       # pixels whose left neighbour is j
        self.starts = starts = np.cumsum(self.counts) - self.counts
        span = int(self.counts.max())
        last = starts + np.maximum(self.counts, 1) - 1
        # Segment j's pixels, padded to a common length by repeating its last pixel (the
        # repeat writes the same label twice).
        self.index = np.minimum(starts[:, None] + np.arange(span)[None], last[:, None])
        self.index = np.minimum(self.index, width - 1)
        self.t = wx[self.index]


@lru_cache(maxsize=8)
def _columns(width: int, w: int) -> _Columns:
    return _Columns(width, w)


def _source_index(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear sampling with half-pixel centres, clamped at the borders (align_corners=False).

    Returns the two neighbours and the weight of the second, per output pixel.
    """
    src = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
    src = np.clip(src, 0.0, in_size - 1)
    first = np.floor(src).astype(np.int64)
    second = np.minimum(first + 1, in_size - 1)
    return first, second, (src - first).astype(np.float32)


def _argmax_classes(scores: np.ndarray) -> np.ndarray:
    """The argmax over axis 0 as uint8 (the first class wins ties).

    One max over the classes, then a pass per class from the last to the first marking where
    it reaches the max: faster than np.argmax(axis=0) on these small-C, large-map arrays.
    """
    top = scores.max(axis=0)
    labels = np.full(scores.shape[1:], scores.shape[0] - 1, np.uint8)
    reached = np.empty(scores.shape[1:], bool)
    for c in range(scores.shape[0] - 2, -1, -1):
        np.equal(scores[c], top, out=reached)
        np.copyto(labels, c, where=reached)
    return labels


def max_probability(logits: np.ndarray) -> np.ndarray:
    """float32 h x w: the largest softmax probability over the C classes of each pixel."""
    logits = np.asarray(logits, np.float32)
    top = logits.max(axis=0)
    return 1.0 / np.exp(logits - top).sum(axis=0)


def confidence_map(logits: np.ndarray, size: tuple[int, int], upsample: str) -> np.ndarray:
    """uint8 H x W = round(255 x the largest softmax probability).

    Taken at the logits' resolution, then upsampled like the labels (nearest or bilinear).
    """
    _check_logits(logits, size)
    height, width = size
    prob = max_probability(logits)
    if prob.shape != (height, width):
        interp = cv2.INTER_NEAREST if upsample == 'nearest' else cv2.INTER_LINEAR
        prob = cv2.resize(prob, (width, height), interpolation=interp)
    return np.rint(prob * 255.0).astype(np.uint8)


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


def color_outputs(labels: np.ndarray, frame: np.ndarray, color_order: str, lut: np.ndarray,
                  num_classes: int, outputs: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The requested 'color' mask and 'overlay' (over the uint8 frame) of host labels."""
    made = {}
    if 'color' in outputs:
        made['color'] = lut[labels]
    if 'overlay' in outputs:
        made['overlay'] = blend_labels(to_rgb(frame, color_order), labels, lut, num_classes,
                                       OVERLAY_ALPHA)
    return made


def frame_outputs(logits: np.ndarray, frame: np.ndarray, color_order: str, upsample: str,
                  outputs: tuple[str, ...], lut: np.ndarray, num_classes: int
                  ) -> dict[str, np.ndarray]:
    """One frame's C x h x w logits -> {'labels': uint8 H x W} and the requested outputs.

    The host pipeline's last stage; after a batched network pass it runs per frame (cv2
    works on one image at a time).
    """
    size = frame.shape[:2]
    made = {'labels': logits_to_labels(logits, size, upsample)}
    if 'confidence' in outputs:
        made['confidence'] = confidence_map(logits, size, upsample)
    made.update(color_outputs(made['labels'], frame, color_order, lut, num_classes, outputs))
    if 'small_labels' in outputs:
        made['small_labels'] = logits_to_labels(logits, logits.shape[1:], 'nearest')
    return made


def check_labels(labels: np.ndarray) -> None:
    if not isinstance(labels, np.ndarray) or labels.dtype != np.uint8 or labels.ndim != 2:
        desc = (f'{labels.dtype} {labels.shape}' if isinstance(labels, np.ndarray)
                else type(labels).__name__)
        raise ValueError(f'expected a uint8 H x W label map, got {desc}')


def _check_logits(logits: np.ndarray, size: tuple[int, int]) -> None:
    if logits.ndim != 3:
        raise ValueError(f'expected C x h x w logits, got shape {logits.shape}')
    if size[0] <= 0 or size[1] <= 0:
        raise ValueError(f'output size must be positive, got {size[0]}x{size[1]}')
