"""Import published BiSeNet weights: `python -m training.import_weights --from coincheung ...`.

Turns a checkpoint published by CoinCheung/BiSeNet (BiSeNetV1, ResNet-18) into a model file
the node, training.export, training.evaluate, the replay evaluator and training.train
(fine-tuning) take like any other. Nothing is downloaded: fetch the .pth yourself.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bisenet_core.model.pretrained import WeightsFileError
from bisenet_core.published import COINCHEUNG_DATASETS, import_coincheung
from bisenet_core.spec import SIZE_DIVISOR, size_arg

SOURCES = ('coincheung',)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    urls = '\n'.join(f'  {name:<11} {d.url}' for name, d in COINCHEUNG_DATASETS.items())
    parser = argparse.ArgumentParser(
        prog='python -m training.import_weights',
        description='Convert a published BiSeNet checkpoint into a model file (.pt) with its\n'
                    'class list, palette, normalisation and input size. Every key is mapped\n'
                    'and every tensor shape checked; a checkpoint with missing or unexpected\n'
                    'keys is refused, naming them.',
        epilog='CoinCheung/BiSeNet BiSeNetV1 checkpoints (download them yourself):\n'
               f'{urls}\n\n'
               'example:\n'
               '  python -m training.import_weights --from coincheung '
               'model_final_v1_city_new.pth \\\n'
               '      --dataset cityscapes --out models/bisenetv1_city.pt\n'
               '  ros2 launch bisenet_ros segment.launch.py '
               'model:=$PWD/models/bisenetv1_city.pt\n\n'
               "Accuracy figures stored with the model are CoinCheung's, not measured here.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--from', dest='source', required=True, choices=SOURCES,
                        help='who published the checkpoint (coincheung: CoinCheung/BiSeNet '
                             'BiSeNetV1, ResNet-18)')
    parser.add_argument('checkpoint', type=Path, help='the published .pth file')
    parser.add_argument('--dataset', required=True, choices=sorted(COINCHEUNG_DATASETS),
                        help='what it was trained on: sets the class list, palette and '
                             'normalisation')
    parser.add_argument('--out', required=True, type=Path, help='model file to write (.pt)')
    parser.add_argument('--input-size', type=size_arg, metavar='WxH',
                        help='network input size the node resizes frames to (default: the '
                             'size the published figure was measured at: ' + ', '.join(
                                 f'{n} {d.input_size[0]}x{d.input_size[1]}'
                                 for n, d in COINCHEUNG_DATASETS.items()) + ')')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        path, spec = import_coincheung(args.checkpoint, args.dataset, args.out, args.input_size)
    except (WeightsFileError, ValueError, OSError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    width, height = spec.input_size
    print(f'wrote {path}: {spec.backbone} BiSeNet ({spec.info["source"]}), '
          f'{spec.num_classes} {args.dataset} classes, input {width}x{height}, '
          f'reported val mIoU {spec.info["reported_miou"]:.4f} (CoinCheung\'s figure, '
          'not measured here)')
    if width % SIZE_DIVISOR or height % SIZE_DIVISOR:
        padded = [-(-v // SIZE_DIVISOR) * SIZE_DIVISOR for v in (width, height)]
        print(f'note: {width}x{height} is not a multiple of {SIZE_DIVISOR}: the model zero-pads '
              f'it to {padded[0]}x{padded[1]} inside (CoinCheung\'s code needs multiples of '
              f'{SIZE_DIVISOR}; one wastes no compute)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
