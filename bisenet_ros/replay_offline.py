"""The replay's ROS-free half: a model over a bag's frames, scored against their ground truth.

    frames = bags.read_frames(bag)
    run = run_offline(frames, Segmenter('model.pt', backend='torch', device='cpu'))
    run.scores['bilinear'].confusion.miou()       # also .frames_scored, run.predictions[...]

The offline run is the reference a live replay must reproduce. A fleet evaluator calls
run_offline once per bag and adds up the confusion matrices (`total += score.confusion`).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from tqdm import tqdm

from bisenet_core.inference import Segmenter
from bisenet_core.inference.postprocess import blend_labels, logits_to_labels, palette_lut
from bisenet_core.metrics import ConfusionMatrix
from bisenet_core.spec import ModelSpec
from bisenet_ros.bags import BagFrame
from bisenet_ros.replay_options import ReplayError

# Both are taken from the same logits, so comparing them isolates the upsampling.
OFFLINE_UPSAMPLES = ('nearest', 'bilinear')
NUM_SAMPLES = 4


@dataclass
class Score:
    """Frames' predictions against their ground truth; frames without either are not scored."""

    confusion: ConfusionMatrix
    frames_scored: int


@dataclass
class OfflineRun:
    """What run_offline made: labels per upsampling and frame index, their scores, timings."""

    segmenter: Segmenter
    predictions: dict[str, dict[int, np.ndarray]]  # upsampling -> frame index -> labels
    scores: dict[str, Score]                       # upsampling -> score
    timings_ms: dict[str, float]                   # mean per frame: preprocess, inference, ...


def run_offline(frames: Sequence[BagFrame], model: Segmenter | str | os.PathLike,
                progress: bool = True) -> OfflineRun:
    """Segment every frame without ROS and score it, with nearest and bilinear upsampling.

    `model`: a Segmenter (its backend, device, precision and input size are used) or a model
    file (opened with Segmenter's defaults). The network runs once per frame.
    """
    segmenter = model if isinstance(model, Segmenter) else Segmenter(model)
    predictions: dict[str, dict[int, np.ndarray]] = {m: {} for m in OFFLINE_UPSAMPLES}
    totals = {'preprocess': 0.0, 'inference': 0.0, 'postprocess': 0.0}
    for frame in tqdm(frames, desc='offline reference', unit='frame', disable=not progress):
        size = frame.image.shape[:2]
        t0 = time.perf_counter()
        batch = segmenter.preprocess(frame.image)
        t1 = time.perf_counter()
        logits = segmenter.infer(batch)[0]
        t2 = time.perf_counter()
        predictions['nearest'][frame.index] = logits_to_labels(logits, size, 'nearest')
        t3 = time.perf_counter()
        predictions['bilinear'][frame.index] = logits_to_labels(logits, size, 'bilinear')
        totals['preprocess'] += (t1 - t0) * 1e3
        totals['inference'] += (t2 - t1) * 1e3
        totals['postprocess'] += (t3 - t2) * 1e3
    scores = {m: score(frames, predictions[m], segmenter.spec) for m in OFFLINE_UPSAMPLES}
    return OfflineRun(segmenter, predictions, scores,
                      {k: v / max(1, len(frames)) for k, v in totals.items()})


def score(frames: Sequence[BagFrame], predictions: dict[int, np.ndarray], spec: ModelSpec
          ) -> Score:
    """Confusion matrix of `predictions` (frame index -> labels) against the frames' labels.

    Label ids the model does not have (e.g. CamVid's void 11) count as void: not scored.
    """
    confusion = ConfusionMatrix(spec.num_classes, spec.ignore_index)
    scored = 0
    for frame in frames:
        prediction = predictions.get(frame.index)
        if frame.label is None or prediction is None:
            continue
        if prediction.shape != frame.label.shape:
            raise ReplayError(f'frame {frame.index}: prediction is {prediction.shape[1]}x'
                              f'{prediction.shape[0]}, ground truth {frame.label.shape[1]}x'
                              f'{frame.label.shape[0]}')
        label = np.where(frame.label < spec.num_classes, frame.label, spec.ignore_index)
        confusion.update(prediction, label)
        scored += 1
    return Score(confusion, scored)


def samples(frames: Sequence[BagFrame], predictions: dict[int, np.ndarray], spec: ModelSpec,
            which: str) -> list[dict]:
    """Up to NUM_SAMPLES evenly spaced frames that have a prediction, as overlay pictures."""
    lut = palette_lut(spec)
    usable = [f for f in frames if f.index in predictions]
    if not usable:
        return []
    count = min(NUM_SAMPLES, len(usable))
    positions = sorted({round(i * (len(usable) - 1) / max(1, count - 1)) for i in range(count)})

    def blend(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return blend_labels(image, labels, lut, spec.num_classes, alpha=0.65)

    picked = []
    for frame in (usable[p] for p in positions):
        picked.append({
            'title': f'frame {frame.index} ({which})',
            'image': frame.image,
            'truth': None if frame.label is None else blend(frame.image, frame.label),
            'prediction': blend(frame.image, predictions[frame.index]),
        })
    return picked
