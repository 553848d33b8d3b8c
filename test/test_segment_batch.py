"""Segmenter.segment_batch: N camera frames in, N results out in input order. Frames of one
layout (shape, dtype, colour order) run as one forward pass of the network, other layouts in
passes of their own, and every frame's outputs equal its own single-frame run (batch
invariance), on the torch host and device pipelines and on ONNX Runtime (logits and frame
graphs). A batch-1 ONNX file runs frame by frame and says so once in the log.

The network's forward passes are counted at the class level (BiSeNet.forward for torch,
InferenceSession.run for ONNX Runtime), so the tests see how many passes of which batch size
ran without relying on the Segmenter's internals.
"""
import importlib.util
import logging

import numpy as np
import pytest

from bisenet_core.export import export_onnx
from bisenet_core.inference import Segmenter
from bisenet_core.model.bisenet import BiSeNet
from bisenet_core.modelfile import load_model
from test_frame_pipeline import as_encoding, reference, scene

ALL_OUTPUTS = ('confidence', 'color', 'overlay', 'small_labels')
HAS_ORT = importlib.util.find_spec('onnxruntime') is not None
PIPELINES = {'torch-host': {'backend': 'torch', 'pipeline': 'host'},
             'torch-device': {'backend': 'torch', 'pipeline': 'device'},
             'ort-host': {'backend': 'onnxruntime', 'pipeline': 'host'},
             'ort-device': {'backend': 'onnxruntime', 'pipeline': 'device'}}


def _needs(name):
    return pytest.mark.skipif(name.startswith('ort') and not HAS_ORT,
                              reason='needs onnxruntime')


@pytest.fixture(scope='module')
def segmenters(tiny_model_file, tmp_path_factory):
    segs = {}
    with pytest.MonkeyPatch.context() as mp:  # exported graphs go to a temporary cache
        mp.setenv('BISENET_CACHE_DIR', str(tmp_path_factory.mktemp('cache')))
        for name, options in PIPELINES.items():
            if name.startswith('ort') and not HAS_ORT:
                continue
            segs[name] = Segmenter(tiny_model_file, device='cpu', **options)
            for mode in ('nearest', 'bilinear'):  # any export happens inside the cache
                segs[name].upsample = mode
                segs[name](np.zeros((8, 8, 3), np.uint8))
    return segs


@pytest.fixture
def passes(monkeypatch):
    """Batch sizes of the network's forward passes, in order (torch and ONNX Runtime)."""
    sizes = []
    forward = BiSeNet.forward

    def counting_forward(self, x):
        sizes.append(int(x.shape[0]))
        return forward(self, x)
    monkeypatch.setattr(BiSeNet, 'forward', counting_forward)
    if HAS_ORT:
        from onnxruntime import InferenceSession
        run = InferenceSession.run

        def counting_run(self, output_names, feed, *args, **kwargs):
            image = feed['image']
            sizes.append(int(image.shape[0]) if image.ndim == 4 else 1)  # frame graph: H x W x C
            return run(self, output_names, feed, *args, **kwargs)
        monkeypatch.setattr(InferenceSession, 'run', counting_run)
    return sizes


def _same_outputs(got, want, what):
    assert got.labels.shape == want.labels.shape, what
    assert (got.labels == want.labels).mean() >= 0.9999, what
    assert (got.small_labels == want.small_labels).mean() >= 0.9999, what
    assert np.abs(got.confidence.astype(int) - want.confidence).max() <= 1, what
    for name in ('color', 'overlay'):
        same = (getattr(got, name) == getattr(want, name)).all(axis=2).mean()
        assert same >= 0.9999, (what, name)


@pytest.mark.parametrize('name', [pytest.param(n, marks=_needs(n)) for n in PIPELINES])
@pytest.mark.parametrize('upsample', ['nearest', 'bilinear'])
def test_each_frame_of_a_batch_equals_its_single_frame_run(segmenters, model_and_spec, passes,
                                                           name, upsample):
    seg = segmenters[name]
    seg.upsample = upsample
    frames = [as_encoding(scene(97, 131, seed=seed), 'bgr8')[0] for seed in (1, 2, 3)]
    uniform = np.empty((97, 131, 3), np.uint8)
    uniform[:] = (40, 170, 220)  # bgr
    frames.insert(2, uniform)
    seg.segment_batch(frames, 'bgr', outputs=ALL_OUTPUTS)  # builds the layout's step
    del passes[:]
    results = seg.segment_batch(frames, 'bgr', outputs=ALL_OUTPUTS)
    assert passes == [4]  # one forward pass of the 4 frames
    singles = [seg.segment(frame, 'bgr', outputs=ALL_OUTPUTS) for frame in frames]
    assert len(results) == 4
    for index, (got, want) in enumerate(zip(results, singles)):
        _same_outputs(got, want, (name, upsample, index))
        assert got.timings_ms == results[0].timings_ms  # the batch's timings
    # Known input, independent of the code under test: the uniform frame through plain
    # cv2 + torch (test_frame_pipeline.reference).
    model, spec = model_and_spec
    labels, _, _, _ = reference(model, spec, uniform, 'bgr', upsample,
                                rounded=name.endswith('host'))
    assert (results[2].labels == labels).mean() >= 0.995
    # segment(image) is segment_batch([image])[0].
    one = seg.segment_batch([frames[0]], 'bgr', outputs=ALL_OUTPUTS)[0]
    np.testing.assert_array_equal(one.labels, singles[0].labels)


