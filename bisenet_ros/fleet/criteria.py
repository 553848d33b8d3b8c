"""Release criteria: a YAML file of thresholds, checked against an evaluation summary.

    aggregate: {miou: 0.75, pixel_accuracy: 0.90}        # >=, from the summed confusion
    per_class_iou: {road: 0.90, car: 0.70}                # >=, by class name
    per_drive: {miou: 0.60}                               # every drive >=
    live: {latency_p99_ms: 120, dropped_frames: 0}        # <=, only with --live
    ab: {max_drive_regression_points: 2.0,                # only with --baseline
         aggregate_not_worse: true}

config/criteria/release.yaml is a commented example. A criterion that needs a mode the run
was not made in (live numbers offline, A/B without a baseline) is reported as skipped, never
as passed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml


class CriteriaError(ValueError):
    """The criteria file cannot be used (names the file, the key and what is wrong)."""


@dataclass(frozen=True)
class Rule:
    """One kind of criterion: where it sits in the file and how its value is read."""

    section: str
    key: str
    op: str                   # '>=' or '<='
    needs: str | None         # None, 'live' or 'ab': the run it needs
    description: str
    value: Callable[[dict], Any]     # summary -> measured value (None: not measured)


def _worst_drive_miou(summary: dict) -> float | None:
    values = [d['miou'] for d in _scored(summary)]
    return min(values) if values else None


def _worst_regression(summary: dict) -> float | None:
    diffs = [d['ab']['miou_diff'] for d in _scored(summary)
             if d.get('ab') and d['ab']['miou_diff'] is not None]
    return -100.0 * min(diffs) if diffs else None


def _aggregate_diff(summary: dict) -> float | None:
    diff = (summary.get('ab') or {}).get('miou_diff')
    return None if diff is None else 100.0 * diff


def _scored(summary: dict) -> list[dict]:
    return [d for d in summary['drives'] if not d.get('error') and d.get('miou') is not None]


RULES = (
    Rule('aggregate', 'miou', '>=', None, 'aggregate mIoU (summed confusion of all drives)',
         lambda s: s['aggregate']['miou']),
    Rule('aggregate', 'pixel_accuracy', '>=', None, 'aggregate pixel accuracy',
         lambda s: s['aggregate']['pixel_accuracy']),
    Rule('per_drive', 'miou', '>=', None, 'mIoU of every drive (value: the worst drive)',
         _worst_drive_miou),
    Rule('live', 'latency_p99_ms', '<=', 'live', 'end-to-end latency p99 over all frames (ms)',
         lambda s: (s['aggregate'].get('latency_ms') or {}).get('p99')),
    Rule('live', 'dropped_frames', '<=', 'live', 'frames the node dropped, all drives',
         lambda s: s['aggregate'].get('dropped_frames')),
    Rule('ab', 'max_drive_regression_points', '<=', 'ab',
         'largest drop of a drive\'s mIoU below the baseline (mIoU points)', _worst_regression),
    Rule('ab', 'aggregate_not_worse', '>=', 'ab',
         'aggregate mIoU minus the baseline\'s (mIoU points)', _aggregate_diff),
)
PER_CLASS = 'per_class_iou'
SECTIONS = sorted({r.section for r in RULES} | {PER_CLASS})


@dataclass(frozen=True)
class Criterion:
    """A threshold from the file, bound to its rule (class_name for per-class IoU)."""

    name: str
    threshold: float
    rule: Rule
    class_name: str | None = None


def load_criteria(path: str | Path | None, class_names: Sequence[str]) -> list[Criterion]:
    """Read and check a criteria file; an empty list when path is None."""
    if path is None:
        return []
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise CriteriaError(f'criteria file {path}: {exc.strerror or exc}') from None
    except yaml.YAMLError as exc:
        raise CriteriaError(f'criteria file {path}: not valid YAML: {exc}') from None
    return parse_criteria(data, class_names, str(path))


def parse_criteria(data: Any, class_names: Sequence[str], where: str = 'criteria'
                   ) -> list[Criterion]:
    """Criteria from the parsed YAML mapping; unknown sections, keys or classes are errors."""
    if data is None:
        return []
    if not isinstance(data, dict):
        raise CriteriaError(f'{where}: expected a mapping of sections ({", ".join(SECTIONS)})')
    rules = {(r.section, r.key): r for r in RULES}
    criteria = []
    for section, entries in data.items():
        if section not in SECTIONS:
            raise CriteriaError(f'{where}: unknown section {section!r}; known: '
                                f'{", ".join(SECTIONS)}')
        if not isinstance(entries, dict) or not entries:
            raise CriteriaError(f'{where}: {section} must be a non-empty mapping')
        for key, threshold in entries.items():
            name = f'{section}.{key}'
            if section == PER_CLASS:
                if key not in class_names:
                    raise CriteriaError(f'{where}: {name}: the model has no class {key!r}; its '
                                        f'classes: {", ".join(class_names)}')
                rule = Rule(PER_CLASS, str(key), '>=', None, f'IoU of class {key}',
                            _class_iou(str(key)))
                criteria.append(Criterion(name, _number(threshold, name, where, 0, 1), rule,
                                          str(key)))
                continue
            rule = rules.get((section, key))
            if rule is None:
                known = ', '.join(r.key for r in RULES if r.section == section)
                raise CriteriaError(f'{where}: unknown criterion {name}; {section} knows: {known}')
            if rule.key == 'aggregate_not_worse':
                if not isinstance(threshold, bool):
                    raise CriteriaError(f'{where}: {name} must be true or false')
                if threshold:
                    criteria.append(Criterion(name, 0.0, rule))
                continue
            high = 1 if section in ('aggregate', 'per_drive') else math.inf
            criteria.append(Criterion(name, _number(threshold, name, where, 0, high), rule))
    return criteria


def _class_iou(name: str) -> Callable[[dict], Any]:
    return lambda s: s['aggregate']['per_class_iou'].get(name)


def _number(value: Any, name: str, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            low <= value <= high):
        bound = f'{low}..{high}' if high != math.inf else f'>= {low}'
        raise CriteriaError(f'{where}: {name} must be a number in {bound}, got {value!r}')
    return float(value)


def evaluate_criteria(criteria: Sequence[Criterion], summary: dict, live: bool,
                      ab: bool) -> list[dict]:
    """Each criterion with its measured value, threshold and verdict.

    passed is None for a skipped criterion (`skipped` says why); a value that could not be
    measured (no drive evaluated, a class absent everywhere) fails.
    """
    results = []
    for criterion in criteria:
        rule = criterion.rule
        entry = {'name': criterion.name, 'description': rule.description, 'op': rule.op,
                 'threshold': criterion.threshold, 'value': None, 'passed': None}
        if (rule.needs == 'live' and not live) or (rule.needs == 'ab' and not ab):
            entry['skipped'] = ('needs --live' if rule.needs == 'live' else
                                'needs --baseline')
            results.append(entry)
            continue
        value = rule.value(summary)
        entry['value'] = value
        if value is None:
            entry['passed'] = False
            entry['note'] = 'not measured (no scored pixels of it)'
        elif rule.op == '>=':
            entry['passed'] = bool(value >= criterion.threshold)
        else:
            entry['passed'] = bool(value <= criterion.threshold)
        if rule.section == 'per_drive':
            entry['failing_drives'] = [d['name'] for d in _scored(summary)
                                       if d['miou'] < criterion.threshold]
        if rule.key == 'max_drive_regression_points':
            entry['failing_drives'] = [
                d['name'] for d in _scored(summary) if d.get('ab')
                and d['ab']['miou_diff'] is not None
                and -100.0 * d['ab']['miou_diff'] > criterion.threshold]
        results.append(entry)
    return results


def drive_failures(results: Sequence[dict]) -> dict[str, list[str]]:
    """Drive name -> the per-drive criteria it fails (for the per-drive JUnit cases)."""
    failures: dict[str, list[str]] = {}
    for entry in results:
        for name in entry.get('failing_drives', ()):
            failures.setdefault(name, []).append(entry['name'])
    return failures
