"""What `make demo` and the replay tool print: a warning as one plain line, a progress bar
that ends at the count the summary gives, and which ROS domain the launched node runs on."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bisenet_core.data.synthetic import write_drive
from bisenet_ros import bags, replay
from bisenet_ros.replay_options import ReplayOptions

FRAMES = 6


@pytest.fixture(scope='module')
def bag(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('drive')
    write_drive(root, seed=11, num_frames=FRAMES, size=(128, 96), split='test', progress=False)
    return bags.convert_drive(root, tmp_path_factory.mktemp('bags') / 'drive', fps=10.0,
                              progress=False)


def test_a_warning_is_one_plain_line(bag, tiny_model_file, tmp_path):
    # No GPU here: device auto warns. Python's default format added the file and the source
    # line ("replay.py:91: RuntimeWarning: ..." then "  segmenter = Segmenter(...").
    result = subprocess.run(
        [sys.executable, '-m', 'bisenet_ros.replay', str(bag), '--model', str(tiny_model_file),
         '--mode', 'offline', '--backend', 'torch', '--out', str(tmp_path / 'out'),
         '--no-progress'], capture_output=True, text=True, timeout=300,
        env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["warning: no GPU for backend 'torch', running on the CPU (slow for "
                     'real-time use)'], result.stderr


@pytest.mark.skipif(shutil.which('ros2') is None, reason='needs the ros2 command (make setup)')
def test_live_progress_ends_at_the_summary_count_and_names_the_domain(
        bag, tiny_model_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    yours = os.environ['ROS_DOMAIN_ID']
    # At the bag's rate, as `make demo` replays: the last masks arrive after the last frame
    # was sent (the bar stopped counting there: "received=148" against 149).
    report = replay.evaluate(ReplayOptions(
        bag, tiny_model_file, mode='live', rate=1.0, out=tmp_path / 'live', backend='torch',
        device='cpu', start_timeout=120.0, progress=True))
    captured = capsys.readouterr()
    received = report['live']['frames_received']
    assert received >= 1
    assert re.findall(r'received=(\d+)', captured.err)[-1] == str(received)
    assert f'received {received}/{FRAMES}' in '\n'.join(replay.summary_lines(report))
    # The node's domain is not the caller's, and the output says so in one line.
    domain = re.search(r'\(domain (\d+),', report['live']['node']).group(1)
    said = [line for line in captured.out.splitlines() if line.startswith('ROS domain')]
    assert len(said) == 1 and said[0].startswith(f'ROS domain {domain} for the node launched')
    assert f'not your ROS_DOMAIN_ID ({yours})' in said[0] and domain != yours
