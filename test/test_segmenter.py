"""Segmenter: backends agree, upsampling, colours, input checks, model files, ONNX cache."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bisenet_core.export import export_onnx
from bisenet_core.inference import Segmenter, SegmenterOptions
from bisenet_core.inference.backends import ort_providers
from bisenet_core.modelfile import ModelFileError, load_model
from bisenet_core.preprocess import normalize, resize_image

pytest.importorskip('onnxruntime')

IMAGE_SIZE = (97, 131)  # (H, W): odd, not the network size, so both resizes are exercised
HAS_CUDA = torch.cuda.is_available()


@pytest.fixture(scope='module')
def cache(tmp_path_factory):
    """Keep exported ONNX files out of ~/.cache."""
    path = tmp_path_factory.mktemp('cache')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('BISENET_CACHE_DIR', str(path))
        yield path


@pytest.fixture(scope='module')
def segmenters(tiny_model_file, cache):
    return {backend: Segmenter(tiny_model_file, backend=backend, device='cpu')
            for backend in ('torch', 'onnxruntime')}


@pytest.fixture(scope='module')
def image():
    return np.random.default_rng(0).integers(0, 256, (*IMAGE_SIZE, 3), dtype=np.uint8)


def test_attributes(segmenters):
    seg = segmenters['onnxruntime']
    assert seg.backend_name == 'onnxruntime' and segmenters['torch'].backend_name == 'torch'
    assert (seg.device, seg.precision, seg.upsample) == ('cpu', 'fp32', 'nearest')
    assert seg.input_size == seg.spec.input_size == (128, 96)
    assert seg.spec.dataset == 'camvid'


def test_preprocess_uses_the_shared_normalisation(segmenters, image):
    seg = segmenters['torch']
    batch = seg.preprocess(image)
    want = normalize(resize_image(image, 128, 96), seg.spec.mean, seg.spec.std)
    assert batch.shape == (1, 3, 96, 128) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[0], want)


def test_onnxruntime_matches_torch(segmenters, image):
    """Same input, same weights: logits within float32 noise, labels the same.

    A random-init BiSeNet has some pixels whose two best classes nearly tie; float32 noise
    (~1e-6) can flip those and nothing else. Rather than perturbing weights, require every
    pixel with a top-2 margin > 1e-3 to agree exactly, and >= 99.9% of all pixels.
    """
    batch = segmenters['torch'].preprocess(image)
    want = segmenters['torch'].infer(batch)
    got = segmenters['onnxruntime'].infer(batch)
    assert got.shape == want.shape == (1, 11, 12, 16)
    assert np.abs(got - want).max() < 1e-3 * np.abs(want).max()
    top2 = np.sort(want[0], axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 1e-3
    assert clear.mean() > 0.9  # the test says something: most pixels are clear-cut
    agree = got[0].argmax(0) == want[0].argmax(0)
    assert agree[clear].all() and agree.mean() >= 0.999
    full = [segmenters[b](image) for b in ('torch', 'onnxruntime')]
    assert (full[0] == full[1]).mean() >= 0.999


@pytest.mark.parametrize('upsample', ['nearest', 'bilinear'])
def test_upsample_modes_match_torch(tiny_model_file, cache, image, upsample):
    seg = Segmenter(tiny_model_file, backend='torch', device='cpu', upsample=upsample)
    result = seg.segment(image)
    assert result.labels.shape == IMAGE_SIZE and result.labels.dtype == np.uint8
    assert set(result.timings_ms) == {'upload', 'compute', 'download'}
    assert all(t >= 0 for t in result.timings_ms.values())
    # Independent computation: the model and F.interpolate, no Segmenter code.
    model, spec = load_model(tiny_model_file)
    x = torch.from_numpy(normalize(resize_image(image, 128, 96), spec.mean, spec.std))[None]
    with torch.no_grad():
        logits = model(x).logits
    if upsample == 'nearest':
        labels = logits.argmax(1, keepdim=True).float()
        want = F.interpolate(labels, size=IMAGE_SIZE, mode='nearest')[0, 0]
    else:
        want = F.interpolate(logits, size=IMAGE_SIZE, mode='bilinear',
                             align_corners=False)[0].argmax(0)
    agreement = (result.labels == want.numpy().astype(np.uint8)).mean()
    assert agreement >= (1.0 if upsample == 'nearest' else 0.999)


def test_upsample_modes_differ_at_boundaries(segmenters, image):
    """Bilinear logits give smoother boundaries: the two modes are not the same thing."""
    logits = segmenters['torch'].infer(segmenters['torch'].preprocess(image))
    from bisenet_core.inference import logits_to_labels
    nearest = logits_to_labels(logits[0], IMAGE_SIZE, 'nearest')
    bilinear = logits_to_labels(logits[0], IMAGE_SIZE, 'bilinear')
    assert 0.5 < (nearest == bilinear).mean() < 1.0


def test_bgr_and_mono_input(segmenters, image):
    seg = segmenters['onnxruntime']
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    np.testing.assert_array_equal(seg.preprocess(bgr, color_order='bgr'), seg.preprocess(image))
    np.testing.assert_array_equal(seg(bgr, color_order='bgr'), seg(image))
    assert not np.array_equal(seg.preprocess(bgr), seg.preprocess(image))
    gray = image[:, :, 1]
    np.testing.assert_array_equal(seg.preprocess(gray),
                                  seg.preprocess(np.stack([gray] * 3, axis=2)))
    assert seg(gray[:, :, None]).shape == IMAGE_SIZE


@pytest.mark.parametrize('bad, match', [
    (np.zeros((0, 10, 3), np.uint8), 'empty'),
    (np.zeros((20, 30, 3), np.float32), 'uint8'),
    (np.zeros((20, 30, 2), np.uint8), 'shape'),
    (np.zeros((20, 30, 3), np.uint16), 'mono'),
    (np.zeros((20, 30, 3, 1), np.uint8), 'shape'),
    ([[0, 1]], 'numpy'),
])
def test_bad_images(segmenters, bad, match):
    with pytest.raises(ValueError, match=match):
        segmenters['onnxruntime'].segment(bad)


def test_bad_arguments(segmenters, tiny_model_file, cache, image):
    with pytest.raises(ValueError, match=r'16x96: each side must be 32\.\.8192'):
        Segmenter(tiny_model_file, backend='torch', device='cpu', input_size=(16, 96))
    with pytest.raises(ValueError, match='upsample'):
        Segmenter(tiny_model_file, backend='torch', device='cpu', upsample='cubic')
    with pytest.raises(ValueError, match='backend'):
        Segmenter(tiny_model_file, backend='openvino', device='cpu')
    with pytest.raises(ValueError, match='color_order'):
        segmenters['torch'].preprocess(image, color_order='yuv')
    with pytest.raises(ValueError, match='float32 N x 3'):
        segmenters['torch'].infer(np.zeros((1, 3, 96, 128), np.float64))


def test_other_input_size(tiny_model_file, cache, image):
    seg = Segmenter(tiny_model_file, backend='onnxruntime', device='cpu', input_size=(64, 64))
    assert seg.input_size == (64, 64)
    assert seg.infer(seg.preprocess(image)).shape == (1, 11, 8, 8)
    assert seg(image).shape == IMAGE_SIZE


def test_colorize_and_overlay(segmenters, image):
    seg = segmenters['torch']
    labels = np.array([[0, 3, 255], [10, 1, 200]], np.uint8)
    colours = seg.colorize(labels)
    assert colours.shape == (2, 3, 3) and colours.dtype == np.uint8
    palette = seg.spec.palette
    assert [tuple(c) for c in colours[0]] == [palette[0], palette[3], (0, 0, 0)]
    assert [tuple(c) for c in colours[1]] == [palette[10], palette[1], (0, 0, 0)]
    with pytest.raises(ValueError, match='uint8 H x W'):
        seg.colorize(labels.astype(np.int64))

    labels = seg(image)
    labels[:5] = 255
    np.testing.assert_array_equal(seg.overlay(image, labels, alpha=0.0), image)
    full = seg.overlay(image, labels, alpha=1.0)
    np.testing.assert_array_equal(full[5:], seg.colorize(labels)[5:])
    np.testing.assert_array_equal(full[:5], image[:5])  # ignore pixels show the image
    with pytest.raises(ValueError, match='differ in size'):
        seg.overlay(image, labels[:10])


@pytest.mark.parametrize('backend', ['torch', 'onnxruntime'])
def test_bad_model_files(tiny_model_file, cache, tmp_path, backend):
    data = tiny_model_file.read_bytes()
    truncated = tmp_path / 'truncated.pt'
    truncated.write_bytes(data[:len(data) // 2])
    corrupt = tmp_path / 'corrupt.pt'
    corrupt.write_bytes(b'not a model' * 100)
    empty = tmp_path / 'empty.onnx'
    empty.write_bytes(b'')
    bad_onnx = tmp_path / 'bad.onnx'
    bad_onnx.write_bytes(np.random.default_rng(0).bytes(2048))
    for path in (tmp_path / 'missing.pt', truncated, corrupt, empty, bad_onnx):
        if backend == 'torch' and path.suffix == '.onnx':
            continue
        with pytest.raises(ModelFileError, match=path.name):
            Segmenter(path, backend=backend, device='cpu')


def test_onnx_file_input(segmenters, tiny_model_file, cache, tmp_path, image):
    model, spec = load_model(tiny_model_file)
    path = export_onnx(model, spec, tmp_path / 'tiny.onnx', dynamic=True)
    seg = Segmenter(path, backend='onnxruntime', device='cpu')
    assert seg.spec == spec and seg.input_size == spec.input_size
    np.testing.assert_array_equal(seg(image), segmenters['onnxruntime'](image))
    with pytest.raises(ValueError, match='torch needs a .pt'):
        Segmenter(path, backend='torch', device='cpu')
    # The file's own precision wins over a valid request, but a bad one is still refused.
    with pytest.raises(ValueError, match="precision must be one of .* got 'int4'"):
        Segmenter(path, backend='onnxruntime', device='cpu', precision='int4')
    fixed = export_onnx(model, spec, tmp_path / 'fixed.onnx')
    with pytest.raises(ValueError, match='fixed input size 128x96'):
        Segmenter(fixed, backend='onnxruntime', device='cpu', input_size=(64, 64))
    labels = export_onnx(model, spec, tmp_path / 'labels.onnx', output='labels')
    with pytest.raises(ValueError, match="output='labels'"):
        Segmenter(labels, backend='onnxruntime', device='cpu')


def test_onnx_cache_is_reused_and_keyed_by_content(segmenters, tiny_model_file, cache,
                                                   tmp_path):
    files = sorted((cache / 'onnx').glob('*.onnx'))
    assert files and all('-fp32-logits-' in f.name for f in files)
    before = {f: f.stat().st_mtime_ns for f in files}
    Segmenter(tiny_model_file, backend='onnxruntime', device='cpu')
    assert {f: f.stat().st_mtime_ns for f in (cache / 'onnx').glob('*.onnx')} == before
    # Same name, new weights: a new cache entry, not the stale export.
    model, spec = load_model(tiny_model_file)
    with torch.no_grad():
        model.head.classifier.bias += torch.arange(11.0)
    from bisenet_core.modelfile import save_model
    changed = save_model(tmp_path / tiny_model_file.name, model, spec)
    seg = Segmenter(changed, backend='onnxruntime', device='cpu')
    assert len(list((cache / 'onnx').glob('*.onnx'))) == len(files) + 1
    batch = seg.preprocess(np.zeros((96, 128, 3), np.uint8))
    with torch.no_grad():
        want = model(torch.from_numpy(batch)).logits.numpy()
    assert np.abs(seg.infer(batch) - want).max() < 1e-3 * np.abs(want).max()


def test_from_model(tiny_model_file, segmenters, image):
    model, spec = load_model(tiny_model_file)
    for backend in ('torch', 'onnxruntime'):
        seg = Segmenter.from_model(model, spec, backend=backend, device='cpu')
        assert seg.backend_name == backend
        assert (seg(image) == segmenters['torch'](image)).mean() >= 0.999


@pytest.mark.skipif(HAS_CUDA, reason='checks the CPU fallbacks')
def test_auto_choices_and_fallbacks_on_cpu(tiny_model_file, cache):
    with pytest.warns(RuntimeWarning, match='no GPU'):
        seg = Segmenter(tiny_model_file)
    assert (seg.backend_name, seg.device) == ('onnxruntime', 'cpu')
    with pytest.warns(RuntimeWarning, match='fp16 requested on the CPU'):
        seg = Segmenter(tiny_model_file, backend='torch', device='cpu', precision='fp16')
    assert seg.precision == 'fp32'
    with pytest.raises(RuntimeError, match="device 'cuda'"):
        Segmenter(tiny_model_file, backend='torch', device='cuda')


@pytest.mark.skipif('TensorrtExecutionProvider' in ort_providers(),
                    reason='TensorRT is available here')
def test_tensorrt_unavailable_is_one_clear_error(tiny_model_file, cache):
    with pytest.raises(RuntimeError, match='TensorRT execution provider') as info:
        Segmenter(tiny_model_file, backend='tensorrt')
    assert '\n' not in str(info.value)


@pytest.mark.skipif(not HAS_CUDA, reason='needs a CUDA GPU')
@pytest.mark.parametrize('precision', ['fp32', 'fp16'])
def test_torch_cuda(tiny_model_file, segmenters, image, precision):
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # no silent CPU fallback
        seg = Segmenter(tiny_model_file, backend='torch', device='cuda', precision=precision)
    assert (seg.device, seg.precision) == ('cuda', precision)
    agreement = (seg(image) == segmenters['torch'](image)).mean()
    assert agreement >= (0.999 if precision == 'fp32' else 0.98)


def test_options_by_keyword_or_record_resolve_alike(tiny_model_file, cache):
    """Keyword settings, a SegmenterOptions record, and a record with keywords over it make
    the same Segmenter: 'auto' resolved, the input size the model's (conftest: 128x96)."""
    def resolved(seg):
        return (seg.backend_name, seg.device, seg.precision, seg.input_size, seg.upsample,
                seg.pipeline, seg.graphs, seg.compiled)
    expected = ('torch', 'cpu', 'fp32', (128, 96), 'bilinear', 'host', False, False)
    by_keyword = Segmenter(tiny_model_file, backend='torch', device='cpu', upsample='bilinear',
                           warmup=False)
    record = SegmenterOptions(backend='torch', device='cpu', upsample='bilinear', warmup=False)
    by_record = Segmenter(tiny_model_file, record)
    assert resolved(by_keyword) == resolved(by_record) == expected
    assert by_keyword.options == by_record.options == record
    nearest = Segmenter(tiny_model_file, record, upsample='nearest', pipeline='device',
                        input_size=(64, 32))
    assert resolved(nearest) == ('torch', 'cpu', 'fp32', (64, 32), 'nearest', 'device', False,
                                 False)
    assert record.upsample == 'bilinear' and record.pipeline == 'auto'  # the record unchanged
    model, spec = load_model(tiny_model_file)
    assert resolved(Segmenter.from_model(model, spec, record)) == expected


