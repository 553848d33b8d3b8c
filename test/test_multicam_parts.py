"""The multi-camera node's parts without a node: camera names and topics, the frame hand-over
(newest wins per camera, take-all cycles, batch window), batching by layout with one bad frame
isolated, the node's batch and memory status."""
import threading
import time

import numpy as np
import pytest

from bisenet_core.inference.segmenter import SegmentationResult
from bisenet_ros import camera_input
from bisenet_ros.batching import Prepared, group_by_layout, segment_group
from bisenet_ros.camera_topics import (CameraConfigError, CameraTopics, camera_topics,
                                       parse_camera_list)
from bisenet_ros.camera_input import FrameHandover
from bisenet_ros.node_status import BatchStats, gpu_memory_mb, rss_mb


# ---------------------------------------------------------------------- names and topics
def test_no_cameras_is_the_single_camera_of_before():
    single = CameraTopics()
    assert camera_topics([]) == {'': single}
    assert single.input_topic(False) == 'image'
    assert single.input_topic(True) == 'image/compressed'
    assert single.output_prefix == ''


def test_camera_topics_defaults_and_overrides():
    topics = camera_topics(['front', 'left'], {
        'left.image_topic': '/cam1/image_color', 'front.camera_info_topic': ''})
    assert list(topics) == ['front', 'left']
    front, left = topics['front'], topics['left']
    assert (front.image, front.camera_info, front.output_prefix) == (
        'front/image_raw', 'front/camera_info', 'front/')
    assert front.input_topic(True) == 'front/image_raw/compressed'
    assert (left.image, left.camera_info) == ('/cam1/image_color', '/cam1/camera_info')
    other = camera_topics(['rear'], {'rear.camera_info_topic': '/calib/rear'})['rear']
    assert other.camera_info == '/calib/rear'


@pytest.mark.parametrize('cameras, overrides, message', [
    (['front', 'front'], {}, "camera 'front' is listed twice"),
    (['front', ''], {}, "camera 2 (''): empty name"),
    (['front-left'], {}, 'one ROS name token'),
    (['1cam'], {}, 'one ROS name token'),
    (['cam/front'], {}, 'one ROS name token'),
    (['front'], {'front.image_topic': '/cam/my-image'},
     'front.image_topic=/cam/my-image: not a valid ROS topic name: topic name must not contain'),
    (['front'], {'front.camera_info_topic': '/cam/'},
     'front.camera_info_topic=/cam/: not a valid ROS topic name: topic name must not end with'),
    (['front'], {'front.image_topc': '/x'}, "camera 'front' has no parameter 'image_topc'"),
])
def test_camera_configuration_errors_are_one_line(cameras, overrides, message):
    with pytest.raises(CameraConfigError) as caught:
        camera_topics(cameras, overrides)
    text = str(caught.value)
    assert message in text and '\n' not in text, text


@pytest.mark.parametrize('text, names', [
    ('[front, left, right, rear]', ['front', 'left', 'right', 'rear']),
    ("['front','left']", ['front', 'left']),
    ('front,left', ['front', 'left']),
    ('front left', ['front', 'left']),
    ('[]', []), ('', []),
    ('[front, , left]', ['front', '', 'left']),   # the empty name is then refused
])
def test_parse_camera_list(text, names):
    assert parse_camera_list(text) == names


# ---------------------------------------------------------------------- scheduler
class Slot:
    """A camera input's newest-frame slot, as FrameHandover sees it."""

    latest_frame = None


def _put(handover, slot, item):
    """What CameraInput.on_image does: newest wins; True if it replaced a frame."""
    with handover.ready:
        replaced = slot.latest_frame is not None
        slot.latest_frame = (item, time.perf_counter())
        handover.ready.notify()
    return replaced


def _items(taken):
    return [(camera, frame[0]) for camera, frame in taken]


def test_newest_frame_wins_per_camera_and_a_cycle_takes_every_camera():
    handover = FrameHandover()
    slots = {name: Slot() for name in ('front', 'left', 'rear')}
    assert _put(handover, slots['left'], 'L1') is False
    assert _put(handover, slots['front'], 'F1') is False
    assert _put(handover, slots['left'], 'L2') is True   # L1 not taken yet: replaced
    assert _items(handover.take(slots)) == [('front', 'F1'), ('left', 'L2')]
    assert all(slot.latest_frame is None for slot in slots.values())


