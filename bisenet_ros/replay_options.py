"""What one replay is asked to do (`ReplayOptions`) and the error of a replay that cannot go on.

Shared by the command line (bisenet_ros.replay), the offline run (replay_offline) and the live
run (replay_live); no ROS import.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

from bisenet_core.hardware import check_device, check_precision
from bisenet_core.inference.backends import BACKENDS
from bisenet_core.inference.postprocess import UPSAMPLE_MODES

MODES = ('live', 'offline', 'both')


class ReplayError(RuntimeError):
    """The replay cannot go on (one-line message saying what and why)."""


@dataclass
class ReplayOptions:
    """The settings of one replay, checked when made (a ReplayError names the bad value).

    Args:
        bag: rosbag2 bag folder (MCAP or sqlite3).
        model: .pt model file or exported .onnx; None: the shipped model.
        mode: 'live' (through the ROS 2 node), 'offline' (Segmenter, no ROS) or 'both'.
        rate: live pacing, times the bag's frame rate; None: lockstep (the next frame goes out
            when the previous mask arrived).
        out: report folder.
        image_topic, label_topic: the bag's topics (None: chosen automatically); a list of
            several image topics replays them as the cameras of one node, with one label
            topic per camera or none (bisenet_ros.replay_cameras).
        labels_dir, labels_key: ground truth from a folder of PNGs instead of a topic, and how
            its files map to frames.
        backend, device, precision, input_size: the node's and the offline Segmenter's
            settings (input_size: network (width, height); None: the model's).
        attach: full name of a running node to use instead of launching one.
        max_frames: replay only the first N frames.
        start_timeout: live: seconds to wait for the node to come up.
        progress: show progress bars.
        upsample: the live node's upsampling (None: config/segment.yaml's); live masks are
            compared with offline ones made the same way.
    """

    bag: str | os.PathLike
    model: str | os.PathLike | None = None
    mode: str = 'both'
    rate: float | None = None
    out: str | os.PathLike = 'out/replay'
    image_topic: str | list[str] | None = None
    label_topic: str | list[str] | None = None
    labels_dir: str | os.PathLike | None = None
    labels_key: str = 'auto'
    backend: str = 'auto'
    device: str = 'auto'
    precision: str = 'fp32'
    input_size: tuple[int, int] | None = None
    attach: str | None = None
    max_frames: int | None = None
    start_timeout: float = 180.0
    progress: bool = True
    upsample: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ReplayError(f'mode must be one of {MODES}, got {self.mode!r}')
        if self.rate is not None and not self.rate > 0:
            raise ReplayError(f'rate must be > 0, got {self.rate}')
        if self.max_frames is not None and self.max_frames < 1:
            raise ReplayError(f'max_frames must be >= 1, got {self.max_frames}')
        if not (self.start_timeout > 0 and math.isfinite(self.start_timeout)):
            raise ReplayError(f'start_timeout must be > 0 s, got {self.start_timeout}')
        if self.backend not in BACKENDS:
            raise ReplayError(f'backend must be one of {BACKENDS}, got {self.backend!r}')
        if self.upsample is not None and self.upsample not in UPSAMPLE_MODES:
            raise ReplayError(f'upsample must be one of {UPSAMPLE_MODES} or None, got '
                              f'{self.upsample!r}')
        try:
            check_device(self.device)
            check_precision(self.precision)
        except ValueError as exc:
            raise ReplayError(str(exc)) from None
