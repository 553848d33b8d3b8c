"""Public datasets as drives: CamVid one bag per video sequence, Cityscapes one bag per city.

    python -m bisenet_ros.bags convert --camvid /data/CamVid --out corpus/camvid
    python -m bisenet_ros.bags convert --camvid /data/CamVid --splits val test --out corpus/cv
    python -m bisenet_ros.bags convert --cityscapes /data/cityscapes --splits val --out corpus/cs

CamVid is read in either published layout (SegNet's train/val/test + *annot, or the original
701_StillsRaw_full + LabeledApproved_full colour labels, mapped to the 11 classes) by
`CamVidDataset`; its frames come from four 30 Hz videos (0001TP, 0006R0, 0016E5, Seq05VD)
and the frame number in each file name (0001TP_006690, Seq05VD_f00000) is the video frame,
so frame n is stamped start + n / 30 s. Cityscapes (`CityscapesDataset`, gtFine labelIds or
labelTrainIds -> the 19 classes) has one labelled frame per separate snippet, so its stamps
are synthetic: the city's frames in (sequence, frame) order, 1/fps apart.
Every bag is what `convert --drive` writes: rgb8 (or compressed) images on /camera/image_raw,
mono8 train ids (255 = void) on /camera/labels with the same stamps.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Callable, Sequence

from rosbags.rosbag2 import Writer, WriterError
from tqdm import tqdm

from bisenet_core.data.base import DatasetLayoutError, SegmentationDataset
from bisenet_core.data.camvid import COLOUR_DIR, RAW_DIR, CamVidDataset
from bisenet_core.data.cityscapes import CityscapesDataset
from bisenet_ros.bag_files import COMPRESSED_TYPE, IMAGE_TYPE, BagError, typestore
from bisenet_ros.bag_writer import (BAG_VERSION, COMPRESSIONS, DEFAULT_START_NS, IMAGE_TOPIC,
                                    LABEL_TOPIC, STORAGES, compressed_message, image_message)

CAMVID_FPS = 30.0           # CamVid's videos; file names carry the video frame number
CITYSCAPES_FPS = 17.0       # the Cityscapes camera's rate (its snippets are 30 frames at 17 Hz)
CAMVID_SPLITS = ('train', 'val', 'test')
CITYSCAPES_SPLITS = ('train', 'val')   # test labels are all void: nothing to score
_CAMVID_NAME = re.compile(r'^(?P<sequence>[^_]+)_f?(?P<frame>\d+)$')
_CITYSCAPES_NAME = re.compile(r'^(?P<city>.+)_(?P<sequence>\d+)_(?P<frame>\d+)_leftImg8bit$')

# One frame to write: (stamp ns, loader, index into it); images are read when written.
FrameRef = tuple[int, SegmentationDataset, int]


def write_bag(out: Path, frames: Sequence[FrameRef], storage: str = 'mcap',
              compressed: str | None = None, image_topic: str = IMAGE_TOPIC,
              label_topic: str = LABEL_TOPIC, progress: bool = True) -> Path:
    """Write frames (in stamp order) as images + mono8 ground truth into a new bag."""
    if storage not in STORAGES:
        raise BagError(f'unknown storage {storage!r}; choose one of {sorted(STORAGES)}')
    if compressed not in (None, *COMPRESSIONS):
        raise BagError(f'unknown compression {compressed!r}; choose one of {COMPRESSIONS}')
    store = typestore()
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name and renamed when complete: a failed or interrupted
    # conversion leaves no half bag that a rerun would refuse or an evaluation would read.
    partial = out.with_name(f'.{out.name}.partial')
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with Writer(partial, version=BAG_VERSION, storage_plugin=STORAGES[storage]) as writer:
            image_conn = writer.add_connection(
                image_topic, COMPRESSED_TYPE if compressed else IMAGE_TYPE, typestore=store)
            label_conn = writer.add_connection(label_topic, IMAGE_TYPE, typestore=store)
            for stamp_ns, dataset, index in tqdm(frames, desc=f'writing {out.name}',
                                                 unit='frame', disable=not progress):
                try:
                    rgb, label = dataset.load(index)
                except (OSError, ValueError) as exc:  # unreadable file, bad label values
                    raise BagError(str(exc).splitlines()[0]) from None
                image = (compressed_message(store, rgb, compressed, stamp_ns) if compressed
                         else image_message(store, rgb, 'rgb8', stamp_ns))
                writer.write(image_conn, stamp_ns,
                             store.serialize_cdr(image, image_conn.msgtype))
                writer.write(label_conn, stamp_ns, store.serialize_cdr(
                    image_message(store, label, 'mono8', stamp_ns), label_conn.msgtype))
        _rename_bag(partial, out)
    except WriterError as exc:
        raise BagError(f'bag {out}: {exc}') from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out


def _rename_bag(partial: Path, out: Path) -> None:
    """Move a finished bag into place; its data files keep the final bag's name."""
    partial.rename(out)
    for data in out.iterdir():
        if data.name.startswith(partial.name):
            data.rename(out / (out.name + data.name[len(partial.name):]))
    metadata = out / 'metadata.yaml'
    metadata.write_text(metadata.read_text().replace(partial.name, out.name))


