"""Synthetic CamVid-style drives: determinism, classes, motion, layout, image/label alignment."""
from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest

from bisenet_core.classes import CAMVID
from bisenet_core.data.synthetic import (
    colorize, frame_name, main, make_dataset, render_drive, write_drive)

SIZE = (160, 120)
SKY, ROAD, TREE = 0, 3, 5


def drive(seed: int, frames: int, size=SIZE, **kwargs):
    return list(render_drive(seed, frames, size, **kwargs))


def test_same_seed_is_byte_identical_and_other_seed_differs():
    a, b, c = drive(7, 3), drive(7, 3), drive(8, 3)
    for fa, fb in zip(a, b):
        assert fa.name == fb.name
        assert fa.image.tobytes() == fb.image.tobytes()
        assert fa.label.tobytes() == fb.label.tobytes()
    assert any(fa.image.tobytes() != fc.image.tobytes() for fa, fc in zip(a, c))
    assert any(fa.label.tobytes() != fc.label.tobytes() for fa, fc in zip(a, c))


def test_longer_drive_starts_with_the_same_frames():
    short, long = drive(4, 2), drive(4, 5)
    for fs, fl in zip(short, long):
        assert fs.image.tobytes() == fl.image.tobytes()


def test_frame_types_and_shapes_follow_size():
    frame = drive(1, 1, size=(96, 64))[0]
    assert frame.image.dtype == np.uint8 and frame.image.shape == (64, 96, 3)
    assert frame.label.dtype == np.uint8 and frame.label.shape == (64, 96)


def test_labels_in_range_and_every_class_appears_in_a_short_drive():
    seen = np.zeros(len(CAMVID), bool)
    for frame in drive(3, 8, size=(240, 180)):
        assert frame.label.max() < len(CAMVID)
        seen |= np.bincount(frame.label.ravel(), minlength=len(CAMVID))[:len(CAMVID)] > 0
    missing = [name for (name, _), ok in zip(CAMVID, seen) if not ok]
    assert not missing, f'classes never drawn: {missing}'


def test_consecutive_frames_agree_more_than_other_drives():
    frames = drive(5, 4)
    others = drive(6, 4)
    same = [np.mean(a.label == b.label) for a, b in zip(frames, frames[1:])]
    cross = [np.mean(a.label == b.label) for a, b in zip(frames, others)]
    assert min(same) > max(cross) + 0.03


def test_camera_moves_forward_and_the_scene_changes():
    first, second = drive(2, 2)
    assert np.mean(first.label != second.label) > 0.02


def test_sky_pixels_are_sky_coloured_and_road_pixels_are_grey():
    """Would fail if image and label came from different geometry: check colour per label."""
    for frame in drive(9, 3, size=(240, 180)):
        image = frame.image.astype(int)
        # Ignore pixels at a class border: the image has a slight lens blur.
        sky = cv2.erode((frame.label == SKY).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        road = cv2.erode((frame.label == ROAD).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert sky.sum() > 100 and road.sum() > 100
        sky_rgb, road_rgb = image[sky], image[road]
        # The sky is brighter than the asphalt, the road is near-grey (no strong hue).
        assert np.median(sky_rgb.sum(1)) > np.median(road_rgb.sum(1)) + 100
        spread = road_rgb.max(1) - road_rgb.min(1)
        assert np.mean(spread < 45) > 0.95
        # Each labelled region is coherent: its pixels sit close to its own mean colour.
        for pixels in (sky_rgb, road_rgb):
            assert np.mean(np.abs(pixels - pixels.mean(0)).sum(1) < 120) > 0.95


def test_label_boundaries_sit_on_image_edges():
    """Image edges are strongest exactly at the label borders, not 2 px to any side.

    A label drawn from geometry offset from the image's would score higher shifted back.
    """
    for seed in (12, 3):
        frame = drive(seed, 1, size=(240, 180))[0]
        grey = cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        grad = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))

        def edge_score(label):
            lab = label.astype(int)
            border = np.zeros_like(lab, bool)
            border[:, 1:] |= lab[:, 1:] != lab[:, :-1]
            border[1:, :] |= lab[1:, :] != lab[:-1, :]
            return grad[border].mean()

        aligned = edge_score(frame.label)
        shifted = [edge_score(np.roll(frame.label, s, axis=a)) for a in (0, 1) for s in (-2, 2)]
        assert aligned > 1.15 * max(shifted)


