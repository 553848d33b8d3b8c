"""Parameter and MAC counts against the paper's Table 4, and the profile command line."""
import pytest
import torch

from bisenet_core import profile
from bisenet_core.model import bisenet
from bisenet_core.profile import count_macs, count_params


def meta_model(backbone: str, num_classes: int = 19, architecture: str = 'torchseg'):
    with torch.device('meta'):  # counted, never computed
        return bisenet(num_classes, backbone, architecture)


@pytest.mark.parametrize('architecture', ['torchseg', 'bisenet-ros-v1'])
def test_xception39_macs_and_params_match_the_paper(architecture):
    model = meta_model('xception39', architecture=architecture)
    # Table 4: 2.9 GFLOPs at 640x360 (multiply-accumulates; unpadded 640x352 + one row of
    # 32 is what a 640x360 input costs, so compare the padded count against a 10 % band) ...
    assert 2.6e9 <= count_macs(model, 640, 360) <= 3.3e9
    # ... and "5.8M" parameters, which matches fp32 MiB: 5.8 MiB = 1.52M parameters.
    assert 1.35e6 <= count_params(model) <= 1.75e6
    # Table 1: the bare Xception39 has "1.2M" = 1.2 MiB = 0.31M parameters.
    assert 0.28e6 <= count_params(model.context_path.backbone) <= 0.34e6


def test_torchseg_order_costs_the_refinement_at_1_16_and_1_8():
    # Refining after upsampling runs the two 3x3 128->128 convs (147,456 MACs per pixel)
    # at 1/16 + 1/8 instead of 1/32 + 1/16; the Spatial Path's 3x3 64->64 + 1x1 64->128
    # instead of 3x3 64->128 saves (73,728 - 36,864 - 8,192) MACs per 1/8 pixel.
    w, h = 640, 384                                   # 640x360 after padding
    px8, px16, px32 = w * h // 64, w * h // 256, w * h // 1024
    refine = 147_456 * ((px16 + px8) - (px32 + px16))
    spatial = (73_728 - 36_864 - 8_192) * px8
    diff = count_macs(meta_model('xception39', architecture='torchseg'), w, h) \
        - count_macs(meta_model('xception39', architecture='bisenet-ros-v1'), w, h)
    assert diff == refine - spatial


def test_resnet18_macs_and_params_match_the_paper():
    model = meta_model('resnet18')
    assert 10.5e9 <= count_macs(model, 640, 360) <= 12.5e9  # Table 4: 10.8 GFLOPs
    assert 12.3e6 <= count_params(model) <= 13.4e6  # Table 4: "49.0M" = 49 MiB = 12.8M


def test_padding_counts_and_size_scaling():
    model = meta_model('xception39')
    # 360 rows are zero-padded to 384: the network does the same work for both.
    assert count_macs(model, 640, 360) == count_macs(model, 640, 384)
    # Convolution work grows with the (padded) area: 1280x736 is ~3.8x 640x384.
    ratio = count_macs(model, 1280, 720) / count_macs(model, 640, 360)
    assert ratio == pytest.approx(1280 * 736 / (640 * 384), rel=0.05)


def test_counts_on_a_real_model_equal_meta_and_restore_mode():
    torch.manual_seed(0)
    model = bisenet(19).train()
    macs = count_macs(model, 96, 64)
    assert model.training  # mode restored
    assert macs == count_macs(meta_model('xception39'), 96, 64) > 0


def test_aux_heads_counted_only_on_request():
    model = meta_model('xception39')
    aux = sum(p.numel() for n, p in model.named_parameters() if n.startswith('aux_head'))
    assert aux > 0
    assert count_params(model, aux=True) == count_params(model) + aux
    # More classes, more parameters in the heads.
    assert count_params(meta_model('xception39', 150)) > count_params(model)


def test_cli_prints_table(capsys):
    assert profile.main(['--backbones', 'xception39', 'resnet18', '--sizes', '640x360',
                         '--classes', '11']) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith('| ')]
    assert len(rows) == 8  # header, rule, three architectures x two backbones
    assert 'GMACs 640x360' in rows[0]
    cells = [[c.strip() for c in row.split('|')[1:-1]] for row in rows[2:]]
    assert [(c[0], c[1]) for c in cells] == [('torchseg', 'xception39'), ('torchseg', 'resnet18'),
                                             ('bisenet-ros-v1', 'xception39'),
                                             ('bisenet-ros-v1', 'resnet18'),
                                             ('coincheung', 'xception39'),
                                             ('coincheung', 'resnet18')]
    # X39 with 11 classes: 1,541,963 - 8 x 65 (main head classifier, 19 -> 11 classes).
    assert cells[0][2] == f'{(1_541_963 - 8 * 65) / 1e6:.3f}'
    assert 2.6 <= float(cells[0][-1]) <= 3.3 and 2.6 <= float(cells[2][-1]) <= 3.3
    assert '640x360->640x384' in out
    assert profile.main(['--architectures', 'torchseg', '--backbones', 'resnet18',
                         '--sizes', '64x64']) == 0
    assert len([r for r in capsys.readouterr().out.splitlines() if r.startswith('| ')]) == 3


@pytest.mark.parametrize('argv', [['--sizes', '640'], ['--sizes', '0x360'],
                                  ['--backbones', 'vgg16'], ['--classes', '0'],
                                  ['--architectures', 'fast']])
def test_cli_rejects_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as info:
        profile.main(argv)
    assert info.value.code == 2
    assert 'error' in capsys.readouterr().err
