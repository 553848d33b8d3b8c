"""Drives: find the bags, evaluate one drive with one model, cache the result.

A drive is one rosbag2 bag (a folder with metadata.yaml). Its result (the confusion matrix
and what is derived from it; in live mode also latencies and drops) is cached in
`<out>/cache/` under a key made of the bag's fingerprint, the model file's sha256 and the
settings that change the masks, so an interrupted run resumes and a corpus that grows is
evaluated only on its new drives. Errors are not cached: a failed drive is tried again.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from bisenet_core.atomic import atomic_write_bytes
from bisenet_core.filehash import file_sha256
from bisenet_core.metrics import ConfusionMatrix
from bisenet_core.model_source import read_spec
from bisenet_core.spec import ModelSpec
from bisenet_ros.bags import BagFrame, read_frames
from bisenet_ros.replay_live import replay_parameters, run_live
from bisenet_ros.replay_offline import run_offline, score
from bisenet_ros.replay_options import ReplayOptions
from bisenet_ros.report import latency_stats

CACHE_DIR = 'cache'
CACHE_VERSION = 1
BAG_MARKER = 'metadata.yaml'
# Frames segmented per offline call: bounds the predictions held in memory at once.
CHUNK_FRAMES = 32
LIVE_LOGS = ('model', 'baseline')     # node log folders of a drive's live runs


class DriveError(RuntimeError):
    """The drives given on the command line cannot be used (not a bag, none found)."""


@dataclass(frozen=True)
class EvalSettings:
    """Everything a run needs, built once from the command line and passed down."""

    model: Path
    out: Path
    baseline: Path | None = None
    criteria: Path | None = None
    live: bool = False
    backend: str = 'auto'
    device: str = 'auto'
    precision: str = 'fp32'
    input_size: tuple[int, int] | None = None
    upsample: str = 'bilinear'
    image_topic: str | None = None
    label_topic: str | None = None
    max_frames: int | None = None
    rate: float | None = 1.0            # live pacing; None = lockstep
    start_timeout: float = 180.0
    regression_points: float = 1.0
    bootstrap: int = 2000
    seed: int = 0
    threads: int | None = None          # CPU threads per rank; None = the cores split
    progress: bool = True

    def mask_settings(self) -> dict:
        """What changes the masks or the scoring, hence part of the cache key."""
        return {'live': self.live, 'backend': self.backend, 'device': self.device,
                'precision': self.precision, 'input_size': self.input_size,
                'upsample': self.upsample, 'image_topic': self.image_topic,
                'label_topic': self.label_topic, 'max_frames': self.max_frames,
                'rate': self.rate if self.live else None}

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


# ----------------------------------------------------------------------------- finding bags

def find_drives(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The bags named or found (recursively) under the given paths, sorted, no duplicates."""
    found: dict[Path, None] = {}
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise DriveError(f'{path}: not found')
        if path.is_file() and path.suffix in ('.mcap', '.db3'):
            path = path.parent  # a bag's data file given instead of its folder
        if (path / BAG_MARKER).is_file():
            found[path] = None
            continue
        if not path.is_dir():
            raise DriveError(f'{path}: neither a rosbag2 bag folder nor a folder of bags')
        # Hidden folders (a conversion's `.name.partial`) are not drives.
        bags = sorted(marker.parent for marker in path.rglob(BAG_MARKER)
                      if not any(part.startswith('.')
                                 for part in marker.parent.relative_to(path).parts))
        if not bags:
            raise DriveError(f'{path}: no rosbag2 bags (folders with {BAG_MARKER}) in it')
        found.update(dict.fromkeys(bags))
    return list(found)


def drive_name(bag: Path, roots: Sequence[str | os.PathLike]) -> str:
    """A short name for reports: the bag's path below the folder it was found in."""
    for root in roots:
        root = Path(root)
        if root != bag and root in bag.parents:
            return bag.relative_to(root).as_posix()
    return bag.name


def bag_fingerprint(bag: Path) -> str:
    """sha256 of the bag's metadata.yaml and the names, sizes and mtimes of its files.

    Cheap (no data read): a bag whose files change is evaluated again.
    """
    digest = hashlib.sha256((bag / BAG_MARKER).read_bytes())
    for path in sorted(p for p in bag.iterdir() if p.is_file() and p.name != BAG_MARKER):
        stat = path.stat()
        digest.update(f'{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n'.encode())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- cache

def cache_path(out: Path, fingerprint: str, model_sha: str, settings: EvalSettings) -> Path:
    key = json.dumps([CACHE_VERSION, fingerprint, model_sha, settings.mask_settings()])
    return out / CACHE_DIR / f'{hashlib.sha256(key.encode()).hexdigest()[:32]}.json'


