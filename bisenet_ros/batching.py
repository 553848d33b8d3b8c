"""A cycle's decoded frames -> batches of one layout -> results, one bad frame isolated (no ROS).

The worker decodes and checks every camera's frame on its own first (a bad frame is that
camera's error and never reaches a batch), then groups the good ones by layout (height,
width, channels, dtype, colour order: what one forward pass can stack) and runs each group
as one batch. If a batch raises, its frames are run one by one, so the other cameras' frames
are still labelled and the failing one is named.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from bisenet_core.inference import Segmenter
from bisenet_core.inference.frames import layout_groups
from bisenet_core.inference.segmenter import SegmentationResult


@dataclass
class Prepared:
    """One camera's decoded frame, ready for the network.

    camera: the camera's name; image: uint8/uint16 H x W (x C) as the Segmenter takes it;
    color_order: 'rgb' or 'bgr'; context: what the caller needs to publish (message
    header, receive time, ...), passed through untouched.
    """

    camera: str
    image: np.ndarray
    color_order: str
    context: Any = None


@dataclass
class Outcome:
    """A frame's result, or the exception its own (frame-by-frame) inference raised."""

    frame: Prepared
    result: SegmentationResult | None = None
    error: BaseException | None = None
    batch_size: int = 1   # the forward pass it ran in (1 after a retry)


def group_by_layout(frames: Sequence[Prepared]) -> list[list[Prepared]]:
    """Frames grouped by layout, groups in order of their first frame, frames in order.

    The layout rule is the Segmenter's own (frames.layout_groups): what it can stack.
    """
    groups = layout_groups([f.image for f in frames], [f.color_order for f in frames])
    return [[frames[i] for i in indices] for indices in groups.values()]


def segment_group(segmenter: Segmenter, frames: Sequence[Prepared],
                  outputs: tuple[str, ...] = ()) -> tuple[list[Outcome], BaseException | None]:
    """Segment one same-layout group; (outcomes in frame order, the batch's exception or None).

    One frame runs through `segment` (the single-camera path, unchanged); several run as
    one batch through `segment_batch`. If the batch raises, each frame is retried alone:
    frames that succeed get their result, the failing ones their own exception.
    """
    if len(frames) == 1:
        frame = frames[0]
        try:
            return [Outcome(frame, segmenter.segment(frame.image, frame.color_order,
                                                     outputs=outputs))], None
        except Exception as exc:  # reported on the frame's camera by the caller
            return [Outcome(frame, error=exc)], None
    try:
        results = segmenter.segment_batch([f.image for f in frames],
                                          [f.color_order for f in frames], outputs=outputs)
        if len(results) != len(frames):
            raise RuntimeError(f'segment_batch returned {len(results)} results for '
                               f'{len(frames)} frames')
    except Exception as batch_error:
        outcomes = []
        for frame in frames:
            alone, _ = segment_group(segmenter, [frame], outputs)
            outcomes.extend(alone)
        return outcomes, batch_error
    return [Outcome(f, r, batch_size=len(frames)) for f, r in zip(frames, results)], None
