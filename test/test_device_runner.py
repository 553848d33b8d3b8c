"""The device runner's logic on the CPU: one set of buffers (one graph on CUDA) per frame
layout, a bounded LRU of them with a log line per capture, results that are the caller's own.
The CUDA capture itself is swapped for a counting eager one here (test_cuda_pipeline.py runs
the real thing on a GPU)."""
import logging

import numpy as np
import pytest
import torch

from bisenet_core.inference import Segmenter
from bisenet_core.inference.device import (DeviceRunner, FrameKey, StepCache, capture_eager)
from bisenet_core.inference.frames import channel_index
from bisenet_core.inference.pipeline import FramePipeline
from bisenet_core.modelfile import load_model


@pytest.fixture
def device_log(caplog):
    """The device module's log records (the launch_pytest plugin stops propagation)."""
    logger = logging.getLogger('bisenet_core.inference.device')
    level = logger.level
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.INFO)
    yield caplog
    logger.removeHandler(caplog.handler)
    logger.setLevel(level)


def _key(width, height=48, order='rgb'):
    return FrameKey(height, width, 3, order, 'nearest', ())


def test_cache_is_least_recently_used_and_bounded(device_log):
    built = []
    cache = StepCache(lambda key: built.append(key) or f'step {key.width}', capacity=2)
    a, b, c = _key(10), _key(20), _key(30)
    assert cache.get(a) == 'step 10' and cache.get(b) == 'step 20'
    assert cache.get(a) == 'step 10'            # a hit: nothing built, a is now newest
    assert cache.get(c) == 'step 30'            # full: b, the least recently used, goes
    assert built == [a, b, c] and cache.builds == 3 and cache.keys() == [a, c]
    messages = [r.getMessage() for r in device_log.records]
    assert sum('captured a CUDA graph for 10x48 rgb frames, nearest' in m for m in messages) == 1
    assert any('dropped the CUDA graph for 20x48 rgb frames' in m for m in messages)
    cache.get(b)
    assert built[-1] == b and cache.keys() == [c, b]
    with pytest.raises(ValueError, match='capacity'):
        StepCache(lambda key: None, capacity=0)


@pytest.fixture(scope='module')
def pipeline(tiny_model_file):
    model, spec = load_model(tiny_model_file)
    return FramePipeline(model.eval(), spec, spec.input_size)


def test_runner_captures_once_per_layout_and_matches_the_pipeline(pipeline):
    captures = []

    def counting_capture(run, stream):
        captures.append(1)
        return capture_eager(run, stream)

    runner = DeviceRunner(pipeline, torch.device('cpu'), capture=counting_capture,
                          cache_size=3)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (50, 70, 3), np.uint8) for _ in range(3)]
    for i, frame in enumerate(frames):
        out, timings = runner(frame, 'bgr', 'bilinear', ('color', 'small_labels'))
        assert len(captures) == 1, 'same layout: replayed, not captured again'
        with torch.no_grad():
            want = pipeline(torch.from_numpy(frame), torch.tensor(channel_index(3, 'bgr')),
                            'bilinear', ('color', 'small_labels'))
        assert set(out) == {'labels', 'color', 'small_labels'}
        for name, value in want.items():
            np.testing.assert_array_equal(out[name], value.numpy(), err_msg=name)
        assert set(timings) == {'upload', 'compute', 'download'}
    runner(frames[0][:40], 'bgr', 'bilinear', ('color', 'small_labels'))   # new size
    runner(frames[0], 'rgb', 'bilinear', ('color', 'small_labels'))        # new colour order
    runner(frames[0], 'rgb', 'nearest', ('color', 'small_labels'))         # new upsampling
    assert len(captures) == 4 and len(runner.cache) == 3
    runner(frames[0][:, :, :1], 'rgb', 'nearest', ())                      # mono
    assert len(captures) == 5 and len(runner.cache) == 3


def test_results_are_the_callers_own_copies(pipeline):
    runner = DeviceRunner(pipeline, torch.device('cpu'))
    rng = np.random.default_rng(1)
    first, _ = runner(rng.integers(0, 256, (40, 60, 3), np.uint8), 'rgb', 'nearest', ())
    kept = first['labels'].copy()
    second, _ = runner(rng.integers(0, 256, (40, 60, 3), np.uint8), 'rgb', 'nearest', ())
    np.testing.assert_array_equal(first['labels'], kept)  # not overwritten by frame 2
    assert not np.shares_memory(first['labels'], second['labels'])


