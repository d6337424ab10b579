"""3D-MoE planner pieces: PointNet++ scene encoder, Pose-DiT, rectified flow, pose sequences.

Planning: ``PoseDiTPlanner(config).plan(xyz, colors, instance_ids, instruction) -> PoseSequence``;
``PoseSequence.to_ravens_actions()`` gives the simulator's ``act`` dicts. Training on oracle demos:
``train_pose_dit.fit(planner, data.demo_frames.load_demo_frames(demo_dir))``, or ``pointmoe train pose-dit`` with
checkpoints that ``PoseDiTPlanner.from_checkpoint(path)`` loads.
"""
from ..common.pose_sequence import PickPlace, PoseSequence
from ..common.workspace import WORKSPACE_BOUNDS
from .ddpm import DDPMConfig, DDPMScheduler
from .planner import PlanBatch, PoseDiTPlanner, PoseDiTPlannerConfig, collate_plans
from .pointnet2 import PointNet2Config, PointNet2Encoder
from .pose_dit import PoseDiT, PoseDiTConfig, PoseDiTOutput
from .rectified_flow import RectifiedFlow, RectifiedFlowConfig
from .scene_encoder import ConditionEncoder, ConditionEncoderConfig, SceneObjects, objects_from_cloud

__all__ = [
    "WORKSPACE_BOUNDS", "ConditionEncoder", "ConditionEncoderConfig", "DDPMConfig", "DDPMScheduler", "PickPlace",
    "PlanBatch", "PointNet2Config", "PointNet2Encoder", "PoseDiT", "PoseDiTConfig", "PoseDiTOutput",
    "PoseDiTPlanner", "PoseDiTPlannerConfig", "PoseSequence", "RectifiedFlow", "RectifiedFlowConfig",
    "SceneObjects", "collate_plans", "objects_from_cloud",
]
