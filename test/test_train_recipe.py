"""The recipe pieces: OHEM, warm-up + poly schedule, parameter groups, config validation."""
import math

import pytest
import torch

from bisenet_core.model import bisenet
from bisenet_core.model.architectures import layout
from bisenet_core.spec import ARCHITECTURES
from bisenet_core.train.config import ConfigError, load_config
from bisenet_core.train.loss import OhemCrossEntropy, bisenet_loss
from bisenet_core.train.optim import build_optimizer, param_groups
from bisenet_core.train.schedule import warmup_poly_factor, warmup_poly_scheduler


def _logits_with_true_prob(probs: torch.Tensor, num_classes: int = 4) -> torch.Tensor:
    """1 x C x 1 x P logits whose softmax gives class 0 probability `probs` per pixel."""
    p = probs.clamp(1e-6, 1 - 1e-6)
    rest = (1 - p) / (num_classes - 1)
    logits = torch.stack([p.log()] + [rest.log()] * (num_classes - 1))
    return logits.view(1, num_classes, 1, -1)


def test_ohem_keeps_pixels_below_threshold():
    probs = torch.tensor([0.1, 0.5, 0.69, 0.71, 0.9, 0.95, 0.99, 0.999] * 4)
    logits = _logits_with_true_prob(probs)
    labels = torch.zeros(1, 1, probs.numel(), dtype=torch.long)
    loss = OhemCrossEntropy(thresh=0.7, min_kept_fraction=1 / 16)(logits, labels)
    hard = probs[probs < 0.7]
    assert loss.item() == pytest.approx((-hard.log()).mean().item(), rel=1e-4)


def test_ohem_keeps_at_least_n_min_hardest_and_ignores_void():
    # 64 valid pixels, all easy (p >= 0.9); n_min = 64 / 16 = 4 hardest are kept.
    probs = torch.linspace(0.9, 0.99, 64)
    logits = _logits_with_true_prob(torch.cat([probs, torch.full((16,), 0.01)]))
    labels = torch.zeros(1, 1, 80, dtype=torch.long)
    labels[..., 64:] = 255  # very hard but ignored
    loss = OhemCrossEntropy(0.7, 1 / 16)(logits, labels)
    assert loss.item() == pytest.approx((-probs[:4].log()).mean().item(), rel=1e-4)
    # Without the minimum nothing is hard: the loss is a graph-connected zero.
    zero = OhemCrossEntropy(0.7, 0.0)(logits.requires_grad_(), labels)
    assert zero.item() == 0.0 and zero.requires_grad


def test_bisenet_loss_parts_are_the_losses_of_their_own_heads():
    """Constant logits per head, so every pixel's cross-entropy is known by hand (class 0 is
    right everywhere): principal softmax(0, 0) -> -ln 1/2 = 0.693147; aux0 at 1/32 (one
    cell) softmax(0, ln 3) -> -ln 1/4 = 1.386294; aux1 softmax(ln 2, 0) -> -ln 2/3 =
    0.405465. Total with alpha 0.5: 0.693147 + 0.5 * (1.386294 + 0.405465) = 1.589027."""
    labels = torch.zeros(2, 16, 24, dtype=torch.long)
    principal = torch.zeros(2, 2, 2, 3, requires_grad=True)
    aux = (torch.tensor([0.0, math.log(3)]).view(1, 2, 1, 1).repeat(2, 1, 1, 1),
           torch.tensor([math.log(2), 0.0]).view(1, 2, 1, 1).repeat(2, 1, 1, 1))
    total, parts = bisenet_loss(principal, aux, labels, torch.nn.CrossEntropyLoss(),
                                aux_weight=0.5)
    assert parts == pytest.approx({'loss_principal': 0.693147, 'loss_aux0': 1.386294,
                                   'loss_aux1': 0.405465}, abs=1e-6)
    assert total.item() == pytest.approx(1.589027, abs=1e-6)
    total.backward()  # the total is one graph through the principal head
    assert principal.grad is not None


def test_bisenet_loss_upsamples_each_head_to_the_labels():
    """Varying logits at 1/8, 1/16, 1/32: each part equals plain cross-entropy of that head's
    own logits upsampled by F.interpolate, computed here without the loss module."""
    torch.manual_seed(0)
    labels = torch.randint(0, 3, (2, 32, 48))
    logits = torch.randn(2, 3, 4, 6)
    aux = (torch.randn(2, 3, 2, 3), torch.randn(2, 3, 1, 2))
    _, parts = bisenet_loss(logits, aux, labels, torch.nn.CrossEntropyLoss(), aux_weight=1.0)
    for name, head in zip(('loss_principal', 'loss_aux0', 'loss_aux1'), (logits, *aux)):
        up = torch.nn.functional.interpolate(head, size=(32, 48), mode='bilinear',
                                             align_corners=False)
        expected = torch.nn.functional.cross_entropy(up, labels).item()
        assert parts[name] == pytest.approx(expected, rel=1e-5), name


def test_warmup_then_poly_values():
    total, warmup = 100, 10
    assert warmup_poly_factor(0, total, warmup, 0.1, 0.9) == pytest.approx(0.1)
    assert warmup_poly_factor(5, total, warmup, 0.1, 0.9) == pytest.approx(0.55)
    assert warmup_poly_factor(10, total, warmup, 0.1, 0.9) == pytest.approx(1.0)
    assert warmup_poly_factor(55, total, warmup, 0.1, 0.9) == pytest.approx(0.5 ** 0.9)
    assert warmup_poly_factor(100, total, warmup, 0.1, 0.9) == 0.0
    # No warm-up: the paper's (1 - iter/max_iter)^power.
    assert warmup_poly_factor(25, 100, 0, 0.1, 0.9) == pytest.approx(0.75 ** 0.9)


