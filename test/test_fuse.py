"""Conv+BN folding: logits within 1e-4, every executed BatchNorm gone, unsafe layouts refused."""
import pytest
import torch
from torch import nn

from bisenet_core.model import bisenet
from bisenet_core.model.fuse import FoldError, conv_bn_pairs, fold_conv_bn


def _with_real_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fresh BatchNorms are identities (mean 0, var 1, weight 1, bias 0): a fold that forgot a
    term would still pass. Give every one statistics and affine parameters far from that."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.1)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=generator) - 0.5)
            module.eps = 1e-3  # a value that matters next to the smallest variances
    return model


@pytest.mark.parametrize('backbone', ['xception39', 'resnet18'])
def test_folded_bisenet_gives_the_same_logits(backbone):
    torch.manual_seed(0)
    model = _with_real_statistics(bisenet(7, backbone).eval())
    x = torch.randn(1, 3, 100, 131)
    with torch.no_grad():
        before = model(x).logits
    executed = len(conv_bn_pairs(model, torch.randn(1, 3, 64, 64)))
    folded = fold_conv_bn(model, torch.randn(1, 3, 64, 64))
    assert folded == executed > 30
    left = [name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    # Only the training-only auxiliary heads (never run in eval) keep theirs.
    assert left and all(name.startswith('aux_head') for name in left)
    with torch.no_grad():
        after = model(x).logits
    assert (after - before).abs().max() <= 1e-4 * before.abs().max()


def test_folding_needs_eval_mode():
    with pytest.raises(ValueError, match='eval'):
        fold_conv_bn(bisenet(3).train(), torch.randn(1, 3, 64, 64))


class _SharedOutput(nn.Module):
    """A conv whose output feeds a BatchNorm and a residual: folding it would be wrong."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.conv2 = nn.Conv2d(3, 4, 1)
        self.bn2 = nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.conv(x)
        return self.bn2(self.conv2(self.bn(y) + y))


def test_a_conv_output_used_twice_is_refused_and_left_as_it_was():
    torch.manual_seed(0)
    model = _with_real_statistics(_SharedOutput().eval(), seed=3)
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        before = model(x)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(FoldError, match='left unfolded'):
        fold_conv_bn(model, x)
    assert isinstance(model.bn, nn.BatchNorm2d) and isinstance(model.bn2, nn.BatchNorm2d)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, weights[key], rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=0, atol=0)


def test_batchnorm_without_running_statistics_is_not_folded():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False))
    assert fold_conv_bn(model.eval(), torch.randn(2, 3, 8, 8)) == 0
    assert isinstance(model[1], nn.BatchNorm2d)


def test_a_convolution_with_its_own_bias_keeps_it_when_folded():
    """1x1 conv w=2, b=3, then BatchNorm mean 1, var 3, eps 1, gamma 4, beta 5: scale
    4 / sqrt(3 + 1) = 2, so the folded conv is w = 2 * 2 = 4, b = (3 - 1) * 2 + 5 = 9;
    x = 1 gives (2 + 3 - 1) * 2 + 5 = 13 before and 4 + 9 = 13 after."""
    conv = nn.Conv2d(1, 1, 1, bias=True)
    bn = nn.BatchNorm2d(1, eps=1.0)
    with torch.no_grad():
        conv.weight.fill_(2.0)
        conv.bias.fill_(3.0)
        bn.running_mean.fill_(1.0)
        bn.running_var.fill_(3.0)
        bn.weight.fill_(4.0)
        bn.bias.fill_(5.0)
    model = nn.Sequential(conv, bn).eval()
    assert fold_conv_bn(model, torch.ones(1, 1, 2, 2)) == 1
    assert isinstance(model[1], nn.Identity)
    assert model[0].weight.item() == 4.0 and model[0].bias.item() == 9.0
    assert (model(torch.ones(1, 1, 2, 2)) == 13.0).all()
