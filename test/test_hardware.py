"""bisenet_core.hardware: one vocabulary of devices and precisions, resolved in one place for
inference, training, evaluation and export."""
import warnings

import pytest
import torch

from bisenet_core.hardware import (check_device, device_index, is_device, resolve_amp,
                                   resolve_device, resolve_precision)
from bisenet_core.train.config import ConfigError, load_config
from bisenet_core.train.runtime import setup_runtime
from training import evaluate, export, train

HAS_CUDA = torch.cuda.is_available()


def test_device_names():
    for name in ('auto', 'cpu', 'cuda', 'cuda:0', 'cuda:12'):
        assert is_device(name) and check_device(name) == name
    for bad in ('gpu', 'cuda:', 'cuda:-1', 'cuda1', 'CPU', '', None, 0):
        assert not is_device(bad)
        with pytest.raises(ValueError, match='device must be one of auto, cuda, cpu or cuda:N'):
            check_device(bad)
    assert (device_index('cuda'), device_index('cuda:3')) == (0, 3)


def test_every_cli_takes_the_same_device_and_precision_names(tmp_path, capsys):
    model, data = str(tmp_path / 'm.pt'), str(tmp_path)
    assert evaluate.parse_args(['--model', model, '--data', data, '--device', 'cuda:1']
                               ).device == 'cuda:1'
    for parse, argv in ((evaluate.parse_args, ['--model', model, '--data', data]),
                        (train.parse_args, [])):
        with pytest.raises(SystemExit):
            parse([*argv, '--device', 'gpu'])
        assert "device must be one of auto, cuda, cpu or cuda:N (N = GPU index), got 'gpu'" \
            in capsys.readouterr().err
    for precision in ('fp32', 'fp16', 'int8'):
        assert export.parse_args(['--model', model, '--out', 'x.onnx', '--precision',
                                  precision]).precision == precision
    with pytest.raises(SystemExit):
        export.parse_args(['--model', model, '--out', 'x.onnx', '--precision', 'bf16'])


def test_training_config_takes_a_numbered_gpu():
    assert load_config(None, ['train.device=cuda:1']).train.device == 'cuda:1'
    with pytest.raises(ConfigError, match=r"train\.device.*or cuda:N"):
        load_config(None, ['train.device=gpu'])


def test_amp_resolution_on_the_cpu_is_fp32():
    cpu = torch.device('cpu')
    assert [resolve_amp(name, cpu) for name in ('auto', 'bf16', 'fp16', 'none')] == [None] * 4
    with pytest.raises(ValueError, match="amp_dtype must be one of .* got 'fp8'"):
        resolve_amp('fp8', cpu)


@pytest.mark.skipif(not HAS_CUDA, reason='needs a CUDA GPU')
def test_amp_resolution_on_a_gpu():
    gpu = torch.device('cuda')
    assert resolve_amp('fp16', gpu) == torch.float16
    assert resolve_amp('bf16', gpu) == torch.bfloat16
    assert resolve_amp('none', gpu) is None


@pytest.mark.skipif(HAS_CUDA, reason='checks the CPU fallbacks')
def test_cpu_fallbacks():
    with pytest.warns(RuntimeWarning, match="no GPU for backend 'torch'"):
        assert resolve_device('auto', 'torch') == 'cpu'
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # training and evaluation choose the CPU quietly
        assert resolve_device('auto', 'torch', warn=False) == 'cpu'
        assert setup_runtime('auto', 'auto').device == torch.device('cpu')
    for device in ('cuda', 'cuda:0'):
        with pytest.raises(RuntimeError, match=f"train.device: device '{device}' requested "
                                               'for backend .torch. but torch.cuda'):
            setup_runtime(device, 'auto')
    with pytest.warns(RuntimeWarning, match='fp16 requested on the CPU; using fp32'):
        assert resolve_precision('fp16', 'cpu') == 'fp32'
    with pytest.raises(ValueError, match="precision must be one of .* got 'int8'"):
        resolve_precision('int8', 'cpu')
