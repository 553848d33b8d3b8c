"""Python logging of bisenet_core -> the node's ROS logger; its warnings on a command line.

bisenet_core never imports ROS, so it logs with Python's `logging` (graph captures, torch.compile
time, ONNX exports). Without this those lines never reach the node's console or /rosout. Its
warnings ("no GPU for backend ...") reach a command line (demo, replay) as one plain line.
"""
from __future__ import annotations

import logging
import warnings

CORE_LOGGER = 'bisenet_core'


class RosLogHandler(logging.Handler):
    """Sends each record to an rclpy logger at the matching severity."""

    def __init__(self, ros_logger):
        super().__init__()
        self.ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            if record.levelno >= logging.CRITICAL:
                self.ros_logger.fatal(message)
            elif record.levelno >= logging.ERROR:
                self.ros_logger.error(message)
            elif record.levelno >= logging.WARNING:
                self.ros_logger.warning(message)
            elif record.levelno >= logging.INFO:
                self.ros_logger.info(message)
            else:
                self.ros_logger.debug(message)
        except Exception:  # a log line must never break a frame
            self.handleError(record)


def forward_core_logs(ros_logger) -> RosLogHandler:
    """Attach a RosLogHandler to the bisenet_core logger; detach it with stop_forwarding."""
    handler = RosLogHandler(ros_logger)
    core = logging.getLogger(CORE_LOGGER)
    core.addHandler(handler)
    if core.getEffectiveLevel() > logging.INFO:
        core.setLevel(logging.INFO)  # the ROS logger's own level filters from here
    return handler


def stop_forwarding(handler: RosLogHandler) -> None:
    logging.getLogger(CORE_LOGGER).removeHandler(handler)


def plain_warnings() -> None:
    """Print warnings as `warning: <message>`, one line, for this process (a command line).

    Python's default names the file and quotes the source line that raised the warning, which
    says nothing to someone running `make demo`.
    """
    warnings.formatwarning = _one_line


def _one_line(message, category, filename, lineno, line=None) -> str:
    return f'warning: {message}\n'
