"""Judge a model over a corpus of recorded drives (`python -m bisenet_ros.evaluate_drives`).

    criteria.py     the pass/fail criteria file: load, check, evaluate against a summary
    drives.py       find the bags, evaluate one drive (offline or live), the per-drive cache
    ab.py           candidate vs baseline: per-drive and per-class differences, bootstrap CI
    distributed.py  ranks: `--workers N` processes or `torchrun`, gloo collectives
    run.py          the whole evaluation: plan, share out, all-reduce, build the summary
    report.py       summary.json, report.md with plots, junit.xml

Nothing here imports rclpy except the live run (`--live`), which reuses the replay's.
"""
