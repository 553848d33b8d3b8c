"""Class lists against the data sets' own definitions (ids and colours written out here)."""
import pytest

from bisenet_core.classes import ADE20K, CITYSCAPES, COCOSTUFF, COCOSTUFF_IDS, DATASETS
from bisenet_core.spec import spec_for_dataset


def test_cityscapes_train_ids():
    # cityscapesScripts labels.py: trainId -> name, colour.
    assert len(CITYSCAPES) == 19
    assert CITYSCAPES[0] == ('road', (128, 64, 128))
    assert CITYSCAPES[6] == ('traffic_light', (250, 170, 30))
    assert CITYSCAPES[11] == ('person', (220, 20, 60))
    assert CITYSCAPES[18] == ('bicycle', (119, 11, 32))


def test_cocostuff_171_in_id_order():
    # COCO-Stuff labels.txt (1-based ids); 11 thing ids were never annotated.
    assert len(COCOSTUFF) == 171
    ids = [i for i, _ in COCOSTUFF_IDS]
    assert ids == sorted(ids) and ids[0] == 1 and ids[-1] == 182
    never_annotated = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91}
    assert set(range(1, 183)) - set(ids) == never_annotated
    names = [n for n, _ in COCOSTUFF]
    assert names[0] == 'person' and names[79] == 'toothbrush'   # the 80 things ...
    assert names[80] == 'banner' and names[170] == 'wood'       # ... then the 91 stuff
    assert names[ids.index(149)] == 'road' and names[ids.index(157)] == 'sky-other'


@pytest.mark.parametrize('class_id, name, colour', [
    # ADE20K objectInfo150 (1-based id, first name) and color150.
    (1, 'wall', (120, 120, 120)), (3, 'sky', (6, 230, 230)), (7, 'road', (140, 140, 140)),
    (12, 'sidewalk', (235, 255, 7)), (13, 'person', (150, 5, 61)), (21, 'car', (0, 102, 200)),
    (81, 'bus', (255, 0, 245)), (84, 'truck', (255, 0, 20)), (128, 'bicycle', (255, 245, 0)),
    (137, 'traffic_light', (41, 0, 255)), (150, 'flag', (92, 0, 255)),
])
def test_ade20k_150(class_id, name, colour):
    assert len(ADE20K) == 150 and len({n for n, _ in ADE20K}) == 150
    assert ADE20K[class_id - 1] == (name, colour)


def test_every_list_makes_a_valid_spec():
    for dataset, entries in DATASETS.items():
        spec = spec_for_dataset(dataset)
        assert spec.num_classes == len(entries) and spec.ignore_index == 255
        assert all(' ' not in name for name in spec.class_names)  # one token per class
