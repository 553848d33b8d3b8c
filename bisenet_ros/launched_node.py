"""segment.launch.py as a child process, as deployed: started, watched, always stopped.

Used by the replay evaluator and the cross-process delivery benchmark:

    node = LaunchedNode(['image_topic:=/cam/image_raw'], env, Path('out/node.log'))
    pid = node.wait_ready(60)          # the segment_node's own pid, once it logged "ready:"
    ...
    node.stop()
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import yaml

LAUNCH_FILE = 'segment.launch.py'


class NodeExitedError(RuntimeError):
    """The launched node (or its launch) exited while it was needed."""


def launch_target() -> list[str]:
    """`bisenet_ros segment.launch.py`, or the launch file's path.

    The path where ros2 launch would not find it by package (it walks share/bisenet_ros
    without following symlinked folders, as an editable install's share/bisenet_ros/launch is).
    """
    from bisenet_ros.paths import REPO_ROOT, share_dir

    share = share_dir()
    if share is not None:
        if any(LAUNCH_FILE in files for _, _, files in os.walk(share)):
            return ['bisenet_ros', LAUNCH_FILE]
        if (share / 'launch' / LAUNCH_FILE).is_file():
            return [str(share / 'launch' / LAUNCH_FILE)]
    return [str(REPO_ROOT / 'launch' / LAUNCH_FILE)]


def _ros2() -> str:
    """The ros2 command of this interpreter's environment (a venv not on PATH), else PATH's."""
    beside = Path(sys.executable).parent / 'ros2'
    return str(beside) if beside.is_file() else 'ros2'


def _default_sigint() -> None:
    # A child of a shell's background job starts with SIGINT ignored; launch must get it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class LaunchedNode:
    """`ros2 launch` of segment.launch.py in a session of its own, logging to `log_path`.

    Args:
        launch_args: `name:=value` launch arguments.
        env: the child's environment (bisenet_ros.ros_env.ros_child_env).
        log_path: where launch's and the node's output go.
        params: a parameter file's contents, written to a temporary file passed as
            params_file (removed at stop); None keeps the launch file's (the shipped config).

    Stops with SIGINT (ros2 launch shuts its nodes down cleanly), then SIGTERM, then SIGKILL
    after timeouts, so no node outlives its user, even on errors or Ctrl-C.
    """

    def __init__(self, launch_args: Sequence[str], env: dict, log_path: Path,
                 params: dict | None = None):
        self.log_path = log_path
        self._params_path = None
        launch_args = list(launch_args)
        if params is not None:
            with tempfile.NamedTemporaryFile('w', prefix='bisenet_launch_', suffix='.yaml',
                                             delete=False) as f:
                yaml.safe_dump(params, f)
            self._params_path = Path(f.name)
            launch_args.append(f'params_file:={f.name}')
        target = launch_target()
        self.target = ' '.join(target)
        self.command = [_ros2(), 'launch', *target, *launch_args]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, 'w')
        # A session of its own: a Ctrl-C in the terminal reaches only us, and we stop it.
        self.process = subprocess.Popen(self.command, env=env, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        preexec_fn=_default_sigint)

    def text(self) -> str:
        """The log so far."""
        self._log.flush()
        try:
            return self.log_path.read_text(errors='replace')
        except OSError:
            return ''

    def log_tail(self, lines: int = 15) -> str:
        return '\n'.join(self.text().splitlines()[-lines:])

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise NodeExitedError(f'the node exited with code {code}; its log '
                                  f'({self.log_path}) ends with:\n{self.log_tail()}')

    def wait_ready(self, timeout: float) -> int:
        """Wait for the node's "ready:" line; returns its pid (from launch's log line)."""
        deadline = time.monotonic() + timeout
        while 'ready:' not in self.text():
            self.check_alive()
            if time.monotonic() > deadline:
                raise NodeExitedError(f'the node did not get ready within {timeout:g} s; its '
                                      f'log ({self.log_path}) ends with:\n{self.log_tail()}')
            time.sleep(0.2)
        return int(re.search(r'process started with pid \[(\d+)\]', self.text()).group(1))

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGINT to ros2 launch (it shuts its nodes down), then SIGTERM and SIGKILL.

        The signals after SIGINT go to the launch's whole process group, each only if it
        has not exited in time.
        """
        try:
            for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 5.0),
                              (signal.SIGKILL, 5.0)):
                if self.process.poll() is not None:
                    break
                try:
                    if sig == signal.SIGINT:  # only launch: it forwards SIGINT to each node
                        self.process.send_signal(sig)
                    else:
                        os.killpg(self.process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.process.wait(wait)
                except subprocess.TimeoutExpired:
                    continue
            # Children that survived their launch parent (same process group) go too.
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        finally:
            self._log.close()
            if self._params_path is not None:
                self._params_path.unlink(missing_ok=True)
        return self.process.returncode