def test_no_camera_starves_when_rates_differ():
    """A 30 Hz and a 2 Hz camera with a worker at 10 Hz: every slow frame is segmented."""
    handover = FrameHandover()
    slots = {'fast': Slot(), 'slow': Slot()}
    served = {'fast': [], 'slow': []}
    dropped = {'fast': 0, 'slow': 0}
    for tick in range(60):             # 2 s at 30 Hz
        dropped['fast'] += _put(handover, slots['fast'], tick)
        if tick % 15 == 0:
            dropped['slow'] += _put(handover, slots['slow'], tick)
        if tick % 3 == 2:              # the worker finishes a cycle every third tick
            for camera, item in _items(handover.take(slots)):
                served[camera].append(item)
    assert served['slow'] == [0, 15, 30, 45] and dropped['slow'] == 0
    assert served['fast'] == list(range(2, 60, 3)) and dropped['fast'] == 40  # the newest


def test_default_takes_at_once_and_a_batch_window_waits_for_the_others():
    for window, expect in ((0.0, ['a']), (1.0, ['a', 'b'])):
        handover = FrameHandover(batch_window_s=window)
        slots = {'a': Slot(), 'b': Slot()}
        _put(handover, slots['b'], 0)  # both cameras active
        _put(handover, slots['a'], 0)
        handover.take(slots)
        _put(handover, slots['a'], 1)
        later = threading.Timer(0.2, _put, (handover, slots['b'], 2))
        later.start()
        start = time.monotonic()
        taken = handover.take(slots)
        elapsed = time.monotonic() - start
        later.join()
        assert [camera for camera, _ in taken] == expect, window
        if window:
            assert 0.15 < elapsed < 0.9   # woke when b came, not at the window's end
        else:
            assert elapsed < 0.15


def test_batch_window_ends_and_a_silent_camera_is_not_waited_for(monkeypatch):
    monkeypatch.setattr(camera_input, 'ACTIVE_S', 0.5)
    handover = FrameHandover(batch_window_s=0.3)
    slots = {'a': Slot(), 'b': Slot()}
    _put(handover, slots['b'], 0)
    handover.take(slots)
    _put(handover, slots['a'], 1)  # b is still active: the window waits for it, then ends
    start = time.monotonic()
    assert _items(handover.take(slots)) == [('a', 1)]
    assert 0.25 < time.monotonic() - start < 0.45
    time.sleep(0.5)                # b has gone silent: no waiting for it any more
    _put(handover, slots['a'], 2)
    start = time.monotonic()
    assert _items(handover.take(slots)) == [('a', 2)]
    assert time.monotonic() - start < 0.1


def test_stop_hands_over_what_waits_then_ends_the_worker():
    handover = FrameHandover(batch_window_s=5.0)
    slots = {'a': Slot(), 'b': Slot()}
    _put(handover, slots['b'], 0)
    handover.take(slots)           # b is active: a window would wait for it
    _put(handover, slots['a'], 1)
    handover.stop()
    start = time.monotonic()
    assert _items(handover.take(slots)) == [('a', 1)]   # no window while stopping
    assert time.monotonic() - start < 0.5
    assert handover.take(slots) == []                   # at once: the worker ends
    idle = FrameHandover()
    threading.Timer(0.1, idle.stop).start()
    assert idle.take({'a': Slot()}) == []               # a waiting worker is woken


# ---------------------------------------------------------------------- batching
def _frame(camera, height, width, value, order='rgb', dtype=np.uint8):
    return Prepared(camera, np.full((height, width, 3), value, dtype), order)


def test_group_by_layout_keeps_order_and_splits_sizes_and_colour_orders():
    frames = [_frame('a', 48, 64, 1), _frame('b', 72, 96, 2), _frame('c', 48, 64, 3),
              _frame('d', 48, 64, 4, order='bgr'), _frame('e', 72, 96, 5)]
    groups = group_by_layout(frames)
    assert [[f.camera for f in g] for g in groups] == [['a', 'c'], ['b', 'e'], ['d']]


