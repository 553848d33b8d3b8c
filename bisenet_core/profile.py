"""Parameters and multiply-accumulates (MACs) of BiSeNet per backbone and input size.

    python -m bisenet_core.profile [--backbones xception39 resnet18] [--sizes 640x360 ...]
                                   [--architectures torchseg bisenet-ros-v1]

Counts come from torch.utils.flop_counter.FlopCounterMode (convolutions and matrix
products; BatchNorm, ReLU, pooling and resizing are not counted), with 1 MAC = 2 FLOPs.
The CLI builds the models on the 'meta' device, so nothing is computed or allocated.
"""
from __future__ import annotations

import argparse
import sys

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bisenet_core.model import bisenet
from bisenet_core.spec import ARCHITECTURES, BACKBONES, SIZE_DIVISOR, size_arg

# The paper's speed table sizes (Table 5) and its Cityscapes test size (1536x768).
DEFAULT_SIZES = ((640, 360), (1280, 720), (1920, 1080), (1536, 768))
_AUX_PREFIX = 'aux_head'


def count_params(model: nn.Module, aux: bool = False) -> int:
    """Parameters used at inference; aux=True adds the training-only auxiliary heads."""
    return sum(p.numel() for name, p in model.named_parameters()
               if aux or not name.startswith(_AUX_PREFIX))


def count_macs(model: nn.Module, width: int, height: int) -> int:
    """Multiply-accumulates of one eval-mode forward pass on a 1 x 3 x height x width input.

    The model runs on its own device ('meta' works and is instant); its train/eval mode
    is restored afterwards.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f'input size must be positive, got {width}x{height}')
    device = next(model.parameters()).device
    was_training = model.training
    counter = FlopCounterMode(display=False)
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(torch.zeros(1, 3, height, width, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def _padded(value: int) -> int:
    return -(-value // SIZE_DIVISOR) * SIZE_DIVISOR


def profile_table(backbones, sizes, num_classes: int,
                  architectures=(ARCHITECTURES[0],)) -> str:
    """The table the CLI prints (markdown), one row per architecture and backbone."""
    header = ['architecture', 'backbone', 'params (M)', 'fp32 MiB', 'backbone params (M)']
    header += [f'GMACs {w}x{h}' for w, h in sizes]
    rows = [header, ['---'] * len(header)]
    for architecture in architectures:
        for name in backbones:
            with torch.device('meta'):
                model = bisenet(num_classes, name, architecture)
            params = count_params(model)
            row = [architecture, name, f'{params / 1e6:.3f}', f'{params * 4 / 2 ** 20:.1f}',
                   f'{count_params(model.context_path.backbone) / 1e6:.3f}']
            row += [f'{count_macs(model, w, h) / 1e9:.2f}' for w, h in sizes]
            rows.append(row)
    return '\n'.join('| ' + ' | '.join(r) + ' |' for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m bisenet_core.profile',
        description='Print parameters and multiply-accumulates (MACs) of BiSeNet for each '
                    'backbone and input size. Params exclude the training-only auxiliary '
                    'heads; MACs are for one image in eval mode, counted with '
                    'torch.utils.flop_counter (conv and matmul only, 1 MAC = 2 FLOPs). '
                    f'Inputs are zero-padded to multiples of {SIZE_DIVISOR} as in the model.')
    parser.add_argument('--backbones', nargs='+', choices=BACKBONES, default=list(BACKBONES),
                        help='backbones to profile (default: all)')
    parser.add_argument('--architectures', nargs='+', choices=ARCHITECTURES,
                        default=list(ARCHITECTURES),
                        help='network layouts (default: all): torchseg = the authors\' code, '
                             'bisenet-ros-v1 = this project\'s first layout (docs/model.md)')
    parser.add_argument('--sizes', nargs='+', type=size_arg, metavar='WxH',
                        default=list(DEFAULT_SIZES),
                        help='input sizes, width x height (default: 640x360 1280x720 '
                             '1920x1080 1536x768)')
    parser.add_argument('--classes', type=int, default=19,
                        help='number of output classes (default: 19, Cityscapes)')
    args = parser.parse_args(argv)
    if args.classes < 1:
        parser.error(f'--classes must be >= 1, got {args.classes}')
    print(profile_table(args.backbones, args.sizes, args.classes, args.architectures))
    padded = [f'{w}x{h}->{_padded(w)}x{_padded(h)}' for w, h in args.sizes
              if (w, h) != (_padded(w), _padded(h))]
    if padded:
        print(f'\nnetwork input after zero-padding: {", ".join(padded)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
