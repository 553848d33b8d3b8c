"""Segmenter.segment on camera frames: every encoding, row padding, odd sizes, both upsampling
modes and both pipelines ('host' cv2/numpy, 'device' torch), against a reference written here
with plain numpy, cv2 and torch's F.interpolate (none of the code under test)."""
import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import cv2

from bisenet_core.inference import Segmenter
from bisenet_core.hardware import check_device, resolve_device
from bisenet_core.inference.pipeline import bilinear_labels as device_bilinear_labels
from bisenet_core.inference.postprocess import bilinear_labels as host_bilinear_labels
from bisenet_core.modelfile import load_model

ALL_OUTPUTS = ('confidence', 'color', 'overlay', 'small_labels')
NETWORK = (128, 96)  # the tiny model's input size (width, height)


def scene(height, width, seed=0):
    """A smooth RGB street-like picture (gradients, a disc, a bar): labels form regions."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = seed * 0.7
    r = 127 + 120 * np.sin(xx / (width / 9) + phase)
    g = 127 + 120 * np.cos(yy / (height / 7) - phase)
    b = 255.0 * ((xx - width / 2) ** 2 + (yy - height / 2) ** 2 < (min(width, height) / 3) ** 2)
    b[int(height * 0.7):int(height * 0.8)] = 60
    return np.clip(np.stack([r, g, b], axis=2), 0, 255).astype(np.uint8)


def as_encoding(rgb, encoding, pad=0):
    """The frame a camera driver would send, as a strided view when rows are padded."""
    if encoding in ('mono8', 'mono16'):
        mono = rgb[..., 1]
        frame = mono.astype(np.uint16) * 257 + 3 if encoding == 'mono16' else mono
    else:
        frame = rgb[..., ::-1] if encoding.startswith('bgr') else rgb
        if encoding.endswith('a8'):
            frame = np.dstack([frame, np.full(rgb.shape[:2], 77, np.uint8)])
    frame = np.ascontiguousarray(frame)
    if pad:
        wide = np.zeros((frame.shape[0], frame.shape[1] + pad) + frame.shape[2:], frame.dtype)
        wide[:, :frame.shape[1]] = frame
        frame = wide[:, :frame.shape[1]]  # rows longer than the pixels: a view with a step
    return frame, 'bgr' if encoding.startswith('bgr') else 'rgb'


def reference(model, spec, frame, color_order, upsample, rounded=True):
    """labels, 1/8 labels, confidence (float, 0..255), RGB frame, computed independently.

    rounded: resize as uint8 (cv2 rounds, as the host path does) or as float (the device
    path keeps the resized values unrounded); either way cv2 computes the resize.
    """
    image = frame >> 8 if frame.dtype == np.uint16 else frame
    image = image.astype(np.uint8)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        rgb = np.repeat(image, 3, axis=2)
    else:
        rgb = image[:, :, [2, 1, 0]] if color_order == 'bgr' else image[:, :, :3]
    height, width = rgb.shape[:2]
    w, h = NETWORK
    interp = cv2.INTER_AREA if w * h < width * height else cv2.INTER_LINEAR
    source = np.ascontiguousarray(rgb if rounded else rgb.astype(np.float32))
    resized = cv2.resize(source, (w, h), interpolation=interp)
    x = (resized / 255.0 - np.array(spec.mean)) / np.array(spec.std)
    x = torch.from_numpy(x.transpose(2, 0, 1)[None].astype(np.float32))
    with torch.no_grad():
        logits = model(x).logits
    small = logits[0].argmax(0).numpy().astype(np.uint8)
    prob = logits.softmax(1).amax(1, keepdim=True)
    if upsample == 'nearest':
        labels = cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)
        prob = F.interpolate(prob, size=(height, width), mode='nearest')
    else:
        labels = F.interpolate(logits, size=(height, width), mode='bilinear',
                               align_corners=False)[0].argmax(0).numpy().astype(np.uint8)
        prob = F.interpolate(prob, size=(height, width), mode='bilinear', align_corners=False)
    return labels, small, prob[0, 0].numpy() * 255, rgb


@pytest.fixture(scope='module')
def model_and_spec(tiny_model_file):
    return load_model(tiny_model_file)


@pytest.fixture(scope='module')
def segmenters(tiny_model_file, tmp_path_factory):
    """host and device pipelines on torch; the device pipeline's ONNX graph on ORT's CPU."""
    segs = {pipeline: Segmenter(tiny_model_file, backend='torch', device='cpu',
                                pipeline=pipeline) for pipeline in ('host', 'device')}
    if importlib.util.find_spec('onnxruntime'):
        with pytest.MonkeyPatch.context() as mp:  # the exported graphs go to a temporary cache
            mp.setenv('BISENET_CACHE_DIR', str(tmp_path_factory.mktemp('cache')))
            segs['onnx-device'] = Segmenter(tiny_model_file, backend='onnxruntime',
                                            device='cpu', pipeline='device')
            for mode in ('nearest', 'bilinear'):  # export both modes now, inside the cache
                segs['onnx-device'].upsample = mode
                segs['onnx-device'](np.zeros((8, 8, 3), np.uint8))
    return segs


@pytest.mark.parametrize('pipeline', ['host', 'device', 'onnx-device'])
@pytest.mark.parametrize('upsample', ['nearest', 'bilinear'])
@pytest.mark.parametrize('encoding, size, pad', [
    ('rgb8', (97, 131), 0), ('bgr8', (61, 203), 7), ('rgba8', (97, 131), 0),
    ('bgra8', (45, 77), 4), ('mono8', (97, 131), 3), ('mono16', (61, 203), 1),
    ('rgb8', (96, 128), 0), ('bgr8', (150, 160), 2)])
def test_labels_and_outputs_match_the_reference(segmenters, model_and_spec, pipeline, upsample,
                                                encoding, size, pad):
    frame, order = as_encoding(scene(*size, seed=len(encoding)), encoding, pad)
    if pipeline not in segmenters:
        pytest.skip('onnxruntime is not installed')
    seg = segmenters[pipeline]
    seg.upsample = upsample
    result = seg.segment(frame, order, outputs=ALL_OUTPUTS)
    labels, small, confidence, rgb = reference(*model_and_spec, frame, order, upsample,
                                               rounded=pipeline == 'host')

    assert result.labels.shape == size and result.labels.dtype == np.uint8
    assert (result.labels == labels).mean() >= 0.995
    assert result.small_labels.shape == small.shape == (12, 16)
    # 192 pixels: allows the one whose top-2 classes nearly tie in this random-weight model.
    assert (result.small_labels == small).mean() >= 0.99
    assert result.confidence.shape == size and result.confidence.dtype == np.uint8
    close = np.abs(result.confidence.astype(float) - confidence) <= 1.5
    assert close.mean() >= 0.995
    # Colour and overlay follow from the labels: exact.
    palette = np.array(seg.spec.palette, np.uint8)
    np.testing.assert_array_equal(result.color, palette[result.labels])
    blend = np.rint(rgb * 0.5 + palette[result.labels] * 0.5).astype(np.uint8)
    np.testing.assert_array_equal(result.overlay, blend)
    assert set(result.timings_ms) == {'upload', 'compute', 'download'}


def test_only_requested_outputs_are_made(segmenters):
    frame = scene(50, 70)
    for seg in segmenters.values():
        result = seg.segment(frame)
        assert (result.confidence, result.color, result.overlay, result.small_labels) == (
            None, None, None, None)
        result = seg.segment(frame, outputs=('color',))
        assert result.color is not None and result.overlay is None
        with pytest.raises(ValueError, match="unknown output.*'colour'"):
            seg.segment(frame, outputs=('colour',))


def test_void_pixels_keep_the_frame_in_the_overlay(tiny_model_file):
    """Class ids >= num_classes (void) show the frame in the overlay and black in the mask.

    The model's 11 outputs are read with a 5-class spec, and the last 6 classes get a bias
    that makes about half of the pixels void.
    """
    model, spec = load_model(tiny_model_file)
    frame = scene(40, 60)
    x = torch.from_numpy(((cv2.resize(frame, NETWORK) / 255.0 - spec.mean) / spec.std)
                         .transpose(2, 0, 1)[None].astype(np.float32))
    with torch.no_grad():
        logits = model(x).logits[0]
        gap = logits[:5].amax(0) - logits[5:].amax(0)
        model.head.classifier.bias[5:] += gap.median()
    spec = spec.replace(class_names=spec.class_names[:5], palette=spec.palette[:5])
    for pipeline in ('host', 'device'):
        seg = Segmenter.from_model(model, spec, backend='torch', device='cpu',
                                   pipeline=pipeline)
        result = seg.segment(frame, outputs=('overlay', 'color'))
        void = result.labels >= 5
        assert 0.1 < void.mean() < 0.9, 'the test needs both void and class pixels'
        np.testing.assert_array_equal(result.overlay[void], frame[void])
        assert (result.color[void] == 0).all()
        assert not np.array_equal(result.overlay[~void], frame[~void])


def test_mono16_uses_the_high_byte(segmenters):
    low = scene(64, 96)[..., 0].astype(np.uint16) << 8
    noisy_low_byte = low | np.random.default_rng(0).integers(0, 256, low.shape).astype(np.uint16)
    swapped = noisy_low_byte.astype('>u2')  # a big-endian message
    for seg in segmenters.values():
        want = seg(np.ascontiguousarray(low >> 8).astype(np.uint8))
        np.testing.assert_array_equal(seg(noisy_low_byte), want)
        np.testing.assert_array_equal(seg(swapped), want)


def _random_smooth_logits(classes, h, w, seed):
    """Logits with large regions, many three-class junctions and near-ties."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((classes, h * 4, w * 4)).astype(np.float32)
    smooth = np.stack([cv2.GaussianBlur(c, (0, 0), 3) for c in noise])
    return np.ascontiguousarray(smooth[:, ::4, ::4]) * 10


