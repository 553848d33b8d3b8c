"""--live: each drive replayed through a launched segment_node, scored like the offline run."""
import numpy as np
import pytest

from test_evaluate_drives import corpus, model, one_torch_thread, run  # noqa: F401

pytest.importorskip('rclpy')


def test_live_run_scores_as_offline_and_checks_latency(corpus, model, tmp_path):  # noqa: F811
    criteria = tmp_path / 'criteria.yaml'
    criteria.write_text('live: {latency_p99_ms: 600000, dropped_frames: 0}\n')
    drive = corpus / 'north' / 'a'
    code, offline = run([drive], model, tmp_path / 'offline')
    code, live = run([drive], model, tmp_path / 'live', '--live', '--lockstep',
                     '--criteria', criteria)
    assert code == 0, live.get('errors')
    (record,) = live['drives']
    assert record['frames_received'] == record['frames_sent'] == 2
    assert record['dropped_frames'] == 0 and live['aggregate']['dropped_frames'] == 0
    # Same backend in the node and offline: the node's masks score exactly the same.
    np.testing.assert_array_equal(np.asarray(live['aggregate']['confusion']),
                                  np.asarray(offline['aggregate']['confusion']))
    latency = live['aggregate']['latency_ms']
    assert latency['count'] == 2 and 0 < latency['p50'] <= latency['p99']
    verdicts = {c['name']: (c['passed'], c['value']) for c in live['criteria']}
    assert verdicts['live.dropped_frames'] == (True, 0)
    assert verdicts['live.latency_p99_ms'] == (True, latency['p99'])
    assert (tmp_path / 'live' / 'live' / 'a' / 'model' / 'node.log').is_file()
