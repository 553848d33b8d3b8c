"""CamVid and Cityscapes as drives: small fixtures in the published layouts -> one bag each."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from bisenet_ros import bags
from bisenet_ros.corpora import convert_corpus

W, H = 8, 6
START = bags.DEFAULT_START_NS


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), np.uint8)


def _write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _write_ids(path: Path, ids: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), ids.astype(np.uint8))


# SegNet's CamVid: frames of one video sequence are spread over the splits (0001TP in train
# and test), and the frame numbers are written three ways, as in the real file names.
SEGNET = {'train': ['0001TP_006690', '0001TP_006720', '0006R0_f01230'],
          'val': ['0016E5_07959'],
          'test': ['0001TP_008550', 'Seq05VD_f00000', 'Seq05VD_f00030']}


@pytest.fixture(scope='module')
def segnet_camvid(tmp_path_factory):
    root = tmp_path_factory.mktemp('CamVid')
    truth = {}
    for split, names in SEGNET.items():
        for k, name in enumerate(names):
            image = _image(hash(name) % 1000)
            ids = np.full((H, W), k % 11, np.uint8)
            ids[0] = 11                       # SegNet's void id
            _write_rgb(root / split / f'{name}.png', image)
            _write_ids(root / f'{split}annot' / f'{name}.png', ids)
            truth[name] = (image, np.where(ids == 11, 255, ids))
    return root, truth


def test_segnet_camvid_one_bag_per_sequence_stamped_at_30hz(segnet_camvid, tmp_path):
    root, truth = segnet_camvid
    made = convert_corpus('camvid', root, tmp_path / 'bags', progress=False)
    assert sorted(p.name for p in made) == ['0001TP', '0006R0', '0016E5', 'Seq05VD']
    expected = {'0001TP': [('0001TP_006690', 6690), ('0001TP_006720', 6720),
                           ('0001TP_008550', 8550)],
                '0006R0': [('0006R0_f01230', 1230)], '0016E5': [('0016E5_07959', 7959)],
                'Seq05VD': [('Seq05VD_f00000', 0), ('Seq05VD_f00030', 30)]}
    assert sorted(p.name for p in (tmp_path / 'bags').iterdir()) == sorted(expected)
    assert (tmp_path / 'bags' / '0001TP' / '0001TP.mcap').is_file()
    for bag in made:
        frames = bags.read_frames(bag)
        names = expected[bag.name]
        # Stamps from the frame numbers of a 30 Hz video: 6690 -> 223 s after the start.
        assert [f.stamp_ns for f in frames] == [START + n * 10**9 // 30 for _, n in names]
        for frame, (name, _) in zip(frames, names):
            np.testing.assert_array_equal(frame.image, truth[name][0])
            np.testing.assert_array_equal(frame.label, truth[name][1])
    frames = bags.read_frames(tmp_path / 'bags' / '0001TP')
    assert frames[1].stamp_ns - frames[0].stamp_ns == 10**9       # 30 frames = 1 s
    assert bags.read_frames(tmp_path / 'bags' / 'Seq05VD')[0].label[0].tolist() == [255] * W


def test_camvid_splits_option_and_existing_bags(segnet_camvid, tmp_path):
    root, _ = segnet_camvid
    made = convert_corpus('camvid', root, tmp_path / 'bags', splits=['test'], progress=False)
    assert sorted(p.name for p in made) == ['0001TP', 'Seq05VD']
    assert len(bags.read_frames(made[0])) == 1                 # 0001TP: only its test frame
    with pytest.raises(bags.BagError, match='exist already'):
        convert_corpus('camvid', root, tmp_path / 'bags', splits=['test'], progress=False)


def test_original_camvid_colour_release(tmp_path):
    """701_StillsRaw_full + LabeledApproved_full: the 32 colours -> the 11 class ids."""
    root = tmp_path / 'CamVid'
    colours = {'car': (64, 0, 128), 'lane marking': (128, 0, 192), 'building': (128, 0, 0),
               'void': (0, 0, 0)}
    label_rgb = np.zeros((H, W, 3), np.uint8)
    label_rgb[:2] = colours['car']                 # Car -> car (8)
    label_rgb[2:4] = colours['lane marking']       # LaneMkgsDriv -> road (3)
    label_rgb[4:5] = colours['building']           # Building -> building (1)
    # the last row stays Void (0, 0, 0) -> 255
    expected = np.array([8, 8, 3, 3, 1, 255], np.uint8)[:, None].repeat(W, 1)
    names = ['0016E5_00390', '0016E5_00360', 'Seq05VD_f00030']
    for k, name in enumerate(names):
        _write_rgb(root / '701_StillsRaw_full' / f'{name}.png', _image(k))
        _write_rgb(root / 'LabeledApproved_full' / f'{name}_L.png', label_rgb)
    made = convert_corpus('camvid', root, tmp_path / 'bags', progress=False)
    assert [p.name for p in made] == ['0016E5', 'Seq05VD']
    frames = bags.read_frames(made[0])
    assert [f.stamp_ns for f in frames] == [START + 12 * 10**9, START + 13 * 10**9]
    np.testing.assert_array_equal(frames[0].image, _image(1))   # 00360 comes first
    for frame in frames:
        np.testing.assert_array_equal(frame.label, expected)


def test_cityscapes_one_bag_per_city(tmp_path):
    root = tmp_path / 'cityscapes'
    # labelIds: 7 road -> 0, 26 car -> 13, 24 person -> 11, 0 unlabeled -> 255
    ids = np.array([7, 7, 26, 26, 24, 0], np.uint8)[:, None].repeat(W, 1)
    train_ids = np.array([0, 0, 13, 13, 11, 255], np.uint8)[:, None].repeat(W, 1)
    frames = {('val', 'frankfurt'): ['000000_000294', '000000_000576', '000001_000019'],
              ('val', 'lindau'): ['000000_000019'],
              ('train', 'aachen'): ['000000_000019']}
    images = {}
    for (split, city), stems in frames.items():
        for k, stem in enumerate(stems):
            name = f'{city}_{stem}'
            images[name] = _image(len(images))
            _write_rgb(root / 'leftImg8bit' / split / city / f'{name}_leftImg8bit.png',
                       images[name])
            _write_ids(root / 'gtFine' / split / city / f'{name}_gtFine_labelIds.png', ids)
    made = convert_corpus('cityscapes', root, tmp_path / 'bags', splits=['val'],
                          progress=False)
    assert [p.name for p in made] == ['frankfurt', 'lindau']
    got = bags.read_frames(made[0])
    assert [f.stamp_ns for f in got] == [START + round(i * 1e9 / 17) for i in range(3)]
    for frame, stem in zip(got, frames[('val', 'frankfurt')]):
        np.testing.assert_array_equal(frame.image, images[f'frankfurt_{stem}'])
        np.testing.assert_array_equal(frame.label, train_ids)
    # Default splits: train and val (test labels are void).
    made = convert_corpus('cityscapes', root, tmp_path / 'all', progress=False)
    assert [p.name for p in made] == ['aachen', 'frankfurt', 'lindau']


def test_command_line(segnet_camvid, tmp_path, capsys):
    root, _ = segnet_camvid
    assert bags.main(['convert', '--camvid', str(root), '--splits', 'val',
                      '--out', str(tmp_path / 'cv'), '--storage', 'sqlite3']) == 0
    assert bags.bag_info(tmp_path / 'cv' / '0016E5')['storage'] == 'sqlite3'
    assert '/camera/labels' in capsys.readouterr().out
    assert bags.main(['convert', '--cityscapes', str(tmp_path / 'nowhere'),
                      '--out', str(tmp_path / 'cs')]) == 2
    assert 'not found' in capsys.readouterr().err
    # A label the loader refuses (value 40 is no class id): one error line, no bag left.
    broken = tmp_path / 'broken'
    _write_rgb(broken / 'test' / '0001TP_000030.png', _image(0))
    _write_ids(broken / 'testannot' / '0001TP_000030.png', np.full((H, W), 40))
    assert bags.main(['convert', '--camvid', str(broken), '--out', str(tmp_path / 'b')]) == 2
    assert 'label values 40' in capsys.readouterr().err
    assert not (tmp_path / 'b').exists() or not any((tmp_path / 'b').iterdir())
    bad = tmp_path / 'bad'
    _write_rgb(bad / 'test' / 'frame_one.png', _image(0))
    _write_ids(bad / 'testannot' / 'frame_one.png', np.zeros((H, W)))
    assert bags.main(['convert', '--camvid', str(bad), '--out', str(tmp_path / 'x')]) == 2
    assert 'not a CamVid frame name' in capsys.readouterr().err
