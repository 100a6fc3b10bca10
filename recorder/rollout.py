"""Closed-loop rollout: a policy is the record loop's action source.

Pieces, each usable alone:

- ``ChunkScheduler``: which action to send at tick ``t`` given the action chunks predicted so far;
  either *execute n of K* (ask for a new chunk every ``n`` ticks, keep running the current chunk
  while the next one is on its way) or *temporal ensembling* (ACT: ask every tick, send the
  exponentially weighted mean of every prediction made for this tick, the oldest weighted most:
  ``w_i = exp(-m * i)``).
- ``PolicySource``: the ``ActionSource`` of ``recorder.loop.run_episode``. Inference runs on a
  worker thread when asked (the default), so a policy slower than a tick never stalls the loop:
  the loop keeps executing the current chunk, and a tick with nothing to execute holds the last
  goal (counted as ``held_ticks``). It also handles the emergency stop (the next tick sends the
  measured position and ends the episode) and human takeover (the teleoperator drives until
  released; those segments are marked in the episode).
- ``run_rollouts``: N episodes on a rig, stored as ``source="policy"`` episodes with the
  checkpoint id, the predicted chunks as per-tick extras, the safety counts in the notes, and the
  success label from the sim task's detector.

``recorder`` never imports ``finetune``: a policy here is anything that satisfies
:class:`recorder.policy.Policy` (a local Policy, a ``RemotePolicy``, a test double).
"""

from __future__ import annotations

import itertools
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from recorder.errors import ConfigError, KnownError, ModelError, StoreError
from recorder.policy import Policy, checkpoint_name, checkpoint_tag, head_tags, store_checkpoint_id

# per-tick extras stored with every rollout episode (flattened to 1-D; K = chunk size, D = action dim)
EXTRA_CHUNK = "policy.chunk"  # (K*D,) the chunk being executed, row-major; NaN when none
EXTRA_ROW = "policy.row"  # (1,) which row of it this tick executed; -1 when held / teleop
EXTRA_ACTION = "policy.action"  # (D,) what the policy asked for this tick (before safety); NaN when none
EXTRA_CONF = "policy.confidence"  # (K,) per-row confidence; NaN when the model gives none
EXTRA_LATENCY = "policy.latency_s"  # (1,) latency of the latest inference
EXTRA_HELD = "policy.held"  # (1,) 1 when the tick had no fresh action and held the last goal
EXTRA_TAKEOVER = "policy.takeover"  # (1,) 1 when the teleoperator drove this tick
EXTRA_PATH = "policy.path."  # + camera: (K*2,) pixel coordinates of the chunk's end-effector path


@dataclass(kw_only=True)
class ChunkConfig:
    """How predicted action chunks are executed."""

    execute: int | None = None  # actions of each chunk executed before the next is used (None: all K)
    ensemble: bool = False  # temporal ensembling (ACT): a chunk every tick, overlapping predictions averaged
    ensemble_decay: float = 0.01  # ACT's m: the i-th oldest prediction of a tick weighs exp(-m * i)
    asynchronous: bool = True  # inference on a worker thread (the loop never waits for the model)

    def validate(self, chunk_size: int) -> None:
        if self.execute is not None and not 1 <= self.execute <= chunk_size:
            raise ConfigError(f"rollout: --execute {self.execute} must be between 1 and the chunk size {chunk_size}")
        if self.ensemble_decay < 0:
            raise ConfigError("rollout: the ensembling decay must be >= 0")


_serial = itertools.count()


@dataclass
class _Chunk:
    start: int  # tick whose observation produced it (row 0 is for this tick)
    actions: np.ndarray  # (K, D)
    confidence: np.ndarray | None
    latency_s: float
    serial: int = field(default_factory=lambda: next(_serial))  # identifies it in the path cache


