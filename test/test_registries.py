"""The extension points: a backbone or a dataset format is one registry line, read everywhere.

A test backbone and a test format are registered (monkeypatched: as a new line would) and
must then work in `bisenet()`, ModelSpec, the training config, the loaders and the format
guess; a scan of the code finds no second list of backbone or format names.
"""
import ast
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from bisenet_core.data import FolderDataset, folder, formats
from bisenet_core.model import backbones, bisenet
from bisenet_core.spec import BACKBONES, spec_for_dataset
from bisenet_core.train.config import load_config
from bisenet_core.train.data import open_dataset

ROOT = Path(__file__).resolve().parents[1]


class TinyBackbone(nn.Module):
    """1/16 and 1/32 maps of 8 and 16 channels: the least a Context Path needs."""

    channels = (8, 16)

    def __init__(self):
        super().__init__()
        self.down16 = nn.Conv2d(3, 8, 16, stride=16)
        self.down32 = nn.Conv2d(8, 16, 2, stride=2)

    def forward(self, x):
        feat16 = self.down16(x)
        return feat16, self.down32(feat16)


@pytest.fixture
def tiny_backbone(monkeypatch):
    monkeypatch.setitem(backbones.REGISTRY, 'tiny', backbones.Backbone(
        lambda depthwise_bn: TinyBackbone(), (8, 16), (32, 48)))
    return 'tiny'


def test_a_registered_backbone_is_known_everywhere(tiny_backbone, tmp_path):
    model = bisenet(3, tiny_backbone, 'torchseg').eval()
    # Heads from the registry line: main 32, auxiliary 48.
    assert model.head.conv.conv.out_channels == 32
    assert model.aux_head16.conv.conv.out_channels == 48
    assert model(torch.zeros(1, 3, 64, 96)).logits.shape == (1, 3, 8, 12)
    assert spec_for_dataset('camvid', backbone=tiny_backbone).backbone == 'tiny'
    config = load_config(overrides=[f'model.backbone={tiny_backbone}',
                                    f'data.root={tmp_path}'])
    assert config.model_spec().backbone == 'tiny'


def test_unknown_backbones_are_refused_naming_the_registry():
    with pytest.raises(ValueError, match="unknown backbone 'nope'.*xception39"):
        bisenet(3, 'nope')
    with pytest.raises(ValueError, match="unknown backbone 'nope'.*resnet18"):
        spec_for_dataset('camvid', backbone='nope')
    with pytest.raises(ValueError, match='model.backbone.*resnet101'):
        load_config(overrides=['model.backbone=nope'])


@pytest.mark.parametrize('name', ['xception39', 'resnet18'])
def test_registry_lines_describe_their_backbones(name):
    """The channels recorded in the registry are the built module's (TorchSeg X39: 128/256
    at 1/16 and 1/32; ResNet-18: 256/512)."""
    entry = backbones.REGISTRY[name]
    assert entry.build(False).channels == entry.channels == {
        'xception39': (128, 256), 'resnet18': (256, 512)}[name]
    assert BACKBONES == tuple(backbones.REGISTRY)


def _folder_data(root: Path, classes=('floor', 'wall')) -> Path:
    (root / 'pictures' / 'train').mkdir(parents=True)
    (root / 'masks' / 'train').mkdir(parents=True)
    (root / 'names.txt').write_text('\n'.join(classes) + '\n')
    image = np.full((8, 8, 3), 90, np.uint8)
    assert cv2.imwrite(str(root / 'pictures' / 'train' / 'a.png'), image)
    assert cv2.imwrite(str(root / 'masks' / 'train' / 'a.png'), np.eye(8, dtype=np.uint8))
    return root


@pytest.fixture
def mine_format(monkeypatch):
    """A 'mine' format: images in pictures/, labels in masks/, classes in names.txt."""
    def loader(root, split):
        return FolderDataset(root, split, images='pictures', labels='masks', classes='names.txt')

    def read_classes(root):
        return folder.read_class_list(Path(root) / 'names.txt')

    monkeypatch.setitem(formats.REGISTRY, 'mine', formats.DatasetFormat(
        loader, '', lambda root: (root / 'names.txt').is_file(), read_classes))
    return 'mine'


