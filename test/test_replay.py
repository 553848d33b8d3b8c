"""Replay evaluator: stamp matching, offline and live replays, and the report's numbers."""
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer

from bisenet_core.data.synthetic import write_drive
from bisenet_ros import bags, replay, replay_offline
from bisenet_ros.stamp_matching import match_stamps
from test_bags import _hand_made_bag  # noqa: I100 (test/ is on sys.path)

FRAMES = 6
SIZE = (128, 96)
PLOTS = ('confusion.png', 'iou.png', 'samples.png')


@pytest.fixture(scope='module', autouse=True)
def one_torch_thread():
    """One intra-op thread: on a busy 2-core machine torch's 2-thread CPU path can be many
    times slower than one thread (the threads spin-wait for each other)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


VOID = 11  # CamVid's void id: no class of the 11-class model, never scored


@pytest.fixture(scope='module')
def drive(tmp_path_factory) -> Path:
    """A rendered drive whose ground truth also has void: id 11 in the top rows, the ignore
    value 255 in a corner, as real CamVid/Cityscapes labels do."""
    root = tmp_path_factory.mktemp('drive')
    write_drive(root, seed=11, num_frames=FRAMES, size=SIZE, split='test', progress=False)
    for _, label_path in bags.drive_frames(root, 'test'):
        label = cv2.imread(str(label_path), cv2.IMREAD_GRAYSCALE)
        label[:12] = VOID
        label[-10:, :16] = 255
        cv2.imwrite(str(label_path), label)
    return root


@pytest.fixture(scope='module')
def bag(drive, tmp_path_factory) -> Path:
    return bags.convert_drive(drive, tmp_path_factory.mktemp('bags') / 'drive', fps=10.0,
                              progress=False)


@pytest.fixture(scope='module')
def expected(bag, tiny_model_file):
    """mIoU, pixel accuracy and IoU per class of the tiny model on the bag, computed here with
    Segmenter.segment and plain numpy (not with the evaluator's code path)."""
    from bisenet_core.inference import Segmenter

    frames = bags.read_frames(bag)

    scores = {}
    for upsample in ('nearest', 'bilinear'):
        seg = Segmenter(tiny_model_file, backend='torch', device='cpu', upsample=upsample)
        n = seg.spec.num_classes
        matrix = np.zeros((n, n), np.int64)
        for frame in frames:
            pred = seg.segment(frame.image).labels
            valid = frame.label < n
            matrix += np.bincount(frame.label[valid].astype(np.int64) * n + pred[valid],
                                  minlength=n * n).reshape(n, n)
        inter = np.diag(matrix).astype(float)
        union = matrix.sum(0) + matrix.sum(1) - inter
        with np.errstate(invalid='ignore', divide='ignore'):
            iou = inter / union
        scores[upsample] = {'miou': float(np.nanmean(iou)), 'iou': iou,
                            'pixel_accuracy': inter.sum() / matrix.sum(),
                            'names': seg.spec.class_names}
    return scores


def _check_scores(entry, expected):
    assert entry['miou'] == pytest.approx(expected['miou'], abs=1e-6)
    assert entry['pixel_accuracy'] == pytest.approx(expected['pixel_accuracy'], abs=1e-6)
    for name, value in zip(expected['names'], expected['iou']):
        if np.isnan(value):
            assert entry['iou'][name] is None
        else:
            assert entry['iou'][name] == pytest.approx(value, abs=1e-6)


def test_stamp_matching_with_a_dropped_frame():
    sent = [1000, 2000, 3000, 4000, 5000]
    # Frame 2 (stamp 3000) never answered; one stray stamp, one repeated mask, out of order.
    received = [1000, 2000, 4000, 999, 5000, 4000]
    result = match_stamps(sent, received)
    assert result.matched == [(0, 0), (1, 1), (3, 2), (4, 4)]
    assert result.dropped == [2]
    assert result.unexpected == [999]
    assert result.duplicates == [4000]
    assert match_stamps(sent, []).dropped == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match='occurs twice'):
        match_stamps([1, 1], [1])