class ChunkScheduler:
    """Tick-indexed chunk bookkeeping (no threads, no clock)."""

    def __init__(self, cfg: ChunkConfig, chunk_size: int) -> None:
        cfg.validate(chunk_size)
        self.cfg = cfg
        self.K = int(chunk_size)
        self.n = self.K if cfg.execute is None else int(cfg.execute)
        self.chunks: list[_Chunk] = []  # ensembling keeps all that still cover a future tick; else one

    def clear(self) -> None:
        self.chunks.clear()

    @property
    def current(self) -> _Chunk | None:
        return self.chunks[-1] if self.chunks else None

    def add(self, start: int, actions: np.ndarray, confidence=None, latency_s: float = 0.0, now: int | None = None):
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim != 2 or actions.shape[0] < 1:
            raise ModelError(f"policy returned actions of shape {actions.shape}; expected (chunk, action_dim)")
        K = actions.shape[0]
        if now is not None and now - start > K - 1:
            # so late that every row is stale: run its last row now rather than never move
            start = now - (K - 1)
        chunk = _Chunk(start, actions, None if confidence is None else np.asarray(confidence), latency_s)
        if self.cfg.ensemble:
            self.chunks.append(chunk)
            if now is not None:
                self.chunks = [c for c in self.chunks if c.start + c.actions.shape[0] > now]
        else:
            self.chunks = [chunk]

    def needs_chunk(self, tick: int, lead_ticks: int = 0) -> bool:
        """Should inference be started at this tick (``lead_ticks``: expected latency in ticks)?"""
        cur = self.current
        if cur is None or self.cfg.ensemble:
            return True
        return tick - cur.start >= max(self.n - lead_ticks, 0)

    def action(self, tick: int) -> tuple[np.ndarray | None, int]:
        """(action for this tick or None to hold, row of the current chunk executed or -1)."""
        if self.cfg.ensemble:
            live = [c for c in self.chunks if 0 <= tick - c.start < c.actions.shape[0]]
            self.chunks = [c for c in self.chunks if c.start + c.actions.shape[0] > tick]
            if not live:
                return None, -1
            preds = np.stack([c.actions[tick - c.start] for c in live])  # oldest first
            w = np.exp(-self.cfg.ensemble_decay * np.arange(len(live)))
            row = tick - self.chunks[-1].start if self.chunks else -1
            return (w[:, None] * preds).sum(0) / w.sum(), row
        cur = self.current
        if cur is None:
            return None, -1
        row = tick - cur.start
        if 0 <= row < cur.actions.shape[0]:
            return cur.actions[row], row
        return None, -1


@dataclass
class PolicyTick:
    """What the policy side did on one tick (for overlays; copied, safe to read on another thread)."""

    tick: int
    chunk: np.ndarray | None  # (K, D) the chunk being executed
    row: int  # row of it executed now (-1: none)
    action: np.ndarray | None  # the policy's action before safety
    confidence: np.ndarray | None
    latency_s: float
    held: bool
    takeover: bool
    estopped: bool
    path_px: dict[str, np.ndarray] = field(default_factory=dict)  # camera -> (K, 2) pixel path of the chunk
    held_ticks: int = 0
    inferences: int = 0
    undecodable: int = 0  # inferences whose output was no valid chunk (FAST): executed as hold-still chunks


def match_cameras(policy_cameras: list[str], rig_cameras: list[str]) -> dict[str, str]:
    """policy camera name -> rig camera name: by name, else by order when the counts allow it."""
    policy_cameras, rig_cameras = list(policy_cameras), list(rig_cameras)
    if all(c in rig_cameras for c in policy_cameras):
        return {c: c for c in policy_cameras}
    if len(rig_cameras) >= len(policy_cameras):
        return dict(zip(policy_cameras, rig_cameras, strict=False))
    raise ConfigError(f"rollout: the policy needs cameras {policy_cameras} but the rig has {rig_cameras}; "
                      "add cameras to the rig file")


class _Inference:
    """One worker thread running ``policy.predict``; at most one request in flight."""

    def __init__(self, policy: Policy, instruction: str) -> None:
        self.policy = policy
        self.instruction = instruction
        self._requests: queue.Queue = queue.Queue(maxsize=1)
        self._lock = threading.Lock()
        self._result = None
        self.in_flight = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="policy-inference", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._requests.get()
            if item is None:
                return
            tick, images, state, gen = item
            try:
                out = self.policy.predict(images, state, self.instruction)
                with self._lock:
                    self._result = (tick, out, gen)
            except BaseException as err:  # noqa: BLE001 (handed to the loop thread)
                with self._lock:
                    self.error = err
            finally:
                with self._lock:
                    self.in_flight = False

    def submit(self, tick: int, images, state, generation: int = 0) -> bool:
        with self._lock:
            if self.in_flight:
                return False
            self.in_flight = True
        self._requests.put((tick, images, state, generation))
        return True

    def take(self):
        with self._lock:
            res, self._result = self._result, None
            err, self.error = self.error, None
        if err is not None:
            raise err
        return res

    def close(self) -> None:
        try:
            self._requests.put_nowait(None)
        except queue.Full:
            pass


