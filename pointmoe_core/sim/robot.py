"""Suction end-effectors and Ravens' pick-and-place motion primitive.

Ravens' ``Suction`` gripper simulates suction by a fixed constraint between the tip and the body
it touches; its ``PickPlace`` primitive moves 0.32 m above the pick pose, descends until contact,
activates, lifts, moves above the place pose, descends until the held object touches something,
releases and lifts again. Two bodies carry that gripper here:

- ``FloatingSuction`` (default): a suction cup with no arm, dragged along straight lines by a
  world constraint. It needs no assets and costs a few hundred physics steps per action.
- ``UR5Suction``: Ravens' UR5 with its suction head, loaded from ``assets_root`` (the Ravens or
  LoHoRavens ``assets`` folder) and moved by inverse kinematics like Ravens' ``movep``.

The tip pose is where the suction touches an object: for the identity quaternion the suction
points straight down, as in Ravens.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from typing import Callable

import numpy as np
import pybullet

from .poses import Pose

HOME_TIP = (0.487, 0.109, 0.312)  # suction tip of Ravens' UR5 at its home joints


class Motion(Enum):
    REACHED = "reached"
    CONTACT = "contact"
    TIMEOUT = "timeout"


@dataclass
class MotionConfig:
    """Speeds of the primitive in metres per physics step (0.004 m at 240 Hz is ~1 m/s)."""

    approach_height: float = 0.32  # Ravens PickPlace: hover this far above pick and place poses
    transit_speed: float = 0.01
    descend_speed: float = 0.008  # down to ``slow_margin`` above the expected contact
    contact_speed: float = 0.001  # the last ``slow_margin``, until contact
    slow_margin: float = 0.02
    floor_z: float = -0.01  # descending never goes below this: the table stops it first
    turn_speed: float = 0.05  # radians per step of the floating cup
    timeout_steps: int = 1200  # 5 s at 240 Hz, Ravens' movej timeout


class Suction(ABC):
    """Ravens' suction gripper on some arm: activate, release, detect contact, check the grasp."""

    def __init__(self, client: int, tip_body: int, tip_link: int, is_movable: Callable[[int], bool]):
        self.client = client
        self.tip_body = tip_body
        self.tip_link = tip_link
        self.is_movable = is_movable
        self.held: int | None = None
        self._grip: int | None = None

    @property
    @abstractmethod
    def bodies(self) -> tuple[int, ...]:
        """All bodies of the end-effector (and arm), which the held object must not collide with."""

    @abstractmethod
    def tip_pose(self) -> Pose:
        """Current suction tip pose in the world."""

    @abstractmethod
    def move_to(self, pose: Pose, speed: float, stop_on_contact: bool = False) -> Motion:
        """Move the tip to ``pose``; with ``stop_on_contact``, stop where contact is first detected."""

    def activate(self) -> None:
        """Grip the movable body the tip touches, keeping their current relative pose."""
        if self.held is not None:
            return
        contacts = pybullet.getContactPoints(bodyA=self.tip_body, linkIndexA=self.tip_link,
                                             physicsClientId=self.client)
        touched = [c[2] for c in contacts if self.is_movable(c[2])]
        if not touched:
            return
        body = touched[0]
        pybullet.changeDynamics(body, -1, activationState=pybullet.ACTIVATION_STATE_WAKE_UP,
                                physicsClientId=self.client)
        tip_position, tip_orientation = self._link_frame()
        body_position, body_orientation = pybullet.getBasePositionAndOrientation(body, physicsClientId=self.client)
        to_tip = pybullet.invertTransform(tip_position, tip_orientation)
        in_tip = pybullet.multiplyTransforms(*to_tip, body_position, body_orientation)
        self._grip = pybullet.createConstraint(
            self.tip_body, self.tip_link, body, -1, pybullet.JOINT_FIXED, (0, 0, 0),
            parentFramePosition=in_tip[0], parentFrameOrientation=in_tip[1],
            childFramePosition=(0, 0, 0), physicsClientId=self.client)
        # the tip presses on the object; without this the contact fights the constraint
        for gripper_body in self.bodies:
            pybullet.setCollisionFilterPair(gripper_body, body, -1, -1, 0, physicsClientId=self.client)
        self.held = body

    def release(self) -> None:
        if self.held is None:
            return
        pybullet.removeConstraint(self._grip, physicsClientId=self.client)
        for gripper_body in self.bodies:
            pybullet.setCollisionFilterPair(gripper_body, self.held, -1, -1, 1, physicsClientId=self.client)
        self.held, self._grip = None, None

    def detect_contact(self) -> bool:
        """Tip touching anything, or, while holding, the held object touching anything else."""
        if self.held is None:
            return bool(pybullet.getContactPoints(bodyA=self.tip_body, linkIndexA=self.tip_link,
                                                  physicsClientId=self.client))
        return any(c[2] not in self.bodies
                   for c in pybullet.getContactPoints(bodyA=self.held, physicsClientId=self.client))

    def check_grasp(self) -> bool:
        return self.held is not None

    def _link_frame(self) -> Pose:
        if self.tip_link < 0:
            return pybullet.getBasePositionAndOrientation(self.tip_body, physicsClientId=self.client)
        state = pybullet.getLinkState(self.tip_body, self.tip_link, physicsClientId=self.client)
        return state[4], state[5]