@pytest.mark.parametrize('settings, message', [
    ({'backend': 'openvino'}, "backend must be one of .* got 'openvino'"),
    ({'device': 'gpu'}, r"device must be one of auto, cuda, cpu or cuda:N .*got 'gpu'"),
    ({'device': 'cuda:'}, "got 'cuda:'"),
    ({'precision': 'int4'}, "precision must be one of .* got 'int4'"),
    ({'upsample': 'cubic'}, "upsample must be one of .* got 'cubic'"),
    ({'threads': 0}, 'threads must be >= 1, got 0'),
    ({'pipeline': 'gpu'}, "pipeline must be one of .* got 'gpu'"),
    ({'input_size': (16, 96)}, r'16x96: each side must be 32\.\.8192'),
    ({'input_size': (64, 64, 3)}, r'input_size must be \(width, height\)'),
])
def test_bad_settings_are_refused_before_the_model_is_read(tmp_path, settings, message):
    """A setting error is the error reported, even for a model path that does not exist."""
    missing = tmp_path / 'missing.pt'
    with pytest.raises(ValueError, match=message):
        Segmenter(missing, **settings)
    with pytest.raises(ValueError, match=message):
        SegmenterOptions(**settings)


def test_unknown_settings_are_type_errors(tiny_model_file):
    with pytest.raises(TypeError, match='devcie'):
        Segmenter(tiny_model_file, devcie='cpu')
    with pytest.raises(TypeError, match='options must be a SegmenterOptions, got str'):
        Segmenter(tiny_model_file, 'torch')