def test_offline_report_numbers(bag, tiny_model_file, expected, tmp_path):
    out = tmp_path / 'report'
    report = replay.evaluate(replay.ReplayOptions(bag, tiny_model_file, mode='offline', out=out,
                                                  backend='torch', device='cpu', progress=False))
    on_disk = json.loads((out / 'report.json').read_text())
    for mode in ('nearest', 'bilinear'):
        _check_scores(on_disk['offline'][mode], expected[mode])
    assert on_disk['offline']['frames_scored'] == FRAMES
    # Void (id 11 and 255) is not scored: what is left of each 128 x 96 frame.
    scored_pixels = FRAMES * (128 * 96 - 12 * 128 - 10 * 16)
    assert on_disk['offline']['nearest']['pixels'] == scored_pixels
    assert on_disk['bag']['frames'] == FRAMES and 'live' not in on_disk
    assert report['offline']['nearest']['miou'] == on_disk['offline']['nearest']['miou']
    for name in PLOTS:
        assert (out / name).stat().st_size > 1000, name
        assert cv2.imread(str(out / name)) is not None
    markdown = (out / 'report.md').read_text()
    assert f'{on_disk["offline"]["nearest"]["miou"]:.4f}' in markdown
    assert '![Confusion matrix](confusion.png)' in markdown


def test_offline_run_of_a_segmenter_is_reusable_per_bag(bag, tiny_model_file, expected):
    """run_offline on a Segmenter (as a fleet evaluator calls it per bag): its scores are the
    independent computation's, and two halves of the bag add up to the whole bag."""
    from bisenet_core.inference import Segmenter

    frames = bags.read_frames(bag)
    segmenter = Segmenter(tiny_model_file, backend='torch', device='cpu')
    run = replay_offline.run_offline(frames, segmenter, progress=False)
    names = segmenter.spec.class_names
    for method in ('nearest', 'bilinear'):
        assert run.scores[method].frames_scored == FRAMES
        _check_scores(run.scores[method].confusion.to_dict(names), expected[method])
        assert sorted(run.predictions[method]) == list(range(FRAMES))
        assert run.predictions[method][2].shape == frames[2].label.shape
    halves = [replay_offline.run_offline(part, segmenter, progress=False).scores['bilinear']
              for part in (frames[:2], frames[2:])]
    total = halves[0].confusion + halves[1].confusion
    assert np.array_equal(total.matrix, run.scores['bilinear'].confusion.matrix)
    assert halves[0].frames_scored + halves[1].frames_scored == FRAMES


def test_score_by_hand():
    """Label 3 is no class of a 3-class model: void, as 255 is; a frame without ground truth
    or without a prediction is not scored."""
    from types import SimpleNamespace

    spec = SimpleNamespace(num_classes=3, ignore_index=255)
    rgb = np.zeros((2, 2, 3), np.uint8)
    frames = [bags.BagFrame(0, 10, rgb, np.array([[0, 1], [2, 3]], np.uint8)),
              bags.BagFrame(1, 20, rgb, None),
              bags.BagFrame(2, 30, rgb, np.array([[255, 255], [255, 0]], np.uint8)),
              bags.BagFrame(3, 40, rgb, np.zeros((2, 2), np.uint8))]
    predictions = {0: np.array([[0, 2], [2, 0]], np.uint8), 1: np.zeros((2, 2), np.uint8),
                   2: np.array([[1, 1], [1, 1]], np.uint8)}
    result = replay_offline.score(frames, predictions, spec)
    assert result.frames_scored == 2
    # Scored pixels (truth -> prediction): 0->0, 1->2, 2->2 (frame 0) and 0->1 (frame 2).
    # IoU: class 0: 1 / (2 + 1 - 1) = 0.5; class 1: 0 / (1 + 1) = 0; class 2: 1 / (1 + 2 - 1).
    assert result.confusion.total == 4
    assert result.confusion.iou() == pytest.approx([0.5, 0.0, 0.5])
    with pytest.raises(replay.ReplayError, match='frame 0: prediction is 3x2, ground truth 2x2'):
        replay_offline.score(frames[:1], {0: np.zeros((2, 3), np.uint8)}, spec)


