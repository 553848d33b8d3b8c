"""Dataset loaders on small fixture datasets written in each real on-disk layout."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from bisenet_core.classes import CAMVID, CAMVID32_TO_11, CITYSCAPES, COCOSTUFF_IDS
from bisenet_core.data import (CamVidDataset, CityscapesDataset, COCOStuffDataset,
                               DatasetLayoutError, EvalTransform, FolderDataset, LabelError,
                               TrainTransform)
from bisenet_core.data.cityscapes import LABEL_ID_TO_TRAIN_ID

W, H = 64, 48


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def write_ids(path: Path, ids: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), ids.astype(np.uint8))


def rgb_image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def ids_covering(values, seed: int = 0) -> np.ndarray:
    """An H x W label holding every value of `values` (then random ones of them)."""
    values = np.asarray(list(values))
    flat = np.random.default_rng(seed).choice(values, H * W)
    flat[:len(values)] = values
    return flat.reshape(H, W).astype(np.uint8)


def check_pair(dataset, index: int, image: np.ndarray):
    got_image, got_label = dataset[index]
    assert got_image.dtype == np.uint8 and got_image.shape == (H, W, 3)
    assert got_label.dtype == np.uint8 and got_label.shape == (H, W)
    np.testing.assert_array_equal(got_image, image)      # RGB order survives BGR files
    return got_label


# --- CamVid -----------------------------------------------------------------------------

def test_camvid_11_class_layout(tmp_path):
    label = ids_covering(range(12))                      # 0..10 classes, 11 void
    for split in ('train', 'val'):
        for i in range(2):
            write_rgb(tmp_path / split / f'0001TP_{i:06d}.png', rgb_image(i))
            write_ids(tmp_path / f'{split}annot' / f'0001TP_{i:06d}.png', label)
    ds = CamVidDataset(tmp_path, 'val')
    assert len(ds) == 2 and ds.class_names == tuple(n for n, _ in CAMVID)
    assert ds.ignore_index == 255
    assert [p.name for p, _ in ds.files] == ['0001TP_000000.png', '0001TP_000001.png']
    got = check_pair(ds, 1, rgb_image(1))
    np.testing.assert_array_equal(got, np.where(label == 11, 255, label))


def test_camvid_reads_the_synthetic_drives(tmp_path):
    from bisenet_core.data.synthetic import write_drive

    names = write_drive(tmp_path, seed=1, num_frames=2, size=(W, H), split='train',
                        progress=False)
    ds = CamVidDataset(tmp_path, 'train')
    assert [p.stem for p, _ in ds.files] == names
    image, label = ds[0]
    assert image.shape == (H, W, 3) and label.max() < len(CAMVID)


def test_camvid_32_class_colours(tmp_path):
    colours = np.array([c for _, c, _ in CAMVID32_TO_11], np.uint8)
    index = ids_covering(range(32))
    names = [n for n, _ in CAMVID]
    expected = np.array([255 if t is None else names.index(t) for _, _, t in CAMVID32_TO_11])
    for i, frame in enumerate(['0006R0_f00930', '0016E5_00390', 'Seq05VD_f00000']):
        write_rgb(tmp_path / '701_StillsRaw_full' / f'{frame}.png', rgb_image(i))
        write_rgb(tmp_path / 'LabeledApproved_full' / f'{frame}_L.png', colours[index])
    ds = CamVidDataset(tmp_path, 'all')
    assert len(ds) == 3
    got = check_pair(ds, 0, rgb_image(0))
    np.testing.assert_array_equal(got, expected[index])
    # Spot checks of SegNet's grouping.
    assert names[expected[[n for n, _, _ in CAMVID32_TO_11].index('SUVPickupTruck')]] == 'car'
    assert names[expected[[n for n, _, _ in CAMVID32_TO_11].index('LaneMkgsDriv')]] == 'road'

    # A split list in SegNet's train.txt style selects frames.
    (tmp_path / 'train.txt').write_text('/SegNet/CamVid/train/0016E5_00390.png '
                                        '/SegNet/CamVid/trainannot/0016E5_00390.png\n')
    assert [p.stem for p, _ in CamVidDataset(tmp_path, 'train').files] == ['0016E5_00390']
    with pytest.raises(DatasetLayoutError, match='val.txt'):
        CamVidDataset(tmp_path, 'val')

    bad = colours[index].copy()
    bad[5, 7] = (1, 2, 3)
    write_rgb(tmp_path / 'LabeledApproved_full' / '0016E5_00390_L.png', bad)
    with pytest.raises(LabelError, match=r'0016E5_00390_L\.png.*\(1, 2, 3\)'):
        CamVidDataset(tmp_path, 'train')[0]


def test_camvid_colour_labels_in_split_folders(tmp_path):
    colours = np.array([c for _, c, _ in CAMVID32_TO_11], np.uint8)
    index = ids_covering(range(32), seed=3)
    write_rgb(tmp_path / 'test' / 'a.png', rgb_image(0))
    write_rgb(tmp_path / 'test_labels' / 'a_L.png', colours[index])
    _, label = CamVidDataset(tmp_path, 'test')[0]
    assert label.max() == 255 and set(np.unique(label)) == set(range(11)) | {255}


def test_camvid_missing_split(tmp_path):
    with pytest.raises(DatasetLayoutError, match=str(tmp_path / 'nowhere')):
        CamVidDataset(tmp_path / 'nowhere', 'train')
    (tmp_path / 'train').mkdir()
    with pytest.raises(DatasetLayoutError, match="split 'val'.*valannot/"):
        CamVidDataset(tmp_path, 'val')
    (tmp_path / 'trainannot').mkdir()
    with pytest.raises(DatasetLayoutError, match='no image/label pairs'):
        CamVidDataset(tmp_path, 'train')


# --- Cityscapes ---------------------------------------------------------------------------

def write_cityscapes(root: Path, split: str, city: str, frame: str, seed: int, label_ids,
                     train_ids=None):
    stem = f'{city}_{frame}'
    write_rgb(root / 'leftImg8bit' / split / city / f'{stem}_leftImg8bit.png', rgb_image(seed))
    folder = root / 'gtFine' / split / city
    write_ids(folder / f'{stem}_gtFine_labelIds.png', label_ids)
    if train_ids is not None:
        write_ids(folder / f'{stem}_gtFine_labelTrainIds.png', train_ids)


def test_cityscapes_label_ids_to_train_ids(tmp_path):
    label_ids = ids_covering(list(range(34)) + [255])
    write_cityscapes(tmp_path, 'val', 'lindau', '000000_000019', 0, label_ids)
    write_cityscapes(tmp_path, 'val', 'munster', '000001_000019', 1, label_ids)
    ds = CityscapesDataset(tmp_path, 'val')
    assert len(ds) == 2 and len(ds.class_names) == 19
    assert ds.class_names == tuple(n for n, _ in CITYSCAPES)
    got = check_pair(ds, 1, rgb_image(1))
    expected = np.full(256, 255)
    for label_id, train_id in LABEL_ID_TO_TRAIN_ID.items():
        expected[label_id] = train_id
    np.testing.assert_array_equal(got, expected[label_ids])
    # Independent spot checks of the official table: road 7 -> 0, bicycle 33 -> 18, parking 9 void.
    assert expected[7] == 0 and expected[26] == 13 and expected[33] == 18 and expected[9] == 255
    assert sorted(LABEL_ID_TO_TRAIN_ID.values()) == list(range(19))


def test_cityscapes_prefers_train_ids(tmp_path):
    label_ids = ids_covering(range(34))
    train_ids = ids_covering(list(range(19)) + [255], seed=5)
    write_cityscapes(tmp_path, 'train', 'aachen', '000000_000019', 0, label_ids, train_ids)
    _, label = CityscapesDataset(tmp_path, 'train')[0]
    np.testing.assert_array_equal(label, train_ids)
    forced = CityscapesDataset(tmp_path, 'train', label_type='labelIds')
    assert forced.files[0][1].name.endswith('_labelIds.png')
    assert not np.array_equal(forced[0][1], train_ids)
    with pytest.raises(ValueError, match='label_type'):
        CityscapesDataset(tmp_path, 'train', label_type='color')


def test_cityscapes_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match=r'leftImg8bit.*test'):
        CityscapesDataset(tmp_path, 'test')
    write_cityscapes(tmp_path, 'train', 'aachen', '000000_000019', 0,
                     ids_covering([7, 8, 40, 41]))
    with pytest.raises(LabelError, match=r'labelIds\.png: values 40, 41'):
        CityscapesDataset(tmp_path, 'train')[0]
    (tmp_path / 'gtFine' / 'train' / 'aachen' / 'aachen_000000_000019_gtFine_labelIds.png'
     ).unlink()
    with pytest.raises(DatasetLayoutError, match='no label'):
        CityscapesDataset(tmp_path, 'train')


# --- COCO-Stuff ---------------------------------------------------------------------------

def write_coco(root: Path, split: str, stem: str, seed: int, values):
    path = root / 'images' / f'{split}2017' / f'{stem}.jpg'
    path.parent.mkdir(parents=True, exist_ok=True)
    # JPEG is lossy: keep the decoded pixels as the reference image.
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb_image(seed), cv2.COLOR_RGB2BGR))
    write_ids(root / 'stuffthingmaps_trainval2017' / f'{split}2017' / f'{stem}.png', values)
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_cocostuff(tmp_path):
    used = [coco_id - 1 for coco_id, _ in COCOSTUFF_IDS]
    values = ids_covering(used + [255])
    image = write_coco(tmp_path, 'val', '000000000139', 0, values)
    ds = COCOStuffDataset(tmp_path, 'val')
    assert len(ds.class_names) == 171 and ds.class_names[0] == 'person'
    got = check_pair(ds, 0, image)
    assert set(np.unique(got)) == set(range(171)) | {255}
    # Spot checks: person (id 1, stored 0) -> 0; toothbrush (90) -> 79; banner (92) -> 80;
    # wood (182, stored 181) -> 170.
    for stored, index in [(0, 0), (89, 79), (91, 80), (181, 170), (255, 255)]:
        assert np.all(got[values == stored] == index)
    assert COCOStuffDataset(tmp_path, 'val2017').files == ds.files

    # The 11 never-annotated thing ids (e.g. 12 street sign, stored 11) are ignored ...
    values = ids_covering([0, 11, 25, 255])
    write_coco(tmp_path, 'train', '000000000009', 1, values)
    got = COCOStuffDataset(tmp_path, 'train')[0][1]
    np.testing.assert_array_equal(got, np.where(values == 0, 0, 255))
    # ... values that are no COCO-Stuff id at all are an error.
    write_coco(tmp_path, 'train', '000000000009', 1, ids_covering([0, 182, 200]))
    with pytest.raises(LabelError, match=r'000000000009\.png: values 182, 200'):
        COCOStuffDataset(tmp_path, 'train')[0]
    with pytest.raises(DatasetLayoutError, match='stuffthingmaps_trainval2017'):
        COCOStuffDataset(tmp_path, 'test')


# --- Generic folder -----------------------------------------------------------------------

def make_folder(root: Path, split='train', classes=('floor', 'obstacle', 'person')):
    root.mkdir(parents=True, exist_ok=True)
    (root / 'classes.txt').write_text('# my robot\n' + '\n'.join(classes) + '\n\n')
    label = ids_covering([0, 1, 2, 255])
    for i in range(3):
        write_rgb(root / 'images' / split / f'frame{i}.png', rgb_image(i))
        write_ids(root / 'labels' / split / f'frame{i}.png', label)
    return label


def test_folder_dataset(tmp_path):
    label = make_folder(tmp_path)
    ds = FolderDataset(tmp_path, 'train')
    assert ds.class_names == ('floor', 'obstacle', 'person') and len(ds) == 3
    np.testing.assert_array_equal(check_pair(ds, 2, rgb_image(2)), label)


def test_folder_label_values_out_of_range(tmp_path):
    make_folder(tmp_path)
    write_ids(tmp_path / 'labels' / 'train' / 'frame1.png', ids_covering([0, 3, 7, 255]))
    ds = FolderDataset(tmp_path, 'train')
    ds[0]
    with pytest.raises(LabelError,
                       match=r'frame1\.png: label values 3, 7 are not class ids 0\.\.2'):
        ds[1]
    assert issubclass(LabelError, ValueError)
    assert FolderDataset(tmp_path, 'train', check_labels=False)[1][1].max() == 255


def test_folder_errors(tmp_path):
    make_folder(tmp_path)
    with pytest.raises(DatasetLayoutError, match=str(tmp_path / 'images' / 'val')):
        FolderDataset(tmp_path, 'val')
    (tmp_path / 'labels' / 'train' / 'frame2.png').unlink()
    with pytest.raises(DatasetLayoutError, match=r'frame2\.png: no label'):
        FolderDataset(tmp_path, 'train')
    make_folder(tmp_path)

    # Size mismatch names both files.
    write_ids(tmp_path / 'labels' / 'train' / 'frame0.png', np.zeros((H, W + 1)))
    with pytest.raises(ValueError, match=r'labels/train/frame0\.png.*images/train/frame0\.png'):
        FolderDataset(tmp_path, 'train')[0]
    # Unreadable files name the file.
    (tmp_path / 'images' / 'train' / 'frame1.png').write_bytes(b'not a png')
    with pytest.raises(OSError, match=r'frame1\.png: cannot read image'):
        FolderDataset(tmp_path, 'train')[1]
    (tmp_path / 'labels' / 'train' / 'frame2.png').write_bytes(b'\x89PNG broken')
    with pytest.raises(OSError, match=r'frame2\.png: cannot read label'):
        FolderDataset(tmp_path, 'train')[2]

    (tmp_path / 'classes.txt').write_text('a\nb\na\n')
    with pytest.raises(ValueError, match=r"duplicate class names \['a'\]"):
        FolderDataset(tmp_path, 'train')
    (tmp_path / 'classes.txt').unlink()
    with pytest.raises(DatasetLayoutError, match='classes.txt'):
        FolderDataset(tmp_path, 'train')


def test_colour_label_in_an_id_dataset_is_refused(tmp_path):
    make_folder(tmp_path)
    write_rgb(tmp_path / 'labels' / 'train' / 'frame0.png', rgb_image(9))
    with pytest.raises(LabelError, match='colour image'):
        FolderDataset(tmp_path, 'train')[0]


def test_transform_is_applied(tmp_path):
    make_folder(tmp_path)
    ds = FolderDataset(tmp_path, 'train', transform=TrainTransform(crop_size=(32, 32), seed=0))
    x, y = ds[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    ds.transform = EvalTransform()
    x, y = ds[0]
    assert x.shape == (3, H, W) and set(y.unique().tolist()) <= {0, 1, 2, 255}


def test_verify_counts_pixels_and_lists_bad_files(tmp_path):
    label = make_folder(tmp_path)
    counts = FolderDataset(tmp_path, 'train').verify(progress=False)
    expected = [3 * int((label == c).sum()) for c in (0, 1, 2, 255)]
    assert counts.tolist() == expected
    write_ids(tmp_path / 'labels' / 'train' / 'frame0.png', ids_covering([0, 9]))
    (tmp_path / 'images' / 'train' / 'frame2.png').write_bytes(b'')
    with pytest.raises(ValueError, match=r'2 bad pair\(s\):\n.*frame0\.png.*\n.*frame2\.png'):
        FolderDataset(tmp_path, 'train', check_labels=False).verify(progress=False)
