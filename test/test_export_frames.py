"""End-to-end ONNX export (uint8 frame in, uint8 labels out): the graph equals the torch
pipeline at frame sizes and channel counts it was not traced at, and the Segmenter runs it."""
import numpy as np
import pytest
import torch

from bisenet_core.onnx_metadata import read_onnx_export_info
from bisenet_core.inference.export_frames import export_frame_onnx
from bisenet_core.inference import Segmenter
from bisenet_core.inference.frames import FRAME_INPUTS, FRAME_OUTPUTS, channel_index
from bisenet_core.inference.pipeline import FramePipeline
from bisenet_core.model.fuse import fold_conv_bn
from bisenet_core.modelfile import load_model

ort = pytest.importorskip('onnxruntime')


def _scene(height, width):
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([127 + 120 * np.sin(xx / 9), 127 + 120 * np.cos(yy / 7),
                    255.0 * ((xx - width / 2) ** 2 + (yy - height / 2) ** 2 < (height / 3) ** 2)],
                   axis=2)
    return np.clip(rgb, 0, 255).astype(np.uint8)


@pytest.fixture(scope='module')
def exported(tiny_model_file, tmp_path_factory):
    model, spec = load_model(tiny_model_file)
    folder = tmp_path_factory.mktemp('frames')
    return {mode: export_frame_onnx(model, spec, folder / f'{mode}.onnx', upsample=mode)
            for mode in ('nearest', 'bilinear')}


@pytest.fixture(scope='module')
def pipeline(tiny_model_file):
    model, spec = load_model(tiny_model_file)
    fold_conv_bn(model.eval(), torch.randn(1, 3, 64, 64))
    return FramePipeline(model, spec, spec.input_size)


@pytest.mark.parametrize('upsample', ['nearest', 'bilinear'])
def test_graph_matches_torch_at_other_sizes_and_channels(exported, pipeline, upsample):
    session = ort.InferenceSession(str(exported[upsample]), providers=['CPUExecutionProvider'])
    assert [i.name for i in session.get_inputs()] == list(FRAME_INPUTS)
    assert [o.name for o in session.get_outputs()] == list(FRAME_OUTPUTS)
    rgb = _scene(77, 143)
    frames = [(rgb, 'rgb'), (np.ascontiguousarray(rgb[:, :, ::-1]), 'bgr'),
              (np.dstack([rgb, rgb[:, :, :1]]), 'rgb'), (rgb[:, :, 1:2].copy(), 'rgb'),
              (np.ascontiguousarray(rgb[:40, :31]), 'rgb'),        # smaller than the network
              (np.ascontiguousarray(np.tile(rgb, (3, 2, 1))), 'rgb')]  # 231 x 286
    for frame, order in frames:
        channels = np.array(channel_index(frame.shape[2], order), np.int64)
        labels, small, confidence = session.run(None, {'image': frame, 'channels': channels})
        with torch.no_grad():
            want = pipeline(torch.from_numpy(frame), torch.from_numpy(channels), upsample,
                            ('small_labels', 'confidence'))
        assert labels.dtype == np.uint8 and labels.shape == frame.shape[:2]
        assert (labels == want['labels'].numpy()).mean() >= 0.999, (frame.shape, order)
        assert (small == want['small_labels'].numpy()).mean() >= 0.99
        assert np.abs(confidence.astype(int) - want['confidence'].numpy()).max() <= 1


@pytest.mark.parametrize('upsample', ['nearest', 'bilinear'])
def test_batched_graph_runs_n_frames_each_as_torch_does_alone(tiny_model_file, pipeline,
                                                              tmp_path, upsample):
    """batch=True: N x H x W x C in, each frame's outputs those of the torch pipeline run on
    it alone, at a frame size, channel count and batch size it was not traced at."""
    model, spec = load_model(tiny_model_file)
    path = export_frame_onnx(model, spec, tmp_path / 'batch.onnx', upsample=upsample,
                             batch=True)
    assert read_onnx_export_info(path)['batch'] is True
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    rgb = _scene(77, 143)
    frames = np.stack([rgb, rgb[::-1], np.full_like(rgb, 90), rgb[:, ::-1]])[..., ::-1]
    frames = np.ascontiguousarray(np.concatenate([frames, frames[..., :1]], axis=3))  # bgra
    channels = np.array(channel_index(4, 'bgr'), np.int64)
    labels, small, confidence = session.run(None, {'image': frames, 'channels': channels})
    assert labels.shape == (4, 77, 143) and small.shape[0] == 4 and confidence.shape[0] == 4
    for i, frame in enumerate(frames):
        with torch.no_grad():
            want = pipeline(torch.from_numpy(frame), torch.from_numpy(channels), upsample,
                            ('small_labels', 'confidence'))
        assert (labels[i] == want['labels'].numpy()).mean() >= 0.999, i
        assert (small[i] == want['small_labels'].numpy()).mean() >= 0.99, i
        assert np.abs(confidence[i].astype(int) - want['confidence'].numpy()).max() <= 1, i


