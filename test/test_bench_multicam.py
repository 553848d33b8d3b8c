"""bench_multicam's bookkeeping on made-up measurements (no nodes started): the window each
figure covers, masks/s, dropped frames, latency percentiles, the one-node-vs-N verdict."""
import pytest

pytest.importorskip('psutil')

from bench.bench_multicam import comparisons, markdown, node_setups, summarise  # noqa: E402

S = 10**9


class FakeMonitor:
    def __init__(self, stamps, latencies):
        self.stamps_ns, self.by_topic = stamps, latencies


class FakeSampler:
    def __init__(self):
        self.asked = None

    def window(self, start_ns, end_ns):
        self.asked = (start_ns, end_ns)
        return {'cpu_pct': 150.0, 'rss_mb': 400.0, 'pss_mb': 300.0}


def test_topics_of_each_mode():
    args, topics = node_setups('one-node', ('front', 'left'))
    assert args == [['cameras:=[front, left]']]
    assert topics == ['/segment_node/front/label', '/segment_node/left/label']
    args, topics = node_setups('separate', ('front', 'left'))
    assert args == [['namespace:=/front', 'image_topic:=/front/image_raw'],
                    ['namespace:=/left', 'image_topic:=/left/image_raw']]
    assert topics == ['/front/segment_node/label', '/left/segment_node/label']


def test_figures_cover_the_window_after_the_warm_up():
    # 10 Hz for 10 s, 2 s warm-up: the window is [start + 2 s, start + 10 s), 80 frames sent.
    start = 1000 * S
    front = [start + i * S // 10 for i in range(100)]          # every frame labelled
    left = [start + 100 * S + i * S // 5 for i in range(50)]   # every other frame (5 Hz)
    stamps = {'/f': front, '/l': left}
    latencies = {'/f': [100.0 if i < 20 else 10.0 + (i % 2) for i in range(100)],
                 '/l': [50.0] * 50}
    sampler = FakeSampler()
    row = summarise('separate', ('front', 'left'), (640, 480), 10.0, 10.0, 2.0,
                    [{'sent': 100, 'start_ns': start}, {'sent': 100, 'start_ns': start + 100 * S}],
                    ['/f', '/l'], FakeMonitor(stamps, latencies), sampler)
    front_row, left_row = row['per_camera']
    assert (front_row['sent'], front_row['masks'], front_row['dropped']) == (80, 80, 0)
    assert front_row['masks_per_s'] == 10.0
    assert front_row['p50_ms'] == 10.5 and front_row['p99_ms'] == pytest.approx(11.0)
    assert (left_row['masks'], left_row['dropped'], left_row['masks_per_s']) == (40, 40, 5.0)
    assert row['masks_per_s'] == 15.0 and row['dropped'] == 40 and row['sent'] == 160
    assert row['worst_p99_ms'] == 50.0
    # Resources over the window every camera was in: the later start + 2 s .. earlier end.
    assert sampler.asked == (start + 102 * S, start + 10 * S)
    assert 'front 10 / 11, left 50 / 50' in markdown([row])


def _row(mode, masks, rss, p99):
    return {'mode': mode, 'cameras': 4, 'image': '640x480', 'rate': 10.0, 'masks_per_s': masks,
            'rss_mb': rss, 'pss_mb': rss, 'worst_p99_ms': p99}


def test_the_target_verdict():
    met = comparisons([_row('one-node', 13.0, 300.0, 90.0), _row('separate', 10.0, 1000.0, 100.0)])
    assert len(met) == 1 and 'RSS 0.30x' in met[0] and 'masks/s 1.30x' in met[0]
    assert met[0].endswith(': met')
    slow = comparisons([_row('one-node', 11.0, 300.0, 90.0), _row('separate', 10.0, 1000.0, 100.0)])
    assert slow[0].endswith('NOT met')
    later = comparisons([_row('one-node', 13.0, 300.0, 110.0),
                         _row('separate', 10.0, 1000.0, 100.0)])
    assert later[0].endswith('NOT met')
