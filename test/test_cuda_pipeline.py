"""The device pipeline on a CUDA GPU (skipped without one): graph replay equals eager, a new
frame size captures a new graph, a batch of six is one graph, fp16 agrees with the CPU,
memory stays flat over 1000 frames.

Uses the shipped model on rendered drive frames, so labels have real regions and margins.
"""
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from bisenet_core.data.synthetic import render_drive
from bisenet_core.inference import Segmenter

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')

SHIPPED = Path(__file__).resolve().parent.parent / 'models' / 'bisenet_xception39_synthetic.pt'
ALL_OUTPUTS = ('confidence', 'color', 'overlay', 'small_labels')


@pytest.fixture(scope='module')
def drive():
    """Two 1080p frames and one 720p frame of a drive the model never saw."""
    big = [f.image for f in render_drive(9001, 2, size=(1920, 1080))]
    small = next(render_drive(9002, 1, size=(1280, 720))).image
    return big + [small]


def _frames(drive):
    """(frame, colour order) as cameras send them: bgr8 with row padding, rgba8, mono8."""
    bgr = np.zeros((1080, 1920 + 16, 3), np.uint8)
    bgr[:, :1920] = drive[0][:, :, ::-1]
    rgba = np.dstack([drive[2], np.full(drive[2].shape[:2], 255, np.uint8)])
    return [(bgr[:, :1920], 'bgr'), (rgba, 'rgb'), (drive[1][:, :, 1], 'rgb')]


def _segmenter(**kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # no silent CPU fallback
        return Segmenter(SHIPPED, backend='torch', device='cuda', **kwargs)


@pytest.mark.parametrize('precision', ['fp32', 'fp16'])
def test_graph_replay_equals_eager(drive, precision):
    graph = _segmenter(precision=precision, graphs=True)
    eager = _segmenter(precision=precision, graphs=False)
    assert graph.pipeline == 'device' and graph.graphs and not eager.graphs
    for upsample in ('nearest', 'bilinear'):
        graph.upsample = eager.upsample = upsample
        for frame, order in _frames(drive):
            for _ in range(2):  # the first frame of a layout captures, the second replays
                got = graph.segment(frame, order, outputs=ALL_OUTPUTS)
            want = eager.segment(frame, order, outputs=ALL_OUTPUTS)
            assert (got.labels == want.labels).mean() >= 0.9999, (upsample, frame.shape)
            assert (got.small_labels == want.small_labels).mean() >= 0.9999
            assert np.abs(got.confidence.astype(int) - want.confidence).max() <= 1
            assert (got.color == want.color).all(axis=2).mean() >= 0.9999
            assert set(got.timings_ms) == {'upload', 'compute', 'download'}


def test_a_new_frame_size_captures_a_new_graph(drive, caplog):
    seg = _segmenter(precision='fp16')
    before = seg._runner.cache.builds  # the warm-up's network-size graph
    frame = drive[0]
    logger = logging.getLogger('bisenet_core.inference.device')
    logger.addHandler(caplog.handler)  # the launch_pytest plugin stops propagation
    try:
        with caplog.at_level(logging.INFO, logger=logger.name):
            seg(frame)
            seg(frame)
            assert seg._runner.cache.builds == before + 1
            seg(frame[:720, :1280])
            assert seg._runner.cache.builds == before + 2
    finally:
        logger.removeHandler(caplog.handler)
    captured = [r.getMessage() for r in caplog.records if 'captured a CUDA graph' in r.getMessage()]
    assert len(captured) == 2 and '1920x1080 rgb frames' in captured[0]
    assert '1280x720 rgb frames' in captured[1]
    step = seg._runner.cache.get(seg._runner.cache.keys()[-1])
    assert step.host_in.is_pinned() and all(t.is_pinned() for t in step.host_out.values())


def test_a_batch_of_six_is_one_graph_with_pinned_buffers(drive):
    """Six cameras' frames of one layout: one graph for batch 6 (replayed after), all six
    frames in one pinned buffer, each frame's labels those of its own single-frame run."""
    seg = _segmenter(precision='fp16', upsample='bilinear')
    frames = [drive[0], drive[1]] * 3
    frames[2] = np.full_like(drive[0], 128)  # a grey frame among them
    results = seg.segment_batch(frames, 'rgb', outputs=('color', 'confidence'))
    singles = [seg.segment(frame, 'rgb', outputs=('color', 'confidence')) for frame in frames]
    for index, (got, want) in enumerate(zip(results, singles)):
        assert (got.labels == want.labels).mean() >= 0.999, index
        assert np.abs(got.confidence.astype(int) - want.confidence).max() <= 2, index
    batched = [key for key in seg._runner.cache.keys() if key.batch == 6]
    assert len(batched) == 1
    step = seg._runner.cache.get(batched[0])
    assert step.host_in.shape == (6, 1080, 1920, 3) and step.host_in.is_pinned()
    builds = seg._runner.cache.builds
    again = seg.segment_batch(frames, 'rgb', outputs=('color', 'confidence'))
    assert seg._runner.cache.builds == builds  # replayed, not captured again
    for got, want in zip(again, results):
        np.testing.assert_array_equal(got.labels, want.labels)


@pytest.mark.parametrize('upsample', ['nearest', 'bilinear'])
def test_fp16_graph_agrees_with_the_cpu(drive, upsample):
    cpu = Segmenter(SHIPPED, backend='torch', device='cpu', upsample=upsample)
    gpu = _segmenter(precision='fp16', upsample=upsample)
    for image in drive:
        agreement = (gpu(image) == cpu(image)).mean()
        assert agreement >= 0.995, (upsample, image.shape, agreement)


def test_no_memory_growth_over_1000_frames(drive):
    seg = _segmenter(precision='fp16', upsample='bilinear')
    frames = [(drive[0], 'rgb'), (drive[2], 'rgb')]  # two sizes, both stay cached
    for frame, order in frames * 3:
        seg.segment(frame, order, outputs=('color',))
    torch.cuda.synchronize()
    allocated, reserved = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
    for i in range(1000):
        frame, order = frames[i % 2]
        seg.segment(frame, order, outputs=('color',))
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == allocated
    assert torch.cuda.memory_reserved() == reserved


def test_compiled_network_in_the_graph_matches_eager(drive):
    eager = _segmenter(graphs=False)
    compiled = _segmenter(compile=True)
    assert compiled.compiled and compiled.graphs
    for image in drive:
        assert (compiled(image) == eager(image)).mean() >= 0.999


def test_the_last_gpu_by_index(drive):
    last = torch.cuda.device_count() - 1
    seg = Segmenter(SHIPPED, backend='torch', device=f'cuda:{last}')
    assert seg.device == f'cuda:{last}'
    assert next(seg._backend.model.parameters()).device == torch.device('cuda', last)
    assert seg(drive[2]).shape == (720, 1280)
    with pytest.raises(RuntimeError, match='does not exist'):
        Segmenter(SHIPPED, backend='torch', device=f'cuda:{last + 1}')
