"""Train BiSeNet: `python -m training.train --config config/train/camvid_xception39.yaml`.

The recipe: SGD with poly decay (power 0.9), batch 16, random scale/crop/flip, principal +
two auxiliary losses (alpha = 1), OHEM cross-entropy; the presets in config/train/ set the
paper's (section 4.1) or the authors' TorchSeg values and say which (docs/training.md).
Several processes: `torchrun --nproc_per_node=N -m training.train --config ...`.

Outputs in train.output_dir: last.ckpt (resumable), best.ckpt, model.pt and best_model.pt
(model files the node loads), log.csv (loss, lr, throughput per logged step), val.csv.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from bisenet_core.hardware import DEVICES, device_arg
from bisenet_core.metrics import ConfusionMatrix
from bisenet_core.model import bisenet, load_backbone_weights
from bisenet_core.model.architectures import layout
from bisenet_core.model.pretrained import BackboneWeightsError
from bisenet_core.modelfile import ModelFileError, read_model_file, save_model
from bisenet_core.spec import ModelSpec
from bisenet_core.train.batchnorm import (MIN_BATCHNORM_BATCH, batchnorm_batch, set_train_mode,
                                          small_batchnorm_warning)
from bisenet_core.train.checkpoint import load_checkpoint, save_checkpoint, set_rng_states
from bisenet_core.train.config import ConfigError, RunConfig, config_from_dict, load_config
from bisenet_core.train.data import build_datasets, build_train_loader
from bisenet_core.train.evaluation import evaluate_dataset
from bisenet_core.train.finetune import load_init_weights
from bisenet_core.train.loss import OhemCrossEntropy, bisenet_loss
from bisenet_core.train.optim import build_optimizer
from bisenet_core.train.runtime import (Runtime, all_reduce_sum, setup_runtime,
                                        teardown_runtime)
from bisenet_core.train.schedule import warmup_poly_factor, warmup_poly_scheduler


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='python -m training.train',
        description='Train BiSeNet (ECCV 2018) with the paper\'s recipe.\n'
                    'Settings come from a commented YAML file (config/train/*.yaml); any key\n'
                    'can be overridden with --set section.key=value. Writes to train.output_dir:\n'
                    'log.csv, val.csv, last.ckpt/best.ckpt (resumable), model.pt/best_model.pt\n'
                    '(model files for the node, training.evaluate and training.export).\n'
                    'Ctrl-C saves last.ckpt; --resume continues with the same batches.',
        epilog='examples:\n'
               '  python -m training.train --config config/train/synthetic_xception39.yaml\n'
               '  python -m training.train --config config/train/camvid_xception39.yaml \\\n'
               '      --data-root data/camvid --set train.lr=0.01\n'
               '  python -m training.train --resume runs/camvid_x39/last.ckpt\n'
               '  python -m training.train --config config/train/synthetic_resnet18.yaml \\\n'
               '      --init-from models/bisenetv1_city.pt --set train.lr=0.005\n'
               '  torchrun --nproc_per_node=4 -m training.train '
               '--config config/train/cityscapes_resnet18.yaml',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', type=Path,
                        help='YAML run config (model/data/train sections); required unless '
                             '--resume is given')
    parser.add_argument('--set', dest='overrides', action='append', default=[],
                        metavar='KEY=VALUE',
                        help='override a config value, e.g. --set train.lr=0.01 '
                             '--set data.scales=[0.75,1.0,1.5] (repeatable; values parsed as '
                             'YAML)')
    parser.add_argument('--resume', type=Path, metavar='CKPT',
                        help='continue a run from its checkpoint (last.ckpt); the run\'s config '
                             'is taken from the checkpoint, --set still applies')
    parser.add_argument('--data-root', help='shortcut for --set data.root=...')
    parser.add_argument('--output-dir', help='shortcut for --set train.output_dir=...')
    parser.add_argument('--iterations', type=int, help='shortcut for --set train.iterations=N')
    parser.add_argument('--batch-size', type=int, help='shortcut for --set train.batch_size=N')
    parser.add_argument('--device', type=device_arg, metavar='DEVICE',
                        help=f"shortcut for --set train.device=... ({', '.join(DEVICES)} or "
                             'cuda:N)')
    parser.add_argument('--init-from', type=Path, metavar='MODEL',
                        help='fine-tune from a model file (e.g. one training.import_weights '
                             'wrote): sets model.init_from and takes model.backbone, '
                             'architecture, mean and std from the file (model.pretrained '
                             'is cleared); classifiers start fresh when the classes differ')
    parser.add_argument('--no-progress', action='store_true', help='no tqdm progress bar')
    args = parser.parse_args(argv)
    if args.config is None and args.resume is None:
        parser.error('give --config FILE (or --resume CKPT)')
    if args.init_from is not None:
        if args.resume is not None:
            parser.error('--init-from starts a run; --resume continues one (not both)')
        try:
            _, spec = read_model_file(args.init_from)
        except ModelFileError as exc:
            parser.error(str(exc))
        args.overrides += [f'model.init_from={json.dumps(str(args.init_from))}',
                           'model.pretrained=',
                           f'model.backbone={spec.backbone}',
                           f'model.architecture={spec.architecture}',
                           f'model.mean={list(spec.mean)}', f'model.std={list(spec.std)}']
    shortcuts = {'data_root': 'data.root', 'output_dir': 'train.output_dir',
                 'iterations': 'train.iterations', 'batch_size': 'train.batch_size',
                 'device': 'train.device'}
    for attr, key in shortcuts.items():
        value = getattr(args, attr)
        if value is not None:
            args.overrides.append(f'{key}={value}')
    return args


def build_model(config: RunConfig, runtime: Runtime, spec: ModelSpec,
                initialise: bool = True) -> torch.nn.Module:
    """A BiSeNet for the spec's classes on the device, with its initial weights.

    When `initialise`: model.pretrained (ImageNet backbone) or model.init_from (a model file
    to fine-tune) is loaded; a resumed run takes all weights from its checkpoint instead.
    """
    model = bisenet(spec.num_classes, backbone=spec.backbone, architecture=spec.architecture,
                    aux_head_channels=spec.aux_head_channels)
    if initialise and config.model.pretrained:
        load_backbone_weights(model, config.model.pretrained)
    if initialise and config.model.init_from:
        fresh = load_init_weights(model, config.model.init_from, spec)
        if runtime.is_main:
            print(f'fine-tuning from {config.model.init_from}: '
                  f'{len(model.state_dict()) - len(fresh)} tensors loaded'
                  + (f', fresh: {", ".join(fresh)}' if fresh else ''))
    if _sync_bn(config, runtime):
        # Per-GPU batches are small (16 / N); BatchNorm statistics over all ranks stay sound.
        # (torch's SyncBatchNorm is GPU-only; on CPU, DDP broadcasts rank 0's BN buffers.)
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model.to(runtime.device)


class CsvLog:
    """Append rows to a CSV file (header written once); rank 0 only."""

    def __init__(self, path: Path, fields: list[str], enabled: bool = True):
        self.path, self.fields, self.enabled = path, fields, enabled
        if enabled and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open('w', newline='') as f:
                csv.DictWriter(f, fields).writeheader()

    def write(self, row: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open('a', newline='') as f:
                csv.DictWriter(f, self.fields, extrasaction='ignore').writerow(row)


class StopFlag:
    """Ctrl-C / SIGTERM ask the loop to stop after the current step and save a checkpoint.

    A second Ctrl-C stops at once (still saving).
    """

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. called from a test worker)
                pass
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def validate(model, val_set, spec: ModelSpec, config: RunConfig, runtime: Runtime,
             progress: bool) -> ConfusionMatrix:
    """Confusion matrix over the validation set, images shared out over ranks."""
    confusion = ConfusionMatrix(spec.num_classes, ignore_index=spec.ignore_index)
    count = len(val_set)
    if config.train.eval_max_images:
        count = min(count, config.train.eval_max_images)
    indices = range(runtime.rank, count, runtime.world_size)
    module = getattr(model, 'module', model)  # no DDP forward: ranks see different counts
    evaluate_dataset(module, val_set, spec, runtime.device, confusion, indices=indices,
                     autocast=runtime.autocast, progress=progress and runtime.is_main,
                     protocol=config.train.eval_protocol, data_format=config.data.format)
    return confusion.all_reduce()  # sums over ranks when distributed


def train(config: RunConfig, runtime: Runtime, resume: dict | None = None,
          stop_at: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Run (or continue) training.

    Returns {'losses': per-step losses of this call, 'step', 'best_miou', 'model' (possibly
    DDP-wrapped), 'model_path' (None when interrupted), 'interrupted'}.

    stop_at: leave after this many steps as if interrupted (tests use it to check resuming).
    """
    t = config.train
    out = Path(t.output_dir)
    if t.threads:
        torch.set_num_threads(t.threads)
    world = runtime.world_size
    micro_batch = t.batch_size // (t.grad_accum * world)
    if micro_batch * t.grad_accum * world != t.batch_size or micro_batch < 2:
        raise ConfigError(f'train.batch_size {t.batch_size} must split into grad_accum '
                          f'{t.grad_accum} x {world} processes x >= 2 images')

    spec = config.model_spec()  # classes, palette, input size; `info` is added when saving
    # Same initial weights on every rank (DDP also broadcasts them), same on resume.
    torch.manual_seed(t.seed)
    model = build_model(config, runtime, spec, initialise=resume is None)
    optimizer = build_optimizer(model, t.lr, t.momentum, t.weight_decay, t.head_lr_multiplier,
                                t.head_lr_parts)
    scheduler = warmup_poly_scheduler(optimizer, t.iterations, t.warmup_iters, t.warmup_factor,
                                      t.poly_power)
    scaler = runtime.grad_scaler()
    step, best_miou = 0, -1.0
    if resume is not None:
        model.load_state_dict(resume['model'])
        optimizer.load_state_dict(resume['optimizer'])
        scheduler.load_state_dict(resume['scheduler'])
        if scaler is not None and resume['scaler']:
            scaler.load_state_dict(resume['scaler'])
        step, best_miou = resume['step'], resume['best_miou']
        set_rng_states(resume['rng'])
        # The lr of the next step follows this run's schedule (train.iterations may have
        # been raised to train longer).
        factor = warmup_poly_factor(step, t.iterations, t.warmup_iters, t.warmup_factor,
                                    t.poly_power)
        for group, base_lr in zip(optimizer.param_groups, scheduler.base_lrs):
            group['lr'] = base_lr * factor
    if runtime.distributed:
        model = DistributedDataParallel(
            model, device_ids=[runtime.device.index] if runtime.device.type == 'cuda' else None)
    set_train_mode(model, t.freeze_bn)
    synced = _sync_bn(config, runtime)
    bn_batch = batchnorm_batch(micro_batch, world, synced)
    if runtime.is_main and not t.freeze_bn and bn_batch < MIN_BATCHNORM_BATCH:
        warnings.warn(small_batchnorm_warning(micro_batch, world, synced, t.grad_accum),
                      stacklevel=2)

    # Data: the batch of step s depends only on (seed, s), so resuming continues the sequence.
    train_set, val_set = build_datasets(config, runtime, spec)
    loader = build_train_loader(train_set, config, runtime, micro_batch,
                                start_batch=step * t.grad_accum, spec=spec)
    batches = iter(loader)
    criterion = OhemCrossEntropy(t.ohem_thresh, t.ohem_min_fraction, spec.ignore_index,
                                 t.ohem_min_fraction_of)
    loss_align_corners = layout(spec.architecture).loss_align_corners

    main = runtime.is_main
    log = CsvLog(out / 'log.csv', ['step', 'loss', 'loss_principal', 'loss_aux0', 'loss_aux1',
                                   'lr', 'images_per_s', 'elapsed_s'], enabled=main)
    spec_names = spec.class_names
    val_log = CsvLog(out / 'val.csv', ['step', 'miou', 'pixel_accuracy', *spec_names],
                     enabled=main)
    writer = _tensorboard(out) if main else None
    if main:
        print(f'training {config.name}: {config.model.backbone}, {len(train_set)} train / '
              f'{len(val_set)} val images, batch {t.batch_size} = {world} process(es) x '
              f'{t.grad_accum} accumulation x {micro_batch}, device {runtime.device}, '
              f'amp {runtime.amp_dtype or "off"}, steps {step} -> {t.iterations}, out {out}')
        print(f'{spec.architecture} layout; lr {t.lr:g}, x{t.head_lr_multiplier:g} on '
              f'{", ".join(t.head_lr_parts) or "nothing"}; BatchNorm '
              + ('frozen' if t.freeze_bn else f'statistics over {bn_batch} images')
              + f'; validation protocol {t.eval_protocol}'
              + (f'; recipe: {config.source}' if config.source else ''))

    def checkpoint(path: Path) -> None:
        if main:
            save_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler,
                            scaler=scaler, step=step, config=config.to_dict(),
                            best_miou=best_miou)

    def model_file(path: Path, miou: float) -> None:
        if main:
            info = {'iterations': step, 'val_miou': round(float(miou), 4),
                    'val_protocol': t.eval_protocol, 'config': config.name,
                    'data': config.data.format, 'recipe_source': config.source}
            save_model(path, model, spec.replace(info=info))

    losses: list[float] = []
    bar = tqdm(total=t.iterations, initial=step, desc='train', dynamic_ncols=True,
               disable=not (progress and main))
    started = time.perf_counter()
    train_time, logged_steps = 0.0, 0
    last_miou = float('nan')
    with StopFlag() as stop:
        try:
            while step < t.iterations:
                step_start = time.perf_counter()
                # Gradient accumulation: grad_accum micro-batches make one batch_size step.
                # DDP all-reduces gradients on the last micro-batch only (no_sync before).
                parts_sum: dict[str, float] = {}
                for micro in range(t.grad_accum):
                    images, labels = next(batches)
                    images = images.to(runtime.device, non_blocking=True)
                    labels = labels.to(runtime.device, non_blocking=True)
                    last_micro = micro == t.grad_accum - 1 or not runtime.distributed
                    no_sync = contextlib.nullcontext() if last_micro else model.no_sync()
                    with no_sync, runtime.autocast():
                        output = model(images)
                        loss, parts = bisenet_loss(output.logits, output.aux, labels, criterion,
                                                   t.aux_weight, t.label_downsample,
                                                   loss_align_corners)
                        loss = loss / t.grad_accum
                    if scaler is not None:
                        scaler.scale(loss).backward()
                    else:
                        loss.backward()
                    for k, v in parts.items():
                        parts_sum[k] = parts_sum.get(k, 0.0) + v / t.grad_accum
                    parts_sum['loss'] = parts_sum.get('loss', 0.0) + float(loss.detach())
                if not math.isfinite(parts_sum['loss']):
                    raise FloatingPointError(f'loss is {parts_sum["loss"]} at step {step}; '
                                             'lower train.lr or raise train.warmup_iters')
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                lr = optimizer.param_groups[0]['lr']
                scheduler.step()
                step += 1
                losses.append(parts_sum['loss'])

                # Logging: loss, lr and throughput (images over all ranks per second,
                # averaged since the last log line; validation time excluded).
                bar.update(1)
                train_time += time.perf_counter() - step_start
                logged_steps += 1
                if step % t.log_interval == 0 or step == t.iterations:
                    images_per_s = t.batch_size * logged_steps / max(1e-9, train_time)
                    train_time, logged_steps = 0.0, 0
                    bar.set_postfix(loss=f'{parts_sum["loss"]:.3f}', lr=f'{lr:.2e}',
                                    img_s=f'{images_per_s:.1f}', miou=f'{last_miou:.3f}')
                    row = {'step': step, 'lr': lr, 'images_per_s': round(images_per_s, 2),
                           'elapsed_s': round(time.perf_counter() - started, 1),
                           **{k: round(v, 5) for k, v in parts_sum.items()}}
                    log.write(row)
                    if main and not progress:  # no bar: the same numbers as a plain line
                        print(f'step {step}/{t.iterations} loss {parts_sum["loss"]:.4f} '
                              f'lr {lr:.3e} {images_per_s:.1f} img/s', flush=True)
                    if writer is not None:
                        for k in ('loss', 'lr', 'images_per_s'):
                            writer.add_scalar(f'train/{k}', row[k], step)

                # Periodic validation; the best model so far is kept as best.ckpt/best_model.pt.
                if (t.eval_interval and step % t.eval_interval == 0) or step == t.iterations:
                    confusion = validate(model, val_set, spec, config, runtime, progress)
                    last_miou = float(confusion.miou())
                    iou = confusion.iou()
                    val_log.write({'step': step, 'miou': round(last_miou, 5),
                                   'pixel_accuracy': round(float(confusion.pixel_accuracy()), 5),
                                   **{n: round(float(v), 5) for n, v in zip(spec_names, iou)}})
                    if main:
                        tqdm.write(f'step {step}: val mIoU {last_miou:.4f}, pixel accuracy '
                                   f'{confusion.pixel_accuracy():.4f}')
                    if writer is not None:
                        writer.add_scalar('val/miou', last_miou, step)
                    if last_miou > best_miou:
                        best_miou = last_miou
                        checkpoint(out / 'best.ckpt')
                        model_file(out / 'best_model.pt', last_miou)

                if t.checkpoint_interval and step % t.checkpoint_interval == 0:
                    checkpoint(out / 'last.ckpt')
                if _should_stop(stop.requested, runtime) or step == stop_at:
                    break
        except KeyboardInterrupt:
            # A second Ctrl-C mid-step: gradients of the unfinished step are simply dropped.
            pass
    bar.close()
    interrupted = step < t.iterations
    checkpoint(out / 'last.ckpt')
    model_path = out / 'model.pt'
    if not interrupted and losses:
        model_file(model_path, last_miou)
    if main and interrupted:
        print(f'stopped at step {step}; resume with --resume {out / "last.ckpt"}')
    elif main:
        print(f'done: {step} steps, best val mIoU {best_miou:.4f}, model file {model_path}')
    if writer is not None:
        writer.close()
    return {'losses': losses, 'step': step, 'best_miou': best_miou, 'model': model,
            'model_path': None if interrupted else model_path, 'interrupted': interrupted}


