"""bisenet_core's Python log lines (graph captures, compile times) reach the node's ROS logger."""
import logging

import pytest

from bisenet_ros.log_forwarding import CORE_LOGGER, RosLogHandler, forward_core_logs, \
    stop_forwarding


class FakeRosLogger:
    def __init__(self):
        self.lines = []

    def __getattr__(self, severity):
        return lambda message: self.lines.append((severity, message))


def test_each_level_goes_to_the_matching_severity():
    ros = FakeRosLogger()
    handler = forward_core_logs(ros)
    log = logging.getLogger('bisenet_core.inference.device')
    # launch_pytest (loaded in this test run, never in the node's process) makes every new
    # logger a LaunchLogger that does not propagate to its parent; the node's process has
    # plain loggers, which do.
    propagate, log.propagate = log.propagate, True
    try:
        log.debug('not shown at the default level')
        log.info('captured a CUDA graph for 1920x1080 bgr8 in %d ms', 12)
        log.warning('re-exporting')
        log.error('bad')
        log.critical('worse')
        logging.getLogger('somebody_else').warning('not ours')
    finally:
        log.propagate = propagate
        stop_forwarding(handler)
    assert ros.lines == [('info', 'captured a CUDA graph for 1920x1080 bgr8 in 12 ms'),
                         ('warning', 're-exporting'), ('error', 'bad'), ('fatal', 'worse')]
    logging.getLogger('bisenet_core').info('after stop')
    assert len(ros.lines) == 4


def test_node_forwards_while_it_lives(context, tiny_model_file):
    pytest.importorskip('rclpy')
    from rclpy.parameter import Parameter

    from bisenet_ros.segment_node import SegmentNode

    node = SegmentNode(context=context, parameter_overrides=[
        Parameter('model_path', value=str(tiny_model_file)),
        Parameter('backend', value='torch'), Parameter('device', value='cpu')])
    try:
        ours = [h for h in logging.getLogger(CORE_LOGGER).handlers
                if isinstance(h, RosLogHandler)]
        assert [h.ros_logger.name for h in ours] == [node.get_logger().name]
    finally:
        node.destroy_node()
    assert not [h for h in logging.getLogger(CORE_LOGGER).handlers
                if isinstance(h, RosLogHandler)]
