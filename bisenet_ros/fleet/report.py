"""The outputs of a fleet evaluation: summary.json, report.md with its plots, junit.xml.

    summary.json     every number (format in docs/replay.md, "Evaluating a model release")
    report.md        verdict, criteria, per-drive table (worst first), per-class IoU, A/B
    junit.xml        one test case per drive and per criterion
    drives.png       per-drive mIoU, worst first        iou.png      aggregate per-class IoU
    ab_drives.png    per-drive mIoU difference (A/B)    ab_bootstrap.png   the CI (A/B)

Everything is written atomically, so a reader never sees half a file.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from bisenet_core.atomic import atomic_write, atomic_write_bytes
from bisenet_ros.fleet.junit import write_junit
from bisenet_ros.report import plots_section

VERDICTS = {0: 'PASSED', 1: 'FAILED', 2: 'ERROR (some drives could not be evaluated)'}


def _f(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 'n/a'
    return f'{value:.{digits}f}' if isinstance(value, float) else str(value)


def _points(value) -> str:
    return 'n/a' if value is None else f'{100 * value:+.2f}'


def worst_first(drives: Sequence[dict]) -> list[dict]:
    """Drives that failed first, then by mIoU ascending."""
    return sorted(drives, key=lambda d: (not d.get('error'),
                                         d.get('miou') if d.get('miou') is not None else -1.0,
                                         d['name']))


def _figure(size):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout='constrained')
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig, path: Path) -> Path:
    return atomic_write(path, lambda f: fig.savefig(f, format='png', dpi=100))


def plot_drives(path: Path, drives: Sequence[dict], aggregate_miou: float | None) -> Path:
    shown = [d for d in worst_first(drives) if not d.get('error')][:60]
    fig, ax = _figure((8, 1.5 + 0.22 * len(shown)))
    y = np.arange(len(shown))
    ax.barh(y, [100 * (d['miou'] or 0.0) for d in shown], color='tab:blue')
    ax.set_yticks(y, [d['name'] for d in shown], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel('mIoU (%)')
    ax.set_title(f'per-drive mIoU, worst first ({len(shown)} shown)')
    if aggregate_miou is not None:
        ax.axvline(100 * aggregate_miou, color='tab:red', linestyle='--',
                   label=f'aggregate {100 * aggregate_miou:.1f}')
        ax.legend(loc='lower right')
    return _save(fig, path)


def plot_class_iou(path: Path, summary: dict) -> Path:
    """Aggregate IoU per class, the baseline's beside it in an A/B run."""
    names = summary['class_names']
    runs = [('candidate' if summary.get('baseline') else 'model', summary['aggregate'])]
    if summary.get('baseline'):
        runs.append(('baseline', summary['baseline']['aggregate']))
    fig, ax = _figure((8, 1.5 + 0.3 * len(names) * len(runs)))
    height = 0.8 / len(runs)
    for k, (label, aggregate) in enumerate(runs):
        values = [aggregate['per_class_iou'][n] for n in names]
        y = np.arange(len(names)) + k * height
        ax.barh(y, [100 * (v or 0.0) for v in values], height, label=label)
        for row, value in zip(y, values):
            ax.text((0 if value is None else 100 * value) + 0.5, row,
                    'n/a' if value is None else f'{100 * value:.1f}', va='center', fontsize=6)
    ax.set_yticks(np.arange(len(names)) + 0.4 - height / 2, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 105)
    ax.set_xlabel('IoU over all drives (%)')
    ax.legend(loc='lower right')
    return _save(fig, path)


