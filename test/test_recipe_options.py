"""Training options the authors' recipes need: lr multiplier parts, OHEM counting all pixels,
labels at 1/8, frozen BatchNorm, the small-BatchNorm warning, joined splits, missing weights."""
import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bisenet_core.model import bisenet
from bisenet_core.train.batchnorm import (batchnorm_batch, freeze_batchnorm, set_train_mode,
                                          small_batchnorm_warning)
from bisenet_core.train.config import ConfigError, load_config
from bisenet_core.train.data import open_dataset, prepare_synthetic
from bisenet_core.train.loss import OhemCrossEntropy, bisenet_loss, downsample_labels
from bisenet_core.train.optim import build_optimizer
from test_train_loop import CPU, tiny_config  # noqa: I100 (test/ is on sys.path)
from training import train as train_cli
from training.train import train


def test_torchseg_xception39_lr_groups():
    """TorchSeg X39 train.py: heads and ffm at 10x, everything else at the base lr."""
    with torch.device('meta'):
        model = bisenet(19, 'xception39', 'torchseg')
    opt = build_optimizer(model, lr=0.01, momentum=0.9, weight_decay=5e-4,
                          head_lr_multiplier=10, head_lr_parts=['ffm', 'heads'])
    counts = {}
    for group in opt.param_groups:
        n = sum(p.numel() for p in group['params'])
        counts[round(group['lr'], 6)] = counts.get(round(group['lr'], 6), 0) + n
    # By hand (test_architecture.py): FFM 197,120; main head 148,819; aux heads 150,163 each.
    # All parameters with the aux heads: 1,842,289.
    heads_and_ffm = 197_120 + 148_819 + 2 * 150_163
    assert counts == {0.1: heads_and_ffm, 0.01: 1_842_289 - heads_and_ffm}
    # ResNet scheme (all four parts): only the backbone stays at the base lr.
    opt = build_optimizer(model, 0.01, 0.9, 5e-4, 10, ['spatial_path', 'context', 'ffm', 'heads'])
    base = sum(p.numel() for g in opt.param_groups if g['lr'] == 0.01 for p in g['params'])
    assert base == 299_448  # the TorchSeg Xception39 backbone, by hand


def test_head_lr_parts_are_checked():
    with pytest.raises(ConfigError, match='train.head_lr_parts'):
        load_config(None, ['train.head_lr_parts=[backbone]'])
    with pytest.raises(ConfigError, match='train.head_lr_parts'):
        load_config(None, ['train.head_lr_parts=[ffm, ffm]'])
    with pytest.raises(ValueError, match='unknown head_lr_parts'):
        build_optimizer(bisenet(3), 0.01, 0.9, 0.0, 10, ['decoder'])


def _logits_with_true_prob(probs: torch.Tensor, num_classes: int = 4) -> torch.Tensor:
    p = probs.clamp(1e-6, 1 - 1e-6)
    rest = (1 - p) / (num_classes - 1)
    return torch.stack([p.log()] + [rest.log()] * (num_classes - 1)).view(1, num_classes, 1, -1)


def test_ohem_min_kept_counts_all_pixels_like_torchseg():
    # 16 labelled pixels, all easy (p = 0.90 .. 0.99), and 48 void pixels.
    probs = torch.linspace(0.90, 0.99, 16)
    logits = _logits_with_true_prob(torch.cat([probs, torch.full((48,), 0.5)]))
    labels = torch.zeros(1, 1, 64, dtype=torch.long)
    labels[..., 16:] = 255
    # 'valid': 16 / 16 = 1 hardest pixel; 'all' (TorchSeg): 64 / 16 = 4 hardest pixels.
    valid = OhemCrossEntropy(0.7, 1 / 16, min_kept_of='valid')(logits, labels)
    every = OhemCrossEntropy(0.7, 1 / 16, min_kept_of='all')(logits, labels)
    assert valid.item() == pytest.approx(-math.log(0.90), rel=1e-4)
    assert every.item() == pytest.approx(-np.log(probs[:4].numpy()).mean(), rel=1e-4)
    # min_kept above the labelled count: every labelled pixel counts (64 / 4 = 16 > ... all 16).
    all_kept = OhemCrossEntropy(0.7, 1 / 2, min_kept_of='all')(logits, labels)
    assert all_kept.item() == pytest.approx(-np.log(probs.numpy()).mean(), rel=1e-4)
    with pytest.raises(ValueError, match='min_kept_of'):
        OhemCrossEntropy(min_kept_of='some')


def test_labels_downsampled_as_cv2_nearest_and_loss_at_1_8():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, (2, 32, 48)).astype(np.uint8)
    labels[0, :8, :8] = 255
    ours = downsample_labels(torch.from_numpy(labels).long(), 8).numpy()
    # TorchSeg's dataloader: cv2.resize(gt, (W // 8, H // 8), interpolation=INTER_NEAREST).
    ref = np.stack([cv2.resize(lbl, (6, 4), interpolation=cv2.INTER_NEAREST) for lbl in labels])
    np.testing.assert_array_equal(ours, ref)
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 4, 6)
    aux = (torch.randn(2, 5, 4, 6), torch.randn(2, 5, 2, 3))
    plain = OhemCrossEntropy(thresh=1.0, min_kept_fraction=0.0)  # every labelled pixel
    _, parts = bisenet_loss(logits, aux, torch.from_numpy(labels).long(), plain, 1.0, 8)
    expected = F.cross_entropy(logits, torch.from_numpy(ref).long(), ignore_index=255)
    assert parts['loss_principal'] == pytest.approx(expected.item(), rel=1e-5)
    aux1 = F.interpolate(aux[1], size=(4, 6), mode='bilinear', align_corners=False)
    assert parts['loss_aux1'] == pytest.approx(
        F.cross_entropy(aux1, torch.from_numpy(ref).long(), ignore_index=255).item(), rel=1e-5)
    with pytest.raises(ConfigError, match='train.label_downsample'):
        load_config(None, ['train.label_downsample=7', 'data.crop_size=[64, 64]'])


