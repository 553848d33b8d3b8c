"""The two network layouts against numbers worked out by hand from the authors' TorchSeg code.

Source: github.com/ycszen/TorchSeg (now yu-changqian/TorchSeg) at commit 99ab13df,
model/bisenet/cityscapes.bisenet.{X39,R18}/network.py, cityscapes.bisenet.R101/network.py,
furnace/seg_opr/seg_oprs.py (ConvBnRelu, AttentionRefinement, FeatureFusion) and
furnace/base_model/{xception,resnet}.py. Counts for 19 classes (Cityscapes). A conv has
k*k*in*out weights (/in for depthwise), a BatchNorm 2*channels (weight, bias), a
classifier 1x1 conv in*C + C (TorchSeg's BiSeNetHead conv_1x1 has a bias).
"""
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bisenet_core.model import bisenet
from bisenet_core.modelfile import ModelFileError, load_model, save_model
from bisenet_core.profile import count_params
from bisenet_core.spec import ARCHITECTURES, ModelSpec, spec_for_dataset
from bisenet_core.train.config import config_from_dict, load_config

PRESETS = Path(__file__).resolve().parents[1] / 'config' / 'train'

C = 19


def meta_model(backbone: str, architecture: str):
    with torch.device('meta'):  # parameters are counted, never initialised
        return bisenet(C, backbone, architecture)


def params(module) -> int:
    return sum(p.numel() for p in module.parameters())


# TorchSeg xception39 (no BN after the depthwise conv; SeparableConvBnRelu = dw 3x3 conv +
# pointwise conv + BN). Sep(i, o) = 9i + i*o + 2o. Block(i, m) = Sep(i, m) + Sep(m, m) +
# Sep(m, 4m) [+ proj Sep(i, 4m) on the first, stride-2 block of a stage].
def _sep(i, o):
    return 9 * i + i * o + 2 * o


def _block(i, m, proj=False):
    return _sep(i, m) + _sep(m, m) + _sep(m, 4 * m) + (_sep(i, 4 * m) if proj else 0)


# Stem ConvBnRelu(3, 8, 3): 216 + 16. Stages [4, 8, 4] blocks of width [16, 32, 64].
X39_BACKBONE = (216 + 16 + _block(8, 16, True) + 3 * _block(64, 16)
                + _block(64, 32, True) + 7 * _block(128, 32)
                + _block(128, 64, True) + 3 * _block(256, 64))
# SpatialPath(3, 128): 7x7 3->64, 3x3 64->64, 3x3 64->64, 1x1 64->128, each + BN.
SPATIAL = (49 * 3 * 64 + 128) + 2 * (9 * 64 * 64 + 128) + (64 * 128 + 256)
# AttentionRefinement(i, 128): 3x3 i->128 + BN, then 1x1 128->128 + BN (no ReLU).
ARM = {256: 9 * 256 * 128 + 256 + 128 * 128 + 256, 128: 9 * 128 * 128 + 256 + 128 * 128 + 256,
       512: 9 * 512 * 128 + 256 + 128 * 128 + 256, 2048: 9 * 2048 * 128 + 256 + 128 * 128 + 256,
       1024: 9 * 1024 * 128 + 256 + 128 * 128 + 256}
REFINE = 9 * 128 * 128 + 256                              # ConvBnRelu(128, 128, 3)
FFM = (256 * 256 + 512) + 2 * 256 * 256                   # 1x1 + BN, two bias-free 1x1 convs


def head(in_channels, mid):                               # BiSeNetHead: 3x3 + BN, 1x1 + bias
    return 9 * in_channels * mid + 2 * mid + mid * C + C


def test_hand_counts_are_the_issue_figures():
    # The review (issue 14) quotes TorchSeg X39 = 1.541 M without the aux heads.
    assert X39_BACKBONE == 299_448 and SPATIAL == 91_968
    assert X39_BACKBONE + SPATIAL + (256 * 128 + 256) + ARM[256] + ARM[128] + 2 * REFINE \
        + FFM + head(256, 64) == 1_541_963


