"""Writing rosbag2 bags: a CamVid-layout drive (one or several cameras) into a new bag.

The message builders (`image_message`, `compressed_message`) also serve the corpus converters
(corpora.py). Reading bags is bags.py.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
from tqdm import tqdm

from bisenet_ros.bag_files import COMPRESSED_TYPE, IMAGE_TYPE, BagError, typestore

IMAGE_TOPIC = '/camera/image_raw'
LABEL_TOPIC = '/camera/labels'
FRAME_ID = 'camera'
STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
COMPRESSIONS = ('jpeg', 'png')
# rosbag2 metadata version 8 (Jazzy's) is read by every current `ros2 bag`; 9 only by newer ones.
BAG_VERSION = 8
# Converted drives start at a fixed wall-clock time so the same drive gives the same bag.
DEFAULT_START_NS = 1_700_000_000 * 10**9
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp')


def drive_frames(drive: str | os.PathLike, split: str = 'test'
                 ) -> list[tuple[Path, Path | None]]:
    """(image, label or None) paths of a CamVid-layout split, in frame-name order.

    Images are `<drive>/<split>/*.png`, labels `<drive>/<split>annot/<same name>`.
    """
    drive = Path(drive)
    image_dir, label_dir = drive / split, drive / f'{split}annot'
    if not image_dir.is_dir():
        raise BagError(f'drive {drive}: no folder {image_dir} (expected the CamVid layout '
                       f'<drive>/{split}/ and <drive>/{split}annot/)')
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise BagError(f'drive {drive}: no images in {image_dir}')
    pairs = []
    for image in images:
        label = label_dir / f'{image.stem}.png'
        pairs.append((image, label if label.is_file() else None))
    return pairs


def _stamp(store, stamp_ns: int):
    time_type = store.types['builtin_interfaces/msg/Time']
    return time_type(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)


def _header(store, stamp_ns: int, frame_id: str):
    return store.types['std_msgs/msg/Header'](stamp=_stamp(store, stamp_ns), frame_id=frame_id)


def image_message(store, array: np.ndarray, encoding: str, stamp_ns: int,
                  frame_id: str = FRAME_ID):
    """A rosbags sensor_msgs/Image holding `array` (rgb8 H x W x 3 or mono8 H x W)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    height, width = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    return store.types[IMAGE_TYPE](
        header=_header(store, stamp_ns, frame_id), height=height, width=width,
        encoding=encoding, is_bigendian=0, step=width * channels, data=array.reshape(-1))


def compressed_message(store, rgb: np.ndarray, fmt: str, stamp_ns: int,
                       frame_id: str = FRAME_ID):
    """A rosbags sensor_msgs/CompressedImage (`fmt` 'jpeg' or 'png') of an RGB image."""
    ok, buffer = cv2.imencode('.jpg' if fmt == 'jpeg' else '.png',
                              cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise BagError(f'cv2 could not encode a {rgb.shape} image as {fmt}')
    # image_transport's compressed format string: "<encoding>; <fmt> compressed <encoding>".
    return store.types[COMPRESSED_TYPE](header=_header(store, stamp_ns, frame_id),
                                        format=f'rgb8; {fmt} compressed bgr8',
                                        data=buffer.reshape(-1))


def read_png(path: Path, flags: int) -> np.ndarray:
    array = cv2.imread(str(path), flags)
    if array is None:
        raise BagError(f'{path}: not a readable image')
    return array


def convert_drive(drive: str | os.PathLike, out: str | os.PathLike, split: str = 'test',
                  storage: str = 'mcap', fps: float = 10.0, compressed: str | None = None,
                  image_topic: str = IMAGE_TOPIC, label_topic: str = LABEL_TOPIC,
                  start_ns: int = DEFAULT_START_NS, progress: bool = True,
                  cameras: Sequence[str] = ()) -> Path:
    """Write a CamVid-layout drive split into a new rosbag2 bag at `out`; return its path.

    Args:
        drive, split: the drive folder and split (`<drive>/<split>/`, `<drive>/<split>annot/`).
        out: bag folder to create (must not exist).
        storage: 'mcap' (default) or 'sqlite3'.
        fps: frame rate; frame i is stamped start_ns + i / fps seconds (header and bag time).
        compressed: None for rgb8 Images, 'jpeg' or 'png' for CompressedImages.
        image_topic, label_topic: where images and mono8 ground truth go.
        cameras: a multi-camera drive (synthetic write_cameras): camera c from
            `<drive>/<c>/<split>/` to /c/image_raw, /c/labels, frame_id c, stamps shared.
    """
    if storage not in STORAGES:
        raise BagError(f'unknown storage {storage!r}; choose one of {sorted(STORAGES)}')
    if compressed not in (None, *COMPRESSIONS):
        raise BagError(f'unknown compression {compressed!r}; choose one of {COMPRESSIONS}')
    if not fps > 0:
        raise BagError(f'fps must be > 0, got {fps}')
    streams = ([(drive_frames(Path(drive) / c, split), f'/{c}/image_raw', f'/{c}/labels', c)
                for c in cameras] if cameras else
               [(drive_frames(drive, split), image_topic, label_topic, FRAME_ID)])
    out = Path(out)
    if out.exists():
        raise BagError(f'bag {out}: exists already; choose another --out or remove it')
    store = typestore()
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with Writer(out, version=BAG_VERSION, storage_plugin=STORAGES[storage]) as writer:
            connections = [
                (writer.add_connection(image, COMPRESSED_TYPE if compressed else IMAGE_TYPE,
                                       typestore=store),
                 writer.add_connection(label, IMAGE_TYPE, typestore=store))
                for _, image, label, _ in streams]
            count = max(len(pairs) for pairs, *_ in streams)
            for index in tqdm(range(count), desc=f'writing {out.name}', unit='frame',
                              disable=not progress):
                stamp_ns = start_ns + round(index * 1e9 / fps)
                for (pairs, *_, frame_id), conns in zip(streams, connections):
                    if index < len(pairs):
                        _write_frame(writer, store, conns, pairs[index], stamp_ns, compressed,
                                     frame_id)
    except WriterError as exc:
        raise BagError(f'bag {out}: {exc}') from None
    return out


def _write_frame(writer, store, connections, paths, stamp_ns: int, compressed: str | None,
                 frame_id: str) -> None:
    """One camera frame (and its ground truth, where there is one) into the bag."""
    (image_conn, label_conn), (image_path, label_path) = connections, paths
    rgb = cv2.cvtColor(read_png(image_path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    if compressed:
        message = compressed_message(store, rgb, compressed, stamp_ns, frame_id)
    else:
        message = image_message(store, rgb, 'rgb8', stamp_ns, frame_id)
    writer.write(image_conn, stamp_ns, store.serialize_cdr(message, image_conn.msgtype))
    if label_path is not None:
        label = read_png(label_path, cv2.IMREAD_GRAYSCALE)
        if label.shape != rgb.shape[:2]:
            raise BagError(f'{label_path}: label is {label.shape[1]}x{label.shape[0]}'
                           f', image is {rgb.shape[1]}x{rgb.shape[0]}')
        message = image_message(store, label, 'mono8', stamp_ns, frame_id)
        writer.write(label_conn, stamp_ns, store.serialize_cdr(message, label_conn.msgtype))
