"""The safety layer between an action source and the arm.

Every action goes through these rules, in this order, before ``robot.send_action``:

0. ``invalid``: a NaN/inf goal is replaced by the measured position (never sent).
1. ``gripper``: the gripper command is clipped to its range (0..100 by default).
2. ``joint_limits``: each joint goal is clipped to the robot's joint limits.
3. ``max_delta``: no joint goal may move more than ``max_delta`` (degrees) away from the
   measured position in one tick; larger steps are shortened.
4. ``workspace``: the end-effector position of the goal (forward kinematics) must stay inside an
   axis-aligned box; a goal outside it is pulled back along the straight line from the measured
   joint position towards the goal, to the furthest point that stays inside.

A ``SafetyLayer`` is the ``safety`` callable of ``recorder.loop.run_episode``:
``layer(action, observation) -> (safe_action, SafetyReport)``. Interventions are counted per rule
(``layer.counts``) so they can be shown live and stored with the episode.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from recorder.errors import ConfigError

RULES = ("invalid", "gripper", "joint_limits", "max_delta", "workspace")


@dataclass(frozen=True)
class SafetyReport:
    """What the safety layer did to one action.

    ``rules`` names the rules that changed it (empty when it went through untouched);
    ``requested`` and ``sent`` are the action before and after the layer.
    """

    rules: tuple[str, ...]
    requested: np.ndarray
    sent: np.ndarray

    @property
    def intervened(self) -> bool:
        return bool(self.rules)

    # the fields recorder.loop reads from a safety report
    @property
    def clipped(self) -> bool:
        return bool(self.rules)

    @property
    def blocked(self) -> bool:
        return False  # the layer always sends a safe goal (holding the measured position at worst)

    @property
    def reason(self) -> str:
        return ",".join(self.rules)


@dataclass(kw_only=True)
class SafetyConfig:
    """Limits of one arm. Arrays have one entry per joint (the gripper included)."""

    joint_low: np.ndarray  # lowest allowed goal per joint (degrees; gripper 0..100)
    joint_high: np.ndarray  # highest allowed goal per joint
    max_delta: float | np.ndarray | None = 10.0  # largest change of a goal per tick vs the measured position
    workspace_low: np.ndarray | None = None  # (3,) lowest end-effector x, y, z in metres (world frame)
    workspace_high: np.ndarray | None = None  # (3,) highest end-effector x, y, z
    gripper_index: int | None = 5  # which entry is the gripper (None: no gripper)
    gripper_range: tuple[float, float] = (0.0, 100.0)  # allowed gripper command
    workspace_iters: int = 10  # bisection steps when pulling a goal back inside the workspace


class SafetyLayer:
    """Clip actions to the arm's limits; count which rule intervened.

    ``fk`` maps a joint vector (same units as actions) to the end-effector position (3,);
    without it (or without workspace bounds) the workspace rule is off.
    """

    def __init__(self, config: SafetyConfig, fk: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        low = np.asarray(config.joint_low, dtype=np.float64)
        high = np.asarray(config.joint_high, dtype=np.float64)
        if low.shape != high.shape or low.ndim != 1:
            raise ConfigError(f"safety limits: joint_low {low.shape} and joint_high {high.shape} must be equal 1-D shapes")
        if np.any(low > high):
            raise ConfigError("safety limits: a joint_low is above its joint_high; fix the rig's joint limits")
        has_box = config.workspace_low is not None and config.workspace_high is not None
        if has_box and np.any(np.asarray(config.workspace_low) > np.asarray(config.workspace_high)):
            raise ConfigError("safety workspace: workspace_low is above workspace_high on some axis")
        self.config = config
        self.low = low
        self.high = high
        self.fk = fk
        self.box = (
            (np.asarray(config.workspace_low, dtype=np.float64), np.asarray(config.workspace_high, dtype=np.float64))
            if has_box and fk is not None
            else None
        )
        self._lock = threading.Lock()
        self.counts: dict[str, int] = dict.fromkeys(RULES, 0)
        self.ticks = 0

    @classmethod
    def for_robot(cls, robot, *, max_delta: float | None = 10.0, workspace_low=None, workspace_high=None,
                  gripper_index: int | None = None) -> SafetyLayer:
        """A layer from a ``recorder.devices.Robot``: its joint limits, its FK when it has one (the sim)."""
        low, high = robot.joint_limits
        names = list(getattr(robot, "joint_names", []))
        if getattr(robot, "action_is_delta", False):
            # velocity-like actions (Meta-World's end-effector deltas in [-1, 1]): the limits are all there is;
            # a per-tick change from the measured state or a 0..100 gripper range would mean nothing
            cfg = SafetyConfig(joint_low=np.asarray(low), joint_high=np.asarray(high), max_delta=None,
                               gripper_index=None)
            return cls(cfg)
        if gripper_index is None and "gripper" in names:
            gripper_index = names.index("gripper")
        fk = getattr(robot, "forward_kinematics", None)
        cfg = SafetyConfig(joint_low=np.asarray(low), joint_high=np.asarray(high), max_delta=max_delta,
                           workspace_low=workspace_low, workspace_high=workspace_high, gripper_index=gripper_index)
        return cls(cfg, fk=fk)

    def reset_counts(self) -> None:
        with self._lock:
            self.counts = dict.fromkeys(RULES, 0)
            self.ticks = 0

    def counts_snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def _inside(self, point: np.ndarray) -> bool:
        lo, hi = self.box
        return bool(np.all(point >= lo) and np.all(point <= hi))

    def __call__(self, action: np.ndarray, observation: dict | None = None) -> tuple[np.ndarray, SafetyReport]:
        requested = np.asarray(action, dtype=np.float64).copy()
        if requested.shape != self.low.shape:
            raise ConfigError(f"safety layer: action has shape {requested.shape}, the arm has {self.low.shape[0]} joints")
        out = requested.copy()
        rules: list[str] = []
        # a NaN goal is never sent: hold the measured position instead
        state = None
        if observation is not None and "observation.state" in observation:
            state = np.asarray(observation["observation.state"], dtype=np.float64)
        if not np.all(np.isfinite(out)):
            fill = state if state is not None else (self.low + self.high) / 2
            out = np.where(np.isfinite(out), out, fill)
            rules.append("invalid")
        cfg = self.config
        g = cfg.gripper_index
        if g is not None:
            lo, hi = cfg.gripper_range
            clipped = float(np.clip(out[g], lo, hi))
            if clipped != out[g]:
                out[g] = clipped
                rules.append("gripper")
        clipped = np.clip(out, self.low, self.high)
        if np.any(clipped != out):
            out = clipped
            rules.append("joint_limits")
        if cfg.max_delta is not None and state is not None:
            step = np.asarray(cfg.max_delta, dtype=np.float64)
            limited = np.clip(out, state - step, state + step)
            if g is not None:
                limited[g] = out[g]  # the gripper is position-limited only
            if np.any(limited != out):
                out = limited
                rules.append("max_delta")
        if self.box is not None:
            arm = np.ones(out.shape, dtype=bool)
            if g is not None:
                arm[g] = False
            if not self._inside(np.asarray(self.fk(out), dtype=np.float64)):
                rules.append("workspace")
                start = state if state is not None else None
                if start is None or not self._inside(np.asarray(self.fk(start), dtype=np.float64)):
                    # no safe reference point: freeze the arm where it is (or refuse to move it)
                    if start is not None:
                        out[arm] = start[arm]
                    else:
                        out[arm] = np.clip((self.low + self.high) / 2, self.low, self.high)[arm]
                else:
                    lo_a, hi_a = 0.0, 1.0  # furthest fraction of the way from start to goal that stays inside
                    for _ in range(cfg.workspace_iters):
                        mid = (lo_a + hi_a) / 2
                        trial = out.copy()
                        trial[arm] = start[arm] + mid * (out[arm] - start[arm])
                        if self._inside(np.asarray(self.fk(trial), dtype=np.float64)):
                            lo_a = mid
                        else:
                            hi_a = mid
                    out[arm] = start[arm] + lo_a * (out[arm] - start[arm])
        with self._lock:
            self.ticks += 1
            for rule in rules:
                self.counts[rule] += 1
        sent = out.astype(np.asarray(action).dtype if np.asarray(action).dtype.kind == "f" else np.float32)
        return sent, SafetyReport(rules=tuple(rules), requested=requested, sent=sent)


@dataclass
class SafetySummary:
    """Interventions of one episode, for the episode notes and the overlay."""

    counts: dict[str, int] = field(default_factory=dict)
    ticks: int = 0

    def text(self) -> str:
        parts = [f"{k}={v}" for k, v in self.counts.items() if v]
        return "safety: " + (", ".join(parts) if parts else "no interventions") + f" in {self.ticks} ticks"
