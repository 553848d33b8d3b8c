r"""rosbag2 bags for evaluation: write a CamVid-style drive into a bag, read frames from any bag.

Pure Python (the `rosbags` library): no ROS 2 install is needed to convert or read a bag.
Bags are proper rosbag2 (version-8 metadata, ROS 2 type hashes), so `ros2 bag info` and
`ros2 bag play` of Humble, Jazzy, Kilted and newer read them.

    python -m bisenet_ros.bags convert --drive data/synth --split test --out drive.bag
    python -m bisenet_ros.bags convert --drive data/synth --split test --out drive.bag \
        --storage sqlite3 --fps 10 --compressed jpeg
    python -m bisenet_ros.bags convert --drive data/surround --cameras front,left --out surround.bag
    python -m bisenet_ros.bags info drive.bag

A converted bag holds sensor_msgs/Image rgb8 (or CompressedImage) on /camera/image_raw and
the ground-truth labels as mono8 Images on /camera/labels, with identical header stamps; with
--cameras, each camera c of a multi-camera drive on /c/image_raw and /c/labels.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_typestore
from tqdm import tqdm

from bisenet_ros.bag_files import BagError, open_bag
from bisenet_ros.image_decoding import (ImageConversionError, compressed_to_numpy,
                                        image_to_network_input, image_to_numpy)
from bisenet_ros.label_files import label_files, match_label_files

IMAGE_TOPIC = '/camera/image_raw'
LABEL_TOPIC = '/camera/labels'
FRAME_ID = 'camera'
IMAGE_TYPE = 'sensor_msgs/msg/Image'
COMPRESSED_TYPE = 'sensor_msgs/msg/CompressedImage'
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
COMPRESSIONS = ('jpeg', 'png')
# rosbag2 metadata version 8 (Jazzy's) is read by every current `ros2 bag`; 9 only by newer ones.
BAG_VERSION = 8
# Converted drives start at a fixed wall-clock time so the same drive gives the same bag.
DEFAULT_START_NS = 1_700_000_000 * 10**9
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp')
# Topic names that mark ground truth rather than camera images (for auto-detection).
LABEL_WORDS = re.compile(r'label|annot|ground_?truth|/gt\b|semantic|mask', re.IGNORECASE)


@dataclass(frozen=True)
class BagFrame:
    """One camera frame read from a bag.

    Attributes:
        index: position among the image topic's messages (0-based, in bag order).
        stamp_ns: header stamp in nanoseconds (the bag time where the header stamp is zero).
        image: uint8 H x W x 3 RGB.
        label: uint8 H x W ground truth, or None where the frame has none.
    """

    index: int
    stamp_ns: int
    image: np.ndarray
    label: np.ndarray | None


def typestore():
    """The newest ROS 2 message store `rosbags` offers.

    Image/CompressedImage are unchanged since Humble, so their type hashes are the same on
    every ROS 2 release that has them.
    """
    for name in ('ROS2_LYRICAL', 'ROS2_KILTED', 'ROS2_JAZZY', 'ROS2_HUMBLE'):
        store = getattr(Stores, name, None)
        if store is not None:
            try:
                return get_typestore(store)
            except (ImportError, ModuleNotFoundError, ValueError):
                continue
    raise BagError('rosbags offers no ROS 2 Humble or newer typestore; upgrade rosbags')


# ----------------------------------------------------------------------------- writing

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


def _read_png(path: Path, flags: int) -> np.ndarray:
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
    rgb = cv2.cvtColor(_read_png(image_path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    if compressed:
        message = compressed_message(store, rgb, compressed, stamp_ns, frame_id)
    else:
        message = image_message(store, rgb, 'rgb8', stamp_ns, frame_id)
    writer.write(image_conn, stamp_ns, store.serialize_cdr(message, image_conn.msgtype))
    if label_path is not None:
        label = _read_png(label_path, cv2.IMREAD_GRAYSCALE)
        if label.shape != rgb.shape[:2]:
            raise BagError(f'{label_path}: label is {label.shape[1]}x{label.shape[0]}'
                           f', image is {rgb.shape[1]}x{rgb.shape[0]}')
        message = image_message(store, label, 'mono8', stamp_ns, frame_id)
        writer.write(label_conn, stamp_ns, store.serialize_cdr(message, label_conn.msgtype))


# ----------------------------------------------------------------------------- reading

def bag_info(bag: str | os.PathLike) -> dict:
    """Storage, duration, message count and the topics (type, count) of a bag."""
    with open_bag(bag, typestore()) as reader:
        topics = {}
        for conn in reader.connections:
            entry = topics.setdefault(conn.topic, {'type': conn.msgtype, 'count': 0})
            entry['count'] += conn.msgcount
        return {
            'path': str(Path(bag)),
            'storage': _storage_name(Path(bag)),
            'start_ns': reader.start_time,
            'duration_s': (reader.end_time - reader.start_time) / 1e9,
            'messages': reader.message_count,
            'topics': topics,
        }


def _storage_name(path: Path) -> str:
    if path.is_file():
        path = path.parent
    if any(path.glob('*.mcap')):
        return 'mcap'
    if any(path.glob('*.db3')):
        return 'sqlite3'
    return 'unknown'


def image_topics(bag: str | os.PathLike) -> dict[str, str]:
    """Topic -> message type of every Image/CompressedImage topic in the bag."""
    return {topic: entry['type'] for topic, entry in bag_info(bag)['topics'].items()
            if entry['type'] in IMAGE_TYPES}


def _topic_listing(bag: str | os.PathLike, images: dict[str, str]) -> str:
    """The image topics for an error message; where there are none, every topic there is."""
    def listing(topics: dict[str, str]) -> str:
        return ', '.join(f'{t} ({m.rsplit("/", 1)[-1]})' for t, m in sorted(topics.items()))

    if images:
        return listing(images)
    others = {t: e['type'] for t, e in bag_info(bag)['topics'].items()}
    if not others:
        return 'no topics at all'
    return f'no Image/CompressedImage topic, only {listing(others)}'


def choose_topics(bag: str | os.PathLike, image_topic: str | None = None,
                  label_topic: str | None = None, want_labels: bool = True
                  ) -> tuple[str, str | None]:
    """Pick the camera topic and the ground-truth topic of a bag.

    Given names are checked; missing ones are auto-detected among the image topics: a topic
    whose name mentions labels/annotations/ground truth/masks is ground truth, and the camera
    topic is the only one left. Raise BagError listing the candidates when it is ambiguous.
    """
    topics = image_topics(bag)
    for name, kind in ((image_topic, 'image'), (label_topic, 'label')):
        if name is not None and name not in topics:
            raise BagError(f'bag {bag}: no Image/CompressedImage topic {name!r} for the {kind}s; '
                           f'it has: {_topic_listing(bag, topics)}')
    label_like = sorted(t for t in topics if LABEL_WORDS.search(t))
    if image_topic is None:
        cameras = sorted(t for t in topics if t not in label_like and t != label_topic)
        if len(cameras) != 1:
            raise BagError(f'bag {bag}: {"several" if cameras else "no"} camera topics to choose '
                           f'from; pass --image-topic (topics: {_topic_listing(bag, topics)})')
        image_topic = cameras[0]
    if label_topic is None and want_labels:
        candidates = [t for t in label_like if t != image_topic and topics[t] == IMAGE_TYPE]
        label_topic = candidates[0] if len(candidates) == 1 else None
    return image_topic, label_topic


def camera_image(msg, msgtype: str) -> np.ndarray:
    """uint8 H x W x 3 RGB of an Image (any encoding the node takes) or jpeg/png CompressedImage.

    The node's own decoder (bisenet_ros.image_decoding) and frame conversion (16-bit mono as
    value >> 8, alpha dropped), so the bag reader takes exactly the frames the node takes.
    """
    # Here, not at the top: bisenet_core.inference imports torch, which `bags info` and
    # `bags convert` do not need.
    from bisenet_core.inference.frames import check_frame, to_rgb, to_uint8

    if msgtype == COMPRESSED_TYPE:
        pixels, order = compressed_to_numpy(msg), 'bgr'
    else:
        pixels, order = image_to_network_input(msg)
    return np.ascontiguousarray(to_rgb(to_uint8(check_frame(pixels, order)), order))


def label_image(msg, msgtype: str) -> np.ndarray:
    """uint8 H x W ground truth of a mono8/8UC1 Image or a single-channel png."""
    if msgtype == COMPRESSED_TYPE:
        array = compressed_to_numpy(msg, color=False)
    else:
        array = image_to_numpy(msg)
    if array.ndim != 2 or array.dtype != np.uint8:
        raise ImageConversionError(f'ground truth must be 8-bit single-channel (mono8), got '
                                   f'{array.dtype} {array.shape}')
    return array.copy()


def _deserialize(reader, raw: bytes, conn, bag: str | os.PathLike):
    try:
        return reader.deserialize(raw, conn.msgtype)
    except Exception as exc:  # a damaged message's CDR: struct, index or unicode errors
        raise BagError(f'bag {bag}: a {conn.msgtype} message on {conn.topic} cannot be decoded '
                       f'(damaged?): {type(exc).__name__}: {exc}') from None


def _header_stamp_ns(msg, bag_time_ns: int) -> int:
    stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
    return stamp if stamp else bag_time_ns


def read_frames(bag: str | os.PathLike, image_topic: str | None = None,
                label_topic: str | None = None, labels_dir: str | os.PathLike | None = None,
                labels_key: str = 'auto', max_frames: int | None = None) -> list[BagFrame]:
    """All camera frames of a bag (up to max_frames) with their ground truth, in bag order.

    Ground truth comes from `label_topic` (mono8 Images matched by header stamp), or from
    `labels_dir` (PNG files, see match_label_files), or is auto-detected (choose_topics).
    Frames without ground truth get label None.
    """
    image_topic, label_topic = choose_topics(bag, image_topic, label_topic,
                                             want_labels=labels_dir is None)
    frames: list[tuple[int, np.ndarray]] = []
    labels: dict[int, np.ndarray] = {}
    with open_bag(bag, typestore()) as reader:
        wanted = [c for c in reader.connections if c.topic in (image_topic, label_topic)]
        for conn, bag_time, raw in reader.messages(connections=wanted):
            is_image = conn.topic == image_topic
            if is_image and max_frames is not None and len(frames) >= max_frames:
                continue
            msg = _deserialize(reader, raw, conn, bag)
            stamp = _header_stamp_ns(msg, bag_time)
            try:
                if is_image:
                    frames.append((stamp, camera_image(msg, conn.msgtype)))
                else:
                    labels[stamp] = label_image(msg, conn.msgtype)
            except ImageConversionError as exc:
                raise BagError(f'bag {bag}: {conn.topic} message {stamp}: {exc}') from None
    if not frames:
        raise BagError(f'bag {bag}: no messages on {image_topic}')
    if labels_dir is not None:
        found = label_files(labels_dir)
        files = match_label_files(found, [s for s, _ in frames], labels_key)
        if not files:
            raise BagError(f'labels folder {labels_dir}: none of its {len(found)} PNGs '
                           f'({found[0].name}, ...) names one of the {len(frames)} frames by '
                           f'stamp (first {frames[0][0]}) or index; see --labels-key')
        labels = {frames[i][0]: _read_png(p, cv2.IMREAD_GRAYSCALE) for i, p in files.items()}
    out = []
    for index, (stamp, image) in enumerate(frames):
        label = labels.get(stamp)
        if label is not None and label.shape != image.shape[:2]:
            raise BagError(f'bag {bag}: frame {index} (stamp {stamp}) is '
                           f'{image.shape[1]}x{image.shape[0]} but its label is '
                           f'{label.shape[1]}x{label.shape[0]}')
        out.append(BagFrame(index, stamp, image, label))
    return out


# ----------------------------------------------------------------------------- command line

def _print_info(info: dict) -> None:
    print(f'bag:      {info["path"]}')
    print(f'storage:  {info["storage"]}')
    print(f'duration: {info["duration_s"]:.3f} s')
    print(f'messages: {info["messages"]}')
    width = max((len(t) for t in info['topics']), default=5)
    for topic, entry in sorted(info['topics'].items()):
        print(f'  {topic:<{width}}  {entry["type"]:<32} {entry["count"]:>6} msgs')


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m bisenet_ros.bags',
        description='Convert CamVid-style drives to rosbag2 bags and inspect bags.')
    sub = parser.add_subparsers(dest='command', required=True)
    conv = sub.add_parser(
        'convert', help='drive folder -> rosbag2 bag',
        description='Write a drive split (frames in name order + label PNGs) into a rosbag2 '
                    f'bag: images on {IMAGE_TOPIC}, mono8 ground truth on {LABEL_TOPIC}, '
                    f"identical stamps, frame_id '{FRAME_ID}'.")
    conv.add_argument('--drive', required=True, type=Path,
                      help='drive folder in the CamVid layout (<drive>/<split>/, '
                           '<drive>/<split>annot/)')
    conv.add_argument('--split', default='test', help='split to convert (default: test)')
    conv.add_argument('--out', required=True, type=Path, help='bag folder to create')
    conv.add_argument('--storage', choices=sorted(STORAGES), default='mcap',
                      help='rosbag2 storage plugin (default: mcap)')
    conv.add_argument('--fps', type=float, default=10.0,
                      help='frame rate of the stamps in Hz (default: 10)')
    conv.add_argument('--compressed', choices=COMPRESSIONS, default=None,
                      help='write sensor_msgs/CompressedImage in this format instead of '
                           'raw rgb8 Images')
    conv.add_argument('--image-topic', default=IMAGE_TOPIC, help=f'default: {IMAGE_TOPIC}')
    conv.add_argument('--label-topic', default=LABEL_TOPIC, help=f'default: {LABEL_TOPIC}')
    conv.add_argument('--cameras', type=lambda t: [c.strip() for c in t.split(',') if c.strip()],
                      default=[], metavar='NAME,...',
                      help='a multi-camera drive (python -m bisenet_core.data.synthetic '
                           '--cameras): camera c from DRIVE/c/SPLIT/ to /c/image_raw and '
                           '/c/labels (instead of --image-topic/--label-topic)')
    info = sub.add_parser('info', help='topics, types and counts of a bag')
    info.add_argument('bag', type=Path, help='rosbag2 bag folder (MCAP or sqlite3)')
    args = parser.parse_args(argv)
    try:
        if args.command == 'convert':
            path = convert_drive(args.drive, args.out, args.split, args.storage, args.fps,
                                 args.compressed, args.image_topic, args.label_topic,
                                 cameras=args.cameras)
            _print_info(bag_info(path))
        else:
            _print_info(bag_info(args.bag))
    except BagError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
