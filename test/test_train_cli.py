"""Command lines: --help, train on a tiny drive, evaluate and export a tiny model."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from bisenet_core.model import bisenet
from bisenet_core.modelfile import read_model_file, save_model
from bisenet_core.train.data import prepare_synthetic
from bisenet_ros.paths import DEFAULT_MODEL_NAME, REPO_ROOT
from test_train_loop import tiny_config  # noqa: I100 (test/ is on sys.path)
from training import evaluate, export, train


@pytest.mark.parametrize('module', ['training.train', 'training.evaluate', 'training.export'])
def test_help_explains(module):
    result = subprocess.run([sys.executable, '-m', module, '--help'], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0
    assert f'python -m {module}' in result.stdout and 'example' in result.stdout


def test_train_cli_runs_and_reports_config_errors(tmp_path, capsys):
    config = tmp_path / 'tiny.yaml'
    config.write_text('# tiny\nmodel:\n  input_size: [96, 64]\ndata:\n  format: synthetic\n'
                      '  crop_size: [64, 64]\n  num_workers: 0\n  synthetic:\n'
                      '    train_seeds: [1]\n    train_frames: 4\n    val_frames: 1\n'
                      '    test_frames: 0\n    size: [96, 64]\n'
                      'train:\n  batch_size: 2\n  warmup_iters: 0\n')
    out = tmp_path / 'run'
    code = train.main(['--config', str(config), '--data-root', str(tmp_path / 'data'),
                       '--output-dir', str(out), '--iterations', '2', '--no-progress',
                       '--set', 'train.eval_interval=0', '--set', 'train.threads=1'])
    assert code == 0 and (out / 'model.pt').is_file()
    assert 'done: 2 steps' in capsys.readouterr().out
    # The YAML and the command line reached the run: the model file records them.
    _, spec = read_model_file(out / 'model.pt')
    assert spec.input_size == (96, 64) and spec.info['iterations'] == 2
    assert spec.info['data'] == 'synthetic' and spec.num_classes == 11
    assert len(list((tmp_path / 'data' / 'train').glob('*.png'))) == 4  # train_frames: 4
    # Resume a finished run with more iterations: continues from step 2.
    code = train.main(['--resume', str(out / 'last.ckpt'), '--iterations', '3', '--no-progress'])
    assert code == 0 and 'steps 2 -> 3' in capsys.readouterr().out
    assert read_model_file(out / 'model.pt')[1].info['iterations'] == 3
    assert train.main(['--config', str(config), '--set', 'train.lr=-1']) == 2
    err = capsys.readouterr().err
    assert 'train.lr' in err and str(config) in err and err.count('\n') == 1
    with pytest.raises(SystemExit):
        train.main([])


@pytest.fixture(scope='module')
def tiny_drive(tmp_path_factory):
    root = tmp_path_factory.mktemp('drive')
    prepare_synthetic(tiny_config(root, root / 'unused'))
    return root


ROAD = 3  # CamVid class id


@pytest.fixture(scope='module')
def road_everywhere(tmp_path_factory, tiny_model_file):
    """A model file whose network says 'road' at every pixel: classifier weights 0, bias
    one-hot. Its scores follow from the ground truth's pixel counts alone."""
    state, spec = read_model_file(tiny_model_file)
    model = bisenet(spec.num_classes, backbone=spec.backbone)
    model.load_state_dict(state)
    with torch.no_grad():
        model.head.classifier.weight.zero_()
        model.head.classifier.bias.zero_()
        model.head.classifier.bias[ROAD] = 10.0
    return save_model(tmp_path_factory.mktemp('road') / 'road.pt', model, spec)


