"""The fixed-rate record / rollout loop (no Qt, no torch).

One tick: read the latest frame of every camera and the robot observation -> ask the action
source (a teleoperator, a scripted expert, a policy) -> optional safety hook -> send the action to
the robot -> hand everything to the episode writer with the tick time and each camera's true
capture timestamp. Each section is timed, late ticks are counted, and every loss is counted:

- a *stale* frame is one whose camera frame index did not advance since the last tick (the camera
  is slower than the loop); it is still written (the held frame), counted per camera, reported in
  every ``TickInfo`` and stored with the episode as ``stale.<camera>`` segments;
- a frame captured before ``cfg.fresh_after`` (the moment the scene was reset for this episode) is
  stale too: it shows the scene from before the reset. The loop first waits (up to
  ``frame_timeout_s``) for every camera to deliver a frame captured after it, so frame 0 and state 0
  are of the same moment; a camera that cannot is written, flagged and counted;
- every written tick carries a per-camera ``stale`` flag (the store's ``stale.<cam>`` column);
- a *dropped* frame is one the writer's bounded encoder queue refused; the store counts and marks
  it, the loop reports the counts.

Phases: with ``cfg.record`` False (or no writer) the loop still drives the arm (the reset phase)
but writes nothing. ``cfg.estop`` halts sending actions within one tick and ends the loop.

Faults a person can fix end the loop without raising: a device that fails (``DeviceError``) or a
writer that cannot write (``OSError``, e.g. ENOSPC) -> ``LoopResult.reason == "fault"`` with the
error in ``LoopResult.error``; the caller keeps what was recorded. Bugs propagate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from recorder.cycle import CycleTimer
from recorder.errors import DeviceError

if TYPE_CHECKING:  # pragma: no cover
    from recorder.devices.base import FramePacket

SECTIONS = ("observe", "action", "safety", "send", "write", "tick")


@dataclass
class ActionStep:
    """What an action source returns for one tick."""

    action: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # stored as per-tick values, e.g. "policy.chunk"
    source: str = "teleop"


class ActionSource(Protocol):
    def __call__(
        self, observation: dict[str, np.ndarray], frames: dict[str, FramePacket], tick: int
    ) -> ActionStep: ...


class TeleopSource:
    """Adapts a ``Teleoperator`` (``get_action(observation)``) into an ``ActionSource``."""

    def __init__(self, teleop, source: str = "teleop") -> None:
        self.teleop = teleop
        self.source = source

    def __call__(self, observation, frames, tick) -> ActionStep:
        action = np.asarray(self.teleop.get_action(observation), dtype=np.float32)
        return ActionStep(action=action, source=self.source)


class HoldSource:
    """Holds the arm where it is: the action is the measured state (used when a rig has no teleop)."""

    def __call__(self, observation, frames, tick) -> ActionStep:
        return ActionStep(action=np.asarray(observation["observation.state"], dtype=np.float32), source="hold")


@dataclass
class SafetyReport:
    """What a safety hook did to an action (the rollout issue fills it in)."""

    clipped: bool = False
    blocked: bool = False
    reason: str = ""


@dataclass
class LoopConfig:
    fps: float = 30.0  # loop rate in Hz
    max_duration_s: float | None = None  # end the episode after this long (None: until stop)
    record: bool = True  # False: the reset phase, the arm is driven but nothing is written
    send_actions: bool = True  # False: observe only (previews while e-stopped)
    estop: threading.Event | None = None  # set -> no further action is sent; the loop ends
    frame_timeout_s: float = 1.0  # how long read_latest may wait for a camera's first frame
    observation_keys: tuple[str, ...] = ("observation.state",)  # observation entries written per tick
    start_tick: int = 0  # tick numbering offset (continuing an episode across loop calls)
    #: time.monotonic() of a scene reset just before this episode: older frames are stale (see module doc)
    fresh_after: float | None = None


@dataclass
class TickInfo:
    """Everything one tick saw and did. Frames are the camera packets themselves (not copied)."""

    tick: int
    t: float  # time.monotonic() at tick start
    elapsed_s: float
    recording: bool
    frames: dict[str, Any]  # camera name -> FramePacket
    observation: dict[str, np.ndarray]
    action: np.ndarray | None  # what was sent (None if nothing was sent)
    extras: dict[str, np.ndarray]
    timings: dict[str, float]  # section -> seconds
    late_ticks: int
    stale: dict[str, int]  # camera -> stale frames so far
    dropped: dict[str, int]  # camera -> frames the writer dropped so far
    safety: SafetyReport | None = None


@dataclass
class LoopResult:
    ticks: int  # ticks run (== ticks written when recording without a fault on the write)
    written: int  # ticks handed to the writer
    reason: str  # "stopped" | "time_limit" | "estop" | "fault"
    duration_s: float
    late_ticks: int
    jitter_p99_ms: float
    jitter_max_ms: float
    stale: dict[str, int]
    dropped: dict[str, int]
    timings_mean_ms: dict[str, float]
    timings_p99_ms: dict[str, float]
    error: BaseException | None = None
    estop_tick: int | None = None

    @property
    def loss_summary(self) -> str:
        parts = [f"{self.late_ticks} late ticks"]
        for name in sorted(set(self.stale) | set(self.dropped)):
            parts.append(f"{name}: {self.stale.get(name, 0)} stale, {self.dropped.get(name, 0)} dropped")
        return "; ".join(parts)


def _writer_drops(writer, names) -> dict[str, int]:
    if writer is None:
        return {n: 0 for n in names}
    dropped = getattr(writer.stats, "frames_dropped", None) or {}
    return {n: int(dropped.get(n, 0)) for n in names}


def run_episode(
    rig,
    source: ActionSource | Callable[..., ActionStep],
    writer,
    cfg: LoopConfig,
    stop: threading.Event,
    on_tick: Callable[[TickInfo], None] | None = None,
    safety: Callable[[np.ndarray, dict], tuple[np.ndarray, SafetyReport]] | None = None,
) -> LoopResult:
    """Run the loop until ``stop`` is set, the time limit, an e-stop or a device/disk fault."""
    cameras = dict(rig.cameras)
    robot = rig.robot
    names = list(cameras)
    record = bool(cfg.record and writer is not None)
    writer_used = writer if record else None
    timer = CycleTimer(1.0 / cfg.fps)
    max_ticks = None if cfg.max_duration_s is None else max(1, int(round(cfg.max_duration_s * cfg.fps)))
    estop = cfg.estop

    last_index: dict[str, int | None] = {n: None for n in names}
    stale = {n: 0 for n in names}
    stale_run_start: dict[str, int | None] = {n: None for n in names}
    timings: dict[str, list[float]] = {s: [] for s in SECTIONS}
    dropped = {n: 0 for n in names}
    reason = "stopped"
    error: BaseException | None = None
    estop_tick: int | None = None
    written = 0
    tick = 0

    if cfg.fresh_after is not None:
        try:
            wait_for_fresh_frames(cameras, cfg.fresh_after, cfg.frame_timeout_s)
        except DeviceError as err:
            return _empty_result("fault", err, names)
    t_begin = timer.start()
    t_tick = t_begin
    while True:
        if estop is not None and estop.is_set():
            reason, estop_tick = "estop", cfg.start_tick + tick
            break
        if stop.is_set():
            break
        if max_ticks is not None and tick >= max_ticks:
            reason = "time_limit"
            break
        abs_tick = cfg.start_tick + tick

        # observe
        t0 = t_tick
        try:
            frames = {n: cam.read_latest(timeout=cfg.frame_timeout_s) for n, cam in cameras.items()}
            observation = robot.get_observation()
        except DeviceError as err:
            reason, error = "fault", err
            break
        is_stale = {}
        for n, pkt in frames.items():
            is_stale[n] = bool((last_index[n] is not None and pkt.index == last_index[n])
                               or (cfg.fresh_after is not None and pkt.timestamp < cfg.fresh_after))
            if is_stale[n]:
                stale[n] += 1
                if stale_run_start[n] is None:
                    stale_run_start[n] = abs_tick
            elif stale_run_start[n] is not None:
                _mark(writer_used, f"stale.{n}", stale_run_start[n], abs_tick - 1)
                stale_run_start[n] = None
            last_index[n] = pkt.index
        t1 = time.monotonic()

        # action source
        try:
            step = source(observation, frames, abs_tick)
        except DeviceError as err:
            reason, error = "fault", err
            break
        action = np.asarray(step.action, dtype=np.float32)
        t2 = time.monotonic()

        # safety
        report = None
        if safety is not None:
            action, report = safety(action, observation)
            action = np.asarray(action, dtype=np.float32)
        t3 = time.monotonic()

        # send (an e-stop set during this tick stops the action from going out)
        sent = None
        if estop is not None and estop.is_set():
            reason, estop_tick = "estop", abs_tick
            break
        if cfg.send_actions and not getattr(report, "blocked", False):
            try:
                sent = robot.send_action(action)
            except DeviceError as err:
                reason, error = "fault", err
                break
            sent = np.asarray(action if sent is None else sent, dtype=np.float32)
        t4 = time.monotonic()

        # write
        if writer_used is not None:
            values = {k: observation[k] for k in cfg.observation_keys if k in observation}
            values["action"] = sent if sent is not None else action
            values.update(step.extras)
            try:
                writer_used.add_tick(
                    t=t0,
                    frames={n: p.image for n, p in frames.items()},
                    timestamps={n: p.timestamp for n, p in frames.items()},
                    values=values,
                    stale=is_stale,
                )
            except OSError as err:  # disk full, I/O error: keep what was written
                reason, error = "fault", err
                tick += 1
                break
            written += 1
            dropped = _writer_drops(writer_used, names)
        t5 = time.monotonic()

        for s, dt in zip(SECTIONS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0)):
            timings[s].append(dt)
        if on_tick is not None:
            on_tick(
                TickInfo(
                    tick=abs_tick,
                    t=t0,
                    elapsed_s=t0 - t_begin,
                    recording=record,
                    frames=frames,
                    observation=observation,
                    action=sent,
                    extras=step.extras,
                    timings={s: timings[s][-1] for s in SECTIONS},
                    late_ticks=timer.late_ticks,
                    stale=dict(stale),
                    dropped=dict(dropped),
                    safety=report,
                )
            )
        tick += 1
        if stop.is_set() or (estop is not None and estop.is_set()):
            continue  # leave at once, do not sleep out the period
        t_tick = timer.wait()

    end_tick = cfg.start_tick + tick - 1
    for n in names:
        if stale_run_start[n] is not None:
            _mark(writer_used, f"stale.{n}", stale_run_start[n], end_tick)
    if estop_tick is not None:
        _mark(writer_used, "estop", estop_tick, estop_tick)
    if writer_used is not None:
        dropped = _writer_drops(writer_used, names)
    return LoopResult(
        ticks=tick,
        written=written,
        reason=reason,
        duration_s=time.monotonic() - t_begin,
        late_ticks=timer.late_ticks,
        jitter_p99_ms=timer.jitter_percentile_ms(99),
        jitter_max_ms=timer.jitter_max_ms(),
        stale=stale,
        dropped=dropped,
        timings_mean_ms={s: float(np.mean(v) * 1000) if v else 0.0 for s, v in timings.items()},
        timings_p99_ms={s: float(np.percentile(v, 99) * 1000) if v else 0.0 for s, v in timings.items()},
        error=error,
        estop_tick=estop_tick,
    )


def wait_for_fresh_frames(cameras: dict, after: float, timeout: float) -> bool:
    """Wait until every camera's latest frame was captured at or after ``after`` (time.monotonic());
    False when one still is not within ``timeout`` (its frame is then stale)."""
    deadline = time.monotonic() + timeout
    for cam in cameras.values():
        while cam.read_latest(timeout=timeout).timestamp < after:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.002)
    return True


def _empty_result(reason: str, error: BaseException | None, names) -> LoopResult:
    zero = {n: 0 for n in names}
    return LoopResult(ticks=0, written=0, reason=reason, duration_s=0.0, late_ticks=0, jitter_p99_ms=0.0,
                      jitter_max_ms=0.0, stale=dict(zero), dropped=dict(zero),
                      timings_mean_ms={s: 0.0 for s in SECTIONS}, timings_p99_ms={s: 0.0 for s in SECTIONS},
                      error=error)


def _mark(writer, kind: str, start: int, end: int) -> None:
    if writer is None or end < start:
        return
    mark = getattr(writer, "mark_segment", None)
    if mark is not None:
        try:
            mark(kind, start, end)
        except OSError:
            pass  # the episode's meta is written at finish; a disk fault there is reported by finish


def lowdim_spec(rig, extras: dict[str, tuple[int, ...]] | None = None) -> dict[str, tuple[int, ...]]:
    """The low-dim streams an episode of this rig stores: state, action, and any extras."""
    n = len(rig.robot.joint_names)
    spec: dict[str, tuple[int, ...]] = {"observation.state": (n,), "action": (n,)}
    spec.update(extras or {})
    return spec