def _group(datasets: Sequence[SegmentationDataset], key: Callable[[Path], tuple[str, int]]
           ) -> dict[str, list[tuple[int, SegmentationDataset, int]]]:
    """Sequence -> [(frame number, dataset, index)] sorted by frame, from every split."""
    groups: dict[str, dict[int, tuple[int, SegmentationDataset, int]]] = {}
    for dataset in datasets:
        for index, (image, _) in enumerate(dataset.files):
            name, number = key(image)
            frames = groups.setdefault(name, {})
            if number in frames:
                other = frames[number][1].files[frames[number][2]][0]
                raise BagError(f'{image} and {other}: the same frame of {name} twice')
            frames[number] = (number, dataset, index)
    return {name: [frames[n] for n in sorted(frames)] for name, frames in sorted(groups.items())}


def camvid_frame(path: Path) -> tuple[str, int]:
    """'0001TP_006690.png' -> ('0001TP', 6690); 'Seq05VD_f00030.png' -> ('Seq05VD', 30)."""
    match = _CAMVID_NAME.match(path.stem)
    if match is None:
        raise BagError(f'{path}: not a CamVid frame name (<sequence>_<frame>, e.g. '
                       f'0001TP_006690.png or Seq05VD_f00000.png)')
    return match['sequence'], int(match['frame'])


def camvid_splits(root: Path) -> list[str]:
    """The splits to read by default: SegNet's split folders, or 'all' of the original."""
    present = [s for s in CAMVID_SPLITS if (root / s).is_dir()]
    if present:
        return present
    if (root / RAW_DIR).is_dir() and (root / COLOUR_DIR).is_dir():
        return ['all']
    raise BagError(f'{root}: neither SegNet\'s CamVid layout (train/, trainannot/, ...) nor '
                   f'the original release ({RAW_DIR}/ + {COLOUR_DIR}/)')


def camvid_sequences(root: Path, splits: Sequence[str] | None = None, fps: float = CAMVID_FPS
                     ) -> dict[str, list[FrameRef]]:
    """Sequence -> its frames (stamp from the frame number), from the given splits."""
    splits = list(splits or camvid_splits(root))
    try:
        datasets = [CamVidDataset(root, split) for split in splits]
    except DatasetLayoutError as exc:
        raise BagError(str(exc).splitlines()[0]) from None
    return {name: [(DEFAULT_START_NS + round(number * 1e9 / fps), dataset, index)
                   for number, dataset, index in frames]
            for name, frames in _group(datasets, camvid_frame).items()}


def cityscapes_frame(path: Path) -> tuple[str, int]:
    """'aachen_000012_000019_leftImg8bit.png' -> ('aachen', 12_000019): city, order."""
    match = _CITYSCAPES_NAME.match(path.stem)
    if match is None:
        raise BagError(f'{path}: not a Cityscapes frame name '
                       f'(<city>_<sequence>_<frame>_leftImg8bit.png)')
    return match['city'], int(match['sequence']) * 10**6 + int(match['frame'])


def cityscapes_cities(root: Path, splits: Sequence[str] | None = None,
                      fps: float = CITYSCAPES_FPS) -> dict[str, list[FrameRef]]:
    """City -> its frames in (sequence, frame) order, 1/fps apart."""
    splits = list(splits or [s for s in CITYSCAPES_SPLITS
                             if (root / 'leftImg8bit' / s).is_dir()] or ['val'])
    try:
        datasets = [CityscapesDataset(root, split) for split in splits]
    except DatasetLayoutError as exc:
        raise BagError(str(exc).splitlines()[0]) from None
    return {city: [(DEFAULT_START_NS + round(i * 1e9 / fps), dataset, index)
                   for i, (_, dataset, index) in enumerate(frames)]
            for city, frames in _group(datasets, cityscapes_frame).items()}


CORPORA = {'camvid': (camvid_sequences, CAMVID_FPS),
           'cityscapes': (cityscapes_cities, CITYSCAPES_FPS)}


def convert_corpus(corpus: str, root: str | Path, out: str | Path,
                   splits: Sequence[str] | None = None, fps: float | None = None,
                   storage: str = 'mcap', compressed: str | None = None,
                   image_topic: str = IMAGE_TOPIC, label_topic: str = LABEL_TOPIC,
                   progress: bool = True) -> list[Path]:
    """Write one bag per sequence (CamVid) or city (Cityscapes) into the folder `out`.

    Every bag is checked not to exist before any is written. Returns the bags' paths.
    """
    if corpus not in CORPORA:
        raise BagError(f'unknown corpus {corpus!r}; choose one of {sorted(CORPORA)}')
    read, default_fps = CORPORA[corpus]
    fps = default_fps if fps is None else fps
    if not fps > 0:
        raise BagError(f'fps must be > 0, got {fps}')
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise BagError(f'{corpus} folder {root}: not found')
    groups = read(root, splits, fps)
    existing = [str(out / name) for name in groups if (out / name).exists()]
    if existing:
        raise BagError(f'bags exist already: {", ".join(existing)}; choose another --out or '
                       f'remove them')
    return [write_bag(out / name, frames, storage, compressed, image_topic, label_topic,
                      progress)
            for name, frames in groups.items()]
