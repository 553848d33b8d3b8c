"""Each training preset against a table of the values its source gives, written out here.

Sources (read by hand, not from the presets): the authors' TorchSeg code,
github.com/ycszen/TorchSeg (now yu-changqian/TorchSeg) at commit 99ab13df,
model/bisenet/cityscapes.bisenet.{X39,R18,X39.speed}/config.py + train.py, R101 at 49aadb6f,
R18.speed/config.py at d0c3d71a:
    lr 1e-2, momentum 0.9, weight_decay 5e-4, batch_size 16, niters_per_epoch 1000,
    nepochs 140 (X39, X39.speed) / 80 (R18, R101, R18.speed), lr_power 0.9, PolyLR (no warm-up),
    train_scale_array [0.75, 1, 1.25, 1.5, 1.75, 2.0] ([0.5 .. 1.75] for X39.speed),
    image 1024x1024 (1536x768, gt_down_sampling 8 for .speed), pretrained_model None for X39,
    resnet18_v1 / resnet101_v1c (deep_stem=True) for R18 / R101, base_lr * 10 for heads and
    ffm (X39) or every part outside context_path (R18, R101), OHEM thresh 0.7 with
    min_kept = batch per GPU x H x W // 16 (all pixels).
and the paper (Yu et al., ECCV 2018): 4.1 batch 16, momentum 0.9, weight decay 1e-4, lr 2.5e-2,
poly 0.9, scales {0.75, 1.0, 1.5, 1.75, 2.0}; 4.3 CamVid trained on train+val at 960x720 and
tested on test, COCO-Stuff 640x640, "standard" ResNet18/101, ImageNet-pretrained backbones.
"""
import re
from pathlib import Path

import pytest

from bisenet_core.train.config import load_config

PRESET_DIR = Path(__file__).resolve().parents[1] / 'config' / 'train'
ALL_PARTS = {'spatial_path', 'context', 'ffm', 'heads'}

TORCHSEG = dict(architecture='torchseg', batch_size=16, lr=1e-2, momentum=0.9,
                weight_decay=5e-4, poly_power=0.9, warmup_iters=0, head_lr_multiplier=10.0,
                ohem=(0.7, 1 / 16, 'all'), aux_weight=1.0, flip=True, sync_bn=True)