@pytest.mark.parametrize('backbone, backbone_params, channels, heads', [
    # resnet18: torchvision's 11,689,512 minus the 513,000-parameter fc (TorchSeg resnet18,
    # deep_stem=False, is the same network). Heads: main 64, aux 256 (R18 network.py).
    ('xception39', X39_BACKBONE, (128, 256), (64, 128)),
    ('resnet18', 11_689_512 - 513_000, (256, 512), (64, 256)),
    # resnet101 deep stem (R101 network.py: deep_stem=True, stem_width=64): torchvision's
    # 44,549,160 - fc 2,049,000 - 7x7 conv 9,408 - bn1 128, + stem 3x3 convs 3->64, 64->64,
    # 64->128 with BN(64) x 2 + bn1 BN(128), + layer1.0 conv1 and downsample reading 128
    # instead of 64 channels (64*64 and 64*256 more). Heads: 256 for all three.
    ('resnet101_deepstem',
     44_549_160 - 2_049_000 - 9_408 - 128
     + (27 * 64 + 128 + 9 * 64 * 64 + 128 + 9 * 64 * 128 + 256) + 64 * 64 + 64 * 256,
     (1024, 2048), (256, 256)),
])
def test_torchseg_parameter_counts_match_the_authors_network(backbone, backbone_params, channels,
                                                             heads):
    model = meta_model(backbone, 'torchseg')
    cp = model.context_path
    ch16, ch32 = channels
    expected = {
        'backbone': (cp.backbone, backbone_params),
        'spatial_path': (model.spatial_path, SPATIAL),
        'global_context': (cp.global_context, ch32 * 128 + 256),
        'arm32': (cp.arm32, ARM[ch32]), 'arm16': (cp.arm16, ARM[ch16]),
        'refine32': (cp.refine32, REFINE), 'refine16': (cp.refine16, REFINE),
        'ffm': (model.ffm, FFM), 'head': (model.head, head(256, heads[0])),
        'aux_head16': (model.aux_head16, head(128, heads[1])),
        'aux_head32': (model.aux_head32, head(128, heads[1])),
    }
    for name, (module, count) in expected.items():
        assert params(module) == count, name
    inference = sum(c for n, (_, c) in expected.items() if not n.startswith('aux'))
    assert count_params(model) == inference
    assert count_params(model, aux=True) == sum(c for _, c in expected.values())


def test_bisenet_ros_v1_differs_from_torchseg_by_the_known_parts():
    torchseg, v1 = meta_model('xception39', 'torchseg'), meta_model('xception39', 'bisenet-ros-v1')
    # BN after each depthwise conv: 2 x the input channels of every separable conv
    # (stage sums 336 + 1536 + 1536 = 3408 channels).
    assert params(v1.context_path.backbone) - params(torchseg.context_path.backbone) == 6_816
    # Three-layer Spatial Path: 3x3 64->128 + BN instead of 3x3 64->64 + BN and 1x1 64->128 + BN.
    assert params(v1.spatial_path) - params(torchseg.spatial_path) == \
        (9 * 64 * 128 + 256) - (9 * 64 * 64 + 128) - (64 * 128 + 256) == 28_544
    assert params(v1.ffm) - params(torchseg.ffm) == 2 * 256  # attention conv biases
    assert count_params(v1) == 1_541_963 + 6_816 + 28_544 + 512 == 1_577_835
    assert params(v1.aux_head16) == head(128, 256)


def _capture(model, names):
    """Inputs and outputs of the named context-path submodules in one forward pass."""
    seen = {}
    hooks = [getattr(model.context_path, n).register_forward_hook(
        lambda m, i, o, n=n: seen.update({n: (i[0].detach(), o.detach())})) for n in names]
    return seen, hooks


