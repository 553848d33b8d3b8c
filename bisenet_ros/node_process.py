"""segment_node's process: start-up and the link to the launch that started it.

rclpy.init without its signal handlers, one-line errors, and no orphans when launch dies.
"""
from __future__ import annotations

import ctypes
import os
import re
import signal
import sys
import tempfile

import rclpy
from rclpy.signals import SignalHandlerOptions

from bisenet_ros.topic_names import topic_name_problem

# Set by launch/segment.launch.py: the node stops when this process (ros2 launch) is gone.
PARENT_PID_ENV = 'BISENET_ROS_PARENT_PID'


class StartupError(RuntimeError):
    """The node cannot start (model, backend or parameters); the message is one line."""


# Below launch's 5 s between its SIGINT and SIGTERM, so a slow last frame still ends cleanly.
STOP_TIMEOUT_S = 4.0


def exit_with_parent() -> bool:
    """Linux: get SIGTERM when ros2 launch (PARENT_PID_ENV) dies, even by SIGKILL.

    Returns False if that process is already gone. Without this, a killed launch leaves the
    node running as an orphan (and a relaunch makes two /segment_node).
    """
    parent = os.environ.get(PARENT_PID_ENV, '')
    if not parent.isdigit() or not sys.platform.startswith('linux'):
        return True
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    return os.getppid() == int(parent)  # checked after prctl: no window left open


def rcl_error_line(exc: Exception) -> str:
    """One line from rcl's "failed to initialize rcl: <reason>, at file.c:123, at ..."."""
    message = ' '.join(str(exc).split())
    message = re.sub(r',? at /\S+:\d+', '', message).removeprefix('failed to initialize rcl: ')
    message = message.replace(' Error: error not set', '').strip(' ,')
    remap = re.search(r"remap rule: '-r [^']*?:=([^']*)'", message)
    # rcl's lexer error does not say what is wrong with the name; rclpy's check does.
    reason = topic_name_problem(remap.group(1)) if remap else None
    if reason:
        message = f"{message.split('. Error:')[0].rstrip('.')}: {reason}"
    return message


def init_rclpy(args: list[str] | None) -> None:
    """rclpy.init without rclpy's signal handlers; bad ROS arguments -> StartupError.

    rcl prints its own "Failed to parse global arguments" line before raising, so stderr is
    held during init and only passed on when init succeeds: a failed start is one line.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        except Exception as exc:  # RCLError: remap rule, log level, params file, ...
            error = exc
        else:
            error = None
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        if error is not None:
            raise StartupError(f'invalid ROS arguments: {rcl_error_line(error)}') from None
        held.seek(0)
        os.write(2, held.read())
