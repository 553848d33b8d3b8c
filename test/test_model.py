"""BiSeNet model: output shapes, padding, training-only aux heads, modules, gradients, init."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bisenet_core.model import (AttentionRefinementModule, BiSeNetOutput, FeatureFusionModule,
                                bisenet)
from bisenet_core.model.resnet import resnet18, resnet101
from bisenet_core.model.xception39 import Xception39
from bisenet_core.spec import BACKBONES, OUTPUT_STRIDE


@pytest.fixture(scope='module')
def models():
    """One eval-mode model per backbone, built once (resnet101 is slow to initialise)."""
    torch.manual_seed(0)
    return {name: bisenet(4, name).eval() for name in BACKBONES}


def out_size(height, width, stride=OUTPUT_STRIDE):
    return math.ceil(height / stride), math.ceil(width / stride)


@pytest.mark.parametrize('backbone', BACKBONES)
def test_eval_output_shape_small_and_odd_sizes(models, backbone):
    sizes = [(64, 96), (33, 47), (100, 75), (31, 31)]
    if backbone.startswith('resnet101'):
        sizes = sizes[:1]
    for height, width in sizes:
        with torch.no_grad():
            out = models[backbone](torch.randn(2, 3, height, width))
        assert isinstance(out, BiSeNetOutput)
        assert out.logits.shape == (2, 4, *out_size(height, width)), (height, width)
        assert out.aux == ()


@pytest.mark.parametrize('backbone', ['xception39', 'resnet18'])
def test_output_shape_641x359(models, backbone):
    with torch.no_grad():
        out = models[backbone](torch.randn(1, 3, 359, 641))
    assert out.logits.shape == (1, 4, 45, 81)
    assert torch.isfinite(out.logits).all()


def test_output_shape_1920x1080_xception39(models):
    with torch.no_grad():
        out = models['xception39'](torch.randn(1, 3, 1080, 1920))
    assert out.logits.shape == (1, 4, 135, 240)


def test_padding_is_zeros_at_bottom_right(models):
    """A 60x90 image gives the same logits as the same image zero-padded to 64x96 by hand."""
    model = models['xception39']
    x = torch.randn(1, 3, 60, 90)
    with torch.no_grad():
        direct = model(x).logits
        padded = model(F.pad(x, (0, 6, 0, 4))).logits
    assert direct.shape == padded.shape == (1, 4, 8, 12)
    torch.testing.assert_close(direct, padded)


@pytest.mark.parametrize('architecture, aux_shapes', [
    ('torchseg', [(2, 5, 9, 13), (2, 5, 5, 7)]),         # ceil(/8), ceil(/16)
    ('bisenet-ros-v1', [(2, 5, 5, 7), (2, 5, 3, 4)]),    # ceil(/16), ceil(/32)
])
def test_aux_heads_only_in_training(architecture, aux_shapes):
    torch.manual_seed(0)
    model = bisenet(5, architecture=architecture).train()
    out = model(torch.randn(2, 3, 70, 100))
    assert out.logits.shape == (2, 5, 9, 13)
    assert [a.shape for a in out.aux] == aux_shapes
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 70, 100)).aux == ()


@pytest.mark.parametrize('architecture', ['torchseg', 'bisenet-ros-v1'])
def test_gradients_reach_all_three_heads_and_both_paths(architecture):
    torch.manual_seed(0)
    model = bisenet(3, architecture=architecture).train()
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    loss = out.logits.logsumexp(1).mean() + sum(a.logsumexp(1).mean() for a in out.aux)
    loss.backward()
    for part in (model.head, model.aux_head16, model.aux_head32, model.ffm,
                 model.spatial_path, model.context_path.backbone, model.context_path.arm16,
                 model.context_path.arm32, model.context_path.global_context,
                 model.context_path.refine16, model.context_path.refine32):
        for name, p in part.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_training_with_one_image_raises_clearly():
    model = bisenet(3).train()
    with pytest.raises(ValueError, match='batch of at least 2'):
        model(torch.randn(1, 3, 64, 64))


@pytest.mark.parametrize('bad', [torch.zeros(1, 3, 64, 64, dtype=torch.uint8),
                                 torch.zeros(3, 64, 64), torch.zeros(1, 4, 64, 64)])
def test_bad_input_raises_one_line(models, bad):
    with pytest.raises(ValueError, match='N x 3 x H x W') as info:
        models['xception39'](bad)
    assert '\n' not in str(info.value)


def test_builder_names_and_errors():
    assert type(bisenet(2, 'xception39').context_path.backbone) is Xception39
    assert type(bisenet(2, 'xception39', 'bisenet-ros-v1').context_path.backbone) is Xception39
    with pytest.raises(ValueError, match="unknown backbone 'resnet50'"):
        bisenet(2, 'resnet50')
    with pytest.raises(ValueError, match='num_classes'):
        bisenet(0)


def test_submodules_named_after_the_paper(models):
    names = dict(models['xception39'].named_children())
    assert set(names) == {'spatial_path', 'context_path', 'ffm', 'head', 'aux_head16',
                          'aux_head32'}
    context = dict(models['xception39'].context_path.named_children())
    assert {'backbone', 'arm16', 'arm32', 'global_context', 'refine16', 'refine32'} == set(context)


@pytest.mark.parametrize('architecture, strides, kernels, widths', [
    # TorchSeg SpatialPath: 7x7/2, 3x3/2, 3x3/2 to 64 channels, then a 1x1 conv to 128.
    ('torchseg', [2, 2, 2, 1], [7, 3, 3, 1], [64, 64, 64, 128]),
    ('bisenet-ros-v1', [2, 2, 2], [7, 3, 3], [64, 64, 128]),     # the paper's three layers
])
def test_spatial_path_is_three_stride2_layers_to_128_channels(architecture, strides, kernels,
                                                              widths):
    sp = bisenet(4, architecture=architecture).eval().spatial_path
    convs = [m for m in sp.modules() if isinstance(m, nn.Conv2d)]
    assert [c.stride[0] for c in convs] == strides
    assert [c.kernel_size[0] for c in convs] == kernels
    assert [c.out_channels for c in convs] == widths
    with torch.no_grad():
        assert sp(torch.randn(1, 3, 64, 96)).shape == (1, 128, 8, 12)


def test_arm_shapes_and_attention_in_0_1():
    torch.manual_seed(0)
    arm = AttentionRefinementModule(256, 128).eval()
    x = torch.randn(2, 256, 5, 7) * 10
    with torch.no_grad():
        feature = arm.conv(x)
        weights = arm.attention(feature)
        out = arm(x)
    assert out.shape == (2, 128, 5, 7)
    assert weights.shape == (2, 128, 1, 1)
    assert (weights > 0).all() and (weights < 1).all()
    torch.testing.assert_close(out, feature * weights)


def test_ffm_shapes_and_attention_in_0_1():
    torch.manual_seed(0)
    ffm = FeatureFusionModule(256, 256).eval()
    spatial, context = torch.randn(2, 128, 6, 8), torch.randn(2, 128, 6, 8)
    with torch.no_grad():
        fused = ffm.fuse(torch.cat([spatial, context], 1))
        weights = ffm.attention(fused)
        out = ffm(spatial, context)
    assert out.shape == (2, 256, 6, 8)
    assert weights.shape == (2, 256, 1, 1)
    assert (weights > 0).all() and (weights < 1).all()
    torch.testing.assert_close(out, fused * (1 + weights))


def test_xception39_layout():
    backbone = Xception39()
    stages = (backbone.layer1, backbone.layer2, backbone.layer3)
    assert [len(stage) for stage in stages] == [4, 8, 4]
    assert backbone.channels == (128, 256)
    assert backbone.stem.conv.out_channels == 8
    with torch.no_grad():
        feat16, feat32 = backbone.eval()(torch.randn(1, 3, 64, 128))
    assert feat16.shape == (1, 128, 4, 8) and feat32.shape == (1, 256, 2, 4)
    # First block of each stage: stride 2 with a projection shortcut; the others identity.
    for stage in (backbone.layer1, backbone.layer2, backbone.layer3):
        assert not isinstance(stage[0].shortcut, nn.Identity)
        assert all(isinstance(block.shortcut, nn.Identity) for block in stage[1:])


def test_resnet_keys_match_torchvision():
    r18 = resnet18().state_dict()
    for key in ('conv1.weight', 'bn1.running_mean', 'layer1.0.conv1.weight',
                'layer1.1.bn2.bias', 'layer2.0.downsample.0.weight',
                'layer2.0.downsample.1.running_var', 'layer4.1.conv2.weight'):
        assert key in r18, key
    assert not any(k.startswith('fc.') for k in r18)
    # torchvision's resnet18 / resnet101 have 11,689,512 / 44,549,160 parameters with the
    # 1000-class fc (513,000 / 2,049,000 of them).
    assert sum(p.numel() for p in resnet18().parameters()) == 11_689_512 - 513_000
    r101 = resnet101()
    assert sum(p.numel() for p in r101.parameters()) == 44_549_160 - 2_049_000
    assert 'layer3.22.conv3.weight' in r101.state_dict()
    assert r101.channels == (1024, 2048)


def test_init_kaiming_convs_and_unit_batchnorm():
    # This project's init ('bisenet-ros-v1'); 'torchseg' follows TorchSeg's (test_architecture).
    torch.manual_seed(0)
    model = bisenet(3, architecture='bisenet-ros-v1')
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            assert (m.weight == 1).all() and (m.bias == 0).all(), name
        if isinstance(m, nn.Conv2d) and m.bias is not None:
            assert (m.bias == 0).all(), name
    conv = model.head.conv.conv  # 3x3, 256 -> 64: fan_out = 64 * 9
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.1)


def test_onnx_export_dynamic_size(tmp_path, models):
    """The forward traces to ONNX (opset 17) with dynamic H, W and matches at another size."""
    ort = pytest.importorskip('onnxruntime')

    class Logits(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x).logits

    wrapper = Logits(models['xception39']).eval()
    path = tmp_path / 'x39.onnx'
    torch.onnx.export(wrapper, (torch.randn(1, 3, 64, 96),), str(path), opset_version=17,
                      dynamo=False, input_names=['image'], output_names=['logits'],
                      dynamic_axes={'image': {2: 'h', 3: 'w'}, 'logits': {2: 'oh', 3: 'ow'}})
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    x = torch.randn(1, 3, 70, 101)
    with torch.no_grad():
        expected = wrapper(x).numpy()
    got = session.run(None, {'image': x.numpy()})[0]
    assert got.shape == expected.shape == (1, 4, 9, 13)
    assert abs(got - expected).max() < 1e-3