def _interpolate(start: Pose, goal: Pose, count: int) -> list[Pose]:
    """``count`` poses from just after ``start`` to ``goal``: linear in xyz, slerp in rotation."""
    fractions = np.arange(1, count + 1) / count
    return [(np.asarray(start[0]) + t * (np.asarray(goal[0]) - np.asarray(start[0])),
             np.asarray(pybullet.getQuaternionSlerp(start[1], goal[1], t))) for t in fractions]


def _rotation_angle(q0: np.ndarray, q1: np.ndarray) -> float:
    return float(2 * np.arccos(min(1.0, abs(float(np.dot(q0, q1))))))


class FloatingSuction(Suction):
    """A suction cup without an arm, moved kinematically through a world constraint.

    Its body frame is the tip; a short collision cylinder sits on the tip and a thin visual rod
    rises above it, standing in for the arm in camera images.
    """

    TIP_RADIUS = 0.01
    TIP_LENGTH = 0.02
    ROD_LENGTH = 0.12
    COLOR = (0.35, 0.35, 0.4, 1.0)
    MASS = 0.1
    MAX_FORCE = 100.0  # newtons the drive may use: ample for the cup and a 34 g block

    def __init__(self, client: int, is_movable: Callable[[int], bool], motion: MotionConfig):
        home = (np.array(HOME_TIP), np.array([0.0, 0.0, 0.0, 1.0]))
        collision = pybullet.createCollisionShape(
            pybullet.GEOM_CYLINDER, radius=self.TIP_RADIUS, height=self.TIP_LENGTH,
            collisionFramePosition=[0, 0, self.TIP_LENGTH / 2], physicsClientId=client)
        visual = pybullet.createVisualShape(
            pybullet.GEOM_CYLINDER, radius=self.TIP_RADIUS, length=self.ROD_LENGTH, rgbaColor=self.COLOR,
            visualFramePosition=[0, 0, self.ROD_LENGTH / 2], physicsClientId=client)
        body = pybullet.createMultiBody(self.MASS, collision, visual, basePosition=home[0],
                                        baseOrientation=home[1], physicsClientId=client)
        # a sleeping cup would ignore its moving drive
        pybullet.changeDynamics(body, -1, activationState=pybullet.ACTIVATION_STATE_DISABLE_SLEEPING,
                                physicsClientId=client)
        super().__init__(client, body, -1, is_movable)
        self.motion = motion
        self._drive = pybullet.createConstraint(body, -1, -1, -1, pybullet.JOINT_FIXED, (0, 0, 0),
                                                (0, 0, 0), home[0], childFrameOrientation=home[1],
                                                physicsClientId=client)
        pybullet.changeConstraint(self._drive, maxForce=self.MAX_FORCE, physicsClientId=client)
        self._target: Pose = (np.asarray(home[0], float), np.asarray(home[1], float))

    @property
    def bodies(self) -> tuple[int, ...]:
        return (self.tip_body,)

    def tip_pose(self) -> Pose:
        position, orientation = pybullet.getBasePositionAndOrientation(self.tip_body, physicsClientId=self.client)
        return np.array(position), np.array(orientation)

    def _drive_to(self, pose: Pose) -> None:
        self._target = (np.asarray(pose[0], float), np.asarray(pose[1], float))
        pybullet.changeConstraint(self._drive, jointChildPivot=self._target[0],
                                  jointChildFrameOrientation=self._target[1], maxForce=self.MAX_FORCE,
                                  physicsClientId=self.client)

    def move_to(self, pose: Pose, speed: float, stop_on_contact: bool = False) -> Motion:
        # waypoints start from the last commanded pose, so a lagging cup never jumps back
        distance = float(np.linalg.norm(np.asarray(pose[0]) - self._target[0]))
        turn = _rotation_angle(self._target[1], np.asarray(pose[1], float))
        count = max(1, int(np.ceil(max(distance / speed, turn / self.motion.turn_speed))))
        for waypoint in _interpolate(self._target, pose, count):
            self._drive_to(waypoint)
            pybullet.stepSimulation(physicsClientId=self.client)
            if stop_on_contact and self.detect_contact():
                self._drive_to(self.tip_pose())
                return Motion.CONTACT
        # let the cup catch up with its last waypoint
        for _ in range(self.motion.timeout_steps):
            if np.linalg.norm(self.tip_pose()[0] - self._target[0]) < 1e-3:
                return Motion.REACHED
            pybullet.stepSimulation(physicsClientId=self.client)
            if stop_on_contact and self.detect_contact():
                self._drive_to(self.tip_pose())
                return Motion.CONTACT
        return Motion.TIMEOUT