TS_SCALES = [0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
PAPER = dict(architecture='torchseg', batch_size=16, lr=2.5e-2, momentum=0.9,
             weight_decay=1e-4, poly_power=0.9, warmup_iters=0, head_lr_multiplier=1.0,
             ohem=(0.7, 1 / 16, 'all'), aux_weight=1.0, flip=True, sync_bn=True,
             scales=[0.75, 1.0, 1.5, 1.75, 2.0], label_downsample=1, eval_protocol='paper')
R18_IMAGENET = 'resnet18-f37072fd.pth'   # torchvision's file name
EXPECTED = {
    'cityscapes_xception39': {
        **TORCHSEG, 'backbone': 'xception39', 'pretrained': '', 'iterations': 140_000,
        'crop_size': (1024, 1024), 'input_size': (2048, 1024), 'scales': TS_SCALES,
        'head_lr_parts': {'ffm', 'heads'}, 'label_downsample': 1, 'eval_protocol': 'torchseg',
        'splits': ('train', 'val')},
    'cityscapes_resnet18': {
        **TORCHSEG, 'backbone': 'resnet18', 'pretrained': R18_IMAGENET, 'iterations': 80_000,
        'crop_size': (1024, 1024), 'input_size': (2048, 1024), 'scales': TS_SCALES,
        'head_lr_parts': ALL_PARTS, 'label_downsample': 1, 'eval_protocol': 'torchseg',
        'splits': ('train', 'val')},
    'cityscapes_resnet101': {
        **TORCHSEG, 'backbone': 'resnet101_deepstem', 'pretrained': 'resnet101_v1c.pth',
        'iterations': 80_000, 'crop_size': (1024, 1024), 'input_size': (2048, 1024),
        'scales': TS_SCALES, 'head_lr_parts': ALL_PARTS, 'label_downsample': 1,
        'eval_protocol': 'torchseg', 'splits': ('train', 'val')},
    'cityscapes_xception39_speed': {
        **TORCHSEG, 'backbone': 'xception39', 'pretrained': '', 'iterations': 140_000,
        'crop_size': (1536, 768), 'input_size': (1536, 768),
        'scales': [0.5, 0.75, 1.0, 1.25, 1.5, 1.75], 'head_lr_parts': {'ffm', 'heads'},
        'label_downsample': 8, 'eval_protocol': 'torchseg-speed', 'splits': ('train', 'val')},
    'cityscapes_resnet18_speed': {
        **TORCHSEG, 'backbone': 'resnet18', 'pretrained': R18_IMAGENET, 'iterations': 80_000,
        'crop_size': (1536, 768), 'input_size': (1536, 768), 'scales': TS_SCALES,
        'head_lr_parts': ALL_PARTS, 'label_downsample': 8, 'eval_protocol': 'torchseg-speed',
        'splits': ('train', 'val')},
    # CamVid / COCO-Stuff: no TorchSeg recipe; the iteration counts are ours (CamVid: the
    # passes over the data TorchSeg makes on Cityscapes: 140k / 80k x 16 / 2975 = 753 / 430,
    # times 468 train+val images / 16 = 22,000 / 12,600; COCO-Stuff: 8 passes over 118k).
    'camvid_xception39': {
        **PAPER, 'backbone': 'xception39', 'pretrained': '', 'iterations': 22_000,
        'crop_size': (960, 720), 'input_size': (960, 720), 'splits': ('train+val', 'test')},
    'camvid_resnet18': {
        **PAPER, 'backbone': 'resnet18', 'pretrained': R18_IMAGENET, 'iterations': 12_600,
        'crop_size': (960, 720), 'input_size': (960, 720), 'splits': ('train+val', 'test')},
    'cocostuff_xception39': {
        **PAPER, 'backbone': 'xception39', 'pretrained': '', 'iterations': 60_000,
        'crop_size': (640, 640), 'input_size': (640, 640), 'splits': ('train', 'val')},
    'cocostuff_resnet18': {
        **PAPER, 'backbone': 'resnet18', 'pretrained': R18_IMAGENET, 'iterations': 60_000,
        'crop_size': (640, 640), 'input_size': (640, 640), 'splits': ('train', 'val')},
    'cocostuff_resnet101': {
        **PAPER, 'backbone': 'resnet101', 'pretrained': 'resnet101-63fe2227.pth',
        'iterations': 60_000, 'crop_size': (640, 640), 'input_size': (640, 640),
        'splits': ('train', 'val')},
}
# The CPU recipe of the shipped model (docs/training.md): ours, only the layout is checked.
SYNTHETIC = {'synthetic_xception39': 'bisenet-ros-v1', 'synthetic_resnet18': 'torchseg'}

# Keys whose line in the preset must carry a comment naming where the value comes from.
SOURCED = ('backbone', 'architecture', 'input_size', 'pretrained', 'train_split', 'val_split',
           'crop_size', 'scales', 'flip', 'batch_size', 'iterations', 'lr', 'momentum',
           'weight_decay', 'warmup_iters', 'poly_power', 'head_lr_multiplier', 'head_lr_parts',
           'ohem_thresh', 'ohem_min_fraction', 'ohem_min_fraction_of', 'label_downsample',
           'aux_weight', 'sync_bn', 'eval_protocol')
SOURCE_WORDS = re.compile(r'TorchSeg|paper|ours|unused')


def test_every_preset_is_in_the_table():
    assert {p.stem for p in PRESET_DIR.glob('*.yaml')} == set(EXPECTED) | set(SYNTHETIC)


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_preset_matches_its_source(name):
    config = load_config(PRESET_DIR / f'{name}.yaml')
    want = EXPECTED[name]
    m, d, t = config.model, config.data, config.train
    assert config.name == name and config.source
    assert (m.backbone, m.architecture) == (want['backbone'], want['architecture'])
    assert Path(m.pretrained).name == want['pretrained']
    assert (tuple(d.crop_size), tuple(m.input_size)) == (want['crop_size'], want['input_size'])
    assert d.scales == want['scales'] and d.flip is want['flip']
    assert (d.train_split, d.val_split) == want['splits']
    assert (t.batch_size, t.grad_accum, t.iterations) == (want['batch_size'], 1,
                                                          want['iterations'])
    assert (t.lr, t.momentum, t.weight_decay, t.poly_power, t.warmup_iters) == pytest.approx(
        (want['lr'], want['momentum'], want['weight_decay'], want['poly_power'],
         want['warmup_iters']))
    assert t.head_lr_multiplier == want['head_lr_multiplier']
    if want['head_lr_multiplier'] != 1:
        assert set(t.head_lr_parts) == want['head_lr_parts']
    assert (t.ohem_thresh, t.ohem_min_fraction, t.ohem_min_fraction_of) == want['ohem']
    assert (t.label_downsample, t.aux_weight, t.sync_bn) == (want['label_downsample'],
                                                             want['aux_weight'], want['sync_bn'])
    assert t.eval_protocol == want['eval_protocol']
    assert config.model_spec().architecture == want['architecture']


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_each_recipe_value_names_its_source(name):
    lines = (PRESET_DIR / f'{name}.yaml').read_text().splitlines()
    for key in SOURCED:
        line = next(line for line in lines if line.strip().startswith(f'{key}:'))
        assert '#' in line and SOURCE_WORDS.search(line.split('#', 1)[1]), line


@pytest.mark.parametrize('name, architecture', sorted(SYNTHETIC.items()))
def test_synthetic_presets_keep_their_layout(name, architecture):
    config = load_config(PRESET_DIR / f'{name}.yaml')
    assert config.model.architecture == architecture
    assert config.data.format == 'synthetic' and config.train.eval_protocol == 'full'