def load_cached(path: Path) -> dict | None:
    """A cached drive result, or None (absent or unreadable: evaluated again)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and 'confusion' in record else None


def store_cached(path: Path, record: dict) -> None:
    atomic_write_bytes(json.dumps(record).encode(), path)


# ----------------------------------------------------------------------------- models

class ModelRunner:
    """One model file: its spec and sha256 now, its Segmenter when first needed."""

    def __init__(self, path: Path, settings: EvalSettings, threads: int | None = None,
                 device: str | None = None):
        if not path.is_file():
            raise DriveError(f'model file {path}: not found')
        self.path = path
        self.spec: ModelSpec = read_spec(path)
        self.sha256 = file_sha256(path)
        self.settings = settings
        self.threads = threads
        self.device = device or settings.device
        self._segmenter = None

    @property
    def segmenter(self):
        if self._segmenter is None:
            from bisenet_core.inference import Segmenter  # torch/ORT: only where evaluating

            s = self.settings
            self._segmenter = Segmenter(self.path, backend=s.backend, device=self.device,
                                        precision=s.precision, input_size=s.input_size,
                                        upsample=s.upsample, threads=self.threads)
        return self._segmenter

    def describe(self) -> dict:
        return {'path': str(self.path), 'sha256': self.sha256, 'backbone': self.spec.backbone,
                'dataset': self.spec.dataset, 'class_names': list(self.spec.class_names)}


# ----------------------------------------------------------------------------- one drive

def read_drive(bag: Path, settings: EvalSettings) -> list[BagFrame]:
    return read_frames(bag, settings.image_topic, settings.label_topic,
                       max_frames=settings.max_frames)


def score_offline(frames: Sequence[BagFrame], runner: ModelRunner, bar=None) -> dict:
    """The replay's offline run over the frames, in chunks; confusions added up."""
    spec = runner.spec
    confusion = ConfusionMatrix(spec.num_classes, spec.ignore_index)
    scored = 0
    for start in range(0, len(frames), CHUNK_FRAMES):
        chunk = frames[start:start + CHUNK_FRAMES]
        result = run_offline(chunk, runner.segmenter, progress=False).scores[
            runner.settings.upsample]
        confusion.merge(result.confusion)
        scored += result.frames_scored
        if bar is not None:
            bar.update(len(chunk))
    return _record(confusion, scored, len(frames), spec)


def score_live(bag: Path, frames: Sequence[BagFrame], runner: ModelRunner,
               log_dir: Path) -> dict:
    """Replay the frames through a launched segment_node (the replay's live run) and score."""
    s = runner.settings
    options = ReplayOptions(bag=bag, model=runner.path, mode='live', rate=s.rate, out=log_dir,
                            backend=s.backend, device=s.device, precision=s.precision,
                            input_size=s.input_size, start_timeout=s.start_timeout,
                            progress=s.progress, upsample=s.upsample)
    live = run_live(frames, runner.path, options, params=replay_parameters(s.upsample))
    masks = {index: live.received[position][2] for index, position in live.match.matched}
    result = score(frames, masks, runner.spec)
    latencies = live.timings()['latency_ms']
    record = _record(result.confusion, result.frames_scored, len(frames), runner.spec)
    record.update(frames_sent=len(live.publish_s), frames_received=live.match.num_matched,
                  dropped_frames=len(live.match.dropped), latencies_ms=latencies,
                  latency_ms=latency_stats(latencies))
    return record


def _record(confusion: ConfusionMatrix, scored: int, frames: int, spec: ModelSpec) -> dict:
    if not scored:
        raise DriveError('no frame has ground truth (pass --label-topic, or convert the '
                         'drive with its labels)')
    return {'frames': frames, 'frames_scored': scored, **summarize(confusion, spec)}


def summarize(confusion: ConfusionMatrix, spec: ModelSpec) -> dict:
    """mIoU, pixel accuracy, per-class IoU (None where absent) and the matrix itself."""
    numbers = confusion.to_dict(spec.class_names)
    return {'miou': numbers['miou'], 'pixel_accuracy': numbers['pixel_accuracy'],
            'mean_class_accuracy': numbers['mean_class_accuracy'],
            'per_class_iou': numbers['iou'], 'pixels': numbers['pixels'],
            'confusion': confusion.matrix.tolist()}


def evaluate_drive(bag: Path, name: str, runners: Sequence[ModelRunner],
                   settings: EvalSettings, bar_position: int = 1) -> list[dict]:
    """Results of each model on one drive, from the cache where there, else evaluated.

    The frames are read once and every model that is not cached runs on the same frames.
    A failure is returned as the drive's error (in every model's record), never raised.
    """
    base = {'bag': str(bag), 'name': name}
    try:
        fingerprint = bag_fingerprint(bag)
    except OSError as exc:
        return [{**base, 'error': f'cannot read {bag}: {exc}'} for _ in runners]
    records: list[dict | None] = []
    paths = [cache_path(settings.out, fingerprint, r.sha256, settings) for r in runners]
    for path in paths:
        cached = load_cached(path)
        records.append({**cached, **base, 'cached': True} if cached else None)
    missing = [i for i, r in enumerate(records) if r is None]
    if not missing:
        return records
    try:
        frames = read_drive(bag, settings)
        with tqdm(total=len(frames) * len(missing), desc=name, unit='frame', leave=False,
                  position=bar_position, disable=not settings.progress or settings.live) as bar:
            for i in missing:
                start = time.perf_counter()
                if settings.live:
                    # <out>/live/<drive>/{model,baseline}/node.log
                    logs = settings.out / 'live' / name.replace('/', '__') / LIVE_LOGS[i]
                    record = score_live(bag, frames, runners[i], logs)
                else:
                    record = score_offline(frames, runners[i], bar)
                record.update(seconds=time.perf_counter() - start,
                              model_sha256=runners[i].sha256, fingerprint=fingerprint)
                store_cached(paths[i], record)
                records[i] = {**record, **base, 'cached': False}
    except Exception as exc:  # noqa: BLE001 - any failure is this drive's error, not the run's
        message = f'{type(exc).__name__}: {exc}'.splitlines()[0]
        return [{**base, 'error': message} for _ in runners]
    return records
