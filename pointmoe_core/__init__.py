"""pointmoe_core: the ROS-free library behind the pointmoe ROS 2 package.

Point I/O (``io``), Point-MoE segmentation (``seg``), the 3D-MoE / Pose-DiT planner
(``plan``), training (``train``), the tabletop simulator (``sim``) and visualisation
(``viz``), on the shared bottom layer ``common``; docs/ARCHITECTURE.md maps them. Nothing here
imports rclpy; ``pointmoe_ros`` wraps it in nodes.
"""
__version__ = "0.1.0"