@pytest.fixture(scope='module')
def model_and_spec(tiny_model_file):
    return load_model(tiny_model_file)


@pytest.mark.parametrize('name', [pytest.param(n, marks=_needs(n)) for n in PIPELINES])
def test_mixed_layouts_run_in_groups_and_come_back_in_input_order(segmenters, passes, name):
    seg = segmenters[name]
    seg.upsample = 'bilinear'
    a, c, d = scene(60, 80, seed=1), scene(50, 70, seed=2), scene(60, 80, seed=3)
    bgr = np.ascontiguousarray(a[:, :, ::-1])
    mono = np.ascontiguousarray(a[:, :, 1])
    mono16 = mono.astype(np.uint16) * 257 + 3            # >> 8 gives `mono` back
    frames = [a, bgr, c, d, mono, mono16]
    orders = ['rgb', 'bgr', 'rgb', 'rgb', 'rgb', 'rgb']
    seg.segment_batch(frames, orders, outputs=('small_labels',))  # builds the steps
    del passes[:]
    results = seg.segment_batch(frames, orders, outputs=('small_labels',))
    # Five layouts: (60x80x3 rgb: a, d), (bgr), (50x70), (mono8), (mono16).
    assert sorted(passes) == [1, 1, 1, 1, 2]
    singles = [seg.segment(f, o, outputs=('small_labels',)) for f, o in zip(frames, orders)]
    for index, (got, want) in enumerate(zip(results, singles)):
        assert got.labels.shape == frames[index].shape[:2]
        assert (got.labels == want.labels).mean() >= 0.9999, index
    # Known inputs: the same picture sent as rgb8 and bgr8 gets the same labels, and mono16
    # is mono8 scaled by 257 (+3): the same labels again; a and d are different pictures.
    np.testing.assert_array_equal(results[1].labels, results[0].labels)
    np.testing.assert_array_equal(results[5].labels, results[4].labels)
    assert (results[3].labels != results[0].labels).any()
    assert results[0].timings_ms == results[3].timings_ms  # one batch


def test_batch_arguments_are_checked(segmenters):
    seg = segmenters['torch-host']
    frame = np.zeros((20, 30, 3), np.uint8)
    assert seg.segment_batch([]) == []
    with pytest.raises(ValueError, match='2 colour orders for 3 frames'):
        seg.segment_batch([frame] * 3, ['rgb', 'bgr'])
    with pytest.raises(ValueError, match=r'frame 1: expected a uint8 image'):
        seg.segment_batch([frame, frame.astype(np.float32)])
    with pytest.raises(ValueError, match='color_order must be one of'):
        seg.segment_batch([frame], 'hsv')


@pytest.mark.skipif(not HAS_ORT, reason='needs onnxruntime')
def test_a_batch_1_onnx_file_runs_frame_by_frame_and_says_so_once(model_and_spec, tmp_path,
                                                                  passes, caplog):
    model, spec = model_and_spec
    fixed = export_onnx(model, spec, tmp_path / 'batch1.onnx')           # batch axis fixed
    free = export_onnx(model, spec, tmp_path / 'any.onnx', dynamic_batch=True)
    del passes[:]  # the exports traced the model
    logger = logging.getLogger('bisenet_core.inference.backends')
    logger.addHandler(caplog.handler)  # the launch_pytest plugin stops propagation
    frames = [scene(50, 70, seed=seed) for seed in (4, 5, 6)]
    try:
        with caplog.at_level(logging.INFO, logger=logger.name):
            seg = Segmenter(fixed, backend='onnxruntime', device='cpu')
            batched = [seg.segment_batch(frames) for _ in range(2)]
            said = [r.getMessage() for r in caplog.records
                    if 'one frame at a time' in r.getMessage()]
            assert set(passes) == {1} and len(passes) == 1 + 2 * 3  # warm-up, 2 x 3 frames
            caplog.clear()
            dynamic = Segmenter(free, backend='onnxruntime', device='cpu')
            del passes[:]
            results = dynamic.segment_batch(frames)
            assert passes == [3]
            assert not [r for r in caplog.records if 'one frame at a time' in r.getMessage()]
    finally:
        logger.removeHandler(caplog.handler)
    assert len(said) == 1 and 'batch1.onnx' in said[0] and '--dynamic-batch' in said[0]
    for got, frame, other in zip(batched[1], frames, results):
        want = seg.segment(frame)
        np.testing.assert_array_equal(got.labels, want.labels)
        assert (other.labels == want.labels).mean() >= 0.9999
