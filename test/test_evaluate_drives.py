"""Fleet evaluation: criteria and exit codes, exact aggregation, cache, A/B, ranks, outputs."""
import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch

from bisenet_core.data.synthetic import write_drive
from bisenet_core.model import bisenet
from bisenet_core.modelfile import save_model
from bisenet_core.spec import spec_for_dataset
from bisenet_ros import bags, evaluate_drives
from bisenet_ros.fleet import drives as fleet_drives

SIZE = (96, 72)                      # frames
NET = ['--width', '96', '--height', '64']
FRAMES = {'north/a': 2, 'north/b': 3, 'south': 2}       # drive -> frames
ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / 'models' / 'bisenet_xception39_synthetic.pt'   # realistic mIoUs per drive


@pytest.fixture(scope='module', autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _make_bag(tmp: Path, out: Path, seed: int, frames: int) -> Path:
    write_drive(tmp / f'src{seed}', seed=seed, num_frames=frames, size=SIZE, split='test',
                progress=False)
    return bags.convert_drive(tmp / f'src{seed}', out, progress=False)


@pytest.fixture(scope='module')
def corpus(tmp_path_factory) -> Path:
    """Three drives of 2-3 frames in nested folders (as a fleet's corpus is kept)."""
    tmp = tmp_path_factory.mktemp('corpus_src')
    root = tmp_path_factory.mktemp('corpus')
    for seed, (name, frames) in enumerate(FRAMES.items(), start=31):
        _make_bag(tmp, root / name, seed, frames)
    return root


@pytest.fixture(scope='module')
def model() -> Path:
    return SHIPPED


@pytest.fixture(scope='module')
def baseline_model(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    spec = spec_for_dataset('camvid', backbone='xception39', input_size=(128, 96))
    path = tmp_path_factory.mktemp('baseline') / 'baseline.pt'
    save_model(path, bisenet(spec.num_classes, backbone=spec.backbone).eval(), spec)
    return path


def _criteria(tmp: Path, text: str) -> Path:
    path = tmp / 'criteria.yaml'
    path.write_text(text)
    return path


def run(drives, model, out, *extra) -> tuple[int, dict]:
    code = evaluate_drives.main([*map(str, drives), '--model', str(model), '--out', str(out),
                                 '--backend', 'torch', '--device', 'cpu', '--threads', '1',
                                 '--no-progress', *NET, *map(str, extra)])
    summary_path = Path(out) / 'summary.json'
    return code, (json.loads(summary_path.read_text()) if summary_path.is_file() else {})


def _junit(out: Path) -> dict[str, ET.Element]:
    root = ET.parse(out / 'junit.xml').getroot()
    return {case.get('name'): case for case in root.iter('testcase')}


def _by_hand(matrix: np.ndarray) -> tuple[float, float]:
    """mIoU (classes present in ground truth or prediction) and pixel accuracy, by hand."""
    m = matrix.astype(float)
    inter = np.diag(m)
    union = m.sum(0) + m.sum(1) - inter
    return float(np.mean(inter[union > 0] / union[union > 0])), float(inter.sum() / m.sum())


@pytest.fixture(scope='module')
def passing(corpus, model, tmp_path_factory):
    out = tmp_path_factory.mktemp('passing')
    criteria = _criteria(out.parent, 'aggregate: {miou: 0.0, pixel_accuracy: 0.0}\n'
                                     'per_class_iou: {road: 0.0, car: 0.0}\n'
                                     'per_drive: {miou: 0.0}\n'
                                     'live: {latency_p99_ms: 50}\n')
    code, summary = run([corpus], model, out / 'out', '--criteria', criteria)
    return code, summary, out / 'out'


def test_passing_criteria_exit_0_with_every_output(passing):
    code, summary, out = passing
    assert code == 0 and summary['passed'] is True and summary['exit_code'] == 0
    names = {c['name']: c for c in summary['criteria']}
    assert all(names[n]['passed'] for n in ('aggregate.miou', 'per_class_iou.road',
                                            'per_class_iou.car', 'per_drive.miou'))
    assert names['live.latency_p99_ms']['passed'] is None           # offline: skipped
    assert sorted(d['name'] for d in summary['drives']) == sorted(FRAMES)
    assert {d['name']: d['frames'] for d in summary['drives']} == FRAMES
    assert summary['aggregate']['frames'] == sum(FRAMES.values())
    assert len(summary['model']['sha256']) == 64
    cases = _junit(out)
    assert set(cases) == set(FRAMES) | set(names)
    assert not any(c.find('failure') is not None or c.find('error') is not None
                   for c in cases.values())
    assert cases['live.latency_p99_ms'].find('skipped') is not None
    for plot in ('drives.png', 'iou.png'):
        assert (out / plot).stat().st_size > 1000
    # The per-drive table of report.md lists the drives worst first.
    report = (out / 'report.md').read_text()
    table = report.split('## Drives, worst first')[1].split('##')[0]
    listed = [line.split('|')[1].strip() for line in table.splitlines()
              if line.startswith('| ') and not line.startswith(('| drive', '| ---'))]
    assert listed == [d['name'] for d in sorted(summary['drives'], key=lambda d: d['miou'])]


def test_aggregate_is_from_summed_confusion_computed_independently(passing, corpus,
                                                                   model):
    """Each drive's confusion re-counted here with the Segmenter and numpy; the aggregate
    mIoU is the mIoU of their sum, not the mean of the drives' mIoUs."""
    from bisenet_core.inference import Segmenter

    _, summary, _ = passing
    seg = Segmenter(model, backend='torch', device='cpu', input_size=(96, 64),
                    upsample='bilinear', threads=1)
    n = seg.spec.num_classes
    total = np.zeros((n, n), np.int64)
    for drive in summary['drives']:
        matrix = np.zeros((n, n), np.int64)
        for frame in bags.read_frames(corpus / drive['name']):
            pred = seg.segment(frame.image).labels
            valid = frame.label < n
            matrix += np.bincount(frame.label[valid].astype(np.int64) * n + pred[valid],
                                  minlength=n * n).reshape(n, n)
        np.testing.assert_array_equal(np.asarray(drive['confusion']), matrix)
        total += matrix
    np.testing.assert_array_equal(np.asarray(summary['aggregate']['confusion']), total)
    miou, accuracy = _by_hand(total)
    assert summary['aggregate']['miou'] == pytest.approx(miou, abs=1e-12)
    assert summary['aggregate']['pixel_accuracy'] == pytest.approx(accuracy, abs=1e-12)
    mean_of_drives = np.mean([d['miou'] for d in summary['drives']])
    assert abs(mean_of_drives - miou) > 1e-4   # so the check above tells the two apart


def test_impossible_class_threshold_exits_1(corpus, model, tmp_path):
    criteria = _criteria(tmp_path, 'aggregate: {miou: 0.0}\nper_class_iou: {car: 1.0}\n')
    code, summary = run([corpus], model, tmp_path / 'out', '--criteria', criteria)
    assert code == 1 and summary['passed'] is False and summary['exit_code'] == 1
    names = {c['name']: c for c in summary['criteria']}
    assert names['per_class_iou.car']['passed'] is False
    assert names['per_class_iou.car']['value'] < 1.0
    assert names['aggregate.miou']['passed'] is True
    cases = _junit(tmp_path / 'out')
    assert cases['per_class_iou.car'].find('failure') is not None
    assert cases['aggregate.miou'].find('failure') is None
    assert 'FAIL' in (tmp_path / 'out' / 'report.md').read_text()


def test_resume_evaluates_nothing_and_new_drives_only(corpus, model, tmp_path,
                                                      monkeypatch):
    work = tmp_path / 'corpus'
    shutil.copytree(corpus, work)
    evaluated = []
    real = fleet_drives.score_offline

    def counting(frames, runner, bar=None):
        evaluated.append(len(frames))
        if len(evaluated) == 2 and not (tmp_path / 'interrupted').exists():
            (tmp_path / 'interrupted').touch()
            raise KeyboardInterrupt          # Ctrl-C during the second drive
        return real(frames, runner, bar)

    monkeypatch.setattr(fleet_drives, 'score_offline', counting)
    out = tmp_path / 'out'
    code, _ = run([work], model, out)
    assert code == 130 and len(evaluated) == 2
    code, first = run([work], model, out)          # resumes: 2 drives left
    assert code == 0 and len(evaluated) == 4
    assert first['aggregate']['drives_cached'] == 1
    code, again = run([work], model, out)
    assert code == 0 and len(evaluated) == 4                 # nothing re-evaluated
    assert again['aggregate']['drives_cached'] == len(FRAMES)
    assert again['aggregate']['confusion'] == first['aggregate']['confusion']
    _make_bag(tmp_path, work / 'east', seed=77, frames=2)
    code, grown = run([work], model, out)
    assert code == 0 and evaluated[4:] == [2]                # only the new drive
    assert grown['aggregate']['drives'] == len(FRAMES) + 1
    assert not grown['drives'][0]['cached'] if grown['drives'][0]['name'] == 'east' else True


def test_corrupt_bag_is_that_drives_error(corpus, model, tmp_path):
    work = tmp_path / 'corpus'
    shutil.copytree(corpus, work)
    broken = work / 'broken'
    shutil.copytree(corpus / 'south', broken)
    for data in broken.glob('*.mcap'):
        data.write_bytes(b'not an mcap file' * 100)
    code, summary = run([work], model, tmp_path / 'out')
    assert code == 2 and summary['passed'] is False
    assert [e['name'] for e in summary['errors']] == ['broken']
    good = [d for d in summary['drives'] if not d.get('error')]
    assert sorted(d['name'] for d in good) == sorted(FRAMES)
    total = sum(np.asarray(d['confusion']) for d in good)
    np.testing.assert_array_equal(np.asarray(summary['aggregate']['confusion']), total)
    assert _junit(tmp_path / 'out')['broken'].find('error') is not None
    assert 'broken | error:' in (tmp_path / 'out' / 'report.md').read_text()


def test_offline_run_needs_no_ros(corpus, model, tmp_path):
    """The offline evaluation, corpus conversion and report never import rclpy."""
    script = ('import sys\n'
              'from bisenet_ros import corpora, evaluate_drives\n'
              f'code = evaluate_drives.main([{str(corpus)!r}, "--model", {str(model)!r}, '
              f'"--out", {str(tmp_path / "out")!r}, "--backend", "torch", "--threads", "1", '
              '"--no-progress", "--max-frames", "1", "--width", "64", "--height", "64"])\n'
              'assert code == 0, code\n'
              'ros = sorted(m for m in sys.modules if m.split(".")[0] in '
              '("rclpy", "launch", "launch_ros", "sensor_msgs"))\n'
              'assert not ros, ros\n')
    proc = subprocess.run([sys.executable, '-c', script], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / 'out' / 'summary.json').read_text())[
        'aggregate']['frames'] == len(FRAMES)


def test_ros2_run_launcher_and_bad_arguments(corpus, tmp_path, capsys):
    proc = subprocess.run(['sh', str(ROOT / 'scripts' / 'lib' / 'evaluate_drives'), '--help'],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and '--criteria' in proc.stdout and 'torchrun' in proc.stdout
    bad = tmp_path / 'criteria.yaml'
    bad.write_text('per_class_iou: {Road: 0.9}\n')
    code, _ = run([corpus], SHIPPED, tmp_path / 'out', '--criteria', bad)
    assert code == 2 and "no class 'Road'" in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()          # refused before any work
    code, _ = run([tmp_path / 'nowhere'], SHIPPED, tmp_path / 'out')
    assert code == 2 and 'not found' in capsys.readouterr().err
    code, _ = run([corpus], SHIPPED, tmp_path / 'out', '--live', '--workers', 2)
    assert code == 2 and 'one rank per machine' in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()