class FakeSegmenter:
    """Labels = the frame's first pixel value (known answer); a frame of value 13 fails.

    poison_batch: a batch holding a frame of value 13 raises as a whole (a CUDA error, a
    shape bug); run alone, only that frame raises.
    """

    def __init__(self):
        self.calls = []

    def _labels(self, image):
        if image[0, 0, 0] == 13:
            raise RuntimeError('frame 13 is cursed')
        return np.full(image.shape[:2], image[0, 0, 0], np.uint8)

    def segment(self, image, color_order='rgb', *, outputs=()):
        self.calls.append(('segment', 1))
        return SegmentationResult(self._labels(image), {'compute': 1.0})

    def segment_batch(self, images, color_orders, *, outputs=()):
        self.calls.append(('batch', len(images)))
        return [SegmentationResult(self._labels(i), {'compute': 1.0}) for i in images]


def test_a_batch_runs_once_and_results_stay_in_frame_order():
    seg = FakeSegmenter()
    frames = [_frame(c, 8, 8, v) for c, v in (('a', 1), ('b', 2), ('c', 3))]
    outcomes, error = segment_group(seg, frames)
    assert error is None and seg.calls == [('batch', 3)]
    assert [(o.frame.camera, int(o.result.labels[0, 0]), o.batch_size) for o in outcomes] == [
        ('a', 1, 3), ('b', 2, 3), ('c', 3, 3)]


def test_a_failing_batch_is_retried_frame_by_frame_and_the_bad_one_named():
    seg = FakeSegmenter()
    frames = [_frame(c, 8, 8, v) for c, v in (('a', 1), ('b', 13), ('c', 3))]
    outcomes, error = segment_group(seg, frames)
    assert 'cursed' in str(error)
    assert seg.calls == [('batch', 3), ('segment', 1), ('segment', 1), ('segment', 1)]
    assert [o.frame.camera for o in outcomes] == ['a', 'b', 'c']
    assert int(outcomes[0].result.labels[0, 0]) == 1 and int(outcomes[2].result.labels[0, 0]) == 3
    assert outcomes[1].result is None and 'cursed' in str(outcomes[1].error)
    assert all(o.batch_size == 1 for o in outcomes)


def test_a_single_frame_takes_the_single_frame_path():
    seg = FakeSegmenter()
    outcomes, error = segment_group(seg, [_frame('a', 8, 8, 13)])
    assert seg.calls == [('segment', 1)] and error is None
    assert 'cursed' in str(outcomes[0].error)


def test_a_batch_returning_the_wrong_count_counts_as_failed():
    class Short(FakeSegmenter):
        def segment_batch(self, images, color_orders, *, outputs=()):
            return super().segment_batch(images, color_orders, outputs=outputs)[:-1]
    outcomes, error = segment_group(Short(), [_frame('a', 8, 8, 1), _frame('b', 8, 8, 2)])
    assert 'returned 1 results for 2 frames' in str(error)
    assert [int(o.result.labels[0, 0]) for o in outcomes] == [1, 2]


# ---------------------------------------------------------------------- node status
def test_batch_stats_values():
    stats = BatchStats()
    assert stats.values()['batch_sizes_seen'] == '-'
    for size, ms in ((4, 40.0), (4, 60.0), (1, 10.0), (2, 20.0)):
        stats.add(size, ms)
    stats.add_retry()
    values = stats.values()
    assert values['batches'] == 4 and values['batch_sizes_seen'] == '1x1 2x1 4x2'
    assert values['batch_size_mean'] == pytest.approx(11 / 4)
    assert values['batch_compute_max_ms'] == 60.0
    assert values['batch_compute_p50_ms'] == pytest.approx(30.0)
    assert values['batch_retries'] == 1


def test_memory_figures():
    before = rss_mb()
    block = np.ones(64 * 2**20, np.uint8)   # 64 MiB touched
    after = rss_mb()
    assert 20 < before and after - before > 50
    del block
    assert gpu_memory_mb('cpu') == {}
