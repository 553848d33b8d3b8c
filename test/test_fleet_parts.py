"""The fleet evaluator's parts on hand-made inputs: criteria files, bootstrap, shares, bags."""
import numpy as np
import pytest

from bisenet_ros.fleet.ab import bootstrap_diff, miou_of_matrices
from bisenet_ros.fleet.criteria import CriteriaError, evaluate_criteria, parse_criteria
from bisenet_ros.fleet.distributed import share_out
from bisenet_ros.fleet.drives import DriveError, drive_name, find_drives

CLASSES = ('road', 'car', 'person')


def test_criteria_file_is_checked():
    criteria = parse_criteria({'aggregate': {'miou': 0.7}, 'per_class_iou': {'car': 0.5},
                               'ab': {'aggregate_not_worse': True}}, CLASSES)
    assert [c.name for c in criteria] == ['aggregate.miou', 'per_class_iou.car',
                                          'ab.aggregate_not_worse']
    bad = [({'aggregate': {'mIoU': 0.7}}, 'unknown criterion aggregate.mIoU'),
           ({'per_class_iou': {'Car': 0.5}}, "no class 'Car'"),
           ({'aggregate': {'miou': 70}}, 'must be a number in 0..1'),
           ({'aggregate': {'miou': 'high'}}, 'must be a number'),
           ({'latency': {'p99': 1}}, 'unknown section'),
           ({'ab': {'aggregate_not_worse': 1}}, 'true or false'),
           ([0.7], 'expected a mapping')]
    for data, message in bad:
        with pytest.raises(CriteriaError, match=message):
            parse_criteria(data, CLASSES)


def _summary(drive_mious, per_class, diffs=None):
    drives = [{'name': f'd{i}', 'miou': m, 'error': None} for i, m in enumerate(drive_mious)]
    if diffs is not None:
        for drive, diff in zip(drives, diffs):
            drive['ab'] = {'miou_diff': diff}
    return {'aggregate': {'miou': 0.6, 'pixel_accuracy': 0.9, 'per_class_iou': per_class},
            'drives': drives, 'ab': {'miou_diff': sum(diffs) / len(diffs)} if diffs else None}


def test_criteria_verdicts_worked_by_hand():
    criteria = parse_criteria({'aggregate': {'miou': 0.6}, 'per_drive': {'miou': 0.5},
                               'per_class_iou': {'car': 0.5, 'person': 0.1},
                               'ab': {'max_drive_regression_points': 2.0,
                                      'aggregate_not_worse': True},
                               'live': {'dropped_frames': 0}}, CLASSES)
    summary = _summary([0.7, 0.45, 0.55], {'road': 0.9, 'car': 0.49, 'person': None},
                       diffs=[0.01, -0.03, -0.015])
    got = {c['name']: c for c in evaluate_criteria(criteria, summary, live=False, ab=True)}
    assert got['aggregate.miou']['passed'] is True              # 0.6 >= 0.6
    assert got['per_drive.miou']['passed'] is False
    assert got['per_drive.miou']['value'] == 0.45 and got['per_drive.miou'][
        'failing_drives'] == ['d1']
    assert got['per_class_iou.car']['passed'] is False          # 0.49 < 0.5
    assert got['per_class_iou.person']['passed'] is False       # absent everywhere: fails
    # d1 lost 3 points (> 2), d2 1.5 points (<= 2)
    assert got['ab.max_drive_regression_points']['value'] == pytest.approx(3.0)
    assert got['ab.max_drive_regression_points']['failing_drives'] == ['d1']
    assert got['ab.aggregate_not_worse']['value'] == pytest.approx(-1.1667, abs=1e-4)
    assert got['ab.aggregate_not_worse']['passed'] is False
    assert got['live.dropped_frames']['passed'] is None         # offline: skipped
    assert got['live.dropped_frames']['skipped'] == 'needs --live'


def test_miou_of_matrices_by_hand():
    m = np.array([[[2, 1], [0, 1]], [[4, 0], [0, 0]]])
    # first: road 2 / (3 + 2 - 2), car 1 / (1 + 2 - 1); second: car absent -> road only
    np.testing.assert_allclose(miou_of_matrices(m), [(2 / 3 + 1 / 2) / 2, 1.0])


def test_bootstrap_interval_worked_by_hand():
    """Two drives: A the same for both models, B worse for the candidate. Resamples are
    AA (diff 0), AB/BA (-5/12) and BB (-3/4), so the 95 % interval is [-3/4, 0] and the
    candidate is worse in 3/4 of them."""
    a = np.array([[1, 0], [0, 1]])
    candidate = np.stack([a, [[1, 1], [0, 0]]])
    baseline = np.stack([a, [[2, 0], [0, 0]]])
    result = bootstrap_diff(candidate, baseline, samples=4000, seed=3)
    assert result['low'] == pytest.approx(-0.75)
    assert result['high'] == pytest.approx(0.0)
    assert set(np.round(result['diffs'], 6)) == {0.0, round(-5 / 12, 6), -0.75}
    assert result['share_worse'] == pytest.approx(0.75, abs=0.03)


def test_shares_biggest_first_onto_the_least_loaded_rank():
    # 5 -> r0, 4 -> r1, 3 -> r1 (4 < 5), 3 -> r0 (5 < 7), 1 -> r1 (7 < 8)
    assert share_out([5, 4, 3, 3, 1], 2) == [[0, 3], [1, 2, 4]]
    assert share_out([1, 1], 3) == [[0], [1], []]


def test_find_drives(tmp_path):
    for name in ('corpus/city/a', 'corpus/city/b', 'corpus/rural', 'other',
                 'corpus/.c.partial'):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / 'metadata.yaml').write_text('rosbag2_bagfile_information: {}\n')
    (tmp_path / 'other' / 'other_0.mcap').write_bytes(b'')
    found = find_drives([tmp_path / 'corpus', tmp_path / 'other' / 'other_0.mcap',
                         tmp_path / 'corpus' / 'rural'])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        'corpus/city/a', 'corpus/city/b', 'corpus/rural', 'other']
    assert drive_name(found[0], [tmp_path / 'corpus']) == 'city/a'
    assert drive_name(found[3], [tmp_path / 'corpus']) == 'other'
    (tmp_path / 'empty').mkdir()
    with pytest.raises(DriveError, match='no rosbag2 bags'):
        find_drives([tmp_path / 'empty'])
    with pytest.raises(DriveError, match='not found'):
        find_drives([tmp_path / 'missing'])


def test_shipped_criteria_example_reads_with_the_shipped_model():
    from bisenet_core.model_source import read_spec
    from bisenet_ros.fleet.criteria import load_criteria
    from bisenet_ros.paths import REPO_ROOT, default_model_path

    spec = read_spec(default_model_path())
    criteria = load_criteria(REPO_ROOT / 'config' / 'criteria' / 'release.yaml',
                             spec.class_names)
    assert {c.name for c in criteria} == {
        'aggregate.miou', 'aggregate.pixel_accuracy', 'per_class_iou.road',
        'per_class_iou.car', 'per_class_iou.pedestrian', 'per_drive.miou',
        'live.latency_p99_ms', 'live.dropped_frames', 'ab.max_drive_regression_points',
        'ab.aggregate_not_worse'}
