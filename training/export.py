"""Export a model file to ONNX: `python -m training.export --model M --out X.onnx`.

The ModelSpec (classes, palette, normalisation, input size) travels in the ONNX metadata,
so the node and TensorRT builds need nothing else. `--precision int8` writes a statically
quantised graph for ONNX Runtime on the CPU, calibrated on `--calib-images`. `--output frame`
writes the whole camera-frame -> labels step as one graph (uint8 H x W x C image in, uint8
labels out, any image size; bisenet_core/inference/export_frames.py).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from bisenet_core.data.base import list_images, read_image
from bisenet_core.hardware import PRECISIONS
from bisenet_core.modelfile import ModelFileError, load_model
from bisenet_core.spec import size_arg

CALIB_EXTENSIONS = ('.png', '.jpg', '.jpeg')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='python -m training.export',
        description='Export a BiSeNet model file (.pt) to ONNX for onnxruntime / TensorRT.',
        epilog='examples:\n  python -m training.export --model models/model.pt --out '
               'model_fp16.onnx --precision fp16 --output labels\n'
               '  python -m training.export --model models/model.pt --out frames.onnx '
               '--output frame --upsample bilinear --size 640x360',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', required=True, type=Path, help='model file (.pt)')
    parser.add_argument('--out', required=True, type=Path, help='ONNX file to write')
    parser.add_argument('--precision', choices=(*PRECISIONS, 'int8'), default='fp32',
                        help='fp32 (default), fp16 (GPU), or int8 (ONNX Runtime on the CPU: '
                             'static quantisation, needs --calib-images; fixed size, logits)')
    parser.add_argument('--calib-images', type=Path, metavar='DIR',
                        help='int8: folder of images like the camera\'s (png/jpg, searched '
                             'recursively), e.g. a training split')
    parser.add_argument('--calib-count', type=int, default=48,
                        help='int8: images taken, evenly spaced over the folder (default 48)')
    parser.add_argument('--output', choices=('logits', 'labels', 'frame'), default='logits',
                        help='logits: 1/8-resolution scores; labels: argmax in the graph; '
                             'frame: uint8 camera frame in (any size, 1/3/4 channels), '
                             'resize + normalise + network + upsampling + argmax in the graph, '
                             'uint8 labels at the frame\'s size out (always dynamic)')
    parser.add_argument('--upsample', choices=('nearest', 'bilinear'), default='bilinear',
                        help='--output frame: labels to the frame size by nearest labels or '
                             'bilinear logits (default bilinear, the node\'s default)')
    parser.add_argument('--dynamic', action='store_true',
                        help='dynamic batch and image size axes')
    parser.add_argument('--dynamic-batch', action='store_true',
                        help='dynamic batch axis at a fixed image size (--size): the node runs '
                             'the frames of several cameras as one batch; without it (or '
                             '--dynamic) the graph takes one frame at a time. With --output '
                             'frame: N x H x W x C frames of one layout in')
    parser.add_argument('--size', type=size_arg, metavar='WxH',
                        help='input size WxH (default: the model\'s input size)')
    args = parser.parse_args(argv)
    if args.calib_count < 1:
        parser.error(f'--calib-count must be >= 1, got {args.calib_count}')
    if args.output == 'frame' and args.dynamic:
        parser.error('--output frame is always dynamic in the image size; drop --dynamic '
                     '(--dynamic-batch makes it take N frames)')
    return args


def calibration_images(folder: Path, count: int) -> list[np.ndarray]:
    """Up to `count` RGB images, evenly spaced over the folder's sorted png/jpg files."""
    files = [f for f in list_images(folder, '**/*') if f.suffix.lower() in CALIB_EXTENSIONS]
    if not files:
        raise ValueError(f'--calib-images {folder}: no png/jpg images found')
    step = max(1, len(files) // count)
    return [read_image(f) for f in files[::step][:count]]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from bisenet_core.export import export_onnx

    try:
        model, spec = load_model(args.model)
        if args.precision == 'int8':
            if (args.calib_images is None or args.dynamic or args.dynamic_batch
                    or args.output != 'logits'):
                raise ValueError('--precision int8 needs --calib-images, and exports fixed-size '
                                 'batch-1 logits (no --dynamic/--dynamic-batch, no --output '
                                 'labels)')
            from bisenet_core.quantize import quantize_int8

            images = calibration_images(args.calib_images, args.calib_count)
            path = quantize_int8(model, spec, args.out, images, input_size=args.size)
        elif args.output == 'frame':
            from bisenet_core.inference.export_frames import export_frame_onnx

            path = export_frame_onnx(model, spec, args.out, upsample=args.upsample,
                                     precision=args.precision, input_size=args.size,
                                     batch=args.dynamic_batch)
        else:
            path = export_onnx(model, spec, args.out, precision=args.precision,
                               output=args.output, dynamic=args.dynamic, input_size=args.size,
                               dynamic_batch=args.dynamic_batch)
    except (ModelFileError, ValueError, OSError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    size = args.size or spec.input_size
    detail = (f'frame -> labels, upsample {args.upsample}, any image size'
              if args.output == 'frame' else f'output {args.output}')
    print(f'wrote {path} ({args.precision}, {detail}, network input {size[0]}x{size[1]}'
          f'{", dynamic" if args.dynamic else ", any batch" if args.dynamic_batch else ""})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
