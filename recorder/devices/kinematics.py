"""Kinematics of the SO-101-shaped arm, written out (no URDF, no MuJoCo needed).

Joint angles in degrees, as everywhere in the studio. The chain: ``shoulder_pan`` about z at the base;
``shoulder_lift``, ``elbow_flex`` and ``wrist_flex`` about the (panned) y axis, positive = leaning
forward / down; ``wrist_roll`` about the gripper axis (does not move the tool point). At zero the upper
arm is vertical and forearm + gripper point along +x. The sim arm (assets/sim/so101_arm.xml) is built
with these exact numbers; tests check that MuJoCo agrees.

In the arm plane (r outward, z up), with a1 = lift, a2 = elbow, a3 = wrist flex::

    r = L1 sin a1 + L2 cos(a1+a2) + L3 cos(a1+a2+a3)
    z = H + L1 cos a1 - L2 sin(a1+a2) - L3 sin(a1+a2+a3)

and ``pitch = a1+a2+a3`` is the gripper's angle below horizontal (90 = pointing straight down).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ArmGeometry:
    shoulder_height: float = 0.09  # H: base plane -> shoulder_lift axis
    upper_arm: float = 0.12  # L1
    forearm: float = 0.13  # L2
    tool: float = 0.098  # L3: wrist_flex axis -> tool point between the fingertips
    base: tuple[float, float, float] = (0.0, 0.0, 0.0)  # world position of the pan axis foot

    # -------------------------------------------------------------- forward
    def forward(self, q_deg) -> np.ndarray:
        """Tool point (x, y, z) in metres for joint angles (>= 4 values, degrees)."""
        q = np.radians(np.asarray(q_deg, dtype=np.float64)[:4])
        pan, a1, a2, a3 = q
        b12, b123 = a1 + a2, a1 + a2 + a3
        r = self.upper_arm * math.sin(a1) + self.forearm * math.cos(b12) + self.tool * math.cos(b123)
        z = (
            self.shoulder_height
            + self.upper_arm * math.cos(a1)
            - self.forearm * math.sin(b12)
            - self.tool * math.sin(b123)
        )
        bx, by, bz = self.base
        return np.array([bx + r * math.cos(pan), by + r * math.sin(pan), bz + z])

    def pitch(self, q_deg) -> float:
        q = np.asarray(q_deg, dtype=np.float64)
        return float(q[1] + q[2] + q[3])

    def jacobian(self, q_deg) -> np.ndarray:
        """4x4 Jacobian of (x, y, z [m], pitch [deg]) w.r.t. the first four joints (degrees)."""
        q = np.radians(np.asarray(q_deg, dtype=np.float64)[:4])
        pan, a1, a2, a3 = q
        L1, L2, L3 = self.upper_arm, self.forearm, self.tool
        b12, b123 = a1 + a2, a1 + a2 + a3
        r = L1 * math.sin(a1) + L2 * math.cos(b12) + L3 * math.cos(b123)
        dr = np.array(
            [
                0.0,
                L1 * math.cos(a1) - L2 * math.sin(b12) - L3 * math.sin(b123),
                -L2 * math.sin(b12) - L3 * math.sin(b123),
                -L3 * math.sin(b123),
            ]
        )
        dz = np.array(
            [
                0.0,
                -L1 * math.sin(a1) - L2 * math.cos(b12) - L3 * math.cos(b123),
                -L2 * math.cos(b12) - L3 * math.cos(b123),
                -L3 * math.cos(b123),
            ]
        )
        c, s = math.cos(pan), math.sin(pan)
        J = np.zeros((4, 4))
        J[0] = c * dr
        J[1] = s * dr
        J[0, 0] = -s * r
        J[1, 0] = c * r
        J[2] = dz
        J[:3] *= math.pi / 180.0  # per degree
        J[3] = [0.0, 1.0, 1.0, 1.0]
        return J

    # -------------------------------------------------------------- inverse
    def inverse(self, target, pitch_deg: float = 90.0, elbow_up: bool = True) -> np.ndarray | None:
        """Joint angles (pan, lift, elbow, wrist_flex) in degrees putting the tool point at ``target`` with
        the gripper ``pitch_deg`` below horizontal, or None when out of reach."""
        x, y, z = np.asarray(target, dtype=np.float64) - np.asarray(self.base)
        pan = math.atan2(y, x)
        r = math.hypot(x, y)
        phi = math.radians(pitch_deg)
        # wrist point
        R = r - self.tool * math.cos(phi)
        Z = z - self.shoulder_height + self.tool * math.sin(phi)
        L1, L2 = self.upper_arm, self.forearm
        c = (R * R + Z * Z - L1 * L1 - L2 * L2) / (2 * L1 * L2)
        if c < -1.0 or c > 1.0:
            return None
        d = -math.acos(c) if elbow_up else math.acos(c)  # alpha2 - alpha1
        alpha1 = math.atan2(Z, R) - math.atan2(L2 * math.sin(d), L1 + L2 * math.cos(d))
        alpha2 = alpha1 + d
        a1 = math.pi / 2 - alpha1
        beta = -alpha2
        a2 = beta - a1
        a3 = phi - beta
        return np.degrees([pan, a1, a2, a3])

    def dls_step(self, q_deg, dx, damping: float = 0.05, weights=None) -> np.ndarray:
        """Damped-least-squares joint step (degrees, first four joints) for a task-space step
        ``dx = (dx, dy, dz [m], dpitch [deg])``."""
        J = self.jacobian(q_deg)
        W = np.diag(weights if weights is not None else [1.0, 1.0, 1.0, 0.01])  # metres vs degrees
        Jw = W @ J
        dxw = W @ np.asarray(dx, dtype=np.float64)
        lam2 = (damping * np.linalg.norm(Jw, 2)) ** 2 + 1e-12
        return Jw.T @ np.linalg.solve(Jw @ Jw.T + lam2 * np.eye(4), dxw)


SO101_SIM = ArmGeometry()