@pytest.mark.parametrize('classes, low, out', [
    (19, (45, 80), (541, 963)), (11, (12, 16), (97, 131)), (3, (45, 80), (1080, 1920)),
    (19, (20, 30), (20, 30)), (5, (30, 40), (17, 23)), (7, (1, 9), (5, 40)),
    (7, (9, 1), (40, 5)), (171, (6, 8), (45, 61))])  # COCO-Stuff: more than cv2's 128 channels
def test_host_bilinear_equals_dense_interpolation(classes, low, out):
    """The sparse host upsampling is exact: it equals interpolating every class map."""
    for seed, logits in enumerate((_random_smooth_logits(classes, *low, seed=classes),
                                   np.random.default_rng(1).standard_normal(
                                       (classes, *low)).astype(np.float32))):
        dense = F.interpolate(torch.from_numpy(logits)[None], size=out, mode='bilinear',
                              align_corners=False)[0].argmax(0).numpy()
        got = host_bilinear_labels(logits, out)
        assert got.shape == out and got.dtype == np.uint8
        # Only float rounding near exact ties may differ.
        assert (got == dense).mean() >= 0.9999, (seed, (got == dense).mean())


def test_device_bilinear_class_groups_do_not_change_labels():
    logits = torch.from_numpy(_random_smooth_logits(13, 20, 30, seed=4))[None]
    dense = F.interpolate(logits, size=(77, 111), mode='bilinear',
                          align_corners=False).argmax(1).to(torch.uint8)
    for budget in (1, 3 * 77 * 111, 1 << 30):  # one class, three classes, all at once
        got = device_bilinear_labels(logits, (77, 111), budget=budget)
        assert got.dtype == torch.uint8
        assert (got == dense).float().mean() >= 0.9999, budget