class PolicySource:
    """The record loop's action source for a policy, with e-stop and takeover.

    Call ``estop.set()`` (any thread) to halt: the next tick sends the measured joint positions (the
    arm stops where it is), marks the ``estop`` segment and sets ``stop`` so the loop ends after that
    tick. ``abort`` (a batch-wide stop) ends the episode after the current tick.
    ``takeover.set()`` hands the arm to ``teleop`` until ``takeover.clear()``.
    ``projectors`` maps a camera name to ``f(points_world (N, 3)) -> (N, 2) pixels`` and ``fk`` maps
    a joint vector to the end-effector position: with both, each chunk's future end-effector path is
    projected on the loop thread (where the sim lives) for the overlays and stored per tick.
    """

    def __init__(self, policy: Policy, instruction: str, chunk: ChunkConfig | None = None, *, fps: float = 30.0,
                 camera_map: dict[str, str] | None = None, teleop=None, fk: Callable | None = None,
                 projectors: dict[str, Callable] | None = None, success: Callable[[], bool] | None = None,
                 stop_on_success_ticks: int = 0, stop: threading.Event | None = None,
                 estop: threading.Event | None = None, takeover: threading.Event | None = None,
                 abort: threading.Event | None = None) -> None:
        self.policy = policy
        self.abort = abort
        self.instruction = instruction
        self.cfg = chunk or ChunkConfig()
        self.K = int(policy.chunk_size)
        self.D = int(policy.action_dim)
        self.scheduler = ChunkScheduler(self.cfg, self.K)
        self.period = 1.0 / float(fps)
        self.camera_map = camera_map or {c: c for c in policy.camera_names}
        self.teleop = teleop
        self.fk = fk
        self.projectors = dict(projectors or {})
        self.success_fn = success
        self.stop_on_success_ticks = int(stop_on_success_ticks)
        self.stop = stop or threading.Event()
        self.estop = estop or threading.Event()
        self.takeover = takeover or threading.Event()
        self._inference = _Inference(policy, instruction) if self.cfg.asynchronous else None
        self._lock = threading.Lock()
        self._latest: PolicyTick | None = None
        self._last_goal: np.ndarray | None = None
        self._latency_ema: float | None = None
        self._path_cache: tuple[int, dict] | None = None
        self._success_run = 0
        self._generation = 0  # bumped at each takeover: inference asked before it is dropped
        self.held_ticks = 0
        self.inferences = 0
        self.undecodable = 0
        self.segments: list[tuple[str, int, int]] = []  # (kind, start tick, end tick) closed segments
        self._takeover_start: int | None = None
        self.estop_tick: int | None = None
        self.last_tick = -1
        self.succeeded = False

    # ------------------------------------------------------------------ helpers
    @property
    def extras_spec(self) -> dict[str, tuple[int, ...]]:
        spec = {EXTRA_CHUNK: (self.K * self.D,), EXTRA_ROW: (1,), EXTRA_ACTION: (self.D,), EXTRA_CONF: (self.K,),
                EXTRA_LATENCY: (1,), EXTRA_HELD: (1,), EXTRA_TAKEOVER: (1,)}
        for cam in self.projectors:
            spec[EXTRA_PATH + cam] = (self.K * 2,)
        return spec

    def latest(self) -> PolicyTick | None:
        with self._lock:
            return self._latest

    def _images(self, frames) -> dict[str, np.ndarray]:
        images = {}
        for pol_name, rig_name in self.camera_map.items():
            pkt = frames.get(rig_name)
            if pkt is None:
                raise ConfigError(f"rollout: camera {rig_name!r} gave no frame; check the rig's cameras")
            images[pol_name] = getattr(pkt, "image", pkt)
        return images

    def _record_output(self, start: int, out, now: int) -> None:
        actions = np.asarray(out.actions, dtype=np.float64)
        if actions.shape[-1] != self.D:
            raise ModelError(f"policy returned actions with {actions.shape[-1]} dims; the rig has {self.D} joints")
        self.scheduler.add(start, actions, getattr(out, "confidence", None), float(out.latency_s), now=now)
        self.inferences += 1
        self.undecodable += int(bool(getattr(out, "held", False)))
        lat = float(out.latency_s)
        self._latency_ema = lat if self._latency_ema is None else 0.7 * self._latency_ema + 0.3 * lat

    def _paths(self, chunk: _Chunk | None) -> dict[str, np.ndarray]:
        if chunk is None or self.fk is None or not self.projectors:
            return {}
        key = chunk.serial
        if self._path_cache is not None and self._path_cache[0] == key:
            return self._path_cache[1]
        pts = np.stack([np.asarray(self.fk(q), dtype=np.float64) for q in chunk.actions])
        paths = {}
        for cam, proj in self.projectors.items():
            try:
                paths[cam] = np.asarray(proj(pts), dtype=np.float32).reshape(-1, 2)
            except Exception:  # noqa: BLE001 (a camera without a projection draws no path)
                paths[cam] = np.full((len(pts), 2), np.nan, np.float32)
        self._path_cache = (key, paths)
        return paths

    def _step(self, action: np.ndarray, source: str, extras: dict):
        return _action_step(np.asarray(action, dtype=np.float32), extras, source)

    def _finish_takeover(self, tick: int) -> None:
        if self._takeover_start is not None:
            self.segments.append(("takeover", self._takeover_start, max(tick, self._takeover_start)))
            self._takeover_start = None

    def close(self, last_tick: int | None = None) -> None:
        """End of episode: close an open takeover segment, stop the inference thread."""
        self._finish_takeover(self.last_tick if last_tick is None else last_tick)
        if self._inference is not None:
            self._inference.close()

    # ------------------------------------------------------------------ the action source
    def __call__(self, observation: dict, frames: dict, tick: int):
        self.last_tick = tick
        state = np.asarray(observation["observation.state"], dtype=np.float32)
        nan_chunk = np.full(self.K * self.D, np.nan, np.float32)
        extras = {EXTRA_CHUNK: nan_chunk, EXTRA_ROW: np.array([-1], np.float32),
                  EXTRA_ACTION: np.full(self.D, np.nan, np.float32), EXTRA_CONF: np.full(self.K, np.nan, np.float32),
                  EXTRA_LATENCY: np.array([self._latency_ema or 0.0], np.float32),
                  EXTRA_HELD: np.zeros(1, np.float32), EXTRA_TAKEOVER: np.zeros(1, np.float32)}
        for cam in self.projectors:
            extras[EXTRA_PATH + cam] = np.full(self.K * 2, np.nan, np.float32)

        if self.estop.is_set():
            return self._halt(state, tick, extras)
        if self.abort is not None and self.abort.is_set():
            self.stop.set()  # a batch-wide stop: this tick runs, the loop ends after it

        if self.success_fn is not None:
            ok = bool(self.success_fn())
            self.succeeded = self.succeeded or ok
            self._success_run = self._success_run + 1 if ok else 0
            if self.stop_on_success_ticks and self._success_run >= self.stop_on_success_ticks:
                self.stop.set()

        if self.takeover.is_set() and self.teleop is not None:
            if self._takeover_start is None:
                self._takeover_start = tick
                self.scheduler.clear()
                self._generation += 1
                reset = getattr(self.teleop, "reset", None)
                if reset is not None:
                    reset()  # a keyboard teleoperator starts from the measured pose, not an old goal
            action = np.asarray(self.teleop.get_action(observation), dtype=np.float32)
            self._last_goal = action
            extras[EXTRA_TAKEOVER][:] = 1
            self._publish(PolicyTick(tick, None, -1, None, None, self._latency_ema or 0.0, False, True, False,
                                     held_ticks=self.held_ticks, inferences=self.inferences))
            return self._step(action, "teleop", extras)
        if self._takeover_start is not None:
            self._finish_takeover(tick - 1)

        # --- inference
        if self._inference is not None:
            res = self._inference.take()
            if res is not None and res[2] == self._generation:  # chunks asked before a takeover are stale
                self._record_output(res[0], res[1], tick)
            lead = 0 if self._latency_ema is None else math.ceil(self._latency_ema / self.period)
            if self.scheduler.needs_chunk(tick, lead) and not self._inference.in_flight:
                self._inference.submit(tick, self._images(frames), state.copy(), self._generation)
        elif self.scheduler.needs_chunk(tick):
            out = self.policy.predict(self._images(frames), state.copy(), self.instruction)
            self._record_output(tick, out, tick)
            if self.estop.is_set():  # pressed while the model ran: do not send its action
                return self._halt(state, tick, extras)

        action, row = self.scheduler.action(tick)
        held = action is None
        if held:
            self.held_ticks += 1
            action = self._last_goal if self._last_goal is not None else state
            extras[EXTRA_HELD][:] = 1
        else:
            extras[EXTRA_ACTION] = np.asarray(action, np.float32)
        self._last_goal = np.asarray(action, np.float32)
        cur = self.scheduler.current
        paths = self._paths(cur)
        if cur is not None:
            k = min(cur.actions.shape[0], self.K)
            chunk_flat = np.full((self.K, self.D), np.nan, np.float32)
            chunk_flat[:k] = cur.actions[:k]
            extras[EXTRA_CHUNK] = chunk_flat.reshape(-1)
            extras[EXTRA_ROW][:] = row
            extras[EXTRA_LATENCY][:] = cur.latency_s
            if cur.confidence is not None:
                conf = np.full(self.K, np.nan, np.float32)
                c = np.asarray(cur.confidence, np.float32).reshape(-1)[: self.K]
                conf[: len(c)] = c
                extras[EXTRA_CONF] = conf
            for cam, p in paths.items():
                flat = np.full((self.K, 2), np.nan, np.float32)
                flat[: min(len(p), self.K)] = p[: self.K]
                extras[EXTRA_PATH + cam] = flat.reshape(-1)
        self._publish(PolicyTick(tick, None if cur is None else cur.actions.astype(np.float32), row,
                                 None if held else np.asarray(action, np.float32),
                                 None if cur is None or cur.confidence is None else np.asarray(cur.confidence),
                                 cur.latency_s if cur is not None else 0.0, held, False, False, paths,
                                 self.held_ticks, self.inferences, self.undecodable))
        return self._step(self._last_goal, "policy", extras)

    def _halt(self, state: np.ndarray, tick: int, extras: dict):
        if self.estop_tick is None:
            self.estop_tick = tick
            self._finish_takeover(tick - 1)
            self.segments.append(("estop", tick, tick))
        self.stop.set()
        self._last_goal = state
        self._publish(PolicyTick(tick, None, -1, None, None, self._latency_ema or 0.0, False, False, True,
                                 held_ticks=self.held_ticks, inferences=self.inferences))
        return self._step(state, "estop", extras)

    def _publish(self, pt: PolicyTick) -> None:
        with self._lock:
            self._latest = pt