def test_a_registered_format_is_known_everywhere(mine_format, tmp_path):
    root = _folder_data(tmp_path / 'data')
    config = load_config(overrides=[f'data.format={mine_format}', f'data.root={root}',
                                    'model.dataset='])
    spec = config.model_spec()
    assert spec.class_names == ('floor', 'wall')
    dataset = open_dataset(mine_format, root, 'train', spec.num_classes)
    image, label = dataset[0]
    assert image.shape == (8, 8, 3) and (label == np.eye(8, dtype=np.uint8)).all()
    assert formats.guess_format(root) == 'mine'


def test_format_guess_reads_the_layout_on_disk_then_the_models_dataset(tmp_path):
    cityscapes = tmp_path / 'city'
    (cityscapes / 'leftImg8bit').mkdir(parents=True)
    (cityscapes / 'gtFine').mkdir()
    camvid = tmp_path / 'camvid'
    (camvid / 'val').mkdir(parents=True)
    (camvid / 'valannot').mkdir()
    coco = tmp_path / 'coco'
    (coco / 'images').mkdir(parents=True)
    (coco / 'stuffthingmaps_trainval2017').mkdir()
    own = tmp_path / 'own'
    for sub in ('images', 'labels'):
        (own / sub).mkdir(parents=True)
    (own / 'classes.txt').write_text('a\nb\n')
    empty = tmp_path / 'empty'
    empty.mkdir()
    # The layout wins over the model's dataset name; without one, the name decides.
    assert [formats.guess_format(p, 'cityscapes') for p in (cityscapes, camvid, coco, own)] \
        == ['cityscapes', 'camvid', 'cocostuff', 'folder']
    assert formats.guess_format(empty, 'synthetic-camvid') == 'camvid'
    assert formats.guess_format(tmp_path / 'missing', 'cocostuff') == 'cocostuff'
    assert formats.guess_format(empty, 'my-robot') == 'folder'


def test_unknown_format_is_refused_naming_the_registry():
    with pytest.raises(ValueError, match='data.format.*cityscapes.*synthetic'):
        load_config(overrides=['data.format=nope'])
    with pytest.raises(ValueError, match="unknown dataset format 'nope'"):
        open_dataset('nope', '.', 'train')


def _name_collections(path: Path):
    """(line, names) of every tuple/list/set literal and dict's keys of string constants.

    A `default=` value (a command line's choice of which to run) is a selection, not a list.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    defaults = {id(k.value) for k in ast.walk(tree)
                if isinstance(k, ast.keyword) and k.arg == 'default'}
    for node in ast.walk(tree):
        if id(node) in defaults:
            continue
        items = node.keys if isinstance(node, ast.Dict) else (
            node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [])
        names = {i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)}
        if names:
            yield node.lineno, names


def test_no_second_list_of_backbones_or_formats():
    """Only the registries list the names; everything else reads them (plant: put
    ('camvid', 'cityscapes', 'cocostuff') back into training/evaluate.py)."""
    backbone_names, format_names = set(backbones.REGISTRY), set(formats.REGISTRY)
    registries = {ROOT / 'bisenet_core/model/backbones.py', ROOT / 'bisenet_core/data/formats.py',
                  # the class lists (camvid, cityscapes, ...) share some format names
                  ROOT / 'bisenet_core/classes.py'}
    files = [p for d in ('bisenet_core', 'bisenet_ros', 'training', 'bench')
             for p in sorted((ROOT / d).rglob('*.py')) if p not in registries]
    found = [f'{p.relative_to(ROOT)}:{line}: {sorted(names)}' for p in files
             for line, names in _name_collections(p)
             if len(names & backbone_names) >= 2 or len(names & format_names) >= 3]
    assert not found, 'lists of registered names outside the registries:\n' + '\n'.join(found)