def test_evaluate_cli_scores_a_known_model(road_everywhere, tiny_drive, tmp_path, capsys):
    # By hand: with 'road' predicted everywhere, IoU(road) = road pixels / scored pixels,
    # every other class in the ground truth has IoU 0, classes in neither have none (null).
    labels = np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
                       for p in sorted((tiny_drive / 'valannot').glob('*.png'))])
    counts = np.bincount(labels[labels < 11].ravel(), minlength=11)
    road_iou = counts[ROAD] / counts.sum()
    present = int((counts > 0).sum())
    assert counts[ROAD] > 0 and present > 2  # the drive makes the check worth something

    out = tmp_path / 'eval'
    code = evaluate.main(['--model', str(road_everywhere), '--data', str(tiny_drive),
                          '--format', 'camvid', '--split', 'val', '--multiscale', '--flip',
                          '--out', str(out), '--no-progress'])
    assert code == 0
    printed = capsys.readouterr().out
    assert 'protocol full: scored at full label resolution' in printed
    # Strict JSON: a class absent from the images is null, not NaN.
    results = json.loads((out / 'results.json').read_text(),
                         parse_constant=lambda c: pytest.fail(f'{c} in results.json'))
    assert results['images'] == 2 and results['flip'] is True
    assert results['scales'] == [0.75, 1.0, 1.25, 1.5, 1.75]
    assert results['miou'] == pytest.approx(road_iou / present, abs=1e-9)
    assert results['pixel_accuracy'] == pytest.approx(road_iou, abs=1e-9)
    for class_id, name in enumerate(read_model_file(road_everywhere)[1].class_names):
        want = road_iou if class_id == ROAD else (0.0 if counts[class_id] else None)
        assert results['iou'][name] == (pytest.approx(want) if want else want), name
    assert (out / 'confusion.png').stat().st_size > 0
    assert evaluate.main(['--model', str(tmp_path / 'nope.pt'), '--data', str(tiny_drive)]) == 2


def test_evaluate_renders_synthetic_drives_on_first_use(tiny_model_file, tmp_path, capsys):
    """As training does: a synthetic model's --data that is not there yet is rendered with
    the settings of the config it was trained with (here --config, a tiny one)."""
    config = tmp_path / 'tiny_synthetic.yaml'
    config.write_text('model:\n  input_size: [96, 64]\ndata:\n  format: synthetic\n'
                      '  synthetic:\n    train_seeds: [1]\n    train_frames: 1\n'
                      '    val_frames: 1\n    test_frames: 3\n    size: [96, 64]\n')
    state, spec = read_model_file(tiny_model_file)
    model = bisenet(spec.num_classes, backbone=spec.backbone)
    model.load_state_dict(state)
    synthetic = save_model(tmp_path / 'synthetic.pt', model,
                           spec.replace(info={'data': 'synthetic', 'config': 'tiny_synthetic'}))
    fresh = tmp_path / 'fresh_clone_data'
    code = evaluate.main(['--model', str(synthetic), '--data', str(fresh), '--split', 'test',
                          '--config', str(config), '--out', str(tmp_path / 'eval'),
                          '--no-progress'])
    assert code == 0, capsys.readouterr().err
    assert 'generating the synthetic drives' in capsys.readouterr().out
    assert len(list((fresh / 'test').glob('*.png'))) == 3 and (fresh / 'synthetic.json').is_file()
    assert json.loads((tmp_path / 'eval' / 'results.json').read_text())['images'] == 3
    # Without --config: the preset the model names, which here does not exist.
    assert evaluate.main(['--model', str(synthetic), '--data', str(tmp_path / 'other'),
                          '--split', 'test', '--no-progress']) == 2
    assert "config 'tiny_synthetic', not found" in capsys.readouterr().err
    assert not (tmp_path / 'other').exists()


def test_the_shipped_model_names_the_preset_that_renders_its_test_street():
    _, spec = read_model_file(REPO_ROOT / 'models' / DEFAULT_MODEL_NAME)
    synthetic = evaluate.synthetic_config(spec).data.synthetic
    assert (synthetic.test_seed, synthetic.test_frames, tuple(synthetic.size)) == \
        (2001, 100, (480, 360))


def test_export_cli_writes_onnx(tiny_model_file, tmp_path, capsys):
    onnx = pytest.importorskip('onnx')
    from bisenet_core.onnx_metadata import read_onnx_spec

    out = tmp_path / 'tiny.onnx'
    assert export.main(['--model', str(tiny_model_file), '--out', str(out),
                        '--output', 'labels', '--size', '64x64']) == 0
    assert 'wrote' in capsys.readouterr().out
    onnx.checker.check_model(str(out))
    assert read_onnx_spec(out).num_classes == 11
    assert export.main(['--model', str(tmp_path / 'nope.pt'), '--out', str(out)]) == 2
    with pytest.raises(SystemExit):
        export.main(['--model', str(tiny_model_file), '--out', str(out), '--size', '64by64'])