class UR5Suction(Suction):
    """Ravens' UR5 arm with its suction gripper, loaded from ``assets_root``, moved by IK."""

    HOME_JOINTS = np.array([-1, -0.5, 0.5, -0.5, -0.5, 0]) * np.pi  # Ravens' homej
    EE_LINK, TIP_LINK = 9, 10  # tool0 carries the suction; tool_tip is the IK target
    JOINT_SPEED = 0.01  # radians per step, Ravens' movej default

    def __init__(self, client: int, is_movable: Callable[[int], bool], motion: MotionConfig, assets_root: str):
        self.motion = motion
        load = lambda name, *pose: pybullet.loadURDF(os.path.join(assets_root, name), *pose,  # noqa: E731
                                                     physicsClientId=client)
        self.arm = load("ur5/ur5.urdf")
        self.joints = [j for j in range(pybullet.getNumJoints(self.arm, physicsClientId=client))
                       if pybullet.getJointInfo(self.arm, j, physicsClientId=client)[2] == pybullet.JOINT_REVOLUTE]
        for joint, angle in zip(self.joints, self.HOME_JOINTS):
            pybullet.resetJointState(self.arm, joint, angle, physicsClientId=client)
        # Ravens' grippers.Suction: a visual base and a compliant head, both pinned to tool0
        down = pybullet.getQuaternionFromEuler((np.pi, 0, 0))
        self.base = load("ur5/suction/suction-base.urdf", (0.487, 0.109, 0.438), down)
        pybullet.createConstraint(self.arm, self.EE_LINK, self.base, -1, pybullet.JOINT_FIXED, (0, 0, 0),
                                  (0, 0, 0), (0, 0, 0.01), physicsClientId=client)
        head = load("ur5/suction/suction-head.urdf", (0.487, 0.109, 0.347), down)
        pin = pybullet.createConstraint(self.arm, self.EE_LINK, head, -1, pybullet.JOINT_FIXED, (0, 0, 0),
                                        (0, 0, 0), (0, 0, -0.08), physicsClientId=client)
        pybullet.changeConstraint(pin, maxForce=50, physicsClientId=client)
        super().__init__(client, head, 0, is_movable)

    @property
    def bodies(self) -> tuple[int, ...]:
        return (self.arm, self.base, self.tip_body)

    def tip_pose(self) -> Pose:
        # IK works on the link's inertial frame, which Ravens' URDF aligns with the world at home
        state = pybullet.getLinkState(self.arm, self.TIP_LINK, physicsClientId=self.client)
        return np.array(state[0]), np.array(state[1])

    def solve_ik(self, pose: Pose) -> np.ndarray:
        """Joint angles reaching ``pose``, with Ravens' limits and home joints as rest pose."""
        joints = pybullet.calculateInverseKinematics(
            self.arm, self.TIP_LINK, targetPosition=pose[0], targetOrientation=pose[1],
            lowerLimits=[-3 * np.pi / 2, -2.3562, -17, -17, -17, -17],
            upperLimits=[-np.pi / 2, 0, 17, 17, 17, 17],
            jointRanges=[np.pi, 2.3562, 34, 34, 34, 34],
            restPoses=self.HOME_JOINTS.tolist(), maxNumIterations=100, residualThreshold=1e-5,
            physicsClientId=self.client)
        joints = np.array(joints)
        joints[2:] = (joints[2:] + np.pi) % (2 * np.pi) - np.pi
        return joints

    def _joint_angles(self) -> np.ndarray:
        return np.array([s[0] for s in pybullet.getJointStates(self.arm, self.joints, physicsClientId=self.client)])

    def _command(self, joints: np.ndarray) -> None:
        pybullet.setJointMotorControlArray(self.arm, self.joints, pybullet.POSITION_CONTROL,
                                           targetPositions=joints, positionGains=np.ones(len(joints)),
                                           physicsClientId=self.client)

    def move_to(self, pose: Pose, speed: float, stop_on_contact: bool = False) -> Motion:
        """Free moves go in joint space at Ravens' joint speed (``speed`` is unused); contact
        moves in Cartesian steps of ``speed`` metres."""
        if not stop_on_contact:
            return self._move_joints(self.solve_ik(pose))
        # contact moves go in small Cartesian steps, as Ravens' 1 mm descent does
        start = self.tip_pose()
        count = max(1, int(np.ceil(np.linalg.norm(np.asarray(pose[0]) - start[0]) / speed)))
        for waypoint in _interpolate(start, pose, count):
            self._command(self.solve_ik(waypoint))
            pybullet.stepSimulation(physicsClientId=self.client)
            if self.detect_contact():
                return Motion.CONTACT
        return Motion.REACHED

    def _move_joints(self, target: np.ndarray) -> Motion:
        """Ravens' movej: constant joint velocity towards ``target`` under position control."""
        for _ in range(self.motion.timeout_steps):
            current = self._joint_angles()
            difference = target - current
            if np.all(np.abs(difference) < 1e-2):
                return Motion.REACHED
            self._command(current + difference / np.linalg.norm(difference) * self.JOINT_SPEED)
            pybullet.stepSimulation(physicsClientId=self.client)
        return Motion.TIMEOUT