def _sync_bn(config: RunConfig, runtime: Runtime) -> bool:
    """Whether SyncBatchNorm is used: several CUDA processes and train.sync_bn."""
    return runtime.distributed and config.train.sync_bn and runtime.device.type == 'cuda'


def _should_stop(requested: bool, runtime: Runtime) -> bool:
    """All ranks stop together when any of them was asked to."""
    if not runtime.distributed:
        return requested
    flag = torch.tensor([1.0 if requested else 0.0], device=runtime.device)
    return bool(all_reduce_sum(flag, runtime).item() > 0)


def _tensorboard(out: Path):
    """A SummaryWriter when tensorboard is installed, else None (the CSV log always exists)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / 'tensorboard'))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    resume = None
    try:
        if args.resume is not None:
            resume = load_checkpoint(args.resume)
            base = config_from_dict(resume['config'])
            config = load_config(None, args.overrides, base=base.to_dict()) if args.overrides \
                else base
        else:
            config = load_config(args.config, args.overrides)
    except (ConfigError, RuntimeError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    runtime = setup_runtime(config.train.device, config.train.amp_dtype)
    try:
        result = train(config, runtime, resume=resume, progress=not args.no_progress)
    except BackboneWeightsError as exc:
        print(f'error: {exc} (model.pretrained: put the ImageNet weights the config names '
              "there, or --set model.pretrained='' to train from scratch, expect a lower "
              'mIoU)', file=sys.stderr)
        return 2
    except (ConfigError, ModelFileError) as exc:  # model.init_from does not fit or is damaged
        print(f'error: {exc}', file=sys.stderr)
        return 2
    finally:
        teardown_runtime()
    return 130 if result['interrupted'] else 0


if __name__ == '__main__':
    sys.exit(main())