def test_replay_options_refuse_bad_values(bag):
    for bad, message in (({'mode': 'fast'}, "mode must be one of"),
                         ({'rate': 0.0}, 'rate must be > 0, got 0.0'),
                         ({'rate': float('nan')}, 'rate must be > 0, got nan'),
                         ({'max_frames': 0}, 'max_frames must be >= 1, got 0'),
                         ({'start_timeout': -1.0}, 'start_timeout must be > 0 s'),
                         ({'backend': 'tensorflow'}, 'backend must be one of'),
                         ({'device': 'gpu'}, "device must be.*got 'gpu'"),
                         ({'precision': 'int8'}, "precision must be one of .* got 'int8'"),
                         ({'upsample': 'cubic'}, 'upsample must be one of')):
        with pytest.raises(replay.ReplayError, match=message):
            replay.ReplayOptions(bag, **bad)
    options = replay.ReplayOptions(bag)
    assert (options.mode, options.rate, options.backend, options.upsample) == \
        ('both', None, 'auto', None)


def test_someone_elses_sqlite3_bag(drive, tiny_model_file, expected, tmp_path):
    """Other topic names, CompressedImage, sqlite3, ground truth from a PNG folder by stamp."""
    pairs = bags.drive_frames(drive, 'test')
    images = [cv2.cvtColor(cv2.imread(str(i)), cv2.COLOR_BGR2RGB) for i, _ in pairs]
    stamps = [1_600_000_000_000_000_000 + i * 50_000_000 for i in range(len(images))]
    theirs = _hand_made_bag(tmp_path / 'theirs', images, stamps, topic='/robot/cam/compressed')
    gt = tmp_path / 'gt'
    gt.mkdir()
    for stamp, (_, label) in zip(stamps, pairs):
        shutil.copy(label, gt / f'{stamp}.png')
    out = tmp_path / 'report'
    replay.main(['--mode', 'offline', str(theirs), '--model', str(tiny_model_file),
                 '--labels-dir', str(gt), '--out', str(out), '--backend', 'torch',
                 '--device', 'cpu', '--no-progress'])
    on_disk = json.loads((out / 'report.json').read_text())
    assert on_disk['bag']['image_topic'] == '/robot/cam/compressed'
    assert on_disk['bag']['storage'] == 'sqlite3'
    # The PNG-compressed frames decode to the converter's pixels (test_bags): same scores.
    _check_scores(on_disk['offline']['nearest'], expected['nearest'])
    assert on_disk['offline']['frames_scored'] == FRAMES


def test_replay_errors(bag, tiny_model_file, tmp_path, capsys):
    assert replay.main([str(bag), '--model', str(tmp_path / 'no.pt'), '--mode', 'offline',
                        '--out', str(tmp_path / 'o')]) == 2
    assert 'no.pt: not found' in capsys.readouterr().err
    assert replay.main([str(bag), '--model', str(tmp_path), '--mode', 'offline',
                        '--out', str(tmp_path / 'o')]) == 2
    assert f'model file {tmp_path}: is a folder, not a file' in capsys.readouterr().err
    assert replay.main([str(bag), '--model', str(tiny_model_file), '--mode', 'offline',
                        '--image-topic', '/camera/nothing', '--out', str(tmp_path / 'o')]) == 2
    assert "no Image/CompressedImage topic '/camera/nothing'" in capsys.readouterr().err


def _string_only_bag(path: Path) -> Path:
    store = bags.typestore()
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        for topic in ('/chatter', '/notes'):
            conn = writer.add_connection(topic, 'std_msgs/msg/String', typestore=store)
            note = store.types['std_msgs/msg/String'](data='hello')
            writer.write(conn, 10**9, store.serialize_cdr(note, conn.msgtype))
    return path


def test_a_bag_without_images_names_the_topics_it_has(tiny_model_file, tmp_path, capsys):
    bag = _string_only_bag(tmp_path / 'strings')
    out = tmp_path / 'report'
    assert replay.main([str(bag), '--model', str(tiny_model_file), '--mode', 'offline',
                        '--out', str(out)]) == 2
    err = capsys.readouterr().err
    assert 'no Image/CompressedImage topic, only /chatter (String), /notes (String)' in err
    assert not out.exists()  # a failed run leaves no empty report folder behind


