"""CameraInfo for the masks: the camera's calibration matched to a frame by stamp, rescaled.

`~/label` has the image's size, so its CameraInfo is the camera's own; `~/label_small` is the
network output (input / 8), so its intrinsics are scaled. Pixel centres map as
x' = (x + 0.5) * s - 0.5 (a resize of the whole image), so cx' = (cx + 0.5) * sx - 0.5.
"""
from __future__ import annotations

import copy
import threading
from collections import OrderedDict

from sensor_msgs.msg import CameraInfo

# How many unmatched frames / infos to remember (the camera publishes both at frame rate;
# either may arrive first).
MATCH_WINDOW = 30
# After this many frames and infos in a row that match nothing, the stamps are said to differ.
MISMATCH_AFTER = 5


def _stamp_key(header) -> tuple[int, int]:
    return header.stamp.sec, header.stamp.nanosec


def _ns(key: tuple[int, int]) -> int:
    return key[0] * 10**9 + key[1]


def camera_info_problem(info: CameraInfo) -> str:
    """Why `info` cannot describe an image ('' if it can): a zero size, an ROI off the sensor."""
    if info.width <= 0 or info.height <= 0:
        return f'width x height is {info.width}x{info.height}: the image size must be set'
    roi = info.roi
    if roi.x_offset + roi.width > info.width or roi.y_offset + roi.height > info.height:
        return (f'roi {roi.width}x{roi.height} at ({roi.x_offset}, {roi.y_offset}) lies '
                f'outside the {info.width}x{info.height} sensor')
    return ''


def scale_camera_info(info: CameraInfo, width: int, height: int, header=None) -> CameraInfo:
    """The calibration of `info` for the same view resized to width x height.

    Binning and ROI are folded in first (REP 104: K and P describe the full-resolution
    sensor, the published image is its ROI, binned), so the result has neither. D and R do
    not depend on the pixel grid and are kept. Raises ValueError for a CameraInfo that
    describes no image (camera_info_problem).
    """
    problem = camera_info_problem(info)
    if problem:
        raise ValueError(f'CameraInfo {problem}')
    out = copy.deepcopy(info)
    if header is not None:
        out.header = header
    bin_x, bin_y = max(1, info.binning_x), max(1, info.binning_y)
    roi = info.roi
    full_w = roi.width if roi.width else info.width
    full_h = roi.height if roi.height else info.height
    # Sensor pixels -> published image pixels (ROI offset, then binning), then the resize.
    sx = width / (full_w / bin_x)
    sy = height / (full_h / bin_y)

    def centre_map(binning, offset, scale):
        # Sensor pixel centre -> binned ROI pixel (x - offset + 0.5) / bin - 0.5 -> resized.
        return lambda x: (x - offset + 0.5) / binning * scale - 0.5

    to_x = centre_map(bin_x, roi.x_offset, sx)
    to_y = centre_map(bin_y, roi.y_offset, sy)
    k = list(info.k)
    k[0], k[1], k[2] = k[0] * sx / bin_x, k[1] * sx / bin_x, to_x(k[2])
    k[4], k[5] = k[4] * sy / bin_y, to_y(k[5])
    out.k = k
    p = list(info.p)
    # P's third column holds cx, cy (times 1); the fourth, Tx = -fx' * B, scales with fx.
    p[0], p[1], p[2], p[3] = (p[0] * sx / bin_x, p[1] * sx / bin_x, to_x(p[2]),
                              p[3] * sx / bin_x)
    p[5], p[6], p[7] = p[5] * sy / bin_y, to_y(p[6]), p[7] * sy / bin_y
    out.p = p
    out.width, out.height = int(width), int(height)
    out.binning_x = out.binning_y = 0
    out.roi.x_offset = out.roi.y_offset = out.roi.width = out.roi.height = 0
    out.roi.do_rectify = False
    return out


class CameraInfoMatcher:
    """Pairs CameraInfo messages with processed frames by header stamp (thread-safe).

    add_info() is called from the subscription, add_frame() once a frame's masks are out;
    each returns the pairs that just became complete, as (info, frame) tuples.
    mismatch_ms() tells when both keep coming but never match (a driver stamping its
    CameraInfo apart from its images).
    """

    def __init__(self, window: int = MATCH_WINDOW):
        self._infos: OrderedDict[tuple[int, int], CameraInfo] = OrderedDict()
        self._frames: OrderedDict[tuple[int, int], object] = OrderedDict()
        self._window = window
        self._lock = threading.Lock()
        # Frames and infos that matched nothing since the last match.
        self._unmatched_frames = self._unmatched_infos = 0

    @staticmethod
    def _remember(store: OrderedDict, key, value, window: int) -> None:
        store[key] = value
        store.move_to_end(key)
        while len(store) > window:
            store.popitem(last=False)

    def add_info(self, info: CameraInfo) -> list[tuple[CameraInfo, object]]:
        key = _stamp_key(info.header)
        with self._lock:
            frame = self._frames.pop(key, None)
            if frame is not None:
                self._unmatched_frames = self._unmatched_infos = 0
                return [(info, frame)]
            self._unmatched_infos += 1
            self._remember(self._infos, key, info, self._window)
        return []

    def add_frame(self, header, frame) -> list[tuple[CameraInfo, object]]:
        key = _stamp_key(header)
        with self._lock:
            info = self._infos.get(key)
            if info is not None:
                self._unmatched_frames = self._unmatched_infos = 0
                return [(info, frame)]
            self._unmatched_frames += 1
            self._remember(self._frames, key, frame, self._window)
        return []

    def mismatch_ms(self) -> float | None:
        """Stamp offset (ms) of the nearest CameraInfo from the newest unmatched frame, or None.

        Given once MISMATCH_AFTER frames and infos in a row matched nothing. Positive: the
        CameraInfo stamps are later than the images'.
        """
        with self._lock:
            if min(self._unmatched_frames, self._unmatched_infos) < MISMATCH_AFTER \
                    or not self._frames or not self._infos:
                return None
            frame_ns = _ns(next(reversed(self._frames)))
            offsets = [_ns(key) - frame_ns for key in self._infos]
        return min(offsets, key=abs) / 1e6