def plot_ab(path_drives: Path, path_bootstrap: Path, summary: dict,
            diffs: np.ndarray | None) -> list[Path]:
    ab = summary['ab']
    paired = sorted((d for d in summary['drives'] if d.get('ab')
                     and d['ab']['miou_diff'] is not None),
                    key=lambda d: d['ab']['miou_diff'])[:60]
    fig, ax = _figure((8, 1.5 + 0.22 * len(paired)))
    values = [100 * d['ab']['miou_diff'] for d in paired]
    ax.barh(np.arange(len(paired)), values,
            color=['tab:red' if v < -ab['regression_points'] else 'tab:blue' for v in values])
    ax.set_yticks(np.arange(len(paired)), [d['name'] for d in paired], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color='black', linewidth=0.8)
    ax.axvline(-ab['regression_points'], color='tab:red', linestyle=':',
               label=f'regression -{ab["regression_points"]:g} points')
    ax.set_xlabel('mIoU difference, candidate - baseline (points)')
    ax.legend(loc='best')
    paths = [_save(fig, path_drives)]
    if diffs is not None and len(diffs):
        boot = ab['bootstrap']
        fig, ax = _figure((7, 3.5))
        ax.hist(100 * diffs, bins=50, color='tab:blue')
        for edge in (boot['low'], boot['high']):
            ax.axvline(100 * edge, color='tab:red', linestyle='--')
        ax.axvline(0, color='black', linewidth=0.8)
        ax.set_xlabel('aggregate mIoU difference (points), drives resampled')
        ax.set_title(f'{100 * boot["confidence"]:.0f}% interval [{100 * boot["low"]:+.2f}, '
                     f'{100 * boot["high"]:+.2f}] over {boot["samples"]} resamples')
        paths.append(_save(fig, path_bootstrap))
    return paths


def render_markdown(summary: dict, plots: dict[str, str]) -> str:
    agg, model = summary['aggregate'], summary['model']
    lines = ['# Model release evaluation', '',
             f'**{VERDICTS[summary["exit_code"]]}**', '',
             f'- model: `{model["path"]}` (sha256 `{model["sha256"][:16]}...`, '
             f'{model["backbone"]}, {len(summary["class_names"])} classes)']
    if summary.get('baseline'):
        base = summary['baseline']
        lines.append(f'- baseline: `{base["path"]}` (sha256 `{base["sha256"][:16]}...`)')
    settings = summary['settings']
    lines += [f'- drives: {agg["drives"]} ({agg["drives_evaluated"]} evaluated, '
              f'{agg["drives_cached"]} of them from the cache, {agg["drives_failed"]} failed), '
              f'{agg["frames_scored"]} frames scored; {summary["ranks"]} rank(s)',
              f'- mode: {"live (through segment_node)" if settings["live"] else "offline"}, '
              f'backend {settings["backend"]}, {settings["upsample"]} upsampling', '']
    if summary['criteria']:
        lines += ['## Criteria', '', '| criterion | value | threshold | result |',
                  '| --- | ---: | ---: | --- |']
        for c in summary['criteria']:
            result = (f'skipped ({c["skipped"]})' if c.get('skipped') else
                      'pass' if c['passed'] else '**FAIL**')
            if c.get('failing_drives'):
                result += f': {", ".join(c["failing_drives"][:10])}'
            lines.append(f'| {c["name"]}: {c["description"]} | {_f(c["value"])} | '
                         f'{c["op"]} {_f(c["threshold"])} | {result} |')
        lines.append('')
    else:
        lines += ['No criteria given (`--criteria`): nothing to fail.', '']
    lines += ['## Aggregate', '',
              'From the summed confusion matrix of all drives (not a mean of per-drive mIoUs).',
              '', f'- mIoU **{_f(agg["miou"])}**, pixel accuracy {_f(agg["pixel_accuracy"])}, '
              f'mean class accuracy {_f(agg["mean_class_accuracy"])}']
    if settings['live'] and agg.get('latency_ms'):
        lat = agg['latency_ms']
        lines.append(f'- latency p50 {lat["p50"]:.1f} ms, p99 {lat["p99"]:.1f} ms; dropped '
                     f'frames {agg["dropped_frames"]}')
    ab = summary.get('ab')
    if ab:
        lines += _ab_lines(ab)
    lines += ['', '## Drives, worst first', '']
    header = '| drive | frames | mIoU | pixel acc |'
    if ab:
        header += ' baseline mIoU | diff (points) |'
    if settings['live']:
        header += ' p99 ms | dropped |'
    lines += [header, '| --- |' + ' ---: |' * (header.count('|') - 2)]
    for d in worst_first(summary['drives']):
        if d.get('error'):
            lines.append(f'| {d["name"]} | error: {d["error"]} |' + ' |' * (
                header.count('|') - 3))
            continue
        row = (f'| {d["name"]} | {d["frames_scored"]} | {_f(d["miou"])} | '
               f'{_f(d["pixel_accuracy"])} |')
        if ab:
            pair = d.get('ab') or {}
            row += f' {_f(pair.get("baseline_miou"))} | {_points(pair.get("miou_diff"))} |'
        if settings['live']:
            row += f' {_f((d.get("latency_ms") or {}).get("p99"), 1)} | ' \
                   f'{d.get("dropped_frames", "n/a")} |'
        lines.append(row)
    lines += ['', '## Per-class IoU (aggregate)', '']
    header = '| class | IoU |' + (' baseline | diff (points) |' if ab else '')
    lines += [header, '| --- |' + ' ---: |' * (header.count('|') - 2)]
    for name in summary['class_names']:
        row = f'| {name} | {_f(agg["per_class_iou"][name])} |'
        if ab:
            entry = ab['per_class'][name]
            row += f' {_f(entry["baseline"])} | {_points(entry["diff"])} |'
        lines.append(row)
    lines += plots_section(plots, {'drives': 'Per-drive mIoU', 'iou': 'Per-class IoU',
                                   'ab_drives': 'A/B per drive', 'ab_bootstrap': 'A/B bootstrap'})
    return '\n'.join(lines).rstrip() + '\n'


