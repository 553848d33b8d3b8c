"""TrainTransform / EvalTransform: alignment of image and label, padding, crop size, scales."""
import numpy as np
import pytest
import torch

from bisenet_core.data.transforms import PAPER_SCALES, EvalTransform, TrainTransform

IDENTITY = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # tensor = image / 255
NUM_IDS = 11


def block_scene(seed: int, width: int = 64, height: int = 48, block: int = 8):
    """Random 8x8 blocks of ids and an image whose colour encodes the id of each pixel."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, NUM_IDS, (height // block + 1, width // block + 1))
    label = np.kron(ids, np.ones((block, block), int))[:height, :width].astype(np.uint8)
    palette = rng.choice(256, size=(NUM_IDS, 3), replace=False).astype(np.uint8)
    return palette[label], label, palette


def decode(tensor: torch.Tensor, palette: np.ndarray):
    """Per pixel: the id whose colour the image shows exactly (+-2 levels), -1 for blends."""
    image = tensor.numpy().transpose(1, 2, 0) * 255.0
    dist = np.abs(image[:, :, None, :] - palette[None, None].astype(np.float32)).max(-1)
    ids = dist.argmin(-1)
    return np.where(dist.min(-1) <= 2.0, ids, -1)


@pytest.mark.parametrize('seed', range(6))
def test_image_and_label_stay_aligned(seed):
    image, label, palette = block_scene(seed)
    transform = TrainTransform(crop_size=(48, 40), seed=seed, **IDENTITY)
    for _ in range(8):
        x, y = transform(image, label)
        decoded = decode(x, palette)
        compared = (decoded >= 0) & (y.numpy() != 255)
        assert compared.sum() > 0.4 * compared.size
        # Any flip/scale/crop offset between image and label shows up at block edges.
        np.testing.assert_array_equal(decoded[compared], y.numpy()[compared])


def test_output_types_and_crop_size_for_every_scale():
    image, label, _ = block_scene(0)
    for scale in PAPER_SCALES:
        for crop in [(32, 32), (96, 64), (17, 23)]:
            x, y = TrainTransform(crop_size=crop, scales=(scale,), seed=1)(image, label)
            assert x.dtype == torch.float32 and y.dtype == torch.int64
            assert tuple(x.shape) == (3, crop[1], crop[0]) and tuple(y.shape) == (crop[1], crop[0])


def test_padding_is_ignore_and_zero_after_normalisation():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    label = rng.integers(0, NUM_IDS, (16, 20), dtype=np.uint8)
    x, y = TrainTransform(crop_size=(64, 48), scales=(1.0,), seed=0)(image, label)
    padded = y == 255
    assert int((~padded).sum()) == 16 * 20          # every real pixel kept, nothing invented
    assert torch.all(x[:, padded] == 0)             # mean colour -> exactly 0
    rows, cols = torch.nonzero(~padded, as_tuple=True)
    window = x[:, rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    # (v / 255 - mean) / std with the ImageNet statistics, written out here rather than taken
    # from the normalize() the transform itself calls.
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = torch.from_numpy(((image / 255.0 - mean) / std).transpose(2, 0, 1)).float()
    assert torch.allclose(window, expected, atol=1e-5) or \
        torch.allclose(window, expected.flip(-1), atol=1e-5)


def test_every_scale_and_both_flips_are_drawn():
    # A 10x10 image inside a 32x32 crop: the count of real pixels reveals the scale drawn.
    image = np.zeros((10, 10, 3), np.uint8)
    image[:, :5] = 255                               # left half white: reveals flips
    label = np.zeros((10, 10), np.uint8)
    expected = {round(10 * s) ** 2: s for s in PAPER_SCALES}
    transform = TrainTransform(crop_size=(32, 32), seed=3, **IDENTITY)
    seen_scales, seen_flips = set(), set()
    for _ in range(200):
        x, y = transform(image, label)
        valid = y != 255
        seen_scales.add(expected[int(valid.sum())])
        rows, cols = torch.nonzero(valid, as_tuple=True)
        left = x[0, rows.min(), cols.min()]
        seen_flips.add(bool(left < 0.5))
    assert seen_scales == set(PAPER_SCALES)
    assert seen_flips == {True, False}


def test_no_flip_when_disabled():
    image = np.zeros((10, 10, 3), np.uint8)
    image[:, :5] = 255
    transform = TrainTransform(crop_size=(10, 10), scales=(1.0,), flip=False, seed=0, **IDENTITY)
    for _ in range(20):
        x, _ = transform(image, np.zeros((10, 10), np.uint8))
        assert x[0, 0, 0] == 1.0 and x[0, 0, 9] == 0.0


def test_seeded_and_global_rng_are_reproducible():
    image, label, _ = block_scene(1)
    a = TrainTransform(crop_size=(40, 40), seed=7, color_jitter=0.4)
    b = TrainTransform(crop_size=(40, 40), seed=7, color_jitter=0.4)
    for _ in range(3):
        (xa, ya), (xb, yb) = a(image, label), b(image, label)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    unseeded = TrainTransform(crop_size=(40, 40))      # draws from the global NumPy RNG
    np.random.seed(11)
    first = unseeded(image, label)
    np.random.seed(11)
    second = unseeded(image, label)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    draws = {unseeded(image, label)[1].sum().item() for _ in range(10)}
    assert len(draws) > 1


def test_color_jitter_changes_image_only():
    image, label, _ = block_scene(2)
    differs = 0
    for seed in range(5):
        # Same seed: the geometric draws come first, so crop and flip are the same.
        plain = TrainTransform(crop_size=(40, 32), seed=seed)
        jitter = TrainTransform(crop_size=(40, 32), seed=seed, color_jitter=0.5)
        (xp, yp), (xj, yj) = plain(image, label), jitter(image, label)
        assert torch.equal(yp, yj)
        differs += int(not torch.allclose(xp, xj))
    assert differs > 0


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match='crop_size'):
        TrainTransform(crop_size=(0, 10))
    with pytest.raises(ValueError, match='scales'):
        TrainTransform(scales=())
    with pytest.raises(ValueError, match='color_jitter'):
        TrainTransform(color_jitter=1.5)
    with pytest.raises(ValueError, match='does not match'):
        TrainTransform()(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9), np.uint8))


def test_eval_transform():
    image, label, _ = block_scene(3)
    x, y = EvalTransform()(image, label)
    assert x.shape == (3, 48, 64) and y.dtype == torch.int64
    assert torch.equal(y, torch.from_numpy(label.astype(np.int64)))
    x, y = EvalTransform(size=(32, 24))(image, label)
    assert x.shape == (3, 24, 32) and y.shape == (48, 64)   # scored at full resolution
    x, y = EvalTransform(size=(32, 24), resize_label=True)(image, label)
    assert y.shape == (24, 32) and set(y.unique().tolist()) <= set(np.unique(label).tolist())
