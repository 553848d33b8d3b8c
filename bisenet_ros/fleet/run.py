"""One fleet evaluation on any number of ranks: plan, evaluate the share, reduce, summarise.

Every rank calls `evaluate_fleet`; rank 0 finds the drives, checks the cache and shares the
drives out (those still to evaluate by size, so the ranks finish together), every rank
evaluates its share, the per-model confusion matrices are all-reduced and rank 0 builds the
summary from the summed matrices (never from a mean of per-drive mIoUs).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from bisenet_core.metrics import ConfusionMatrix
from bisenet_ros.fleet.ab import compare
from bisenet_ros.fleet.criteria import evaluate_criteria, load_criteria
from bisenet_ros.fleet.distributed import (World, all_reduce_sum, broadcast, gather,
                                           rank_device, rank_threads, share_out)
from bisenet_ros.fleet.drives import (DriveError, EvalSettings, ModelRunner, bag_fingerprint,
                                      cache_path, drive_name, evaluate_drive, find_drives,
                                      summarize)
from bisenet_ros.report import latency_stats

EXIT_PASSED, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


def model_runners(settings: EvalSettings, world: World) -> list[ModelRunner]:
    """The candidate (and the baseline): same classes, or the comparison means nothing."""
    threads = settings.threads or rank_threads(world)
    device = rank_device(settings.device, world)
    runners = [ModelRunner(settings.model, settings, threads, device)]
    if settings.baseline is not None:
        baseline = ModelRunner(settings.baseline, settings, threads, device)
        if baseline.spec.class_names != runners[0].spec.class_names:
            raise DriveError(f'baseline {settings.baseline} has other classes than '
                             f'{settings.model}: {list(baseline.spec.class_names)} vs '
                             f'{list(runners[0].spec.class_names)}')
        runners.append(baseline)
    return runners


def plan(paths: Sequence[str | os.PathLike], settings: EvalSettings,
         runners: Sequence[ModelRunner], ranks: int) -> dict:
    """Drives, their names, which are cached, and each rank's share."""
    bags = find_drives(paths)
    costs, cached = [], 0
    for bag in bags:
        try:
            fingerprint = bag_fingerprint(bag)
            done = all(cache_path(settings.out, fingerprint, r.sha256, settings).is_file()
                       for r in runners)
            size = sum(p.stat().st_size for p in bag.iterdir() if p.is_file())
        except OSError:
            done, size = False, 0  # evaluate_drive reports what is wrong with it
        cached += done
        costs.append(1.0 if done else 1.0 + size)
    names = [drive_name(b, paths) for b in bags]
    # Two bags of one name (given one by one from different folders): their full paths.
    names = [str(b) if names.count(n) > 1 else n for b, n in zip(bags, names)]
    return {'drives': list(zip(map(str, bags), names)), 'cached': cached,
            'shares': share_out(costs, ranks)}


def evaluate_fleet(world: World, paths: Sequence[str | os.PathLike],
                   settings: EvalSettings) -> dict | None:
    """Evaluate the drives on this rank's share; rank 0 returns the summary, others None."""
    runners = model_runners(settings, world)
    criteria = load_criteria(settings.criteria, runners[0].spec.class_names)
    # Rank 0's plan (or its error) goes to every rank, so a bad path fails all of them alike.
    the_plan: dict | str | None = None
    if world.is_main:
        try:
            the_plan = plan(paths, settings, runners, world.size)
        except DriveError as exc:
            the_plan = str(exc)
    the_plan = broadcast(the_plan, world)
    if isinstance(the_plan, str):
        raise DriveError(the_plan)
    drives = the_plan['drives']
    mine = the_plan['shares'][world.rank]
    if world.is_main and settings.progress:
        print(f'{len(drives)} drives ({the_plan["cached"]} cached), {world.size} rank(s); '
              f'rank 0 shows its share of {len(mine)}', flush=True)

    records: list[tuple[int, list[dict]]] = []
    bar = tqdm(mine, desc=f'drives (rank {world.rank})', unit='drive',
               disable=not (settings.progress and world.is_main))
    for index in bar:
        bag, name = drives[index]
        per_model = evaluate_drive(Path(bag), name, runners, settings)
        for record in per_model:
            record['rank'] = world.rank
        records.append((index, per_model))
    bar.close()

    k = runners[0].spec.num_classes
    local = np.zeros((len(runners), k, k), np.int64)
    for _, per_model in records:
        for m, record in enumerate(per_model):
            if not record.get('error'):
                local[m] += np.asarray(record['confusion'], np.int64)
    totals = all_reduce_sum(local, world)
    everything = sorted((item for share in gather(records, world) for item in share),
                        key=lambda item: item[0])
    if not world.is_main:
        return None
    per_model = [[models[m] for _, models in everything] for m in range(len(runners))]
    return build_summary(settings, runners, per_model, totals, criteria, world)