def test_export_record_and_bad_arguments(exported, tiny_model_file, tmp_path):
    info = read_onnx_export_info(exported['bilinear'])
    assert (info['output'], info['upsample'], info['dynamic']) == ('frame', 'bilinear', True)
    assert info['input_size'] == [128, 96]
    model, spec = load_model(tiny_model_file)
    with pytest.raises(ValueError, match='upsample'):
        export_frame_onnx(model, spec, tmp_path / 'x.onnx', upsample='cubic')
    with pytest.raises(ValueError, match='precision'):
        export_frame_onnx(model, spec, tmp_path / 'x.onnx', precision='int8')


def test_segmenter_runs_frame_graphs_on_onnxruntime(exported, tiny_model_file, tmp_path,
                                                    monkeypatch):
    monkeypatch.setenv('BISENET_CACHE_DIR', str(tmp_path))
    frame = _scene(61, 83)
    torch_device = Segmenter(tiny_model_file, backend='torch', device='cpu', pipeline='device',
                             upsample='bilinear')
    want = torch_device.segment(frame, outputs=('confidence', 'color', 'small_labels'))
    # From the .pt file: the frame graph is exported into the cache at first use.
    seg = Segmenter(tiny_model_file, backend='onnxruntime', device='cpu', pipeline='device',
                    upsample='bilinear')
    assert seg.pipeline == 'device' and list((tmp_path / 'onnx').glob('*-frame-bilinear-*'))
    got = seg.segment(frame, outputs=('confidence', 'color', 'small_labels', 'overlay'))
    assert (got.labels == want.labels).mean() >= 0.999
    np.testing.assert_array_equal(got.color, seg.colorize(got.labels))
    assert got.overlay.shape == (61, 83, 3) and got.small_labels.shape == (12, 16)
    seg.upsample = 'nearest'  # the other mode: exported at its first frame
    assert seg(frame).shape == (61, 83)
    assert list((tmp_path / 'onnx').glob('*-frame-nearest-*'))
    # Segmenter.infer still works (the logits graph, made when first needed).
    assert seg.infer(seg.preprocess(frame)).shape == (1, 11, 12, 16)

    # An exported frame file: its mode is fixed, and it has no logits.
    with pytest.warns(RuntimeWarning, match="upsamples 'bilinear'; upsample 'nearest' ignored"):
        from_file = Segmenter(exported['bilinear'], backend='onnxruntime', device='cpu')
    assert from_file.pipeline == 'device' and from_file.upsample == 'bilinear'
    assert (from_file(frame) == want.labels).mean() >= 0.999
    with pytest.raises(ValueError, match='needs another export'):
        from_file.upsample = 'nearest'
    with pytest.raises(ValueError, match='needs a logits graph'):
        Segmenter(exported['bilinear'], backend='onnxruntime', device='cpu', pipeline='host')


def test_fp16_graph_runs_and_agrees(exported, tiny_model_file, tmp_path):
    """fp16 is for the CUDA provider; ONNX Runtime's CPU runs it too, so check it here."""
    model, spec = load_model(tiny_model_file)
    half = export_frame_onnx(model, spec, tmp_path / 'half.onnx', precision='fp16')
    frame = _scene(90, 120)
    channels = np.array([0, 1, 2], np.int64)
    labels = {}
    for name, path in (('fp32', exported['bilinear']), ('fp16', half)):
        session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
        labels[name] = session.run(['labels'], {'image': frame, 'channels': channels})[0]
    assert (labels['fp16'] == labels['fp32']).mean() >= 0.98


@pytest.mark.parametrize('module', ['bisenet_core.inference.export_frames',
                                    'bisenet_core.inference', 'bisenet_core.inference.backends',
                                    'bisenet_core.inference.onnx_graphs'])
def test_modules_import_on_their_own(module):
    """No import cycle between the export and the inference package, whatever comes first."""
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, '-c', f'import {module}'], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-500:]
