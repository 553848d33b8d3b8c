"""Topic-name checks for the node, its launch file and the replay (one rule: rclpy's).

rclpy is imported only when a name is checked, so the offline tools that import camera_topics
(replay, fleet evaluation) stay free of ROS.
"""
from __future__ import annotations


def topic_name_problem(topic: str, node_name: str | None = None) -> str | None:
    """What is wrong with a topic name (rclpy's rule, one line), or None if it is valid.

    With `node_name`, the name expanded for that node must be a valid full name too.
    """
    from rclpy.expand_topic_name import expand_topic_name
    from rclpy.validate_full_topic_name import validate_full_topic_name
    from rclpy.validate_topic_name import validate_topic_name

    try:
        validate_topic_name(topic)
        if node_name is not None:
            validate_full_topic_name(expand_topic_name(topic, node_name, '/'))
    except Exception as exc:  # rclpy's exceptions name the rule, then draw a caret
        return str(exc).splitlines()[0].removeprefix('Invalid topic name: ').rstrip(':')
    return None