def _aggregate(total: np.ndarray, records: Sequence[dict], runner: ModelRunner,
               live: bool) -> dict:
    spec = runner.spec
    good = [r for r in records if not r.get('error')]
    summed = np.zeros_like(total)
    for record in good:
        summed += np.asarray(record['confusion'], np.int64)
    if not np.array_equal(summed, total):  # the all-reduce lost or doubled a drive
        raise RuntimeError('all-reduced confusion differs from the sum of the drives\' matrices')
    confusion = ConfusionMatrix(spec.num_classes, spec.ignore_index)
    confusion.matrix[...] = total
    aggregate = summarize(confusion, spec)
    aggregate.update(frames=sum(r['frames'] for r in good),
                     frames_scored=sum(r['frames_scored'] for r in good),
                     drives=len(records), drives_evaluated=len(good),
                     drives_cached=sum(bool(r.get('cached')) for r in good),
                     drives_failed=len(records) - len(good))
    if live:
        latencies = [v for r in good for v in r.get('latencies_ms', ())]
        aggregate.update(latency_ms=latency_stats(latencies),
                         dropped_frames=sum(r.get('dropped_frames', 0) for r in good))
    return aggregate


def build_summary(settings: EvalSettings, runners: Sequence[ModelRunner],
                  per_model: Sequence[Sequence[dict]], totals: np.ndarray, criteria,
                  world: World) -> dict:
    """summary.json's contents (README of the format: docs/replay.md)."""
    drives = [dict(r) for r in per_model[0]]
    aggregate = _aggregate(totals[0], drives, runners[0], settings.live)
    summary = {'passed': False, 'exit_code': EXIT_ERROR, 'criteria': [],
               'aggregate': aggregate, 'drives': drives, 'model': runners[0].describe(),
               'class_names': list(runners[0].spec.class_names),
               'settings': settings.to_dict(), 'ranks': world.size}
    bootstrap_diffs = None
    if len(runners) > 1:
        baseline_aggregate = _aggregate(totals[1], per_model[1], runners[1], settings.live)
        summary['baseline'] = {**runners[1].describe(), 'aggregate': baseline_aggregate}
        summary['ab'] = compare(drives, per_model[1], aggregate, baseline_aggregate,
                                runners[0].spec.class_names, settings.regression_points,
                                settings.bootstrap, settings.seed)
        if summary['ab']['bootstrap'] is not None:
            bootstrap_diffs = summary['ab']['bootstrap'].pop('diffs')
    for record in drives:
        record.pop('latencies_ms', None)  # in the cache; the summary keeps their statistics
    summary['errors'] = [{'name': d['name'], 'bag': d['bag'], 'error': d['error']}
                         for d in drives if d.get('error')]
    summary['criteria'] = evaluate_criteria(criteria, summary, settings.live,
                                            len(runners) > 1)
    criteria_hold = all(c['passed'] is not False for c in summary['criteria'])
    summary['passed'] = criteria_hold and not summary['errors']
    summary['exit_code'] = (EXIT_ERROR if summary['errors'] else
                            EXIT_PASSED if criteria_hold else EXIT_FAILED)
    summary['_bootstrap_diffs'] = bootstrap_diffs  # for the report's plot, not written
    return summary
