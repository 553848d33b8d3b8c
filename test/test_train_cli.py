"""Command lines: --help, train on a tiny drive, evaluate and export a tiny model."""
import json
import subprocess
import sys

import pytest

from bisenet_core.train.data import prepare_synthetic
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
    # Resume a finished run with more iterations: continues from step 2.
    code = train.main(['--resume', str(out / 'last.ckpt'), '--iterations', '3', '--no-progress'])
    assert code == 0 and 'steps 2 -> 3' in capsys.readouterr().out
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


def test_evaluate_cli_writes_results(tiny_model_file, tiny_drive, tmp_path, capsys):
    out = tmp_path / 'eval'
    code = evaluate.main(['--model', str(tiny_model_file), '--data', str(tiny_drive),
                          '--format', 'camvid', '--split', 'val', '--multiscale', '--flip',
                          '--out', str(out), '--no-progress'])
    assert code == 0
    printed = capsys.readouterr().out
    assert 'full label resolution' in printed and 'reduced resolution' in printed
    # Strict JSON: a class absent from the images is null, not NaN.
    results = json.loads((out / 'results.json').read_text(),
                         parse_constant=lambda c: pytest.fail(f'{c} in results.json'))
    assert results['images'] == 2 and results['flip'] is True
    assert results['scales'] == [0.75, 1.0, 1.25, 1.5, 1.75]
    assert set(results['iou']) >= {'sky', 'road', 'bicyclist'} and 0 <= results['miou'] <= 1
    assert (out / 'confusion.png').stat().st_size > 0
    assert evaluate.main(['--model', str(tmp_path / 'nope.pt'), '--data', str(tiny_drive)]) == 2


def test_export_cli_writes_onnx(tiny_model_file, tmp_path, capsys):
    onnx = pytest.importorskip('onnx')
    from bisenet_core.export import read_onnx_spec

    out = tmp_path / 'tiny.onnx'
    assert export.main(['--model', str(tiny_model_file), '--out', str(out),
                        '--output', 'labels', '--size', '64x64']) == 0
    assert 'wrote' in capsys.readouterr().out
    onnx.checker.check_model(str(out))
    assert read_onnx_spec(out).num_classes == 11
    assert export.main(['--model', str(tmp_path / 'nope.pt'), '--out', str(out)]) == 2
    with pytest.raises(SystemExit):
        export.main(['--model', str(tiny_model_file), '--out', str(out), '--size', '64by64'])
