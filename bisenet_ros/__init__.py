"""bisenet_ros: the BiSeNet segmentation node for ROS 2 and its offline tools.

Modules: `segment_node` (the node; per camera `camera`, `camera_input`, `camera_stats`; its
`node_outputs` and `node_parameters` tables), `image_conversion` (sensor_msgs <-> numpy, no
cv_bridge), `latency` and `diagnostics` (the node's statistics), `ros_env` (environment of child ROS
processes), `paths` (the shipped model), `replay`/`bags`/`report`/`demo` (bag replay evaluation).
Importing the package imports no ROS module, so the offline tools work without rclpy.
"""
