"""Evaluation protocols: what each feeds the network and what it scores, against hand geometry.

TorchSeg's sliding_eval (furnace/engine/evaluator.py): windows of crop x crop with stride
ceil(crop x stride_rate), the last window flush with the border, scores summed; images no
larger than the crop padded to crop x crop, centred. Its .speed eval.py: the image resized to
1536x768 and the label nearest-resized to 1/8 of it.
"""
import json

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from bisenet_core.model import BiSeNetOutput
from bisenet_core.spec import spec_for_dataset
from bisenet_core.train.data import prepare_synthetic
from bisenet_core.train.evaluation import (check_protocol, predict_labels,
                                           predict_probabilities, sliding_window_scores)
from test_train_loop import tiny_config  # noqa: I100 (test/ is on sys.path)
from training import evaluate

SPEC = spec_for_dataset('camvid', input_size=(64, 32))


class Recorder(nn.Module):
    """Stands in for BiSeNet: records its inputs, predicts class `winner` everywhere."""

    def __init__(self, num_classes=11, winner=0):
        super().__init__()
        self.num_classes, self.winner, self.inputs = num_classes, winner, []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        h, w = -(-x.shape[-2] // 8), -(-x.shape[-1] // 8)
        logits = torch.zeros(x.shape[0], self.num_classes, h, w)
        logits[:, self.winner] = 20.0  # softmax ~ 1 for the winner
        return BiSeNetOutput(logits, ())


def test_sliding_windows_cover_the_image_as_torchseg():
    model = Recorder()
    x = torch.randn(1, 3, 64, 128)
    score = sliding_window_scores(model, x, crop=64, stride_rate=5 / 6)
    # stride = ceil(64 x 5/6) = 54; columns: ceil((128 - 64) / 54) + 1 = 3 windows starting at
    # x = 0, 54 and 128 - 64 = 64 (the last one flush with the border); one row.
    assert [tuple(i.shape) for i in model.inputs] == [(1, 3, 64, 64)] * 3
    for start, window in zip((0, 54, 64), model.inputs):
        torch.testing.assert_close(window, x[..., start:start + 64])
    # Scores are summed, not averaged: columns covered by 1, 2, 2, 1 windows.
    counts = np.array([1] * 54 + [2] * 10 + [2] * 54 + [1] * 10, np.float32)
    np.testing.assert_allclose(score[0].numpy(), np.tile(counts, (64, 1)), atol=1e-6)
    assert score.shape == (11, 64, 128)


class LeftRight(nn.Module):
    """Class 0 on the left half of whatever it is given, class 1 on the right half."""

    def forward(self, x):
        w = -(-x.shape[-1] // 8)
        logits = torch.zeros(x.shape[0], 2, -(-x.shape[-2] // 8), w)
        logits[:, 0, :, :w // 2] = 20.0
        logits[:, 1, :, w // 2:] = 20.0
        return BiSeNetOutput(logits, ())


def test_flip_adds_the_mirrored_prediction_flipped_back():
    # The flipped input again gets class 0 on its left; flipped back, that is the right half.
    # So with two classes each class scores p(x) + p(mirror x) = 1 at every pixel; without
    # the flip back it would be 2 on one half and 0 on the other.
    image = np.random.default_rng(0).integers(0, 256, (32, 64, 3), np.uint8)
    probs = predict_probabilities(LeftRight(), image, SPEC, torch.device('cpu'), flip=True)
    np.testing.assert_allclose(probs.numpy(), np.ones((2, 32, 64)), atol=1e-5)
    score = sliding_window_scores(LeftRight(), torch.randn(1, 3, 64, 64), crop=64, flip=True)
    np.testing.assert_allclose(score.numpy(), np.ones((2, 64, 64)), atol=1e-5)


def test_small_images_are_padded_to_the_crop_centred():
    model = Recorder()
    x = torch.rand(1, 3, 40, 50) + 1  # nonzero everywhere
    score = sliding_window_scores(model, x, crop=64, stride_rate=5 / 6)
    (window,) = model.inputs
    # pad_image_to_shape: 24 rows -> 12 top, 12 bottom; 14 columns -> 7 left, 7 right.
    assert window.shape == (1, 3, 64, 64)
    torch.testing.assert_close(window[..., 12:52, 7:57], x)
    assert window[..., :12, :].abs().sum() == 0 and window[..., 52:, :].abs().sum() == 0
    assert window[..., :7].abs().sum() == 0 and window[..., 57:].abs().sum() == 0
    assert score.shape == (11, 40, 50)


def test_what_each_protocol_feeds_and_scores():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (100, 140, 3), dtype=np.uint8)
    label = rng.integers(0, 11, (100, 140)).astype(np.uint8)
    cases = {  # protocol, data format -> network input (h, w), scored label shape
        ('full', 'camvid'): ((32, 64), (100, 140)),             # spec.input_size, full res
        ('paper', 'camvid'): ((100, 140), (100, 140)),           # the image's own size
        ('paper', 'cityscapes'): ((768, 1536), (100, 140)),      # paper 4.3: 1536x768
        ('torchseg', 'camvid'): ((1024, 1024), (100, 140)),      # one padded window
        ('torchseg-speed', 'camvid'): ((32, 64), (4, 8)),        # scored at 1/8 of the input
    }
    for (protocol, data_format), (fed, scored) in cases.items():
        model = Recorder(winner=3)
        pred, truth = predict_labels(model, image, label, SPEC, torch.device('cpu'), protocol,
                                     data_format=data_format)
        assert tuple(model.inputs[0].shape[-2:]) == fed, protocol
        assert pred.shape == truth.shape == scored, protocol
        assert (pred == 3).all()
    # torchseg-speed's labels: TorchSeg eval.py cv2.resize(label, (w // 8, h // 8), NEAREST).
    _, truth = predict_labels(Recorder(), image, label, SPEC, torch.device('cpu'),
                              'torchseg-speed')
    np.testing.assert_array_equal(truth, cv2.resize(label, (8, 4),
                                                    interpolation=cv2.INTER_NEAREST))


def test_camvid_size_is_not_rounded_to_32():
    spec = spec_for_dataset('camvid', input_size=(960, 720))
    model = Recorder()
    image = np.zeros((720, 960, 3), np.uint8)
    predict_labels(model, image, np.zeros((720, 960), np.uint8), spec, torch.device('cpu'))
    assert tuple(model.inputs[0].shape[-2:]) == (720, 960)  # the model pads to 736 itself


def test_published_protocols_refuse_test_time_augmentation():
    check_protocol('full', (0.75, 1.0), True)
    check_protocol('torchseg', (0.5, 1.0), True)
    for protocol in ('paper', 'torchseg-speed'):
        with pytest.raises(ValueError, match='single scale'):
            check_protocol(protocol, (1.0,), True)
    with pytest.raises(ValueError, match='unknown protocol'):
        check_protocol('cityscapes', (1.0,), False)


@pytest.fixture(scope='module')
def drive(tmp_path_factory):
    root = tmp_path_factory.mktemp('drive')
    prepare_synthetic(tiny_config(root, root / 'unused'))
    return root


@pytest.mark.parametrize('protocol', ['torchseg', 'torchseg-speed', 'paper'])
def test_evaluate_cli_reports_its_protocol(drive, tiny_model_file, tmp_path, capsys, protocol):
    out = tmp_path / 'eval'
    code = evaluate.main(['--model', str(tiny_model_file), '--data', str(drive), '--split',
                          'val', '--protocol', protocol, '--out', str(out), '--no-progress',
                          '--device', 'cpu'])
    assert code == 0
    printed = capsys.readouterr().out
    assert f'protocol {protocol}' in printed
    results = json.loads((out / 'results.json').read_text())
    assert results['protocol'] == protocol
    assert results['resolution'].startswith('1/8' if protocol == 'torchseg-speed' else 'full')


def test_evaluate_cli_refuses_bad_protocol_combinations(drive, tiny_model_file, capsys):
    base = ['--model', str(tiny_model_file), '--data', str(drive), '--no-progress']
    assert evaluate.main(base + ['--protocol', 'paper', '--flip']) == 2
    assert 'single scale' in capsys.readouterr().err
    assert evaluate.main(base + ['--protocol', 'torchseg', '--backend', 'torch']) == 2
    assert '--backend model' in capsys.readouterr().err
