"""Evaluate a trained model: `python -m training.evaluate --model M --data ROOT`.

--protocol picks how predictions are made and scored (bisenet_core/train/evaluation.py):
'full' (default: the model's input size, logits upsampled to the full label resolution,
optionally multi-scale + flip), 'paper' (the paper's 1536x768 Cityscapes test, single scale),
'torchseg' (the authors' sliding-window evaluation) or 'torchseg-speed' (the authors'
real-time evaluation, scored at 1/8). Prints a per-class IoU table and the protocol, writes
results.json (which records the protocol) and a confusion-matrix plot.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from bisenet_core.data import formats
from bisenet_core.hardware import DEVICES, device_arg, resolve_amp, resolve_device
from bisenet_core.metrics import ConfusionMatrix
from bisenet_core.metrics_plots import plot_confusion
from bisenet_core.modelfile import ModelFileError, load_model
from bisenet_core.spec import ModelSpec
from bisenet_core.train.config import ConfigError, RunConfig, load_config
from bisenet_core.train.data import open_dataset, prepare_synthetic
from bisenet_core.train.evaluation import (MULTI_SCALES, PROTOCOLS, RESOLUTIONS,
                                           TORCHSEG_MULTI_SCALES, check_protocol,
                                           evaluate_dataset)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='python -m training.evaluate',
        description='Mean IoU, per-class IoU and pixel accuracy of a model file on a dataset '
                    'split, by a named protocol (--protocol): a number is comparable only with '
                    'one measured the same way.',
        epilog='protocols:\n'
               '  full            resize to the model\'s input size (x --scales), upsample the '
               'logits to the\n                  full label resolution (default; what the '
               'node does)\n'
               '  paper           the paper\'s Table 6 test: Cityscapes scaled to 1536x768, '
               'other datasets at\n                  their own size; single scale; full label '
               'resolution\n'
               '  torchseg        the authors\' TorchSeg evaluation: full-resolution image, '
               '1024x1024 sliding\n                  windows (stride 854), summed softmax; '
               '--multiscale uses 0.5..1.75\n'
               '  torchseg-speed  TorchSeg\'s real-time evaluation: image resized to the '
               'model\'s input size,\n                  scored at 1/8 against '
               'nearest-downsampled labels\n'
               'examples:\n  python -m training.evaluate --model runs/synthetic_xception39/'
               'best_model.pt --data data/synthetic --split test --multiscale --flip\n'
               '  python -m training.evaluate --model runs/cityscapes_resnet18/model.pt '
               '--data /data/cityscapes --protocol paper',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', required=True, type=Path,
                        help='model file (.pt) written by training.train, or an .onnx export '
                             '(with --backend onnxruntime|tensorrt)')
    parser.add_argument('--backend', default='model',
                        choices=('model', 'torch', 'onnxruntime', 'tensorrt'),
                        help='model: the PyTorch model, multi-scale capable (default); '
                             'torch|onnxruntime|tensorrt: score what the node runs, through '
                             'bisenet_core.inference.Segmenter (single scale)')
    parser.add_argument('--data', required=True, type=Path, help='dataset root folder')
    parser.add_argument('--format', choices=tuple(formats.REGISTRY),
                        help='dataset layout (default: the one found in --data, else the '
                             "model's dataset, e.g. camvid)")
    parser.add_argument('--split', default='val', help='split to score (default: val)')
    parser.add_argument('--config', type=Path,
                        help='synthetic drives only: the training config whose data.synthetic '
                             'settings render --data when it is not there yet (default: '
                             "config/train/<the model's config>.yaml)")
    parser.add_argument('--protocol', choices=PROTOCOLS, default='full',
                        help='how to predict and score (see below; default: full)')
    parser.add_argument('--multiscale', action='store_true',
                        help=f'average over scales {MULTI_SCALES} of the model input size '
                             f'(--protocol torchseg: {TORCHSEG_MULTI_SCALES} of the image)')
    parser.add_argument('--scales', type=float, nargs='+',
                        help='explicit scales instead of 1.0 or the --multiscale set')
    parser.add_argument('--flip', action='store_true', help='also average horizontal flips')
    parser.add_argument('--device', default='auto', type=device_arg, metavar='DEVICE',
                        help=f"{', '.join(DEVICES)} or cuda:N (default auto: a GPU when "
                             'the backend can use one)')
    parser.add_argument('--max-images', type=int, default=0, help='score only the first N')
    parser.add_argument('--out', type=Path,
                        help='folder for results.json and confusion.png (default: next to '
                             'the model, eval_<split>/)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    return parser.parse_args(argv)


PRESETS = Path(__file__).resolve().parents[1] / 'config' / 'train'


def synthetic_config(spec: ModelSpec, config: Path | None = None) -> RunConfig:
    """The training config that rendered a synthetic model's drives (its data.synthetic).

    `config` if given, else the preset the model was trained with (spec.info['config']).
    """
    if config is None:
        name = spec.info.get('config')
        if not name:
            raise ConfigError('the model file names no training config; pass --config')
        config = PRESETS / f'{name}.yaml'
        if not config.is_file():
            raise ConfigError(f'the model was trained with config {name!r}, not found as '
                              f'{config}; pass --config')
    return load_config(config)


def prepare_data(args: argparse.Namespace, spec: ModelSpec) -> None:
    """Render a synthetic model's drives into --data on first use, as training does."""
    synthetic = args.format == 'synthetic' or (
        args.format is None and spec.info.get('data') == 'synthetic')
    if not synthetic or (args.data / args.split).is_dir():
        return
    config = synthetic_config(spec, args.config)
    config.data.root = str(args.data)
    prepare_synthetic(config)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    multiscale = args.multiscale or args.flip or args.scales
    if args.backend != 'model' and (multiscale or args.protocol != 'full'):
        print('error: --multiscale/--scales/--flip and --protocol other than full need '
              '--backend model', file=sys.stderr)
        return 2
    default_scales = TORCHSEG_MULTI_SCALES if args.protocol == 'torchseg' else MULTI_SCALES
    scales = tuple(args.scales or (default_scales if args.multiscale else (1.0,)))
    try:
        check_protocol(args.protocol, scales, args.flip)
    except ValueError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    try:
        if args.backend == 'model':
            device = torch.device(resolve_device(args.device, 'torch', warn=False))
            model, spec = load_model(args.model, device)
        else:
            from bisenet_core.inference import Segmenter

            model = Segmenter(args.model, backend=args.backend, device=args.device,
                              upsample='bilinear')
            spec, device = model.spec, torch.device(model.device)
    except (ModelFileError, ValueError, RuntimeError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    data_format = args.format or formats.guess_format(args.data, spec.dataset)
    try:
        prepare_data(args, spec)
        dataset = open_dataset(data_format, args.data, args.split, spec.num_classes)
    except (OSError, ValueError) as exc:
        print(f'error: dataset {args.data} ({data_format}, split {args.split}): {exc}',
              file=sys.stderr)
        return 2
    count = min(len(dataset), args.max_images) if args.max_images else len(dataset)
    width, height = spec.input_size
    print(f'evaluating {args.model} with {args.backend} ({spec.backbone}, {spec.architecture}, '
          f'input {width}x{height}) on {count} {args.split} images of {args.data}, protocol '
          f'{args.protocol}, scales {list(scales)}, flip {args.flip}, device {device}')
    print(f'protocol {args.protocol}: scored at {RESOLUTIONS[args.protocol]}; compare only '
          'with numbers measured by the same protocol (docs/training.md)')

    amp = resolve_amp('auto', device)
    autocast = (lambda: torch.autocast(device.type, dtype=amp)) if amp is not None else None
    confusion = ConfusionMatrix(spec.num_classes, ignore_index=spec.ignore_index)
    if args.backend == 'model':
        evaluate_dataset(model, dataset, spec, device, confusion, scales=scales, flip=args.flip,
                         indices=range(count), autocast=autocast,
                         progress=not args.no_progress, desc=args.split,
                         protocol=args.protocol, data_format=data_format)
    else:
        for i in tqdm(range(count), desc=args.split, disable=args.no_progress):
            image, label = dataset[i]
            confusion.update(model(image), np.asarray(label))

    iou = [float(v) for v in confusion.iou()]
    width = max(len(n) for n in spec.class_names)
    print(f'{"class":<{width}}  IoU')
    for name, value in zip(spec.class_names, iou):
        print(f'{name:<{width}}  {value:.4f}')
    miou, accuracy = float(confusion.miou()), float(confusion.pixel_accuracy())
    print(f'{"mIoU":<{width}}  {miou:.4f}\n{"pixel acc":<{width}}  {accuracy:.4f}')
    print(f'(protocol {args.protocol}, {RESOLUTIONS[args.protocol]})')

    out = args.out or args.model.parent / f'eval_{args.split}'
    out.mkdir(parents=True, exist_ok=True)
    results = {'model': str(args.model), 'data': str(args.data), 'format': data_format,
               'split': args.split, 'images': count, 'backend': args.backend,
               'protocol': args.protocol, 'scales': list(scales), 'flip': args.flip,
               'resolution': RESOLUTIONS[args.protocol],
               # miou, pixel_accuracy, iou per class, ...: NaN (class absent) as null, valid JSON
               **confusion.to_dict(spec.class_names), 'spec_info': spec.info}
    (out / 'results.json').write_text(json.dumps(results, indent=2) + '\n')
    plot_confusion(confusion, out / 'confusion.png', class_names=spec.class_names)
    print(f'wrote {out / "results.json"} and {out / "confusion.png"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