def test_host_bilinear_memory_does_not_grow_with_classes_times_pixels():
    """Issue 12: a 4K frame must not cost C x H x W floats (19 x 3840 x 2160 x 4 = 630 MB)."""
    import tracemalloc

    logits = _random_smooth_logits(19, 45, 80, seed=2)
    tracemalloc.start()
    try:
        labels = host_bilinear_labels(logits, (2160, 3840))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert labels.shape == (2160, 3840)
    # The labels themselves are 8.3 MB; the working set stays a few times that.
    assert peak < 80e6, f'peak {peak / 1e6:.0f} MB'


def test_device_names():
    for name in ('auto', 'cpu', 'cuda', 'cuda:0', 'cuda:12'):
        assert check_device(name) == name
    for bad in ('gpu', 'cuda:', 'cuda:-1', 'cuda:a', 'CUDA', '', None):
        with pytest.raises(ValueError, match='cuda:N'):
            check_device(bad)
    count = torch.cuda.device_count()
    if torch.cuda.is_available():
        with pytest.raises(RuntimeError, match=f'cuda:{count}.*does not exist'):
            resolve_device(f'cuda:{count}', 'torch')
        assert resolve_device(f'cuda:{count - 1}', 'torch') == f'cuda:{count - 1}'
    else:
        with pytest.raises(RuntimeError, match="device 'cuda:1'"):
            resolve_device('cuda:1', 'torch')


def test_pipeline_choice(tiny_model_file, segmenters):
    assert segmenters['host'].pipeline == 'host' and segmenters['device'].pipeline == 'device'
    seg = Segmenter(tiny_model_file, backend='torch', device='cpu')
    assert seg.pipeline == 'host'  # the CPU: cv2/numpy stages are faster there
    with pytest.raises(ValueError, match='pipeline must be one of'):
        Segmenter(tiny_model_file, backend='torch', device='cpu', pipeline='gpu')
    with pytest.raises(ValueError, match='upsample must be one of'):
        segmenters['host'].upsample = 'cubic'
