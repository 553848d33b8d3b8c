"""bisenet_ros: the BiSeNet segmentation node for ROS 2 and its offline tools.

The node: `segment_node` (the node class and its entry point), `node_process` (start-up, the
link to its launch), `node_parameters` (parameter descriptors and refusals),
`image_conversion` (sensor_msgs <-> numpy, no cv_bridge), `camera_info` and `label_info`
(what the masks' pixels and ids mean), `latency` and `diagnostics` (its statistics),
`log_forwarding` (bisenet_core's logging into the ROS logger).
Around it: `ros_env` (environment of child ROS processes), `launched_node` (the launch file
as a child process), `paths` (the shipped model), `replay`, `bags`, `stamp_matching` and
`report` (bag replay evaluation), `demo` (`make demo`).
Importing the package imports no ROS module, so the offline tools work without rclpy.
"""
