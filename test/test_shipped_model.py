"""The shipped model in models/: it loads, its ONNX export is the same network, it segments.

Scored on a few frames of a synthetic drive that no training or validation run used (seed
9100); the full held-out figure is in models/MODEL_CARD.md and comes from `make demo`.
"""
import warnings

import pytest

from bisenet_core.data.synthetic import render_drive
from bisenet_core.inference import Segmenter
from bisenet_core.metrics import ConfusionMatrix
from bisenet_core.modelfile import read_model_file
from bisenet_ros.paths import DEFAULT_MODEL_NAME, REPO_ROOT

MODEL = REPO_ROOT / 'models' / DEFAULT_MODEL_NAME
ONNX = MODEL.with_suffix('.onnx')
INT8 = MODEL.with_name(MODEL.stem + '_int8.onnx')
FRAMES = 6


@pytest.fixture(scope='module')
def drive():
    return list(render_drive(9100, FRAMES, (480, 360), step=30))


def _segmenter(path, backend, upsample='nearest'):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)  # 'no GPU, running on the CPU'
        return Segmenter(path, backend=backend, device='auto', upsample=upsample, threads=1)


def test_shipped_files_are_small_and_described():
    _, spec = read_model_file(MODEL)
    assert spec.backbone == 'xception39' and spec.num_classes == 11
    assert spec.info['data'] == 'synthetic'
    assert spec.info['iterations'] > 0 and 0 < spec.info['val_miou'] <= 1
    total = sum(p.stat().st_size for p in (REPO_ROOT / 'models').iterdir())
    assert total <= 25 * 2 ** 20
    card = (REPO_ROOT / 'models' / 'MODEL_CARD.md').read_text()
    assert 'synthetic' in card and 'not for' in card.lower()


@pytest.mark.parametrize('path', [ONNX, INT8], ids=['fp32', 'int8'])
def test_onnx_exports_agree_with_torch_on_held_out_frames(drive, path):
    # The faster CPU paths must keep >= 99.5 % of torch fp32's labels (bilinear, the default).
    torch_seg = _segmenter(MODEL, 'torch', 'bilinear')
    onnx_seg = _segmenter(path, 'onnxruntime', 'bilinear')
    assert onnx_seg.spec.class_names == torch_seg.spec.class_names
    assert onnx_seg.precision == ('int8' if path == INT8 else 'fp32')
    agree = total = 0
    for frame in drive:
        a = torch_seg.segment(frame.image).labels
        b = onnx_seg.segment(frame.image).labels
        agree += int((a == b).sum())
        total += a.size
    assert agree / total >= 0.995, f'{path.name} vs torch label agreement {agree / total:.4%}'


def test_segments_a_held_out_drive(drive):
    matrices = {}
    for upsample in ('nearest', 'bilinear'):
        seg = _segmenter(MODEL, 'auto', upsample)
        cm = ConfusionMatrix(seg.spec.num_classes)
        for frame in drive:
            cm.update(seg.segment(frame.image).labels, frame.label)
        matrices[upsample] = cm
    # Loose floor: a broken export, a palette/class-order mix-up or a wrong normalisation
    # falls far below it (a random model scores under 0.1).
    assert matrices['nearest'].miou() > 0.6, matrices['nearest'].miou()
    assert matrices['bilinear'].miou() > 0.6, matrices['bilinear'].miou()
    road = matrices['nearest'].iou()[seg.spec.class_names.index('road')]
    assert road > 0.8, road
