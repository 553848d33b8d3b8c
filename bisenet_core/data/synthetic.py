"""Synthetic CamVid-style drives: procedurally rendered street scenes with exact labels.

A drive is a camera moving forward along a seeded street (road, sidewalks, buildings, trees,
fences, poles, signs, parked and moving cars, pedestrians, bicyclists) in the 11 CamVid
classes of `bisenet_core.classes.CAMVID`. Same seed -> byte-identical frames. Written in the
CamVid layout (`train/`, `trainannot/`, ...) so `CamVidDataset` reads it like the real thing.

    python -m bisenet_core.data.synthetic --out data/synth --dataset
    python -m bisenet_core.data.synthetic --out data/synth --seed 3 --frames 200 --split train
    python -m bisenet_core.data.synthetic --preview preview.png --seed 3
    python -m bisenet_core.data.synthetic --out data/surround --cameras front,left,right:320x240
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from bisenet_core.atomic import atomic_write_bytes
from bisenet_core.classes import CAMVID
from bisenet_core.data.synthetic_render import render_frame
from bisenet_core.data.synthetic_scene import make_world
from bisenet_core.spec import size_arg

# Written last into a rendered dataset folder by training (its generator settings): marks
# the drives complete and recognises the folder as synthetic.
SETTINGS_FILE = 'synthetic.json'


def found_in(root: Path) -> bool:
    """Whether `root` holds drives rendered for training (its SETTINGS_FILE)."""
    return (Path(root) / SETTINGS_FILE).is_file()


DEFAULT_SIZE = (480, 360)   # CamVid 960x720 halved
FRAME_STEP = 30             # CamVid labels one frame in 30 of its 30 fps video
# Cameras of a multi-camera drive: name -> mounting yaw in rad (> 0: turned right). The
# renderer draws the street ahead of the car, so every mount looks forward or to a side.
CAMERA_YAWS = {'front': 0.0, 'front_left': -0.4, 'front_right': 0.4, 'left': -0.8,
               'right': 0.8, 'wide_left': -1.1, 'wide_right': 1.1}


@dataclass(frozen=True)
class Frame:
    """One rendered frame: CamVid-style name, RGB uint8 image (H, W, 3), uint8 label (H, W)."""

    name: str
    image: np.ndarray
    label: np.ndarray


def frame_name(sequence: str, index: int, step: int = FRAME_STEP, first: int = FRAME_STEP) -> str:
    """CamVid-style name of the index-th labelled frame, e.g. '0001TP_000030'."""
    return f'{sequence}_{first + index * step:06d}'


def render_drive(seed: int, num_frames: int, size: tuple[int, int] = DEFAULT_SIZE,
                 fps: float = 30.0, step: int = FRAME_STEP,
                 sequence: str = '0001TP', yaw: float = 0.0) -> Iterator[Frame]:
    """Yield the frames of drive `seed`, `step` video frames apart at `fps` (CamVid: 30, 30).

    Args:
        seed: drive seed; the street, lighting and traffic all follow from it.
        num_frames: how many labelled frames to yield.
        size: (width, height) in pixels; any size, geometry scales with the width.
        fps, step: video rate and labelled-frame spacing; frames are step/fps seconds apart.
        sequence: sequence code used in the frame names.
        yaw: the camera's mounting yaw in rad (0: forward, > 0: turned right; CAMERA_YAWS).
    """
    width, height = _check_size(size)
    if num_frames < 0:
        raise ValueError(f'num_frames must be >= 0, got {num_frames}')
    if fps <= 0 or step <= 0:
        raise ValueError(f'fps and step must be > 0, got fps={fps} step={step}')
    world = make_world(seed)
    dt = step / fps
    world.ensure(num_frames * dt)
    for index in range(num_frames):
        noise = np.random.default_rng([seed, 3, index])
        image, label = render_frame(world, index * dt, width, height, noise, yaw)
        yield Frame(frame_name(sequence, index, step), image, label)


def write_drive(root: str | os.PathLike, seed: int, num_frames: int,
                size: tuple[int, int] = DEFAULT_SIZE, split: str = 'train', fps: float = 30.0,
                sequence: str = '0001TP', step: int = FRAME_STEP,
                progress: bool = True, yaw: float = 0.0) -> list[str]:
    """Render a drive into `<root>/<split>/` and `<root>/<split>annot/`; return the frame names.

    Images are RGB PNGs (written through cv2 as BGR), labels are uint8 PNGs with ids 0..10.
    `<root>/<split>/drive.json` records seed, size, fps and frame names of every drive in
    the split (a second drive with another sequence code is appended to it).
    """
    root = Path(root)
    image_dir, label_dir = root / split, root / f'{split}annot'
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    names = []
    frames = render_drive(seed, num_frames, size, fps=fps, step=step, sequence=sequence, yaw=yaw)
    for frame in tqdm(frames, total=num_frames, desc=f'{split} {sequence} (seed {seed})',
                      unit='frame', disable=not progress):
        _imwrite(image_dir / f'{frame.name}.png', cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
        _imwrite(label_dir / f'{frame.name}.png', frame.label)
        names.append(frame.name)
    _record_drive(image_dir / 'drive.json', {
        'sequence': sequence, 'seed': seed, 'size': list(_check_size(size)), 'fps': fps,
        'step': step, 'num_frames': num_frames, 'yaw': yaw, 'frames': names})
    return names


def write_cameras(root: str | os.PathLike, seed: int, num_frames: int,
                  cameras: Mapping[str, tuple[int, int]], split: str = 'test',
                  fps: float = 30.0, step: int = FRAME_STEP, progress: bool = True
                  ) -> dict[str, list[str]]:
    """One drive seen by several cameras at the same instants: `<root>/<camera>/<split>/`.

    Each camera folder is a CamVid-layout drive of its own (`python -m bisenet_ros.bags
    convert --cameras` writes them into one bag). Args: cameras maps a name of CAMERA_YAWS
    to its (width, height); the rest as write_drive.
    """
    unknown = sorted(set(cameras) - set(CAMERA_YAWS))
    if unknown or not cameras:
        raise ValueError(f'cameras {unknown or "(none)"}: choose from {", ".join(CAMERA_YAWS)}')
    return {name: write_drive(Path(root) / name, seed, num_frames, size, split, fps=fps,
                              step=step, progress=progress, yaw=CAMERA_YAWS[name])
            for name, size in cameras.items()}


def parse_cameras(text: str, size: tuple[int, int] = DEFAULT_SIZE) -> dict[str, tuple[int, int]]:
    """'front,left:320x240' -> {'front': size, 'left': (320, 240)}."""
    cameras = {}
    for part in filter(None, (p.strip() for p in text.split(','))):
        name, _, camera_size = part.partition(':')
        cameras[name] = size_arg(camera_size) if camera_size else size
    return cameras


def make_dataset(root: str | os.PathLike, train_seeds: Sequence[int] = (1, 2, 3, 4, 5, 6),
                 train_frames: int = 100, val_seed: int = 1001, val_frames: int = 60,
                 test_seed: int = 2001, test_frames: int = 100,
                 size: tuple[int, int] = DEFAULT_SIZE, progress: bool = True) -> Path:
    """Write a CamVid-layout dataset: one drive per train seed, one drive each for val/test.

    Every drive gets its own sequence code (0001TP, 0002TP, ...); val and test seeds must
    differ from the train seeds so the held-out splits are streets never seen in training.
    """
    seeds = list(train_seeds)
    if val_seed in seeds or test_seed in seeds or val_seed == test_seed:
        raise ValueError(f'val seed {val_seed} and test seed {test_seed} must differ from each '
                         f'other and from the train seeds {seeds}')
    root = Path(root)
    plan = [('train', s, train_frames) for s in seeds]
    plan += [('val', val_seed, val_frames), ('test', test_seed, test_frames)]
    for number, (split, seed, frames) in enumerate(plan, start=1):
        if frames > 0:
            write_drive(root, seed, frames, size, split, sequence=f'{number:04d}TP',
                        progress=progress)
    return root


def colorize(label: np.ndarray) -> np.ndarray:
    """Label ids -> RGB with the CamVid palette (void in black)."""
    palette = np.zeros((256, 3), np.uint8)
    palette[:len(CAMVID)] = [colour for _, colour in CAMVID]
    return palette[label]


def preview(path: str | os.PathLike, seed: int = 0, num_frames: int = 4,
            size: tuple[int, int] = DEFAULT_SIZE, stride: int = 3) -> Path:
    """Write a contact sheet: every `stride`-th frame of a drive, image | colourised label."""
    frames = list(render_drive(seed, (num_frames - 1) * stride + 1, size))[::stride]
    rows = [np.concatenate([f.image, colorize(f.label)], axis=1) for f in frames]
    sheet = np.concatenate(rows, axis=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _imwrite(path, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return path


def _check_size(size) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f'size must be (width, height), got {size!r}') from None
    if width < 16 or height < 16:
        raise ValueError(f'size must be at least 16x16, got {width}x{height}')
    return width, height


def _imwrite(path: Path, array: np.ndarray) -> None:
    if not cv2.imwrite(str(path), array):
        raise OSError(f'{path}: could not write PNG')


def _record_drive(path: Path, drive: dict) -> None:
    """Add (or replace, by sequence code) one drive's entry in a split's drive.json."""
    meta = {'generator': 'bisenet_core.data.synthetic', 'classes': [n for n, _ in CAMVID],
            'drives': []}
    if path.exists():
        try:
            meta = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f'{path}: not valid JSON ({err}); delete it to start over') from None
    meta['drives'] = [d for d in meta.get('drives', []) if d['sequence'] != drive['sequence']]
    meta['drives'].append(drive)
    atomic_write_bytes(json.dumps(meta, indent=1).encode(), path)


def _parse_seeds(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(',') if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f'seeds {text!r} are not comma-separated integers')


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m bisenet_core.data.synthetic',
        description='Render synthetic CamVid-style drives (11 CamVid classes, exact labels) '
                    'and write them in the CamVid layout: DIR/<split>/<seq>_<frame>.png (RGB) '
                    'and DIR/<split>annot/<seq>_<frame>.png (uint8 ids 0..10). The same seed '
                    'always gives the same frames.',
        epilog='Examples:\n'
               '  %(prog)s --out data/synth --dataset            # train/val/test splits\n'
               '  %(prog)s --out data/synth --seed 7 --frames 300  # one drive into train/\n'
               '  %(prog)s --preview sheet.png --seed 7          # look at a few frames',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', type=Path, help='dataset root folder to write into')
    parser.add_argument('--seed', type=int, default=0, help='drive seed (default 0)')
    parser.add_argument('--frames', type=int, default=100,
                        help='labelled frames in the drive (default 100), 1 s apart')
    parser.add_argument('--size', type=size_arg, default=DEFAULT_SIZE,
                        help='frame size WIDTHxHEIGHT (default 480x360, CamVid halved)')
    parser.add_argument('--split', default='train', help='split to write the drive into')
    parser.add_argument('--sequence', default='0001TP',
                        help='CamVid-style sequence code used in file names (default 0001TP)')
    parser.add_argument('--dataset', action='store_true',
                        help='write a full dataset: one drive per --train-seeds into train/, '
                             'one into val/ and one into test/ (other seeds)')
    parser.add_argument('--train-seeds', type=_parse_seeds, default=[1, 2, 3, 4, 5, 6],
                        help='with --dataset: comma-separated train seeds (default 1,...,6)')
    parser.add_argument('--train-frames', type=int, default=100,
                        help='with --dataset: frames per train drive (default 100)')
    parser.add_argument('--val-seed', type=int, default=1001)
    parser.add_argument('--val-frames', type=int, default=60)
    parser.add_argument('--test-seed', type=int, default=2001)
    parser.add_argument('--test-frames', type=int, default=100)
    parser.add_argument('--cameras', metavar='NAME[:WxH],...',
                        help='write one drive (--seed, --frames, --split) seen by several '
                             'cameras into DIR/<camera>/<split>/, each camera its own size '
                             f'(default --size); names: {", ".join(CAMERA_YAWS)}')
    parser.add_argument('--preview', type=Path, metavar='PNG',
                        help='write a contact sheet of a few frames of --seed with their '
                             'colourised labels side by side, then exit')
    args = parser.parse_args(argv)
    try:
        if args.preview:
            print(preview(args.preview, args.seed, size=args.size))
        elif args.out is None:
            parser.error('give --out DIR (or --preview PNG)')
        elif args.cameras:
            write_cameras(args.out, args.seed, args.frames,
                          parse_cameras(args.cameras, args.size), args.split)
            print(args.out)
        elif args.dataset:
            make_dataset(args.out, args.train_seeds, args.train_frames, args.val_seed,
                         args.val_frames, args.test_seed, args.test_frames, args.size)
            print(args.out)
        else:
            write_drive(args.out, args.seed, args.frames, args.size, args.split,
                        sequence=args.sequence)
            print(args.out)
    except (ValueError, OSError, argparse.ArgumentTypeError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
