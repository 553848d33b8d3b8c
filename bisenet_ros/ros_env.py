"""The environment every ROS 2 process this project starts runs in.

DDS discovery stays on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) and on an explicit
domain, so a test, benchmark or replay never talks to other people's nodes or multicasts onto
other interfaces. Every code path that starts a ROS process passes `env=ros_child_env(...)`.
"""
from __future__ import annotations

import os
import random

DEFAULT_DOMAIN_ID = 0


def ros_child_env(domain_id: int | None = None) -> dict[str, str]:
    """A copy of os.environ for a child ROS process: loopback discovery on one domain.

    Args:
        domain_id: ROS_DOMAIN_ID for the child; None keeps the current one (0 when unset).
    """
    env = dict(os.environ)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    if domain_id is None:
        domain_id = int(env.get('ROS_DOMAIN_ID') or DEFAULT_DOMAIN_ID)
    if not 0 <= int(domain_id) <= 232:
        raise ValueError(f'ROS_DOMAIN_ID must be in 0..232, got {domain_id}')
    env['ROS_DOMAIN_ID'] = str(int(domain_id))
    # Child Python output unbuffered: logs arrive in order even when the child is killed.
    env.setdefault('PYTHONUNBUFFERED', '1')
    return env


def fresh_domain_id(avoid: int | None = None) -> int:
    """A random ROS domain id (10..100, the range every RMW maps to ports) other than `avoid`."""
    while True:
        domain = random.SystemRandom().randint(10, 100)
        if domain != avoid:
            return domain


# What a participant of this process reads from the environment when it starts.
PARTICIPANT_KEYS = ('ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_DOMAIN_ID')


def fresh_domain_env() -> dict[str, str]:
    """ros_child_env on a fresh domain, said in one line (a user's ROS_DOMAIN_ID is not used)."""
    yours = os.environ.get('ROS_DOMAIN_ID')
    env = ros_child_env(fresh_domain_id(avoid=int(yours or DEFAULT_DOMAIN_ID)))
    print(f"ROS domain {env['ROS_DOMAIN_ID']} for the node launched here and this replay: a "
          f"fresh one, not your ROS_DOMAIN_ID ({yours or 'unset'}), so no other node joins or "
          'disturbs the measurement', flush=True)
    return env


def join_domain(env: dict[str, str]) -> dict[str, str | None]:
    """Put this process's next participant on env's domain; returns what restore_environ needs."""
    saved = {key: os.environ.get(key) for key in PARTICIPANT_KEYS}
    for key in PARTICIPANT_KEYS:
        os.environ[key] = env[key]
    return saved


def restore_environ(saved: dict[str, str | None]) -> None:
    """Undo join_domain: the caller's values back (unset where they were unset)."""
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