def test_a_bag_without_ground_truth_is_replayed_but_not_scored(drive, tiny_model_file, tmp_path):
    images = [cv2.cvtColor(cv2.imread(str(i)), cv2.COLOR_BGR2RGB)
              for i, _ in bags.drive_frames(drive, 'test')]
    stamps = [1_600_000_000_000_000_000 + i * 50_000_000 for i in range(len(images))]
    unlabelled = _hand_made_bag(tmp_path / 'unlabelled', images, stamps)
    out = tmp_path / 'report'
    report = replay.evaluate(replay.ReplayOptions(unlabelled, tiny_model_file, mode='offline',
                                                  out=out, backend='torch', device='cpu',
                                                  progress=False))
    assert report['bag']['labelled_frames'] == 0 and report['bag']['ground_truth'] == 'none'
    assert report['offline']['frames_scored'] == 0
    assert report['offline']['nearest']['miou'] is None
    assert (out / 'samples.png').is_file() and not (out / 'confusion.png').exists()
    assert 'ground truth for 0 of 6 frames' in '\n'.join(replay.summary_lines(report))


def test_bad_arguments_are_refused_before_any_work(bag, tiny_model_file, tmp_path, capsys):
    out = tmp_path / 'report'
    with pytest.raises(SystemExit):
        replay.main([str(bag), '--max-frames', '0', '--out', str(out)])
    assert '--max-frames: 0 is not >= 1' in capsys.readouterr().err
    with pytest.raises(replay.ReplayError, match='max_frames must be >= 1, got 0'):
        replay.evaluate(replay.ReplayOptions(bag, tiny_model_file, mode='offline', out=out,
                                             max_frames=0))
    with pytest.raises(SystemExit):
        replay.main([str(bag), '--rate', '0'])
    assert not out.exists()
    a_file = tmp_path / 'a_file'
    a_file.write_text('x')
    with pytest.raises(replay.ReplayError, match='exists and is not a folder'):
        replay.evaluate(replay.ReplayOptions(bag, tiny_model_file, mode='offline', out=a_file))


def test_demo_and_replay_share_their_node_options():
    from bisenet_ros import demo

    parsers = {'demo': demo.build_parser(), 'replay': replay.build_parser()}
    base = {'demo': [], 'replay': ['some_bag']}
    for name, parser in parsers.items():
        args = parser.parse_args(base[name])
        assert (args.rate, args.backend, args.device, args.precision) == \
            (1.0, 'auto', 'auto', 'fp32'), name
        for flag in ('--lockstep', '--max-rate'):
            assert parser.parse_args(base[name] + [flag]).rate is None, (name, flag)
        assert parser.parse_args(base[name] + ['--rate', '0.5']).rate == 0.5


@pytest.mark.skipif(shutil.which('ros2') is None, reason='needs the ros2 command (make setup)')
def test_live_replay_through_the_node(bag, tiny_model_file, expected, tmp_path, monkeypatch):
    """The real node, launched with ros2 launch, in lockstep: every frame comes back, and the
    masks are the offline reference's, pixel for pixel."""
    monkeypatch.setenv('OMP_NUM_THREADS', '1')  # the node's torch: see one_torch_thread
    out = tmp_path / 'live'
    domain = os.environ.get('ROS_DOMAIN_ID')
    report = replay.evaluate(replay.ReplayOptions(bag, tiny_model_file, mode='both', rate=None,
                                                  out=out, backend='torch', device='cpu',
                                                  start_timeout=120.0, progress=False))
    assert os.environ.get('ROS_DOMAIN_ID') == domain  # the node's fresh domain was temporary
    live = report['live']
    assert live['frames_sent'] == live['frames_received'] == FRAMES
    assert live['dropped'] == 0 and live['unexpected'] == 0
    assert live['latency_ms']['count'] == FRAMES
    assert 0 < live['latency_ms']['p50'] <= live['latency_ms']['p99']
    # The node runs config/segment.yaml's upsampling; the evaluator compares like with like.
    method = live['upsample']
    assert method == report['comparison']['offline_upsample'] == 'bilinear'
    assert report['comparison']['pixel_agreement'] == 1.0
    assert live['miou'] == pytest.approx(report['offline'][method]['miou'], abs=1e-9)
    _check_scores(live, expected[method])
    for name in PLOTS + ('latency_hist.png', 'latency_time.png'):
        assert (out / name).is_file(), name
    assert 'launched' in live['node'] and (out / 'node.log').is_file()