@pytest.fixture(scope='module')
def drive_root(tmp_path_factory):
    """The tiny synthetic drives, generated once for this module."""
    root = tmp_path_factory.mktemp('synthetic')
    prepare_synthetic(tiny_config(root, root / 'unused'))
    return root


def _bn_state(model):
    return {name: (m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(),
                   m.weight.detach().clone())
            for name, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}


@pytest.mark.parametrize('freeze', [True, False])
def test_frozen_batchnorm_keeps_running_statistics_after_a_step(freeze):
    torch.manual_seed(0)
    model = set_train_mode(bisenet(3, 'xception39'), freeze_bn=freeze)
    before = _bn_state(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = model(torch.randn(2, 3, 64, 64) * 3 + 1)
    (out.logits.square().mean() + sum(a.square().mean() for a in out.aux)).backward()
    opt.step()
    after = _bn_state(model)
    stats_same = [torch.equal(b[0], a[0]) and torch.equal(b[1], a[1]) and torch.equal(b[2], a[2])
                  for b, a in zip(before.values(), after.values())]
    weights_moved = [not torch.equal(b[3], a[3]) for b, a in zip(before.values(), after.values())]
    assert all(stats_same) if freeze else not any(stats_same)
    assert any(weights_moved)  # the affine weights train either way
    assert model.training and freeze_batchnorm(model) == len(before)


def test_training_with_freeze_bn_keeps_statistics_through_validation(drive_root, tmp_path):
    """Validation gives every module its own mode back: frozen BatchNorm stays frozen."""
    config = tiny_config(drive_root, tmp_path / 'run', 'train.freeze_bn=true', 'train.iterations=3',
                         'train.eval_interval=1', 'train.warmup_iters=0')
    result = train(config, CPU, progress=False)
    for name, m in result['model'].named_modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # still the fresh-initialisation statistics
            assert torch.all(m.running_mean == 0) and torch.all(m.running_var == 1), name
            assert not m.training, name


def test_small_batchnorm_batch_warns_once(drive_root, tmp_path, recwarn):
    assert batchnorm_batch(2, 8, synced=True) == 16 and batchnorm_batch(2, 8, synced=False) == 2
    text = small_batchnorm_warning(2, 1, False, 4)
    assert 'cover 2 image(s)' in text and 'grad_accum 4' in text and '\n' not in text
    assert 'x 4 processes joined by SyncBatchNorm' in small_batchnorm_warning(1, 4, True, 1)
    root = drive_root
    train(tiny_config(root, tmp_path / 'a', 'train.iterations=1', 'train.warmup_iters=0',
                      'train.grad_accum=2'), CPU, progress=False)
    messages = [str(w.message) for w in recwarn if 'BatchNorm statistics' in str(w.message)]
    assert len(messages) == 1 and 'cover 2 image(s)' in messages[0]
    recwarn.clear()
    train(tiny_config(root, tmp_path / 'b', 'train.iterations=1', 'train.warmup_iters=0',
                      'train.grad_accum=2', 'train.freeze_bn=true'), CPU, progress=False)
    assert not [w for w in recwarn if 'BatchNorm statistics' in str(w.message)]


def test_joined_splits(drive_root):
    train_set = open_dataset('camvid', drive_root, 'train', 11)
    val_set = open_dataset('camvid', drive_root, 'val', 11)
    joined = open_dataset('camvid', drive_root, 'train+val', 11)
    assert len(joined) == len(train_set) + len(val_set) == 12 + 2
    assert joined.num_classes == 11
    np.testing.assert_array_equal(joined[len(train_set)][1], val_set[0][1])
    with pytest.raises(FileNotFoundError, match='nosuch'):
        open_dataset('camvid', drive_root, 'train+nosuch', 11)


def test_missing_imagenet_weights_is_one_clear_error(tmp_path, capsys):
    config = tmp_path / 'c.yaml'
    config.write_text('model:\n  input_size: [96, 64]\n  pretrained: nowhere/resnet18.pth\n'
                      '  backbone: resnet18\ndata:\n  format: synthetic\n  crop_size: [64, 64]\n'
                      '  num_workers: 0\ntrain:\n  batch_size: 2\n  warmup_iters: 0\n')
    code = train_cli.main(['--config', str(config), '--output-dir', str(tmp_path / 'run'),
                           '--data-root', str(tmp_path / 'data'), '--iterations', '1'])
    err = capsys.readouterr().err
    assert code == 2 and err.count('\n') == 1
    assert 'nowhere/resnet18.pth' in err and "model.pretrained=''" in err