@dataclass
class PrimitiveOutcome:
    picked: bool
    timeout: bool


def _above(pose: Pose, height: float) -> Pose:
    return np.asarray(pose[0], float) + [0.0, 0.0, height], np.asarray(pose[1], float)


def _descend_until_contact(ee: Suction, pose: Pose, motion: MotionConfig) -> Motion:
    """Go straight down towards ``pose`` and on to the floor, stopping at the first contact:
    fast until ``slow_margin`` above the pose, then slowly."""
    slow_start = _above(pose, motion.slow_margin)
    outcome = Motion.REACHED
    if ee.tip_pose()[0][2] > slow_start[0][2]:
        outcome = ee.move_to(slow_start, motion.descend_speed, stop_on_contact=True)
    if outcome is Motion.REACHED:
        floor = (np.array([pose[0][0], pose[0][1], motion.floor_z]), np.asarray(pose[1], float))
        outcome = ee.move_to(floor, motion.contact_speed, stop_on_contact=True)
    return outcome


def pick_and_place(ee: Suction, pick: Pose, place: Pose, motion: MotionConfig) -> PrimitiveOutcome:
    """Ravens' ``PickPlace`` primitive with a suction end-effector."""
    height = motion.approach_height
    prepick, preplace = _above(pick, height), _above(place, height)
    if ee.move_to(prepick, motion.transit_speed) is Motion.TIMEOUT:
        return PrimitiveOutcome(picked=False, timeout=True)
    if _descend_until_contact(ee, pick, motion) is Motion.TIMEOUT:
        return PrimitiveOutcome(picked=False, timeout=True)
    ee.activate()
    timeout = ee.move_to(prepick, motion.transit_speed) is Motion.TIMEOUT
    if not ee.check_grasp():
        ee.release()
        return PrimitiveOutcome(picked=False, timeout=timeout)
    timeout |= ee.move_to(preplace, motion.transit_speed) is Motion.TIMEOUT
    timeout |= _descend_until_contact(ee, place, motion) is Motion.TIMEOUT
    ee.release()
    timeout |= ee.move_to(preplace, motion.transit_speed) is Motion.TIMEOUT
    return PrimitiveOutcome(picked=True, timeout=timeout)
