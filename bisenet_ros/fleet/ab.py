"""A/B: the candidate model against the baseline (the model on the vehicle today).

Both ran on the same frames of the same drives. Differences are candidate - baseline, in
mIoU (fractions; the report shows points = 100 x). The confidence interval of the aggregate
difference resamples drives, not frames: frames of one drive are not independent, and a
release is judged by how it does on drives it has not seen.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

CONFIDENCE = 0.95


def miou_of_matrices(matrices: np.ndarray) -> np.ndarray:
    """The mIoU of each of a stack of confusion matrices (..., K, K).

    Classes with no pixels in ground truth or prediction are left out, as in
    ConfusionMatrix.miou.
    """
    m = np.asarray(matrices, np.float64)
    tp = np.diagonal(m, axis1=-2, axis2=-1)
    union = m.sum(-1) + m.sum(-2) - tp
    present = union > 0
    iou = np.divide(tp, union, out=np.zeros_like(tp), where=present)
    counts = present.sum(-1)
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(counts > 0, iou.sum(-1) / counts, np.nan)


def bootstrap_diff(candidate: np.ndarray, baseline: np.ndarray, samples: int, seed: int
                   ) -> dict:
    """Bootstrap over drives of the aggregate mIoU difference.

    Args:
        candidate, baseline: (D, K, K) per-drive confusion matrices, same drives in order.
        samples: number of resamples (each draws D drives with replacement).
    Returns {'low', 'high', 'confidence', 'samples', 'share_worse'} (share_worse: fraction
    of resamples where the candidate's aggregate mIoU is below the baseline's).
    """
    drives = candidate.shape[0]
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, drives, size=(samples, drives))
    weights = np.zeros((samples, drives))
    np.add.at(weights, (np.arange(samples)[:, None], picks), 1.0)
    k = candidate.shape[-1]
    # Weighted sums of the drives' matrices = the summed confusion of each resample (exact:
    # integer counts well below 2**53).
    cand = (weights @ candidate.reshape(drives, -1).astype(np.float64)).reshape(-1, k, k)
    base = (weights @ baseline.reshape(drives, -1).astype(np.float64)).reshape(-1, k, k)
    diffs = miou_of_matrices(cand) - miou_of_matrices(base)
    diffs = diffs[~np.isnan(diffs)]
    tail = (1 - CONFIDENCE) / 2 * 100
    return {'low': float(np.percentile(diffs, tail)),
            'high': float(np.percentile(diffs, 100 - tail)),
            'confidence': CONFIDENCE, 'samples': int(samples),
            'share_worse': float((diffs < 0).mean()), 'diffs': diffs}


def compare(drives: Sequence[dict], baselines: Sequence[dict], aggregate: dict,
            baseline_aggregate: dict, class_names: Sequence[str], regression_points: float,
            samples: int, seed: int) -> dict:
    """Per-drive and per-class differences, the bootstrap CI and the regressed drives.

    Adds `ab` {baseline_miou, miou_diff} to every drive record evaluated with both models.
    """
    paired = []
    for drive, base in zip(drives, baselines):
        if drive.get('error') or base.get('error'):
            continue
        diff = (None if drive['miou'] is None or base['miou'] is None
                else drive['miou'] - base['miou'])
        drive['ab'] = {'baseline_miou': base['miou'], 'miou_diff': diff,
                       'baseline_pixel_accuracy': base['pixel_accuracy']}
        paired.append((drive, base))
    per_class = {}
    for name in class_names:
        cand, base = aggregate['per_class_iou'].get(name), baseline_aggregate[
            'per_class_iou'].get(name)
        per_class[name] = {'candidate': cand, 'baseline': base,
                           'diff': None if cand is None or base is None else cand - base}
    diff = (None if aggregate['miou'] is None or baseline_aggregate['miou'] is None
            else aggregate['miou'] - baseline_aggregate['miou'])
    result = {'baseline_miou': baseline_aggregate['miou'], 'candidate_miou': aggregate['miou'],
              'miou_diff': diff, 'per_class': per_class, 'drives_compared': len(paired),
              'regression_points': regression_points, 'bootstrap': None}
    if paired and samples > 0:
        cand = np.stack([np.asarray(d['confusion'], np.int64) for d, _ in paired])
        base = np.stack([np.asarray(b['confusion'], np.int64) for _, b in paired])
        result['bootstrap'] = bootstrap_diff(cand, base, samples, seed)
    worse = [d for d, _ in paired if d['ab']['miou_diff'] is not None
             and -100.0 * d['ab']['miou_diff'] > regression_points]
    result['regressions'] = [{'name': d['name'], 'bag': d['bag'], 'miou': d['miou'],
                              'baseline_miou': d['ab']['baseline_miou'],
                              'diff_points': 100.0 * d['ab']['miou_diff']}
                             for d in sorted(worse, key=lambda d: d['ab']['miou_diff'])]
    return result
