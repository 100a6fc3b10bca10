"""Turn a live rollout tick, or a tick of a stored rollout, into the overlays' ``OverlayData``.

Live and playback share this code so that a stored rollout looks like it did when it ran.
"""

from __future__ import annotations

import numpy as np

from recorder.rates import RateMeter
from recorder.rollout import (
    EXTRA_ACTION,
    EXTRA_CHUNK,
    EXTRA_CONF,
    EXTRA_HELD,
    EXTRA_LATENCY,
    EXTRA_PATH,
    EXTRA_ROW,
    EXTRA_TAKEOVER,
)
from widgets.overlays import OverlayData

GRIPPER = 5


#: the achieved control rate shown during a rollout: the mean over the last this many tick intervals
CONTROL_RATE_TICKS = 30


def control_rate_meter() -> RateMeter:
    """The meter of a rollout's achieved control rate (live tab and demo window alike)."""
    return RateMeter(window_s=None, last=CONTROL_RATE_TICKS)


def _future(path: np.ndarray | None, row: int) -> np.ndarray | None:
    if path is None:
        return None
    path = np.asarray(path, dtype=np.float64).reshape(-1, 2)
    return path[max(row, 0):]


def _before(path: np.ndarray | None, row: int) -> np.ndarray | None:
    """The chunk row executed just before ``row`` (about where the gripper is now), or None."""
    if path is None or row < 1:
        return None
    path = np.asarray(path, dtype=np.float64).reshape(-1, 2)
    return path[row - 1] if row - 1 < len(path) and np.isfinite(path[row - 1]).all() else None


def path_start_projector(rig, calibrations: dict | None = None):
    """``observation -> {camera: (u, v)}``: where the gripper is now in each camera picture (forward
    kinematics of the measured joints, projected like the predicted path), so the path overlay starts at
    the gripper; None when the rig has no kinematics or no projection."""
    from recorder.rollout import projectors_for

    robot = getattr(rig, "robot", None)
    fk = getattr(robot, "forward_kinematics", None)
    if fk is None:
        return None
    try:
        projectors = projectors_for(robot, rig.cameras, calibrations)
    except Exception:  # noqa: BLE001 - no projection: the path starts at its first row
        return None
    if not projectors:
        return None

    def start(observation: dict) -> dict[str, np.ndarray]:
        q = observation.get("observation.state") if observation else None
        if q is None:
            return {}
        try:
            p = np.asarray(fk(np.asarray(q, dtype=np.float64)), dtype=np.float64).reshape(1, 3)
        except Exception:  # noqa: BLE001
            return {}
        out = {}
        for cam, proj in projectors.items():
            try:
                uv = np.asarray(proj(p), dtype=np.float64).reshape(-1)[:2]
            except Exception:  # noqa: BLE001 - this camera cannot project: no start point there
                continue
            if np.isfinite(uv).all():
                out[cam] = uv
        return out

    return start


def overlay_from_live(rt, camera: str, *, low, high, names, rate_hz: float | None, target_hz: float,
                      start_px: dict | None = None) -> OverlayData:
    """From a ``recorder.rollout.RolloutTick``; ``start_px`` (camera -> (u, v)) is where the gripper is now
    (``path_start_projector``), the start of the drawn path."""
    info, pol = rt.info, rt.policy
    executed = None if info.action is None else np.asarray(info.action, dtype=np.float64)
    mode = "policy"
    data = OverlayData(executed=executed, low=low, high=high, joint_names=list(names), rate_hz=rate_hz,
                       target_hz=target_hz, safety_counts=dict(rt.safety_counts))
    rep = getattr(info, "safety", None)
    if rep is not None:
        data.safety_now = tuple(getattr(rep, "rules", ()) or ((rep.reason,) if getattr(rep, "clipped", False) else ()))
    if pol is not None:
        if pol.estopped:
            mode = "estop"
        elif pol.takeover:
            mode = "teleop"
        data.latency_s = pol.latency_s if pol.inferences or pol.latency_s else None
        data.held_ticks = pol.held_ticks
        data.undecodable = getattr(pol, "undecodable", 0)
        data.predicted = pol.action
        data.confidence = pol.confidence
        data.path_px = _future(pol.path_px.get(camera), pol.row)
        start = (start_px or {}).get(camera)
        data.path_start_px = start if start is not None else _before(pol.path_px.get(camera), pol.row)
        g = pol.action if pol.action is not None else executed
        data.gripper = None if g is None or len(g) <= GRIPPER else float(g[GRIPPER])
    data.mode = mode
    return data


