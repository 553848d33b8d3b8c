"""The training loop on a tiny synthetic drive: learning, exact resume, config reaching code."""
import csv

import pytest
import torch

from bisenet_core.modelfile import load_model
from bisenet_core.train.checkpoint import load_checkpoint
from bisenet_core.train.config import ConfigError, load_config
from bisenet_core.train.data import build_datasets, build_train_loader
from bisenet_core.train.runtime import Runtime
from training.train import train

CPU = Runtime(torch.device('cpu'))


@pytest.fixture(scope='module')
def drive_root(tmp_path_factory):
    """Where the tiny synthetic drives are generated once for the whole module."""
    return tmp_path_factory.mktemp('synthetic')


def tiny_config(root, out, *overrides):
    """A few-second run: 96x64 frames, 64x64 crops, batch 4, no validation until the end."""
    return load_config(None, [
        'name=tiny', 'model.input_size=[96, 64]', 'data.format=synthetic', f'data.root={root}',
        'data.synthetic.train_seeds=[1, 2]', 'data.synthetic.train_frames=6',
        'data.synthetic.val_frames=2', 'data.synthetic.test_frames=0',
        'data.synthetic.size=[96, 64]', 'data.crop_size=[64, 64]', 'data.scales=[0.75, 1.25]',
        'data.num_workers=0', 'train.batch_size=4', 'train.iterations=6',
        'train.warmup_iters=2', 'train.lr=0.02', 'train.eval_interval=0',
        'train.checkpoint_interval=3', 'train.log_interval=1', 'train.threads=1',
        f'train.output_dir={out}', *overrides])