def test_tree_is_textured_and_sky_is_smooth():
    frames = drive(3, 6, size=(240, 180))
    tree_std, sky_std = [], []
    for frame in frames:
        grey = cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        detail = np.abs(grey - cv2.blur(grey, (5, 5)))
        for cls, out in ((TREE, tree_std), (SKY, sky_std)):
            mask = cv2.erode((frame.label == cls).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
            if mask.sum() > 50:
                out.append(detail[mask].mean())
    assert tree_std and sky_std
    assert np.mean(tree_std) > 2 * np.mean(sky_std)


def test_write_drive_layout_names_and_round_trip(tmp_path):
    names = write_drive(tmp_path, seed=3, num_frames=3, size=SIZE, split='val', progress=False)
    assert names == [frame_name('0001TP', i) for i in range(3)]
    assert all(re.fullmatch(r'0001TP_\d{6}', n) for n in names)
    numbers = [int(n.split('_')[1]) for n in names]
    assert np.all(np.diff(numbers) == 30)
    frames = drive(3, 3)
    for name, frame in zip(names, frames):
        bgr = cv2.imread(str(tmp_path / 'val' / f'{name}.png'), cv2.IMREAD_COLOR)
        label = cv2.imread(str(tmp_path / 'valannot' / f'{name}.png'), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), frame.image)
        assert label.dtype == np.uint8 and label.ndim == 2
        assert np.array_equal(label, frame.label)
    meta = json.loads((tmp_path / 'val' / 'drive.json').read_text())
    (entry,) = meta['drives']
    assert entry['seed'] == 3 and entry['size'] == list(SIZE) and entry['fps'] == 30
    assert entry['frames'] == names
    assert sorted(p.stem for p in (tmp_path / 'val').glob('*.png')) == names


def test_make_dataset_writes_three_splits_from_different_seeds(tmp_path):
    make_dataset(tmp_path, train_seeds=(1, 2), train_frames=2, val_seed=10, val_frames=1,
                 test_seed=20, test_frames=1, size=(64, 48), progress=False)
    for split, count in (('train', 4), ('val', 1), ('test', 1)):
        images = sorted((tmp_path / split).glob('*.png'))
        labels = sorted((tmp_path / f'{split}annot').glob('*.png'))
        assert len(images) == count
        assert [p.name for p in images] == [p.name for p in labels]
    train = json.loads((tmp_path / 'train' / 'drive.json').read_text())['drives']
    assert [d['seed'] for d in train] == [1, 2]
    assert len({d['sequence'] for d in train}) == 2
    val = json.loads((tmp_path / 'val' / 'drive.json').read_text())['drives']
    assert val[0]['seed'] == 10


def test_make_dataset_rejects_shared_seeds(tmp_path):
    with pytest.raises(ValueError, match='must differ'):
        make_dataset(tmp_path, train_seeds=(1, 2), val_seed=2, test_seed=3, size=(64, 48))


def test_bad_size_is_a_clear_error():
    with pytest.raises(ValueError, match='size'):
        next(render_drive(0, 1, (8, 8)))


def test_colorize_uses_the_camvid_palette():
    label = np.arange(len(CAMVID), dtype=np.uint8)[None]
    assert [tuple(c) for c in colorize(label)[0]] == [c for _, c in CAMVID]


def test_cli_writes_a_drive_and_a_preview(tmp_path, capsys):
    assert main(['--out', str(tmp_path / 'ds'), '--seed', '2', '--frames', '2',
                 '--size', '64x48', '--split', 'test']) == 0
    assert len(list((tmp_path / 'ds' / 'testannot').glob('0001TP_*.png'))) == 2
    sheet = tmp_path / 'sheet.png'
    assert main(['--preview', str(sheet), '--size', '64x48']) == 0
    image = cv2.imread(str(sheet))
    assert image.shape[1] == 128 and image.shape[0] % 48 == 0
    with pytest.raises(SystemExit):
        main(['--out', str(tmp_path), '--size', '64by48'])
    assert 'WIDTHxHEIGHT' in capsys.readouterr().err