class StoredRollout:
    """A stored rollout episode's low-dim streams, read once, drawn tick by tick."""

    def __init__(self, lowdim: dict[str, np.ndarray], fps: float) -> None:
        self.low = lowdim
        self.fps = fps
        self.n = len(lowdim.get("action", []))
        act = lowdim.get("action")
        self.D = act.shape[1] if act is not None and act.ndim == 2 else 0
        chunk = lowdim.get(EXTRA_CHUNK)
        self.K = chunk.shape[1] // self.D if chunk is not None and self.D else 0
        self.has_predictions = chunk is not None

    def predicted_chunk(self, tick: int) -> np.ndarray | None:
        c = self.low.get(EXTRA_CHUNK)
        if c is None or not self.K:
            return None
        return np.asarray(c[tick], dtype=np.float64).reshape(self.K, self.D)

    def overlay(self, tick: int, camera: str, *, low, high, names) -> OverlayData:
        L = self.low
        tick = int(np.clip(tick, 0, max(self.n - 1, 0)))

        def col(name):
            v = L.get(name)
            return None if v is None else np.asarray(v[tick], dtype=np.float64)

        executed = col("action")
        predicted = col(EXTRA_ACTION)
        if predicted is not None and not np.isfinite(predicted).any():
            predicted = None
        row = int(col(EXTRA_ROW)[0]) if L.get(EXTRA_ROW) is not None else 0
        path = col(EXTRA_PATH + camera)
        conf = col(EXTRA_CONF)
        held = L.get(EXTRA_HELD)
        mode = "playback"
        take = col(EXTRA_TAKEOVER)
        if take is not None and take[0] > 0:
            mode = "teleop"
        data = OverlayData(executed=executed, predicted=predicted, low=low, high=high, joint_names=list(names),
                           latency_s=float(col(EXTRA_LATENCY)[0]) if L.get(EXTRA_LATENCY) is not None else None,
                           rate_hz=self._rate(tick), target_hz=self.fps,
                           held_ticks=int(np.nansum(held[: tick + 1])) if held is not None else 0,
                           confidence=conf, mode=mode)
        data.path_px = _future(path, row) if path is not None and row >= 0 else None
        data.path_start_px = _before(path, row) if data.path_px is not None else None
        g = predicted if predicted is not None else executed
        data.gripper = None if g is None or len(g) <= GRIPPER else float(g[GRIPPER])
        # safety: ticks where what was sent differs from what the policy asked for
        if L.get(EXTRA_ACTION) is not None and L.get("action") is not None:
            pa = np.asarray(L[EXTRA_ACTION][: tick + 1], dtype=np.float64)
            ex = np.asarray(L["action"][: tick + 1], dtype=np.float64)
            diff = np.isfinite(pa).all(1) & (np.abs(pa - ex).max(1) > 1e-3)
            data.safety_counts = {"clipped": int(diff.sum())}
            data.safety_now = ("clipped",) if diff[-1] else ()
        return data

    def _rate(self, tick: int) -> float | None:
        t = self.low.get("t")
        if t is None or tick < 1:
            return None
        a = max(0, tick - 30)
        dt = float(t[tick] - t[a])
        return (tick - a) / dt if dt > 0 else None