def test_scheduler_drives_every_group_keeping_ratios():
    model = bisenet(3)
    opt = build_optimizer(model, lr=0.02, momentum=0.9, weight_decay=1e-4,
                          head_lr_multiplier=10)
    sched = warmup_poly_scheduler(opt, total=20, warmup_iters=4, warmup_factor=0.25, power=0.9)
    lrs = {g['name']: g['lr'] for g in opt.param_groups}
    assert lrs['base'] == pytest.approx(0.005) and lrs['head'] == pytest.approx(0.05)
    for _ in range(12):
        opt.step()
        sched.step()
    factor = warmup_poly_factor(12, 20, 4, 0.25, 0.9)
    for g in opt.param_groups:
        base = 0.2 if g['name'].startswith('head') else 0.02
        assert g['lr'] == pytest.approx(base * factor)


def test_param_groups_no_decay_on_bn_and_bias_and_head_multiplier():
    model = bisenet(5)
    groups = {g['name']: g for g in param_groups(model, 0.1, 1e-4, head_lr_multiplier=10)}
    backbone = {id(p) for p in model.context_path.backbone.parameters()}
    bn_params = {id(p) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)
                 for p in m.parameters()}
    biases = {id(p) for n, p in model.named_parameters() if n.endswith('bias')}
    all_ids = [id(p) for g in groups.values() for p in g['params']]
    assert len(all_ids) == len(set(all_ids)) == len(list(model.parameters()))
    for name, g in groups.items():
        ids = {id(p) for p in g['params']}
        if name.endswith('no_decay'):
            assert g['weight_decay'] == 0.0
        else:
            assert g['weight_decay'] == 1e-4 and not ids & (bn_params | biases)
        assert (ids <= backbone) == name.startswith('base')
        assert g['lr'] == pytest.approx(1.0 if name.startswith('head') else 0.1)
    assert bn_params <= {id(p) for n in ('base_no_decay', 'head_no_decay')
                         for p in groups[n]['params']}


def test_config_overrides_and_types(tmp_path):
    path = tmp_path / 'c.yaml'
    path.write_text('# comment\nname: x\ntrain:\n  lr: 0.01  # why\n  iterations: 50\n'
                    '  warmup_iters: 5\ndata:\n  format: synthetic\n  crop_size: [64, 48]\n')
    config = load_config(path, ['train.lr=0.5', 'data.scales=[0.5, 1.5]',
                                'train.sync_bn=false', 'train.weight_decay=5e-4'])
    assert config.train.lr == 0.5 and config.train.weight_decay == 5e-4
    assert config.train.iterations == 50
    assert config.data.scales == [0.5, 1.5] and config.data.crop_size == (64, 48)
    assert config.train.sync_bn is False
    assert config.model_spec().dataset == 'synthetic-camvid'
    assert load_config(None, [], base=config.to_dict()) == config


@pytest.mark.parametrize('override, key', [
    ('train.lr=-1', 'train.lr'),
    ('train.lrr=0.1', 'train.lrr'),
    ('model.backbone=vgg', 'model.backbone'),
    ('model.input_size=[16, 96]', 'model.input_size'),
    ('train.iterations=ten', 'train.iterations'),
    ('train.grad_accum=3', 'train.grad_accum'),
    ('data.format=kitti', 'data.format'),
    ('train.amp_dtype=fp8', 'train.amp_dtype'),
    ('train.sync_bn=maybe', 'train.sync_bn'),
    ('data.scales=[0.5, -1]', 'data.scales'),
    ('data.flip=0.5', 'data.flip'),
    ('train.warmup_iters=90000', 'train.warmup_iters'),
])
def test_config_errors_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace('.', r'\.')) as info:
        load_config(None, [override])
    assert '\n' not in str(info.value)


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match='missing.yaml'):
        load_config(tmp_path / 'missing.yaml')
    bad = tmp_path / 'bad.yaml'
    bad.write_text('train: [1, 2\n')
    with pytest.raises(ConfigError, match='not valid YAML'):
        load_config(bad)
    assert math.isclose(load_config().train.ohem_min_fraction, 1 / 16)


def test_loss_upsamples_as_the_layouts_authors_train():
    """Logits of class 1 minus class 0 = (0, 3) on a 1 x 2 grid, upsampled to 1 x 4, labels
    all 0, so each pixel's loss is ln(1 + e^d). align_corners=True (TorchSeg) samples
    d = 0, 1, 2, 3: mean 1.795481; False samples 0, 0.75, 2.25, 3: mean 1.807203."""
    logits = torch.tensor([[0.0, 0.0], [0.0, 3.0]]).view(1, 2, 1, 2)
    labels = torch.zeros(1, 1, 4, dtype=torch.long)
    ce = torch.nn.CrossEntropyLoss()
    _, corners = bisenet_loss(logits, (), labels, ce, align_corners=True)
    _, default = bisenet_loss(logits, (), labels, ce)
    assert corners['loss_principal'] == pytest.approx(1.795481, abs=1e-6)
    assert default['loss_principal'] == pytest.approx(1.807203, abs=1e-6)
    # Training takes the flag from the layout: TorchSeg's True; the shipped model's
    # 'bisenet-ros-v1' and CoinCheung's (nn.Upsample, align_corners=False) False.
    assert {name: layout(name).loss_align_corners for name in ARCHITECTURES} == {
        'torchseg': True, 'bisenet-ros-v1': False, 'coincheung': False}
