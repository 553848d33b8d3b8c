"""A/B against a baseline, and the same evaluation on 1 process, 2 workers and torchrun."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from test_evaluate_drives import (FRAMES, NET, ROOT, baseline_model, corpus, model,  # noqa
                                  one_torch_thread, run)


def test_ab_same_model_is_a_tie(corpus, model, tmp_path):  # noqa: F811
    criteria = tmp_path / 'criteria.yaml'
    criteria.write_text('ab: {max_drive_regression_points: 0.0, aggregate_not_worse: true}\n')
    code, summary = run([corpus], model, tmp_path / 'out', '--baseline', model,
                        '--criteria', criteria, '--bootstrap', 200)
    ab = summary['ab']
    assert code == 0 and ab['miou_diff'] == 0.0 and ab['regressions'] == []
    assert ab['bootstrap']['low'] == ab['bootstrap']['high'] == 0.0
    assert all(d['ab']['miou_diff'] == 0.0 for d in summary['drives'])
    assert summary['baseline']['aggregate']['confusion'] == summary['aggregate']['confusion']


def test_ab_against_another_model(corpus, model, baseline_model, tmp_path):  # noqa: F811
    # Each model alone first: the A/B must reproduce their per-drive and per-class numbers.
    alone = {}
    for name, path in (('candidate', model), ('baseline', baseline_model)):
        _, alone[name] = run([corpus], path, tmp_path / name)
    drives = {name: {d['name']: d for d in alone[name]['drives']} for name in alone}
    criteria = tmp_path / 'criteria.yaml'
    criteria.write_text('ab: {max_drive_regression_points: 1.0, aggregate_not_worse: true}\n')
    # The trained model against a random one, then the other way round.
    for candidate, baseline, worse in ((model, baseline_model, False),
                                       (baseline_model, model, True)):
        out = tmp_path / f'ab_{worse}'
        code, summary = run([corpus], candidate, out, '--baseline', baseline,
                            '--regression', 1.0, '--criteria', criteria)
        cand, base = ('baseline', 'candidate') if worse else ('candidate', 'baseline')
        expected = alone[cand]['aggregate']['miou'] - alone[base]['aggregate']['miou']
        ab = summary['ab']
        assert ab['miou_diff'] == pytest.approx(expected, abs=1e-12)
        assert (expected < 0) == worse
        for drive in summary['drives']:
            diff = drives[cand][drive['name']]['miou'] - drives[base][drive['name']]['miou']
            assert drive['ab']['miou_diff'] == pytest.approx(diff, abs=1e-12)
        regressed = sorted(n for n in FRAMES
                           if drives[cand][n]['miou'] - drives[base][n]['miou'] < -0.01)
        assert sorted(r['name'] for r in ab['regressions']) == regressed
        assert bool(regressed) == worse
        for name, entry in ab['per_class'].items():
            c = alone[cand]['aggregate']['per_class_iou'][name]
            b = alone[base]['aggregate']['per_class_iou'][name]
            if c is not None and b is not None:
                assert entry['diff'] == pytest.approx(c - b, abs=1e-12)
        low, high = ab['bootstrap']['low'], ab['bootstrap']['high']
        assert low <= high and (high < 0 if worse else low > 0)
        verdicts = {c['name']: c['passed'] for c in summary['criteria']}
        assert verdicts == {'ab.max_drive_regression_points': not worse,
                            'ab.aggregate_not_worse': not worse}
        assert code == (1 if worse else 0)
        assert (out / 'ab_drives.png').is_file() and (out / 'ab_bootstrap.png').is_file()
        assert 'A/B against the baseline' in (out / 'report.md').read_text()


def test_one_process_two_workers_and_torchrun_sum_the_same_confusion(corpus, model,  # noqa
                                                                     tmp_path):
    results = {}
    _, results['1 process'] = run([corpus], model, tmp_path / 'one')
    _, results['2 workers'] = run([corpus], model, tmp_path / 'two', '--workers', 2)
    env = dict(os.environ, OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]))
    command = [sys.executable, '-m', 'torch.distributed.run', '--standalone',
               '--nproc_per_node', '2', '-m', 'bisenet_ros.evaluate_drives', str(corpus),
               '--model', str(model), '--out', str(tmp_path / 'torchrun'), '--backend', 'torch',
               '--device', 'cpu', '--threads', '1', '--no-progress', *NET]
    proc = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    results['torchrun'] = json.loads((tmp_path / 'torchrun' / 'summary.json').read_text())
    reference = np.asarray(results['1 process']['aggregate']['confusion'])
    assert reference.sum() > 0
    per_drive = {d['name']: d['confusion'] for d in results['1 process']['drives']}
    for how, summary in results.items():
        assert summary['ranks'] == (1 if how == '1 process' else 2), how
        np.testing.assert_array_equal(np.asarray(summary['aggregate']['confusion']), reference,
                                      err_msg=how)
        assert {d['name']: d['confusion'] for d in summary['drives']} == per_drive, how
        assert summary['aggregate']['drives_cached'] == 0, how