def _action_step(action: np.ndarray, extras: dict, source: str):
    from recorder.loop import ActionStep

    return ActionStep(action=action, extras=extras, source=source)


# ------------------------------------------------------------------------------------------- cameras
@dataclass(frozen=True)
class PinholeCalibration:
    """A real camera's calibration: ``intrinsics`` (3, 3) and ``world_to_camera`` (4, 4) extrinsic.

    Camera frame as OpenCV: x right, y down, z forward. ``project`` gives pixel coordinates (N, 2);
    points behind the camera come back as NaN.
    """

    intrinsics: np.ndarray
    world_to_camera: np.ndarray

    def project(self, points: np.ndarray) -> np.ndarray:
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        T = np.asarray(self.world_to_camera, dtype=np.float64)
        cam = pts @ T[:3, :3].T + T[:3, 3]
        K = np.asarray(self.intrinsics, dtype=np.float64)
        z = cam[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = (cam @ K.T)[:, :2] / z[:, None]
        uv[z <= 1e-6] = np.nan
        return uv

    @classmethod
    def from_dict(cls, d: dict) -> PinholeCalibration:
        try:
            K = np.asarray(d["intrinsics"], dtype=np.float64).reshape(3, 3)
            T = np.asarray(d["world_to_camera"], dtype=np.float64).reshape(4, 4)
        except (KeyError, ValueError) as err:
            raise ConfigError(f"camera calibration: needs intrinsics (3x3) and world_to_camera (4x4): {err}") from None
        return cls(K, T)


def projectors_for(robot, cameras, calibrations: dict[str, PinholeCalibration] | None = None) -> dict:
    """camera -> projector: exact for the sim (``robot.project``), from a calibration on real cameras.

    ``cameras`` is the rig's ``{name: Camera}`` (or a list of names); a sim camera is projected at its
    own image size with the scene camera it renders (``cfg.camera``).
    """
    out = {}
    calibrations = calibrations or {}
    items = cameras.items() if isinstance(cameras, dict) else ((c, None) for c in cameras)
    for name, cam in items:
        if name in calibrations:
            out[name] = calibrations[name].project
        elif hasattr(robot, "project"):
            scene_cam = getattr(getattr(cam, "cfg", None), "camera", None) or name
            size = (getattr(cam, "width", None), getattr(cam, "height", None))
            if None in size:
                out[name] = (lambda pts, _c=scene_cam: robot.project(pts, _c))
            else:
                out[name] = (lambda pts, _c=scene_cam, _s=size: robot.project(pts, _c, width=_s[0], height=_s[1]))
    return out


# ------------------------------------------------------------------------------------------- episodes
#: the sim's reset seed of a batch's first rollout (episode i: ROLLOUT_SEED + i), for the CLI, the Rollout tab
#: and the demo alike: recording starts at seed 0, so rollouts meet layouts the demonstrations did not show
ROLLOUT_SEED = 1000


@dataclass(kw_only=True)
class RolloutConfig:
    """One batch of rollout episodes."""

    instruction: str  # the task text given to the policy (and stored as the episode task)
    episodes: int = 1  # how many episodes
    fps: float = 30.0  # control rate
    max_seconds: float = 20.0  # longest episode
    #: store dataset the episodes go into; None: "rollouts", or "rollouts-<size>" when "rollouts" holds
    #: episodes of another shape (see rollout_dataset). A named dataset that does not fit is refused.
    dataset: str | None = None
    seed: int | None = ROLLOUT_SEED  # sim: episode i is reset with seed + i (None: random)
    chunk: ChunkConfig = field(default_factory=ChunkConfig)
    stop_on_success_ticks: int = 10  # end an episode once the task detector says success this many ticks running
    calibrations: dict = field(default_factory=dict)  # camera -> PinholeCalibration for path overlays on real cameras


@dataclass
class RolloutTick:
    """What the GUI gets each tick: the loop's TickInfo, the policy side, the safety counts."""

    episode: int
    info: object
    policy: PolicyTick | None
    safety_counts: dict[str, int]
    successes: int
    done: int


@dataclass
class RolloutResult:
    episodes: list = field(default_factory=list)  # EpisodeInfo per stored episode
    successes: list = field(default_factory=list)  # bool | None per episode
    held_ticks: int = 0
    inferences: int = 0
    safety_counts: dict = field(default_factory=dict)
    estopped: bool = False
    dataset: str = ""  # the store dataset the episodes went into

    @property
    def success_rate(self) -> float | None:
        labelled = [s for s in self.successes if s is not None]
        return sum(labelled) / len(labelled) if labelled else None

    def per_task(self) -> dict[str, tuple[int, int]]:
        """Task instruction -> (successes, labelled episodes), in the order the tasks first came."""
        out: dict[str, tuple[int, int]] = {}
        for info, ok in zip(self.episodes, self.successes):
            if ok is None:
                continue
            k, n = out.get(info.task, (0, 0))
            out[info.task] = (k + bool(ok), n + 1)
        return out


DEFAULT_ROLLOUT_DATASET = "rollouts"


def _fits(store, name: str, wanted: dict) -> list[str]:
    from recorder.session import features_diff

    existing = {d.name: d for d in store.datasets()}.get(name)
    if existing is None or not existing.features:
        return []
    return features_diff(existing.features, wanted)


def rollout_dataset(store, rig, fps: float, requested: str | None = None) -> str:
    """The dataset rollouts of this rig go into. ``requested`` (the person named one): used if it is new
    or holds episodes of the same shape, else a DatasetError says what differs. None: "rollouts", or when
    that holds another rig's shape (camera size, joints, fps), "rollouts-<WxH>[-<fps>fps]" (then -2, -3, ...),
    so rollouts of different rigs or checkpoints never collide."""
    from recorder.errors import DatasetError
    from recorder.session import rig_features

    wanted = rig_features(rig, fps)
    if requested:
        diffs = _fits(store, requested, wanted)
        if diffs:
            raise DatasetError(f"rollout dataset '{requested}' holds episodes of another shape ({'; '.join(diffs[:3])}):"
                               f" name a new dataset, or leave it out to get one named after this rig")
        return requested
    if not _fits(store, DEFAULT_ROLLOUT_DATASET, wanted):
        return DEFAULT_ROLLOUT_DATASET
    sizes = sorted({f"{c.width}x{c.height}" for c in rig.cameras.values()})
    base = f"{DEFAULT_ROLLOUT_DATASET}-{'-'.join(sizes) or 'nocam'}-{fps:g}fps"
    name, k = base, 2
    while _fits(store, name, wanted):
        name, k = f"{base}-{k}", k + 1
    return name


def run_rollouts(rig, policy: Policy, store, cfg: RolloutConfig, *, stop: threading.Event | None = None,
                 estop: threading.Event | None = None, takeover: threading.Event | None = None,
                 safety=None, on_tick: Callable[[RolloutTick], None] | None = None,
                 on_episode: Callable[[int, object], None] | None = None) -> RolloutResult:
    """Run ``cfg.episodes`` closed-loop episodes of ``policy`` on a connected ``rig``, store them.

    ``stop`` ends the batch after the current tick (the episode is kept); ``estop`` halts the arm
    within one tick and ends the batch; ``takeover`` hands the arm to ``rig.teleop`` while set.
    """
    from recorder.loop import LoopConfig, run_episode
    from recorder.safety import SafetyLayer
    from recorder.store import CameraSpec

    stop = stop or threading.Event()
    estop = estop or threading.Event()
    takeover = takeover or threading.Event()
    robot = rig.robot
    cams = dict(rig.cameras)
    camera_map = match_cameras(list(policy.camera_names), list(cams))
    if int(policy.action_dim) != len(robot.joint_names):
        raise ConfigError(f"rollout: the policy outputs {policy.action_dim} values but {robot.name} has "
                          f"{len(robot.joint_names)} joints; pick a checkpoint trained on this arm")
    safety = safety if safety is not None else SafetyLayer.for_robot(robot)
    fk = getattr(robot, "forward_kinematics", None)
    task = getattr(robot, "task", None)
    result = RolloutResult(dataset=rollout_dataset(store, rig, cfg.fps, cfg.dataset))
    for i in range(int(cfg.episodes)):
        if stop.is_set() or estop.is_set():
            break
        fresh_after = None
        if hasattr(robot, "reset"):
            robot.reset(None if cfg.seed is None else cfg.seed + i)
            fresh_after = time.monotonic()  # frames captured before this show the scene before the reset
        if hasattr(safety, "reset_counts"):
            safety.reset_counts()
        # a rig that picks the task per episode (Meta-World) gives the policy that task's instruction
        instruction = (robot.task.instruction if getattr(robot, "instruction_per_episode", False) and task is not None
                       else cfg.instruction)
        ep_stop = threading.Event()
        source = PolicySource(policy, instruction, cfg.chunk, fps=cfg.fps, camera_map=camera_map,
                              teleop=rig.teleop, fk=fk, projectors=projectors_for(robot, cams, cfg.calibrations),
                              success=None if task is None else task.success,
                              stop_on_success_ticks=cfg.stop_on_success_ticks, stop=ep_stop, estop=estop,
                              takeover=takeover, abort=stop)
        lowdim = {"observation.state": (source.D,), "action": (source.D,), **source.extras_spec}
        cameras = {name: CameraSpec(width=c.width, height=c.height) for name, c in cams.items()}
        writer = store.begin_episode(dataset=result.dataset, task=instruction, fps=cfg.fps, rig=rig.snapshot(),
                                     source="policy", cameras=cameras, lowdim=lowdim,
                                     checkpoint_id=store_checkpoint_id(store, policy),
                                     tags=[checkpoint_tag(policy)] + head_tags(policy))

        def tick_cb(info, _i=i, _source=source, _stop=ep_stop):
            if getattr(robot, "done", False):  # the robot's own episode limit (Meta-World: 500 steps)
                _stop.set()
            if on_tick is not None:
                on_tick(RolloutTick(_i, info, _source.latest(), _counts(safety),
                                    sum(bool(s) for s in result.successes), len(result.successes)))

        try:
            res = run_episode(rig, source, writer, LoopConfig(fps=cfg.fps, max_duration_s=cfg.max_seconds,
                                                                 fresh_after=fresh_after),
                              ep_stop, tick_cb, safety)
        except KnownError as err:
            # the policy failed (a lost policy server, a bad checkpoint output): keep what was recorded
            source.close()
            for kind, s, e in source.segments:
                writer.mark_segment(kind, s, e)
            info = writer.finish(success=None, notes=f"checkpoint {checkpoint_name(policy)}; stopped: {err}")
            if on_episode is not None:
                on_episode(i, info)
            raise
        except BaseException:
            source.close()
            writer.discard()
            raise
        source.close()
        for kind, s, e in source.segments:
            writer.mark_segment(kind, s, e)
        if res.error is not None:  # a device or disk fault ended the episode: keep it, say why, stop the batch
            info = writer.finish(success=None, notes=f"checkpoint {checkpoint_name(policy)}; fault: {res.error}")
            result.episodes.append(info)
            result.successes.append(None)
            if on_episode is not None:
                on_episode(i, info)
            if isinstance(res.error, KnownError):
                raise res.error
            raise StoreError(f"{getattr(store, 'root', 'the store')}: cannot write the rollout episode "
                             f"({res.error}); free some disk space") from res.error
        success = bool(task.success()) or source.succeeded if task is not None else None
        counts = _counts(safety)
        notes = [f"checkpoint {checkpoint_name(policy)}",
                 "safety: " + (", ".join(f"{k}={v}" for k, v in counts.items() if v) or "no interventions"),
                 f"held ticks {source.held_ticks}, inferences {source.inferences}"
                 + (f", undecodable chunks held still {source.undecodable}" if source.undecodable else "")]
        if source.estop_tick is not None:
            notes.append(f"e-stop at tick {source.estop_tick}")
        info = writer.finish(success=success, notes="; ".join(notes))
        result.episodes.append(info)
        result.successes.append(success)
        result.held_ticks += source.held_ticks
        result.inferences += source.inferences
        for k, v in counts.items():
            result.safety_counts[k] = result.safety_counts.get(k, 0) + v
        if on_episode is not None:
            on_episode(i, info)
        if source.estop_tick is not None:
            result.estopped = True
            break
    return result


def _counts(safety) -> dict[str, int]:
    snap = getattr(safety, "counts_snapshot", None)
    return snap() if snap is not None else {}


@dataclass
class RolloutCallbacks:
    """Called on the thread that runs :meth:`RolloutSession.run`. The Qt adapter turns each into a signal."""

    on_status: Callable[[str], None] | None = None  # one line of progress ("rolling out run/step: ...")
    on_tick: Callable[[RolloutTick], None] | None = None
    on_episode: Callable[[int, object], None] | None = None  # (index, stored EpisodeInfo)


class RolloutSession:
    """One batch of rollouts over a connected rig, an open store and a loaded policy: the twin of
    :class:`recorder.session.RecordSession`, and the one place a rollout is set up (the CLI, the Rollout
    tab's thread and the demo build it with :func:`make_rollout_session` and listen to its callbacks).

    It owns the default instruction (the rig's own sim / Meta-World task), the camera check of the
    calibrations, the rollouts dataset choice (:func:`rollout_dataset`), the safety layer, the episode hooks
    and the link to the checkpoint (:attr:`checkpoint`). Everything it refuses is refused at construction,
    before anything moves. ``stop`` / ``estop`` / ``takeover`` may be set from any thread."""

    def __init__(self, store, rig, policy: Policy, cfg: RolloutConfig, callbacks: RolloutCallbacks | None = None,
                 *, safety=None, max_delta: float = 10.0, stop: threading.Event | None = None,
                 estop: threading.Event | None = None, takeover: threading.Event | None = None) -> None:
        from recorder.safety import SafetyLayer

        self.store = store
        self.rig = rig
        self.policy = policy
        self.cb = callbacks or RolloutCallbacks()
        unknown = sorted(set(cfg.calibrations or {}) - set(rig.cameras))
        if unknown:
            raise ConfigError(f"camera calibration names camera(s) {', '.join(unknown)} that the rig does not "
                              f"have ({', '.join(rig.cameras) or 'none'}): fix the calibration file")
        if not (cfg.instruction or "").strip():
            task = getattr(rig.robot, "task", None)
            own = getattr(task, "instruction", None)
            if not own:
                raise ConfigError("rollout: no instruction for the policy: pass --task TEXT or type it in the "
                                  "task field")
            cfg.instruction = own
        cfg.instruction = cfg.instruction.strip()
        cfg.dataset = rollout_dataset(store, rig, cfg.fps, cfg.dataset)  # a named dataset that does not fit: now
        self.cfg = cfg
        self.safety = safety if safety is not None else SafetyLayer.for_robot(rig.robot, max_delta=max_delta)
        self.stop = stop or threading.Event()  # ends the batch after the current tick
        self.estop = estop or threading.Event()  # halts the arm within one tick, ends the batch
        self.takeover = takeover or threading.Event()  # while set the rig's teleoperator drives
        self.result: RolloutResult | None = None

    @property
    def dataset(self) -> str:
        return str(self.cfg.dataset)

    @property
    def instruction(self) -> str:
        return self.cfg.instruction

    @property
    def checkpoint(self) -> str:
        """The checkpoint the episodes belong to, for people (``run/step``, else its id)."""
        return checkpoint_name(self.policy)

    def run(self) -> RolloutResult:
        """Run the batch on the calling thread; returns (and keeps in :attr:`result`) the RolloutResult."""
        if self.cb.on_status is not None:
            self.cb.on_status(f"rolling out {self.checkpoint}: {self.cfg.instruction!r}")
        self.result = run_rollouts(self.rig, self.policy, self.store, self.cfg, stop=self.stop, estop=self.estop,
                                   takeover=self.takeover, safety=self.safety, on_tick=self.cb.on_tick,
                                   on_episode=self.cb.on_episode)
        return self.result


def make_rollout_session(store, rig, policy: Policy, *, instruction: str | None = None, episodes: int = 1,
                         fps: float | None = None, max_seconds: float = 20.0, dataset: str | None = None,
                         seed: int | None = ROLLOUT_SEED, calibrations: dict | None = None, chunk: ChunkConfig | None = None,
                         max_delta: float = 10.0, callbacks: RolloutCallbacks | None = None,
                         safety=None, stop: threading.Event | None = None, estop: threading.Event | None = None,
                         takeover: threading.Event | None = None) -> RolloutSession:
    """The one way a rollout batch is set up (CLI, Rollout tab, demo): ``instruction`` None or empty gives the
    rig's own task; ``fps`` None the rig's camera rate; ``dataset`` None the rollouts dataset of this rig."""
    from recorder.session import rig_fps

    if int(episodes) < 1:
        raise ConfigError("rollout: --episodes must be at least 1")
    cfg = RolloutConfig(instruction=(instruction or "").strip(), episodes=int(episodes),
                        fps=float(fps) if fps else rig_fps(rig), max_seconds=float(max_seconds), dataset=dataset,
                        seed=seed, chunk=chunk if chunk is not None else ChunkConfig(),
                        calibrations=dict(calibrations or {}))
    return RolloutSession(store, rig, policy, cfg, callbacks, safety=safety, max_delta=max_delta, stop=stop,
                          estop=estop, takeover=takeover)