def read_csv(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def test_a_few_dozen_steps_lower_the_loss(drive_root, tmp_path):
    config = tiny_config(drive_root, tmp_path, 'train.iterations=36', 'train.warmup_iters=4',
                         'train.lr=0.05', 'data.scales=[1.0]', 'data.flip=false')
    result = train(config, CPU, progress=False)
    losses = result['losses']
    assert len(losses) == 36 and not result['interrupted']
    first, last = sum(losses[:6]) / 6, sum(losses[-6:]) / 6
    assert last < 0.7 * first, (first, last)
    # The model file the node loads: weights + spec with provenance.
    model, spec = load_model(tmp_path / 'model.pt')
    assert spec.input_size == (96, 64) and spec.num_classes == 11
    assert spec.info['iterations'] == 36 and spec.info['config'] == 'tiny'
    assert 0.0 <= spec.info['val_miou'] <= 1.0
    assert (tmp_path / 'best_model.pt').is_file() and (tmp_path / 'best.ckpt').is_file()
    val = read_csv(tmp_path / 'val.csv')
    assert [row['step'] for row in val] == ['36'] and 'pedestrian' in val[0]


def test_resume_gives_the_same_loss_sequence(drive_root, tmp_path):
    whole = train(tiny_config(drive_root, tmp_path / 'whole'), CPU, progress=False)['losses']
    first = train(tiny_config(drive_root, tmp_path / 'parts'), CPU, progress=False, stop_at=3)
    assert first['interrupted'] and first['step'] == 3 and first['model_path'] is None
    ckpt = load_checkpoint(tmp_path / 'parts' / 'last.ckpt')
    assert ckpt['step'] == 3 and ckpt['config']['name'] == 'tiny'
    assert {'model', 'optimizer', 'scheduler', 'rng', 'best_miou'} <= set(ckpt)
    second = train(tiny_config(drive_root, tmp_path / 'parts'), CPU, resume=ckpt,
                   progress=False)
    assert len(whole) == 6 and len(second['losses']) == 3
    assert first['losses'] + second['losses'] == pytest.approx(whole, rel=1e-5, abs=1e-6)
    steps = [int(row['step']) for row in read_csv(tmp_path / 'parts' / 'log.csv')]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_loader_follows_data_and_batch_settings(drive_root, tmp_path):
    config = tiny_config(drive_root, tmp_path, 'data.crop_size=[48, 32]', 'train.batch_size=6',
                         'train.grad_accum=3')
    train_set, val_set = build_datasets(config, CPU)
    assert len(train_set) == 12 and len(val_set) == 2
    images, labels = next(iter(build_train_loader(train_set, config, CPU, micro_batch=2)))
    assert images.shape == (2, 3, 32, 48) and labels.shape == (2, 32, 48)
    assert labels.dtype == torch.int64 and images.dtype == torch.float32
    # Same step -> same batch (resumable); another seed -> another batch.
    again, _ = next(iter(build_train_loader(train_set, config, CPU, micro_batch=2)))
    assert torch.equal(images, again)
    other = tiny_config(drive_root, tmp_path, 'data.crop_size=[48, 32]', 'train.seed=7')
    moved, _ = next(iter(build_train_loader(train_set, other, CPU, micro_batch=2)))
    assert not torch.equal(images, moved)
    later, _ = next(iter(build_train_loader(train_set, config, CPU, micro_batch=2,
                                            start_batch=1)))
    loader = iter(build_train_loader(train_set, config, CPU, micro_batch=2))
    next(loader)
    assert torch.equal(next(loader)[0], later)


@pytest.fixture(scope='module')
def base_losses(drive_root, tmp_path_factory):
    """Losses of a 3-step reference run that each changed setting must alter."""
    out = tmp_path_factory.mktemp('base')
    config = tiny_config(drive_root, out, 'train.iterations=3', 'train.checkpoint_interval=0')
    return train(config, CPU, progress=False)['losses']


@pytest.mark.parametrize('override', [
    'train.aux_weight=0.0', 'train.ohem_thresh=0.3',
    'train.lr=0.001', 'train.momentum=0.0', 'train.weight_decay=0.1', 'train.seed=3',
    'train.warmup_factor=1.0', 'train.head_lr_multiplier=10', 'train.grad_accum=2',
    'data.flip=false', 'data.color_jitter=0.5', 'data.scales=[1.0]',
])
def test_config_values_change_the_run(drive_root, tmp_path, base_losses, override):
    config = tiny_config(drive_root, tmp_path, 'train.iterations=3',
                         'train.checkpoint_interval=0', override)
    changed = train(config, CPU, progress=False)['losses']
    assert changed != pytest.approx(base_losses, rel=1e-6), override


def test_ohem_min_fraction_reaches_the_loss(drive_root, tmp_path):
    # With a tiny threshold no pixel is "hard": the minimum alone decides what is kept.
    losses = [train(tiny_config(drive_root, tmp_path / str(f), 'train.iterations=1',
                                'train.warmup_iters=0',
                                'train.ohem_thresh=1.0e-30', f'train.ohem_min_fraction={f}'),
                    CPU, progress=False)['losses'][0] for f in (0.05, 0.5)]
    assert losses[0] > losses[1] > 0


def test_schedule_and_logging_settings_reach_the_log(drive_root, tmp_path):
    config = tiny_config(drive_root, tmp_path, 'train.iterations=4', 'train.log_interval=2',
                         'train.eval_interval=2', 'train.warmup_iters=0', 'train.poly_power=1.0',
                         'train.lr=0.04', 'train.eval_max_images=1')
    train(config, CPU, progress=False)
    rows = read_csv(tmp_path / 'log.csv')
    assert [int(r['step']) for r in rows] == [2, 4]
    # lr logged is the one used for that step: 0.04 * (1 - (step - 1) / 4).
    assert [float(r['lr']) for r in rows] == pytest.approx([0.03, 0.01])
    assert [int(r['step']) for r in read_csv(tmp_path / 'val.csv')] == [2, 4]
    assert load_checkpoint(tmp_path / 'last.ckpt')['step'] == 4


def test_data_with_another_class_count_than_the_model_is_refused(drive_root, tmp_path):
    # Synthetic drives carry the 11 CamVid classes; a 19-class Cityscapes model must not
    # train on them (its loss would silently learn the wrong classes).
    config = tiny_config(drive_root, tmp_path, 'model.dataset=cityscapes')
    with pytest.raises(ConfigError, match='has 11 classes but the model has 19'):
        build_datasets(config, CPU)
