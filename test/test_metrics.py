"""ConfusionMatrix against an independent per-class mask computation; merging, DDP, plots."""
import json
import math

import cv2
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bisenet_core.metrics import ConfusionMatrix
from bisenet_core.metrics_plots import plot_confusion, plot_iou_bars

C = 6


def random_batch(seed: int, shape=(2, 40, 50), num_classes: int = C, ignore_fraction=0.2):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, num_classes, shape).astype(np.uint8)
    # Predictions right 60% of the time, so IoUs are neither 0 nor 1.
    pred = np.where(rng.random(shape) < 0.6, label, rng.integers(0, num_classes, shape))
    label[rng.random(shape) < ignore_fraction] = 255
    return pred.astype(np.int64), label


def reference(pred, label, num_classes=C):
    """IoU, pixel and class accuracy from boolean masks, one class at a time."""
    valid = label != 255
    iou, acc = [], []
    for c in range(num_classes):
        p, t = (pred == c) & valid, (label == c) & valid
        union = (p | t).sum()
        iou.append((p & t).sum() / union if union else math.nan)
        acc.append((p & t).sum() / t.sum() if t.sum() else math.nan)
    pixel = (pred[valid] == label[valid]).mean()
    return np.array(iou), np.array(acc), pixel


@pytest.mark.parametrize('seed', range(4))
def test_matches_independent_computation(seed):
    pred, label = random_batch(seed)
    cm = ConfusionMatrix(C).update(pred, label)
    iou, acc, pixel = reference(pred, label)
    np.testing.assert_allclose(cm.iou(), iou)
    np.testing.assert_allclose(cm.class_accuracy(), acc)
    assert cm.miou() == pytest.approx(np.nanmean(iou))
    assert cm.pixel_accuracy() == pytest.approx(pixel)
    assert cm.total == int((label != 255).sum())
    # Rows are ground truth, columns prediction.
    valid = label != 255
    assert cm.matrix[1, 2] == int(((label == 1) & (pred == 2) & valid).sum())


def test_torch_inputs_and_accumulation_equal_numpy():
    pred, label = random_batch(5)
    by_numpy = ConfusionMatrix(C).update(pred, label)
    by_torch = ConfusionMatrix(C)
    for i in range(pred.shape[0]):            # one image at a time, torch tensors
        by_torch.update(torch.from_numpy(pred[i]).to(torch.uint8), torch.from_numpy(label[i]))
    np.testing.assert_array_equal(by_numpy.matrix, by_torch.matrix)


def test_merge_iadd_add():
    (p1, l1), (p2, l2) = random_batch(1), random_batch(2)
    both = ConfusionMatrix(C).update(np.concatenate([p1, p2]), np.concatenate([l1, l2]))
    a, b = ConfusionMatrix(C).update(p1, l1), ConfusionMatrix(C).update(p2, l2)
    np.testing.assert_array_equal((a + b).matrix, both.matrix)
    a += b
    np.testing.assert_array_equal(a.matrix, both.matrix)
    with pytest.raises(ValueError, match='same number of classes'):
        a.merge(ConfusionMatrix(C + 1))


def test_absent_class_is_nan_and_left_out_of_the_mean():
    pred = np.array([0, 0, 1, 1])
    label = np.array([0, 1, 1, 255])
    cm = ConfusionMatrix(3).update(pred, label)
    iou = cm.iou()
    assert iou[0] == pytest.approx(0.5) and iou[1] == pytest.approx(0.5) and math.isnan(iou[2])
    assert cm.miou() == pytest.approx(0.5)
    assert math.isnan(cm.class_accuracy()[2])
    empty = ConfusionMatrix(3)
    assert math.isnan(empty.miou()) and math.isnan(empty.pixel_accuracy())


def test_out_of_range_values_raise():
    cm = ConfusionMatrix(C)
    with pytest.raises(ValueError, match=r'label values \[6, 9\]'):
        cm.update(np.zeros(4, int), np.array([0, 6, 9, 255]))
    with pytest.raises(ValueError, match='label values'):
        cm.update(torch.zeros(3, dtype=torch.long), torch.tensor([0, 7, 1]))
    with pytest.raises(ValueError, match='prediction values'):
        cm.update(np.array([0, C]), np.array([0, 1]))
    with pytest.raises(ValueError, match='shape'):
        cm.update(np.zeros((2, 3), int), np.zeros((3, 2), int))
    assert cm.total == 0                       # nothing half-counted
    with pytest.raises(ValueError, match='collides'):
        ConfusionMatrix(C, ignore_index=3)
    # A prediction of an out-of-range id on an ignored pixel is not scored.
    cm.update(np.array([0, 99]), np.array([0, 255]))
    assert cm.total == 1


def test_table_and_dict():
    pred, label = random_batch(3)
    cm = ConfusionMatrix(C).update(pred, label)
    names = [f'class{i}' for i in range(C)]
    text = cm.table(names)
    lines = text.splitlines()
    assert all(name in text for name in names) and 'mIoU' in lines[-2]
    assert f'{cm.iou()[2] * 100:.2f}' in lines[3]
    d = json.loads(json.dumps(cm.to_dict(names)))
    assert d['miou'] == pytest.approx(cm.miou()) and set(d['iou']) == set(names)
    missing = ConfusionMatrix(3).update(np.array([0]), np.array([0])).to_dict()
    assert missing['iou']['2'] is None
    with pytest.raises(ValueError, match='class names'):
        cm.table(['a'])


def test_plots_are_written(tmp_path):
    pred, label = random_batch(4)
    cm = ConfusionMatrix(C).update(pred, label)
    names = [f'c{i}' for i in range(C)]
    for path in (plot_confusion(cm, tmp_path / 'cm.png', names),
                 plot_confusion(cm, tmp_path / 'raw.png', names, normalize=False),
                 plot_iou_bars(cm, tmp_path / 'iou.png', names)):
        image = cv2.imread(str(path))
        assert image is not None and image.shape[0] > 100 and image.std() > 0


def test_all_reduce_is_a_noop_without_distributed():
    pred, label = random_batch(6)
    cm = ConfusionMatrix(C).update(pred, label)
    before = cm.matrix.copy()
    cm.all_reduce()
    np.testing.assert_array_equal(cm.matrix, before)


def _ddp_worker(rank, world, port, out):
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
                            world_size=world)
    try:
        pred, label = random_batch(100 + rank)
        cm = ConfusionMatrix(C).update(pred, label).all_reduce()
        np.save(f'{out}/rank{rank}.npy', cm.matrix)
    finally:
        dist.destroy_process_group()


def test_all_reduce_sums_over_ranks(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2)
    expected = sum(ConfusionMatrix(C).update(*random_batch(100 + r)).matrix for r in range(2))
    for rank in range(2):
        np.testing.assert_array_equal(np.load(tmp_path / f'rank{rank}.npy'), expected)