@pytest.mark.parametrize('architecture, refine_strides, aux_strides', [
    ('torchseg', (16, 8), (8, 16)),          # TorchSeg: upsample, then refine at 1/16 and 1/8
    ('bisenet-ros-v1', (32, 16), (16, 32)),  # refine at 1/32 and 1/16, then upsample
])
def test_context_path_order_feature_shapes(architecture, refine_strides, aux_strides):
    torch.manual_seed(0)
    model = bisenet(5, 'xception39', architecture).train()
    seen, hooks = _capture(model, ['refine32', 'refine16', 'arm32', 'arm16', 'global_context'])
    height, width = 128, 256
    out = model(torch.randn(2, 3, height, width))
    for hook in hooks:
        hook.remove()
    for name, stride in zip(('refine32', 'refine16'), refine_strides):
        assert seen[name][1].shape == (2, 128, height // stride, width // stride), name
    assert [tuple(a.shape) for a in out.aux] == [(2, 5, height // s, width // s)
                                                 for s in aux_strides]
    assert out.logits.shape == (2, 5, height // 8, width // 8)
    branch32 = seen['arm32'][1] + seen['global_context'][1]
    if architecture == 'torchseg':
        # network.py forward: fm = arm(fm) + last_fm; interpolate(align_corners=True); refine.
        up32 = F.interpolate(branch32, size=(height // 16, width // 16), mode='bilinear',
                             align_corners=True)
        torch.testing.assert_close(seen['refine32'][0], up32)
        up16 = F.interpolate(seen['arm16'][1] + seen['refine32'][1],
                             size=(height // 8, width // 8), mode='bilinear', align_corners=True)
        torch.testing.assert_close(seen['refine16'][0], up16)
    else:
        torch.testing.assert_close(seen['refine32'][0], branch32)


def test_deep_stem_uses_torchsegs_parameter_names():
    backbone = meta_model('resnet101_deepstem', 'torchseg').context_path.backbone
    shapes = {k: tuple(v.shape) for k, v in backbone.state_dict().items()}
    # furnace/base_model/resnet.py: conv1 = Sequential(conv, BN, ReLU, conv, BN, ReLU, conv).
    assert shapes['conv1.0.weight'] == (64, 3, 3, 3)
    assert shapes['conv1.3.weight'] == (64, 64, 3, 3)
    assert shapes['conv1.6.weight'] == (128, 64, 3, 3)
    assert shapes['bn1.weight'] == (128,)
    assert shapes['layer1.0.conv1.weight'] == (64, 128, 1, 1)
    assert 'conv1.weight' not in shapes


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown architecture 'fast'"):
        bisenet(3, 'xception39', 'fast')
    with pytest.raises(ValueError, match='unknown architecture'):
        spec_for_dataset('camvid', architecture='fast')
    assert set(ARCHITECTURES) == {'torchseg', 'bisenet-ros-v1', 'coincheung'}


def test_specs_without_the_field_are_the_first_layout_new_ones_torchseg():
    spec = spec_for_dataset('camvid')
    assert spec.architecture == 'torchseg'
    old = spec.to_dict()
    del old['architecture']
    assert ModelSpec.from_dict(old).architecture == 'bisenet-ros-v1'
    assert ModelSpec.from_dict(spec.to_dict()) == spec


def test_model_files_record_and_rebuild_their_layout(tmp_path):
    torch.manual_seed(0)
    for architecture in ARCHITECTURES:
        spec = spec_for_dataset('camvid', input_size=(64, 64), architecture=architecture)
        path = tmp_path / f'{architecture}.pt'
        save_model(path, bisenet(spec.num_classes, 'xception39', architecture).eval(), spec)
        model, loaded = load_model(path)
        assert loaded.architecture == architecture
        fresh = bisenet(11, 'xception39', architecture)
        assert type(model.context_path) is type(fresh.context_path)
    # A v1 file whose spec claims 'torchseg' does not fit: one clear line.
    blob = torch.load(tmp_path / 'bisenet-ros-v1.pt', weights_only=True)
    blob['spec']['architecture'] = 'torchseg'
    torch.save(blob, tmp_path / 'mislabelled.pt')
    with pytest.raises(ModelFileError, match=r'\(torchseg\)') as info:
        load_model(tmp_path / 'mislabelled.pt')
    assert '\n' not in str(info.value)


def test_configs_default_to_torchseg_and_old_checkpoints_to_v1():
    config = load_config(None, [])
    assert config.model.architecture == 'torchseg'
    assert config.model_spec().architecture == 'torchseg'
    saved = config.to_dict()
    del saved['model']['architecture']  # a checkpoint written before the field
    assert config_from_dict(saved).model.architecture == 'bisenet-ros-v1'


def test_torchseg_layout_initialises_like_torchseg():
    """TorchSeg (network.py + furnace/utils/init_func.py): outside the backbone Kaiming-normal
    with fan_in, conv biases left at PyTorch's default, BatchNorm 1/0; the backbone keeps
    PyTorch's default, uniform within +-1/sqrt(fan_in) (std 1/sqrt(3 fan_in))."""
    torch.manual_seed(0)
    model = bisenet(3, 'xception39', 'torchseg')
    head = model.head.conv.conv                         # 3x3, 256 -> 64: fan_in 2304
    assert head.weight.std().item() == pytest.approx(math.sqrt(2 / 2304), rel=0.05)
    pointwise = model.context_path.backbone.layer3[1].residual[0].pointwise.conv  # 256 -> 64
    assert pointwise.weight.abs().max().item() <= 1 / 16    # 1/sqrt(256)
    assert pointwise.weight.std().item() == pytest.approx(1 / math.sqrt(3 * 256), rel=0.05)
    bias = model.head.classifier.bias                   # 1x1 from 64: bound 1/8
    assert bias.abs().max().item() <= 1 / 8 and (bias != 0).all()
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            assert (m.weight == 1).all() and (m.bias == 0).all(), name


def test_r18_speed_preset_has_torchsegs_128_wide_auxiliary_heads(tmp_path):
    """TorchSeg R18.speed network.py: auxiliary BiSeNetHead 128 wide; R18: 256; main head 64."""
    widths = {}
    for name in ('cityscapes_resnet18', 'cityscapes_resnet18_speed'):
        spec = load_config(PRESETS / f'{name}.yaml').model_spec()
        model = bisenet(spec.num_classes, spec.backbone, spec.architecture,
                        aux_head_channels=spec.aux_head_channels)
        widths[name] = (model.head.conv.conv.out_channels, model.aux_head16.conv.conv.out_channels,
                        model.aux_head32.conv.conv.out_channels)
    assert widths == {'cityscapes_resnet18': (64, 256, 256),
                      'cityscapes_resnet18_speed': (64, 128, 128)}
    # The width travels with the model file, which rebuilds the same network.
    save_model(tmp_path / 'speed.pt', model, spec)
    rebuilt, read = load_model(tmp_path / 'speed.pt')
    assert read.aux_head_channels == 128 and rebuilt.aux_head16.conv.conv.out_channels == 128
