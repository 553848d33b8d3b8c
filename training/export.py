"""Export a model file to ONNX: `python -m training.export --model M --out X.onnx`.

The ModelSpec (classes, palette, normalisation, input size) travels in the ONNX metadata,
so the node and TensorRT builds need nothing else.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bisenet_core.modelfile import ModelFileError, load_model
from bisenet_core.spec import size_arg


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='python -m training.export',
        description='Export a BiSeNet model file (.pt) to ONNX for onnxruntime / TensorRT.',
        epilog='example:\n  python -m training.export --model models/model.pt --out '
               'model_fp16.onnx --precision fp16 --output labels',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', required=True, type=Path, help='model file (.pt)')
    parser.add_argument('--out', required=True, type=Path, help='ONNX file to write')
    parser.add_argument('--precision', choices=('fp32', 'fp16'), default='fp32',
                        help='weights and activations precision (default fp32)')
    parser.add_argument('--output', choices=('logits', 'labels'), default='logits',
                        help='logits: 1/8-resolution scores; labels: argmax in the graph')
    parser.add_argument('--dynamic', action='store_true',
                        help='dynamic batch and image size axes')
    parser.add_argument('--size', type=size_arg, metavar='WxH',
                        help='input size WxH (default: the model\'s input size)')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from bisenet_core.export import export_onnx

    try:
        model, spec = load_model(args.model)
        path = export_onnx(model, spec, args.out, precision=args.precision, output=args.output,
                           dynamic=args.dynamic, input_size=args.size)
    except (ModelFileError, ValueError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    size = args.size or spec.input_size
    print(f'wrote {path} ({args.precision}, output {args.output}, input {size[0]}x{size[1]}'
          f'{", dynamic" if args.dynamic else ""})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
