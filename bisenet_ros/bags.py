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

from bisenet_ros.bag_files import COMPRESSED_TYPE, IMAGE_TYPE, BagError, open_bag, typestore
from bisenet_ros.bag_writer import (BAG_VERSION, COMPRESSIONS, DEFAULT_START_NS, FRAME_ID,
                                    IMAGE_TOPIC, LABEL_TOPIC, STORAGES, compressed_message,
                                    convert_drive, drive_frames, image_message, read_png)
from bisenet_ros.image_decoding import (ImageConversionError, compressed_to_numpy,
                                        image_to_network_input, image_to_numpy)
from bisenet_ros.label_files import label_files, match_label_files

# One module to import for bags: reading here, writing (bag_writer.py) and opening (bag_files.py).
__all__ = ['BAG_VERSION', 'COMPRESSED_TYPE', 'COMPRESSIONS', 'DEFAULT_START_NS', 'FRAME_ID',
           'IMAGE_TOPIC', 'IMAGE_TYPE', 'IMAGE_TYPES', 'LABEL_TOPIC', 'LABEL_WORDS', 'STORAGES',
           'BagError', 'BagFrame', 'bag_info', 'choose_topics', 'compressed_message',
           'convert_drive', 'drive_frames', 'image_message', 'image_topics', 'main',
           'read_frames', 'typestore']

IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
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
        labels = {frames[i][0]: read_png(p, cv2.IMREAD_GRAYSCALE) for i, p in files.items()}
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
    source = conv.add_mutually_exclusive_group(required=True)
    source.add_argument('--drive', type=Path,
                        help='drive folder in the CamVid layout (<drive>/<split>/, '
                             '<drive>/<split>annot/) -> one bag')
    source.add_argument('--camvid', type=Path, metavar='ROOT',
                        help='CamVid as published (SegNet\'s train/val/test + *annot, or '
                             '701_StillsRaw_full + LabeledApproved_full) -> one bag per '
                             'sequence in --out, stamped from the frame numbers at 30 Hz')
    source.add_argument('--cityscapes', type=Path, metavar='ROOT',
                        help='Cityscapes leftImg8bit + gtFine -> one bag per city in --out')
    conv.add_argument('--split', default='test', help='--drive: split to convert (default: test)')
    conv.add_argument('--splits', nargs='+', default=None, metavar='SPLIT',
                      help='--camvid/--cityscapes: splits to read (default: every split '
                           'present; Cityscapes: train and val, its test labels are void)')
    conv.add_argument('--out', required=True, type=Path,
                      help='bag folder to create (--camvid/--cityscapes: folder of bags)')
    conv.add_argument('--storage', choices=sorted(STORAGES), default='mcap',
                      help='rosbag2 storage plugin (default: mcap)')
    conv.add_argument('--fps', type=float, default=None,
                      help='frame rate of the stamps in Hz (default: 10; CamVid 30, the '
                           'video rate; Cityscapes 17)')
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
        if args.command == 'convert' and args.drive is None:
            # Lazy: corpora reads through the dataset loaders, which import torch (seconds that
            # `bags info` and a drive conversion do not need).
            from bisenet_ros.corpora import convert_corpus

            corpus = 'camvid' if args.camvid is not None else 'cityscapes'
            for path in convert_corpus(corpus, args.camvid or args.cityscapes, args.out,
                                       args.splits, args.fps, args.storage, args.compressed,
                                       args.image_topic, args.label_topic):
                _print_info(bag_info(path))
        elif args.command == 'convert':
            path = convert_drive(args.drive, args.out, args.split, args.storage,
                                 10.0 if args.fps is None else args.fps, args.compressed,
                                 args.image_topic, args.label_topic, cameras=args.cameras)
            _print_info(bag_info(path))
        else:
            _print_info(bag_info(args.bag))
    except BagError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
