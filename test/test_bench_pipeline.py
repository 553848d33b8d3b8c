"""bench_pipeline on tiny sizes: every row this machine has makes a table line, today's row is
the reference (100 % of its own labels), a row that cannot start is named, not fatal."""
import numpy as np
import pytest

from bench import bench_pipeline
from bench.bench_pipeline import Row, today_upsample


def test_today_baseline_is_the_dense_upsampling():
    """The baseline row must be what main did: every class map resized, then argmax."""
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((5, 6, 8)).astype(np.float32)
    import torch
    import torch.nn.functional as F
    dense = F.interpolate(torch.from_numpy(logits)[None], size=(30, 41), mode='bilinear',
                          align_corners=False)[0].argmax(0).numpy()
    assert (today_upsample(logits, (30, 41), 'bilinear') == dense).mean() >= 0.999


def test_quick_run_with_a_broken_row(tiny_model_file, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv('BISENET_CACHE_DIR', str(tmp_path))
    real_rows = bench_pipeline.rows_for_this_machine

    def with_a_broken_row(*args):
        def broken(network):
            raise RuntimeError('no such provider here')
        return real_rows(*args) + [Row('device (broken)', 'cuda', 'fp16', broken)]
    monkeypatch.setattr(bench_pipeline, 'rows_for_this_machine', with_a_broken_row)
    assert bench_pipeline.main(['--model', str(tiny_model_file), '--cameras', '150x100',
                                '--networks', '128x96', '--iters', '2', '--warmup', '0',
                                '--frames', '1', '--threads', '1',
                                '--no-upsampling-table']) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith('| 150x100 |')]
    names = {line.split('|')[4].strip() for line in lines}
    assert {'host (torch)', 'device eager (torch)'} <= names and len(lines) == 2 * len(names)
    today = [line for line in lines if '| today' in line]
    assert len(today) == 2 and all('100.00%' in line and '1.00x' in line for line in today)
    assert 'skipped: device (broken) cuda fp16 at 128x96: RuntimeError: no such provider here' \
        in out
    with pytest.raises(SystemExit):
        bench_pipeline.main(['--iters', '0'])
