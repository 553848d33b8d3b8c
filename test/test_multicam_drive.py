"""A drive seen by several cameras: rendered with mounting yaws, written into one bag."""
import shutil

import cv2
import numpy as np
import pytest

from bisenet_core.data.synthetic import (CAMERA_YAWS, main, parse_cameras, render_drive,
                                         write_cameras)
from bisenet_ros import bags

SIZES = {'front': (96, 64), 'left': (64, 48)}


@pytest.fixture(scope='module')
def surround(tmp_path_factory):
    root = tmp_path_factory.mktemp('surround')
    write_cameras(root, seed=3, num_frames=3, cameras=SIZES, progress=False)
    return root


def _png(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_each_camera_is_a_drive_of_its_own_at_its_size(surround):
    for name, (width, height) in SIZES.items():
        pairs = bags.drive_frames(surround / name, 'test')
        assert len(pairs) == 3 and all(label is not None for _, label in pairs)
        assert _png(pairs[0][0]).shape == (height, width, 3)
    # The front camera is the single-camera drive; the left one looks elsewhere.
    single = next(render_drive(3, 1, SIZES['front']))
    front = bags.drive_frames(surround / 'front', 'test')[0]
    assert np.array_equal(_png(front[0]), single.image)
    turned = next(render_drive(3, 1, SIZES['front'], yaw=CAMERA_YAWS['left']))
    assert (turned.label != single.label).mean() > 0.2


def test_convert_writes_every_camera_with_shared_stamps(surround, tmp_path):
    bag = bags.convert_drive(surround, tmp_path / 'bag', fps=10.0, progress=False,
                             cameras=['front', 'left'])
    topics = bags.bag_info(bag)['topics']
    assert {t: e['count'] for t, e in topics.items()} == {
        '/front/image_raw': 3, '/front/labels': 3, '/left/image_raw': 3, '/left/labels': 3}
    stamps = {}
    for name in SIZES:
        frames = bags.read_frames(bag, f'/{name}/image_raw', f'/{name}/labels')
        pairs = bags.drive_frames(surround / name, 'test')
        for frame, (image, label) in zip(frames, pairs):
            assert np.array_equal(frame.image, _png(image))
            assert np.array_equal(frame.label, cv2.imread(str(label), cv2.IMREAD_GRAYSCALE))
        stamps[name] = [f.stamp_ns for f in frames]
    expected = [bags.DEFAULT_START_NS + i * 10**8 for i in range(3)]
    assert stamps['front'] == stamps['left'] == expected


def test_camera_names_and_sizes_from_the_command_line(tmp_path, capsys):
    expected = {'front': (64, 48), 'left': (320, 240)}
    assert parse_cameras('front, left:320x240', (64, 48)) == expected
    assert main(['--out', str(tmp_path), '--cameras', 'front,rear', '--frames', '1']) == 2
    assert 'rear' in capsys.readouterr().err and not (tmp_path / 'front').exists()
    assert main(['--out', str(tmp_path), '--cameras', 'front:64x48,right:48x32',
                 '--frames', '1', '--split', 'test']) == 0
    assert _png(bags.drive_frames(tmp_path / 'right', 'test')[0][0]).shape == (32, 48, 3)


def test_offline_replay_scores_each_camera_and_all_together(surround, tmp_path,
                                                            tiny_model_file):
    from bisenet_ros.replay import ReplayOptions, evaluate, main

    bag = bags.convert_drive(surround, tmp_path / 'bag', progress=False,
                             cameras=['front', 'left'])
    report = evaluate(ReplayOptions(bag, tiny_model_file, mode='offline', out=tmp_path / 'out',
                                    image_topic=['/front/image_raw', '/left/image_raw'],
                                    backend='torch', device='cpu', progress=False))
    cameras = report['cameras']
    assert list(cameras) == ['front', 'left']
    for name, (width, height) in SIZES.items():
        assert cameras[name]['bag']['ground_truth'] == f'topic /{name}/labels'  # beside it
        assert cameras[name]['offline']['bilinear']['pixels'] == 3 * width * height
        assert (tmp_path / 'out' / name / 'report.md').is_file()
    # Synthetic labels have no void: every pixel of both cameras is scored once.
    assert report['all_cameras']['pixels'] == 3 * (96 * 64 + 64 * 48)
    text = (tmp_path / 'out' / 'report.md').read_text()
    assert '| [left](left/report.md) | `/left/image_raw` | 3 |' in text
    assert '| all cameras, offline (bilinear) |' in text
    # Label topics are one per camera or none.
    assert main([str(bag), '--mode', 'offline', '--out', str(tmp_path / 'o2'),
                 '--model', str(tiny_model_file), '--backend', 'torch', '--device', 'cpu',
                 '--no-progress', '--image-topic', '/front/image_raw', '--image-topic',
                 '/left/image_raw', '--label-topic', '/front/labels']) == 2


@pytest.mark.skipif(shutil.which('ros2') is None, reason='needs the ros2 command (make setup)')
def test_live_replay_of_two_cameras_through_one_node(surround, tmp_path, tiny_model_file,
                                                     monkeypatch):
    """One node launched with cameras:=[front, left], in lockstep: every frame of both
    cameras comes back on its own camera's topic, equal to the offline reference."""
    from bisenet_ros.replay import ReplayOptions, evaluate

    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    bag = bags.convert_drive(surround, tmp_path / 'bag', progress=False,
                             cameras=['front', 'left'])
    out = tmp_path / 'live'
    report = evaluate(ReplayOptions(bag, tiny_model_file, mode='both', rate=None, out=out,
                                    image_topic=['/front/image_raw', '/left/image_raw'],
                                    backend='torch', device='cpu', start_timeout=120.0,
                                    progress=False))
    for name in SIZES:
        camera = report['cameras'][name]
        live = camera['live']
        assert live['label_topic'] == f'/bisenet_replay/segment_node/{name}/label'
        assert live['frames_sent'] == live['frames_received'] == 3 and live['dropped'] == 0
        assert camera['comparison']['pixel_agreement'] == 1.0, name
    together = report['all_cameras']
    assert together['scored_on'] == 'live' and together['latency_ms']['count'] == 6
    assert together['pixels'] == 3 * (96 * 64 + 64 * 48)
    assert 'cameras front, left' in report['cameras']['front']['live']['node']