def test_segmenter_device_pipeline_uses_the_runner(tiny_model_file):
    seg = Segmenter(tiny_model_file, backend='torch', device='cpu', pipeline='device')
    builds = seg._runner.cache.builds   # the warm-up captured the network-size layout
    assert builds == 1 and seg._runner.cache.keys()[0][:3] == (96, 128, 3)
    frame = np.zeros((33, 45, 4), np.uint8)
    seg.segment(frame, 'bgr')
    seg.segment(frame, 'bgr')
    assert seg._runner.cache.builds == builds + 1
    assert not seg.graphs  # no CUDA here
    cold = Segmenter(tiny_model_file, backend='torch', device='cpu', pipeline='device',
                     warmup=False)
    assert cold._runner.cache.builds == 0


def test_compile_wraps_the_network_once_and_warms_up(tiny_model_file, monkeypatch, tmp_path):
    """compile=True hands the network to torch.compile (fixed shapes) and the warm-up runs it.

    So the first frame does not compile. torch.compile itself is recorded, not run: inductor
    takes minutes on this CPU; the CUDA tests run the real thing.
    """
    compiled, calls = [], []

    def fake_compile(module, **options):
        compiled.append(options)

        def forward(x):
            calls.append(tuple(x.shape))
            return module(x)
        return forward
    monkeypatch.setattr(torch, 'compile', fake_compile)
    monkeypatch.setenv('BISENET_CACHE_DIR', str(tmp_path))  # the ONNX Runtime export below
    seg = Segmenter(tiny_model_file, backend='torch', device='cpu', compile=True)
    assert compiled == [{'dynamic': False}] and seg.compiled
    assert calls == [(1, 3, 96, 128)]  # the warm-up
    seg(np.zeros((50, 70, 3), np.uint8))
    assert len(compiled) == 1 and calls[-1] == (1, 3, 96, 128)
    with pytest.warns(RuntimeWarning, match='compile applies to backend torch'):
        ort_seg = Segmenter(tiny_model_file, backend='onnxruntime', device='cpu',
                            compile=True)
    assert not ort_seg.compiled
    with pytest.warns(RuntimeWarning, match='first frame will take the compile time'):
        Segmenter(tiny_model_file, backend='torch', device='cpu', compile=True, warmup=False)


def test_one_step_per_batch_size_and_layout_with_each_frame_its_own_result(pipeline, device_log):
    """A batch of N frames of one layout is one Step (one graph on CUDA) keyed by N too; each
    frame's outputs equal the pipeline run on that frame alone (a frame-by-frame reference)."""
    captures = []

    def counting_capture(run, stream):
        captures.append(1)
        return capture_eager(run, stream)

    runner = DeviceRunner(pipeline, torch.device('cpu'), capture=counting_capture)
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 256, (50, 70, 3), np.uint8) for _ in range(3)]
    frames[1][:] = (200, 30, 90)  # a uniform frame among noisy ones
    outputs = ('color', 'small_labels', 'confidence')
    for _ in range(2):  # the second batch replays the same Step
        results, timings = runner.run_batch(frames, 'bgr', 'bilinear', outputs)
        assert len(captures) == 1 and len(results) == 3
        assert set(timings) == {'upload', 'compute', 'download'}
        for frame, out in zip(frames, results):
            with torch.no_grad():
                want = pipeline(torch.from_numpy(frame), torch.tensor(channel_index(3, 'bgr')),
                                'bilinear', outputs)
            assert out['labels'].shape == frame.shape[:2]
            for name, value in want.items():
                # One network pass over 3 frames against one over each: float noise only.
                same = (out[name] == value.numpy())
                assert same.mean() >= 0.9999, (name, same.mean())
    key = runner.cache.keys()[0]
    assert key.batch == 3 and key[:3] == (50, 70, 3)
    step = runner.cache.get(key)
    assert step.host_in.shape == (3, 50, 70, 3)   # all N frames in one (pinned on CUDA) buffer
    assert not np.shares_memory(results[0]['labels'], results[1]['labels'])
    runner.run_batch(frames[:2], 'bgr', 'bilinear', outputs)       # another batch size
    runner(frames[0], 'bgr', 'bilinear', outputs)                   # a single frame: batch 1
    assert len(captures) == 3
    assert sorted(k.batch for k in runner.cache.keys()) == [1, 2, 3]
    messages = [r.getMessage() for r in device_log.records]
    assert any('set of buffers for batches of 3 70x50 bgr frames' in m for m in messages)
    assert any('set of buffers for 70x50 bgr frames' in m for m in messages)
    with pytest.raises(ValueError, match='one layout'):
        runner.run_batch([frames[0], frames[0][:40]], 'bgr', 'bilinear', ())
    with pytest.raises(ValueError, match='at least one'):
        runner.run_batch([], 'bgr', 'bilinear', ())