def _ab_lines(ab: dict) -> list[str]:
    lines = ['', '## A/B against the baseline', '',
             f'- aggregate mIoU {_f(ab["candidate_miou"])} vs baseline '
             f'{_f(ab["baseline_miou"])}: **{_points(ab["miou_diff"])} points** over '
             f'{ab["drives_compared"]} drives']
    boot = ab.get('bootstrap')
    if boot:
        lines.append(f'- {100 * boot["confidence"]:.0f}% bootstrap interval (drives resampled '
                     f'{boot["samples"]} times): [{_points(boot["low"])}, '
                     f'{_points(boot["high"])}] points; candidate worse in '
                     f'{100 * boot["share_worse"]:.1f}% of resamples')
    if ab['regressions']:
        lines.append(f'- drives worse by more than {ab["regression_points"]:g} points: '
                     + ', '.join(f'{r["name"]} ({r["diff_points"]:+.2f})'
                                 for r in ab['regressions']))
    else:
        lines.append(f'- no drive worse by more than {ab["regression_points"]:g} points')
    return lines


def write_outputs(out: Path, summary: dict) -> dict[str, Path]:
    """Write everything into `out`; return {name: path}."""
    out.mkdir(parents=True, exist_ok=True)
    diffs = summary.pop('_bootstrap_diffs', None)
    plots: dict[str, str] = {}
    if summary['aggregate']['drives_evaluated']:
        plot_drives(out / 'drives.png', summary['drives'], summary['aggregate']['miou'])
        plot_class_iou(out / 'iou.png', summary)
        plots.update(drives='drives.png', iou='iou.png')
        if summary.get('ab') and summary['ab']['drives_compared']:
            made = plot_ab(out / 'ab_drives.png', out / 'ab_bootstrap.png', summary, diffs)
            plots.update({p.stem: p.name for p in made})
    summary['plots'] = plots
    paths = {'summary': atomic_write_bytes((json.dumps(summary, indent=1) + '\n').encode(),
                                           out / 'summary.json'),
             'report': atomic_write_bytes(render_markdown(summary, plots).encode(),
                                          out / 'report.md'),
             'junit': write_junit(out / 'junit.xml', summary)}
    paths.update({k: out / v for k, v in plots.items()})
    return paths
