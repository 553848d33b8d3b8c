"""The replay evaluator's report: report.json, report.md and PNG plots in one folder.

report.json is the machine-readable record (every number of report.md is in it);
report.md shows it for people, with the plots embedded:
    confusion.png       row-normalised confusion matrix (the scored run: live, else offline)
    iou.png             per-class IoU bars
    latency_hist.png    end-to-end latency histogram (live only)
    latency_time.png    latency of every frame over the replay (live only)
    samples.png         a strip of frames: input / ground truth / prediction overlays
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import matplotlib
import numpy as np

matplotlib.use('Agg')  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402

from bisenet_core.metrics_plots import plot_confusion, plot_iou_bars  # noqa: E402

LATENCY_PERCENTILES = (50, 90, 99)


def latency_stats(latencies_ms: Sequence[float]) -> dict:
    """p50/p90/p99, mean, min and max of a list of latencies in ms (empty dict if none)."""
    values = np.asarray(latencies_ms, np.float64)
    if values.size == 0:
        return {}
    stats = {f'p{p}': float(np.percentile(values, p)) for p in LATENCY_PERCENTILES}
    stats.update(mean=float(values.mean()), min=float(values.min()), max=float(values.max()),
                 count=int(values.size))
    return stats


def plot_latency(path_hist: Path, path_time: Path, latencies_ms: Sequence[float],
                 sent_s: Sequence[float], dropped_s: Sequence[float] = ()) -> None:
    """Histogram of latencies and latency of each frame over the replay's time (drops marked)."""
    values = np.asarray(latencies_ms, np.float64)
    stats = latency_stats(values)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.hist(values, bins=min(50, max(10, values.size // 3)), color='#4c72b0')
    for p, style in zip(LATENCY_PERCENTILES, ('-', '--', ':')):
        ax.axvline(stats[f'p{p}'], color='#c44e52', linestyle=style,
                   label=f'p{p} {stats[f"p{p}"]:.1f} ms')
    ax.set_xlabel('end-to-end latency, publish -> mask received (ms)')
    ax.set_ylabel('frames')
    ax.set_title(f'Latency over {values.size} frames')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path_hist)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=110)
    ax.plot(sent_s, values, '.-', color='#4c72b0', markersize=3, linewidth=0.8,
            label='frame latency')
    if len(dropped_s):
        ax.plot(dropped_s, np.full(len(dropped_s), values.max() if values.size else 0.0), 'x',
                color='#c44e52', label=f'dropped ({len(dropped_s)})')
    ax.axhline(stats['p50'], color='#55a868', linestyle='--', linewidth=1,
               label=f'p50 {stats["p50"]:.1f} ms')
    ax.set_xlabel('time since the first frame was published (s)')
    ax.set_ylabel('latency (ms)')
    ax.set_ylim(bottom=0)
    ax.set_title('Latency over the replay')
    ax.legend(loc='upper right')
    fig.tight_layout()
    fig.savefig(path_time)
    plt.close(fig)


def plot_samples(path: Path, samples: Sequence[dict],
                 legend: Sequence[tuple[str, Sequence[int]]] = ()) -> None:
    """A strip of frames, one column each: input, ground truth overlay, prediction overlay.

    Each sample: {'title': str, 'image': RGB, 'truth': RGB or None, 'prediction': RGB};
    legend: (class name, (r, g, b)) pairs shown under the strip.
    """
    cols = len(samples)
    height, width = samples[0]['image'].shape[:2]
    scale = 3.2 / width * 100  # about 3.2 inches per column
    fig, axes = plt.subplots(3, cols, figsize=(3.2 * cols, 3 * height * scale / 100 + 0.8),
                             dpi=110, squeeze=False)
    rows = (('image', 'input'), ('truth', 'ground truth'), ('prediction', 'prediction'))
    for col, sample in enumerate(samples):
        for row, (key, name) in enumerate(rows):
            ax = axes[row][col]
            picture = sample.get(key)
            if picture is None:
                picture = np.zeros_like(sample['image'])
                name = 'no ground truth'
            ax.imshow(picture)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name, fontsize=10)
            if row == 0:
                ax.set_title(sample['title'], fontsize=9)
    if legend:
        from matplotlib.patches import Patch
        handles = [Patch(color=np.asarray(rgb) / 255.0, label=name) for name, rgb in legend]
        fig.legend(handles=handles, loc='lower center', ncol=min(len(handles), 8), fontsize=8,
                   frameon=False)
        fig.tight_layout(rect=(0, 0.04 * ((len(handles) + 7) // 8), 1, 1))
    else:
        fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return 'n/a'
    return f'{value:.{digits}f}' if isinstance(value, float) else str(value)


def render_markdown(report: dict, plots: dict[str, str]) -> str:
    """report.md from the report dict (the same numbers as report.json)."""
    bag, model = report['bag'], report['model']
    live, offline = report.get('live'), report.get('offline')
    lines = ['# BiSeNet replay report', '',
             f'- bag: `{bag["path"]}` ({bag["storage"]}), images `{bag["image_topic"]}`, '
             f'ground truth {bag["ground_truth"]}',
             f'- frames: {bag["frames"]} ({bag["labelled_frames"]} with ground truth), '
             f'{bag["width"]}x{bag["height"]}',
             f'- model: `{model["path"]}` ({model["backbone"]}, {model["num_classes"]} classes, '
             f'network input {model["input_size"][0]}x{model["input_size"][1]}, '
             f'trained on {model["dataset"] or "?"})', '']

    if 'cameras' in report:
        lines += _cameras_section(report)
    lines += ['## Accuracy', '', '| run | mIoU | pixel accuracy | frames scored |',
              '| --- | ---: | ---: | ---: |']
    together = report.get('all_cameras')
    if together:
        lines.append(f'| all cameras, {together["scored_on"]} | {_fmt(together["miou"])} | '
                     f'{_fmt(together["pixel_accuracy"])} | {together["pixels"]} px |')
    if live:
        lines.append(f'| live (ROS 2 node) | {_fmt(live["miou"])} | '
                     f'{_fmt(live["pixel_accuracy"])} | {live["frames_scored"]} |')
    if offline:
        for mode in ('nearest', 'bilinear'):
            entry = offline[mode]
            lines.append(f'| offline, {mode} upsampling | {_fmt(entry["miou"])} | '
                         f'{_fmt(entry["pixel_accuracy"])} | {offline["frames_scored"]} |')
    comparison = report.get('comparison')
    if comparison:
        lines += ['', f'Live vs offline ({comparison["offline_upsample"]} upsampling, the '
                      f'node\'s setting): mIoU gap {_fmt(comparison["miou_gap"])}, '
                      f'live masks equal to the offline ones on '
                      f'{_fmt(100 * comparison["pixel_agreement"], 3)} % of pixels over '
                      f'{comparison["frames_compared"]} frames. A gap means lost, late or '
                      f'corrupted frames, or a different backend/precision in the node.']
    lines += ['', '### Per-class IoU', '']
    header = '| class |' + (' live |' if live else '') + (
        ' offline nearest | offline bilinear |' if offline else '')
    lines += [header, '| --- |' + ' ---: |' * (header.count('|') - 2)]
    for name in model['class_names']:
        row = f'| {name} |'
        if live:
            row += f' {_fmt(live["iou"][name])} |'
        if offline:
            row += (f' {_fmt(offline["nearest"]["iou"][name])} |'
                    f' {_fmt(offline["bilinear"]["iou"][name])} |')
        lines.append(row)

    if live:
        lat = live['latency_ms']
        lines += ['', '## Live run', '',
                  f'- node: {live["node"]}, input `{live["input_topic"]}`, masks '
                  f'`{live["label_topic"]}`',
                  f'- pacing: {live["pacing"]}; node upsampling: {live.get("upsample", "n/a")}',
                  f'- frames sent {live["frames_sent"]}, masks received '
                  f'{live["frames_received"]}, dropped {live["dropped"]}'
                  + (f' (frames {live["dropped_indices"][:20]})' if live['dropped'] else '')
                  + f', unexpected {live["unexpected"]}, duplicates {live["duplicates"]}',
                  f'- throughput: {_fmt(live["throughput_fps"], 2)} masks/s over '
                  f'{_fmt(live["duration_s"], 2)} s',
                  ]
        if lat:
            lines.append(f'- end-to-end latency (publish -> mask received): '
                         f'p50 {lat["p50"]:.1f} ms, p90 {lat["p90"]:.1f} ms, '
                         f'p99 {lat["p99"]:.1f} ms, max {lat["max"]:.1f} ms')
    if offline:
        timing = offline.get('timings_ms', {})
        lines += ['', '## Offline reference', '',
                  f'- backend {offline["backend"]} on {offline["device"]} '
                  f'({offline["precision"]}), no ROS in the loop']
        if timing:
            lines.append('- mean time per frame: ' + ', '.join(
                f'{k} {v:.1f} ms' for k, v in timing.items()))

    lines += plots_section(plots, {
        'confusion': 'Confusion matrix', 'iou': 'Per-class IoU',
        'latency_hist': 'Latency histogram', 'latency_time': 'Latency over time',
        'samples': 'Sample frames'})
    return '\n'.join(lines).rstrip() + '\n'


def plots_section(plots: dict[str, str], titles: dict[str, str]) -> list[str]:
    """Markdown lines of a report's '## Plots': each plot drawn (key -> file) under its title."""
    lines = ['', '## Plots', '']
    for key, title in titles.items():
        if key in plots:
            lines += [f'### {title}', '', f'![{title}]({plots[key]})', '']
    return lines


def _cameras_section(report: dict) -> list[str]:
    """A multi-camera replay: one row per camera (its own report in <camera>/report.md)."""
    lines = ['## Cameras', '', '| camera | images | frames | live mIoU | offline mIoU | '
             'masks received | dropped | latency p50 / p99 ms |',
             '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |']
    for name, entry in report['cameras'].items():
        live, offline = entry.get('live') or {}, entry.get('offline') or {}
        upsample = live.get('upsample', 'bilinear')
        lat = live.get('latency_ms') or {}
        latency = f'{lat["p50"]:.1f} / {lat["p99"]:.1f}' if lat else 'n/a'
        lines.append(f'| [{name}]({name}/report.md) | `{entry["bag"]["image_topic"]}` | '
                     f'{entry["bag"]["frames"]} | {_fmt(live.get("miou"))} | '
                     f'{_fmt(offline.get(upsample, {}).get("miou"))} | '
                     f'{live.get("frames_received", "n/a")} | {live.get("dropped", "n/a")} | '
                     f'{latency} |')
    return lines + ['']


def write_report(out_dir: str | os.PathLike, report: dict, confusion, class_names: Sequence[str],
                 samples: Sequence[dict], latencies_ms: Sequence[float] = (),
                 sent_s: Sequence[float] = (), dropped_s: Sequence[float] = (),
                 palette: Sequence[Sequence[int]] = ()) -> dict:
    """Write report.json, report.md and the plots into out_dir; return {name: path}.

    `confusion` is the ConfusionMatrix of the run the plots show (live, else offline);
    `palette` (one colour per class) labels the sample strip.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots: dict[str, str] = {}
    if confusion is not None:
        plot_confusion(confusion, out / 'confusion.png', list(class_names))
        plot_iou_bars(confusion, out / 'iou.png', list(class_names))
        plots.update(confusion='confusion.png', iou='iou.png')
    if len(latencies_ms):
        plot_latency(out / 'latency_hist.png', out / 'latency_time.png', latencies_ms, sent_s,
                     dropped_s)
        plots.update(latency_hist='latency_hist.png', latency_time='latency_time.png')
    if samples:
        plot_samples(out / 'samples.png', samples, list(zip(class_names, palette)))
        plots['samples'] = 'samples.png'
    report = {**report, 'plots': plots}
    (out / 'report.json').write_text(json.dumps(report, indent=2) + '\n')
    (out / 'report.md').write_text(render_markdown(report, plots))
    paths = {'json': out / 'report.json', 'markdown': out / 'report.md'}
    paths.update({k: out / v for k, v in plots.items()})
    return paths
