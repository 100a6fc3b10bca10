"""The episode flow of a recording session (no Qt).

::

    idle --start--> recording --stop--> review --save | discard | re-record--> reset --countdown--> recording ...
                       |  time limit + auto-advance: save ------------------------^
                       |  save / discard / re-record act at once while recording
    any --e-stop--> estopped (no action sent; an open episode is kept with a note) --start--> idle
    a device or disk fault --> fault (what was recorded is kept, marked recovered) --start--> idle

During idle, review and reset the arm is still teleoperated (nothing is written) so the person can
put the scene back; the reset phase counts down ``reset_time_s``. All device and store work runs on
the one thread that calls :meth:`RecordSession.run` (a QThread in the GUI, a plain thread headless);
commands (``start_stop``, ``save``, ``discard``, ``rerecord``, ``estop``, ...) may come from any thread.
"""

from __future__ import annotations

import enum
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from recorder.errors import ConfigError, DatasetError, DeviceError, KnownError
from recorder.loop import HoldSource, LoopConfig, LoopResult, TeleopSource, TickInfo, lowdim_spec, run_episode

#: while the rig is idle (not recording) and a local training run needs the CPU (``set_yield``): the sim
#: cameras render at this rate and the idle teleop loop runs at IDLE_YIELD_LOOP_FPS. Recording restores both.
IDLE_YIELD_CAMERA_FPS = 2.0
IDLE_YIELD_LOOP_FPS = 5.0


class Phase(enum.StrEnum):
    IDLE = "idle"
    RECORDING = "recording"
    REVIEW = "review"  # stopped; waiting for save / discard / re-record
    RESET = "reset"
    ESTOPPED = "estopped"
    FAULT = "fault"
    DONE = "done"  # the requested number of episodes is saved (behaves like idle)
    CLOSED = "closed"


@dataclass
class SessionConfig:
    dataset: str
    task: str
    fps: float = 30.0
    episode_time_s: float | None = 60.0  # maximum episode length (None: until stopped)
    reset_time_s: float = 10.0  # countdown between episodes (arm teleoperated, not recorded)
    auto_advance: bool = True  # at the time limit: save, reset, start the next episode
    num_episodes: int | None = None  # DONE after this many saved episodes
    source: str = "teleop"  # stored with each episode: "teleop" | "scripted" | "policy"
    codec: str = "h264"
    frame_timeout_s: float = 1.0
    #: called on the session thread just before an episode begins (index = saved so far); e.g. reset the sim.
    #: A returned string is the episode's task instruction (a rig that picks a task per episode)
    before_episode: Callable[[int], str | None] | None = None
    #: checked after every recorded tick; True ends the episode like the time limit (a scripted expert is done)
    episode_done: Callable[[], bool] | None = None
    #: success label used at save when none was given with F/G (e.g. the sim task's success detector)
    auto_label: Callable[[], bool | None] | None = None


@dataclass
class SessionStatus:
    phase: Phase
    dataset: str
    task: str
    saved: int  # episodes saved in this session
    discarded: int
    episode_elapsed_s: float = 0.0
    remaining_s: float | None = None  # of the episode (recording) or of the countdown (reset)
    label: bool | None = None  # success label to apply at save
    fault: str = ""  # the last fault, one line
    message: str = ""  # a one-line note for the status bar
    last_episode: Any = None  # EpisodeInfo of the last saved episode


@dataclass
class SessionCallbacks:
    """Called on the session thread. The Qt adapter turns each into a signal."""

    on_tick: Callable[[TickInfo, SessionStatus], None] | None = None
    on_state: Callable[[SessionStatus], None] | None = None
    on_saved: Callable[[Any], None] | None = None  # EpisodeInfo
    on_fault: Callable[[str], None] | None = None


def rig_features(rig, fps: float, codec: str = "h264") -> dict:
    """What a dataset recorded with this rig looks like, in the store's ``features`` form (plus joint names)."""
    return {
        "fps": float(fps),
        "cameras": {n: {"shape": [int(c.height), int(c.width), 3], "dtype": "uint8", "codec": codec}
                    for n, c in rig.cameras.items()},
        "lowdim": {k: {"shape": list(shape), "dtype": "float32"} for k, shape in lowdim_spec(rig).items()},
        "joint_names": list(rig.robot.joint_names),
    }


def rig_fps(rig) -> float:
    """The rig's camera rate (Meta-World steps at 80 Hz), else 30: the default control rate."""
    return float(min((getattr(c, "fps", 30.0) for c in rig.cameras.values()), default=30.0))


def features_diff(stored: dict, wanted: dict) -> list[str]:
    """Human-readable differences that forbid appending: fps, camera names and sizes, state/action, joints."""
    out: list[str] = []
    if "fps" in stored and float(stored["fps"]) != float(wanted["fps"]):
        out.append(f"fps is {stored['fps']:g} in the dataset but {wanted['fps']:g} here")
    hc, nc = stored.get("cameras") or {}, wanted.get("cameras") or {}
    if set(hc) != set(nc):
        out.append(f"cameras are {sorted(hc)} in the dataset but {sorted(nc)} on the rig")
    for c in sorted(set(hc) & set(nc)):
        if list(hc[c]["shape"]) != list(nc[c]["shape"]):
            out.append(f"camera {c} is {_size(hc[c])} in the dataset but {_size(nc[c])} on the rig")
    hl, nl = stored.get("lowdim") or {}, wanted.get("lowdim") or {}
    for key in ("observation.state", "action"):
        if key in hl and key in nl and list(hl[key]["shape"]) != list(nl[key]["shape"]):
            out.append(f"{key} has shape {list(hl[key]['shape'])} in the dataset but {list(nl[key]['shape'])} on the rig")
    hj, nj = stored.get("joint_names"), wanted.get("joint_names")
    if hj and nj and list(hj) != list(nj):
        out.append(f"joints are {', '.join(hj)} in the dataset but {', '.join(nj)} on the rig")
    return out


def _size(cam: dict) -> str:
    h, w = cam["shape"][:2]
    return f"{w}x{h}"


def open_dataset(store, name: str, rig, fps: float, codec: str = "h264"):
    """Create the dataset, or check that an existing one matches the rig (DatasetError says what differs)."""
    wanted = rig_features(rig, fps, codec)
    existing = {d.name: d for d in store.datasets()}.get(name)
    if existing is not None and existing.features:
        diffs = features_diff(existing.features, wanted)
        if diffs:
            raise DatasetError(
                f"dataset '{name}' was recorded with a different rig ({'; '.join(diffs[:4])}): "
                f"record into a new dataset name or use the rig it was recorded with"
            )
        return existing
    return store.get_or_create_dataset(name, features=wanted)


class RecordSession:
    """One recording session over a connected rig and an open store. See the module docstring."""

    def __init__(
        self,
        store,
        rig,
        cfg: SessionConfig,
        callbacks: SessionCallbacks | None = None,
        source=None,
        safety=None,
    ) -> None:
        self.store = store
        self.rig = rig
        self.cfg = cfg
        self.cb = callbacks or SessionCallbacks()
        if source is None:
            source = TeleopSource(rig.teleop, cfg.source) if rig.teleop is not None else HoldSource()
        self.source = source
        # a scripted expert acts only while an episode is recorded (from its fresh reset); between
        # episodes the arm holds still. A person teleoperates in every phase.
        self.idle_source = HoldSource() if cfg.source == "scripted" else source
        self._fresh_after: float | None = None  # time of the reset before the open episode
        self._yield = False  # a local training run wants the CPU: slow the idle rig down
        self.safety = safety
        open_dataset(store, cfg.dataset, rig, cfg.fps, cfg.codec)  # DatasetError before anything moves

        self._commands: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._light: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._wake = threading.Event()  # ends the running loop so a command takes effect
        self._estop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._phase = Phase.IDLE
        self._task = cfg.task
        self._label: bool | None = None
        self._writer = None
        self._episode_t0 = 0.0
        self._episode_done = False
        self._record_after_reset = False
        self.saved = 0
        self.discarded = 0
        self.fault = ""
        self.fault_is_bug = False  # the last fault was a bug of ours (not a KnownError or OSError)
        self.message = ""
        self.last_episode = None
        self.last_result: LoopResult | None = None
        self._remaining: float | None = None
        self._elapsed = 0.0

    # ---------------------------------------------------------------- commands (any thread)
    def start_stop(self) -> None:
        self._post("start_stop")

    def start(self) -> None:
        self._post("start")

    def stop(self) -> None:
        self._post("stop")

    def save(self, success: bool | None = None) -> None:
        if success is not None:
            self.set_label(success)
        self._post("save")

    def discard(self) -> None:
        self._post("discard")

    def rerecord(self) -> None:
        self._post("rerecord")

    def estop(self) -> None:
        """Halts sending actions within one tick (the event is seen by the running loop directly)."""
        self._estop.set()
        self._post("estop")

    def set_label(self, success: bool | None) -> None:
        """Success/failure label for the episode being recorded or reviewed, else the last saved one."""
        self._post("label", success, wake=False)

    def set_task(self, text: str) -> None:
        """The task instruction for the next episodes (the open episode keeps its own)."""
        text = text.strip()
        if not text:
            raise DatasetError("the task instruction is empty: type what the demonstration does")
        self._post("task", text, wake=False)

    def set_yield(self, on: bool) -> None:
        """While ``on`` and no episode is being recorded, the rig's sim cameras render at
        IDLE_YIELD_CAMERA_FPS and the idle loop runs at IDLE_YIELD_LOOP_FPS, so a local CPU training run is not
        starved by an idle rig. Recording always runs at full rate."""
        self._post("yield", bool(on), wake=False)

    @property
    def yielding(self) -> bool:
        """The idle rig is slowed down now (set_yield on and not recording)."""
        return self._yield and self._phase is not Phase.RECORDING

    def close(self, timeout: float = 10.0) -> None:
        self._post("close")
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)

    def _post(self, name: str, arg: Any = None, wake: bool = True) -> None:
        # commands that change the phase end the running loop; light ones (label, task) are applied
        # between two ticks without interrupting it
        if wake:
            self._commands.put((name, arg))
            self._wake.set()
        else:
            self._light.put((name, arg))
            if self._phase is Phase.FAULT:
                self._wake.set()  # no loop runs in a fault: wake the session to apply it

    # ---------------------------------------------------------------- status
    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def task(self) -> str:
        return self._task

    def status(self) -> SessionStatus:
        return SessionStatus(
            phase=self._phase, dataset=self.cfg.dataset, task=self._task, saved=self.saved,
            discarded=self.discarded, episode_elapsed_s=self._elapsed, remaining_s=self._remaining,
            label=self._label, fault=self.fault, message=self.message, last_episode=self.last_episode,
        )

    def _set_phase(self, phase: Phase, message: str | None = None) -> None:
        self._phase = phase
        self._apply_rates()
        if message is not None:
            self.message = message
        if phase not in (Phase.RECORDING, Phase.RESET):
            self._remaining = None
        if self.cb.on_state is not None:
            self.cb.on_state(self.status())

    # ---------------------------------------------------------------- the session thread
    def start_thread(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.run, name="record-session", daemon=True)
        self._thread.start()
        return self._thread

    def run(self) -> None:
        """The session body: runs until close(). All device and store calls happen here."""
        self._set_phase(Phase.IDLE, "connected: press Space to record")
        try:
            while True:
                self._wake.clear()
                try:
                    self._apply_commands()
                    phase = self._phase
                    if phase is Phase.CLOSED:
                        break
                    if phase is Phase.RECORDING:
                        self._record()
                    elif phase is Phase.RESET:
                        self._reset()
                    elif phase in (Phase.IDLE, Phase.DONE, Phase.REVIEW):
                        self._drive()
                    elif phase is Phase.ESTOPPED:
                        self._drive(send=False)
                    else:  # FAULT: no device is touched until the person asks
                        self._wake.wait()
                except (KnownError, OSError) as err:
                    self._on_fault(err)
                except Exception as err:  # noqa: BLE001 - a bug must not lose the episode or kill the app
                    self._on_fault(err, bug=True)
        finally:
            self._close_open_episode("session closed while an episode was open")
            self._phase = Phase.CLOSED
            if self.cb.on_state is not None:
                self.cb.on_state(self.status())

    def _apply_rates(self) -> None:
        cap = IDLE_YIELD_CAMERA_FPS if self.yielding else None
        for cam in self.rig.cameras.values():
            if hasattr(cam, "rate_cap"):
                cam.rate_cap = cap

    def _idle_fps(self) -> float:
        return min(self.cfg.fps, IDLE_YIELD_LOOP_FPS) if self.yielding else self.cfg.fps

    def _cmd_yield(self, on: bool) -> None:
        if on == self._yield:
            return
        self._yield = on
        self._apply_rates()
        if self._phase in (Phase.IDLE, Phase.DONE, Phase.REVIEW, Phase.ESTOPPED):
            self._wake.set()  # restart the idle loop at its new rate (never a recording or a countdown)

    def _loop_cfg(self, **kw) -> LoopConfig:
        return replace(LoopConfig(fps=self.cfg.fps, estop=self._estop, frame_timeout_s=self.cfg.frame_timeout_s), **kw)

    def _record(self) -> None:
        if self._writer is None:
            self._begin_episode()
        limit = self.cfg.episode_time_s
        res = run_episode(
            self.rig, self.source, self._writer,
            self._loop_cfg(max_duration_s=limit, record=True, fresh_after=self._fresh_after),
            self._wake, self._tick_cb(recording=True, limit=limit), self.safety,
        )
        self.last_result = res
        if res.reason == "fault":
            self._on_fault(res.error)
        elif res.reason == "estop":
            pass  # the estop command (already queued) keeps the episode
        elif res.reason == "time_limit" or self._episode_done:
            if self.cfg.auto_advance:
                self._save()
            else:
                self._set_phase(Phase.REVIEW, "time limit: S save, D discard, R re-record")
        # "stopped": a command woke the loop; _apply_commands acts on it

    def _reset(self) -> None:
        limit = self.cfg.reset_time_s
        if limit > 0:
            res = run_episode(
                self.rig, self.idle_source, None,
                self._loop_cfg(max_duration_s=limit, record=False, fps=self._idle_fps()),
                self._wake, self._tick_cb(recording=False, limit=limit), self.safety,
            )
            if res.reason == "fault":
                self._on_fault(res.error)
                return
            if res.reason != "time_limit":
                return  # a command (start: skip the countdown, e-stop, ...) decides
        self._after_reset()

    def _after_reset(self) -> None:
        if self._record_after_reset or self.cfg.auto_advance:
            self._record_after_reset = False
            self._set_phase(Phase.RECORDING, "recording")
        else:
            self._set_phase(Phase.IDLE, "ready: press Space to record")

    def _drive(self, send: bool = True) -> None:
        res = run_episode(
            self.rig, self.idle_source, None, self._loop_cfg(record=False, send_actions=send, fps=self._idle_fps(),
                                                        estop=None if not send else self._estop),
            self._wake, self._tick_cb(recording=False, limit=None), self.safety,
        )
        if res.reason == "fault":
            self._on_fault(res.error)

    def _tick_cb(self, recording: bool, limit: float | None):
        self._episode_done = False
        done = self.cfg.episode_done if recording else None

        def cb(info: TickInfo) -> None:
            if not self._light.empty():
                self._drain(self._light)
            self._elapsed = info.elapsed_s if not recording else time.monotonic() - self._episode_t0
            self._remaining = None if limit is None else max(0.0, limit - info.elapsed_s)
            if done is not None and done():
                self._episode_done = True
                self._wake.set()
            if self.cb.on_tick is not None:
                self.cb.on_tick(info, self.status())

        return cb

    # ---------------------------------------------------------------- commands (session thread)
    def _apply_commands(self) -> None:
        self._drain(self._light)
        self._drain(self._commands)

    def _drain(self, q: queue.Queue) -> None:
        while True:
            try:
                name, arg = q.get_nowait()
            except queue.Empty:
                return
            getattr(self, f"_cmd_{name}")(arg)

    def _cmd_close(self, _arg) -> None:
        self._close_open_episode("session closed while an episode was open")
        self._phase = Phase.CLOSED

    def _cmd_label(self, success) -> None:
        if self._writer is not None or self.last_episode is None:
            self._label = success
        else:
            self.store.update_episode(self.last_episode.id, success=success)
            self.last_episode = self.store.episode(self.last_episode.id)
            if self.cb.on_saved is not None:
                self.cb.on_saved(self.last_episode)
        self.message = {True: "labelled success", False: "labelled failure", None: "label cleared"}[success]
        if self.cb.on_state is not None:
            self.cb.on_state(self.status())

    def _cmd_task(self, text: str) -> None:
        self._task = text
        if self.cb.on_state is not None:
            self.cb.on_state(self.status())

    def _cmd_start_stop(self, _arg) -> None:
        if self._phase is Phase.RECORDING:
            self._cmd_stop(None)
        else:
            self._cmd_start(None)

    def _cmd_start(self, _arg) -> None:
        p = self._phase
        if p in (Phase.IDLE, Phase.DONE, Phase.RESET):
            self._record_after_reset = False
            self._set_phase(Phase.RECORDING, "recording")
        elif p in (Phase.ESTOPPED, Phase.FAULT):
            self._estop.clear()
            self.fault = "" if p is Phase.FAULT else self.fault
            self._set_phase(Phase.IDLE, "resumed: press Space to record")
        elif p is Phase.REVIEW:
            self.message = "save (S), discard (D) or re-record (R) the stopped episode first"
            if self.cb.on_state is not None:
                self.cb.on_state(self.status())

    def _cmd_stop(self, _arg) -> None:
        if self._phase is Phase.RECORDING:
            self._set_phase(Phase.REVIEW, "stopped: S save, D discard, R re-record")

    def _cmd_save(self, _arg) -> None:
        if self._writer is not None and self._phase in (Phase.RECORDING, Phase.REVIEW):
            self._save()

    def _cmd_discard(self, _arg) -> None:
        if self._writer is not None and self._phase in (Phase.RECORDING, Phase.REVIEW):
            self._discard()
            self._next_after_episode(record_next=self.cfg.auto_advance)

    def _cmd_rerecord(self, _arg) -> None:
        if self._writer is not None and self._phase in (Phase.RECORDING, Phase.REVIEW):
            self._discard()
            self._next_after_episode(record_next=True)

    def _cmd_estop(self, _arg) -> None:
        self._estop.set()
        self._close_open_episode("e-stop pressed during the episode")
        self._set_phase(Phase.ESTOPPED, "E-STOP: no action is sent; press Space to resume")

    # ---------------------------------------------------------------- episodes
    def _begin_episode(self) -> None:
        from recorder.store.types import CameraSpec

        self._fresh_after = None
        if self.cfg.before_episode is not None:
            text = self.cfg.before_episode(self.saved)
            self._fresh_after = time.monotonic()  # camera frames older than this show the scene before the reset
            if isinstance(text, str) and text.strip():  # the rig chose this episode's task (Meta-World)
                self._task = text.strip()
        cams = {n: CameraSpec(width=int(c.width), height=int(c.height), codec=self.cfg.codec)
                for n, c in self.rig.cameras.items()}
        self._writer = self.store.begin_episode(
            dataset=self.cfg.dataset, task=self._task, fps=self.cfg.fps, rig=self.rig.snapshot(),
            source=self.cfg.source, cameras=cams, lowdim=lowdim_spec(self.rig),
        )
        self._episode_t0 = time.monotonic()
        self._elapsed = 0.0

    def _loss_note(self) -> str:
        r = self.last_result
        if r is None:
            return ""
        parts = []
        if r.late_ticks:
            parts.append(f"{r.late_ticks} late ticks (p99 jitter {r.jitter_p99_ms:.1f} ms)")
        for cam, n in sorted(r.stale.items()):
            if n:
                parts.append(f"{cam}: {n} stale frames")
        for cam, n in sorted(r.dropped.items()):
            if n:
                parts.append(f"{cam}: {n} frames dropped by the encoder")
        return "; ".join(parts)

    def _save(self) -> None:
        writer, self._writer = self._writer, None
        label = self._label
        if label is None and self.cfg.auto_label is not None:
            label = self.cfg.auto_label()
        self._label = None
        try:
            info = writer.finish(success=label, notes=self._loss_note())
        except OSError as err:
            self._writer = None
            self._on_fault(err, left_for_recovery=True)
            return
        self.saved += 1
        self.last_episode = info
        if self.cb.on_saved is not None:
            self.cb.on_saved(info)
        self._next_after_episode(record_next=self.cfg.auto_advance, saved=info)

    def _discard(self) -> None:
        writer, self._writer = self._writer, None
        self._label = None
        self._safe_discard(writer)
        self.discarded += 1

    def _safe_discard(self, writer) -> None:
        try:
            writer.discard()
        except (OSError, KnownError) as err:  # the store recovers or drops the leftovers when next opened
            self.message = f"discarding the episode left files behind ({err})"

    def _next_after_episode(self, record_next: bool, saved=None) -> None:
        what = f"saved episode {saved.id} ({saved.num_frames} frames)" if saved is not None else "discarded"
        if self.cfg.num_episodes is not None and self.saved >= self.cfg.num_episodes:
            self._set_phase(Phase.DONE, f"{what}; all {self.saved} episodes recorded")
            return
        self._record_after_reset = record_next
        if self.cfg.reset_time_s > 0:
            self._set_phase(Phase.RESET, f"{what}; reset the scene")
        elif record_next:
            self._set_phase(Phase.RECORDING, f"{what}; recording the next episode")
        else:
            self._set_phase(Phase.IDLE, f"{what}; press Space to record")

    def _close_open_episode(self, why: str) -> None:
        """Keep what an interrupted episode recorded (status recovered, with a note)."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        self._label = None
        ticks = getattr(getattr(writer, "stats", None), "ticks", 1)
        if not ticks:
            self._safe_discard(writer)
            return
        note = "; ".join(x for x in (why, self._loss_note()) if x)
        try:
            info = writer.finish(success=None, notes=note)
        except (OSError, KnownError) as err:
            self.fault = f"could not finish the episode ({err}); it is recovered when the store is next opened"
            return err
        try:
            info = self.store.update_episode(info.id, status="recovered") or self.store.episode(info.id)
        except (KnownError, ValueError, TypeError):
            pass
        self.last_episode = info
        if self.cb.on_saved is not None:
            self.cb.on_saved(info)

    def _on_fault(self, err: BaseException | None, bug: bool = False, left_for_recovery: bool = False) -> None:
        from recorder.store.faults import DiskFullError, disk_full_error, is_disk_full

        if isinstance(err, DiskFullError):
            msg = str(err)
        elif is_disk_full(err):
            msg = str(disk_full_error(self.store_root(), then="the recording again (press Space)"))
        elif isinstance(err, DeviceError):
            msg = f"{err} (press Space to retry once it is fixed)"
        elif bug:
            msg = f"internal error: {type(err).__name__}: {err}"
        else:
            msg = str(err)
        if left_for_recovery and not isinstance(err, DiskFullError):  # that one says what was kept
            msg += "; the episode will be recovered when the store is next opened"
        self.fault_is_bug = bug
        kept = self._close_open_episode(f"stopped by a fault: {err}")
        if isinstance(kept, DiskFullError):  # finishing the episode found the disk full: that line says it all
            msg = str(kept)
        self.fault = msg
        self._set_phase(Phase.FAULT, msg)
        if self.cb.on_fault is not None:
            self.cb.on_fault(msg)

    def store_root(self) -> str:
        return str(getattr(self.store, "root", "the store"))


def sim_hooks(rig, seed: int | None, scripted: bool) -> dict:
    """Session hooks of a sim rig: reset the sim (and the teleoperator) before each episode (episode i
    with ``seed + i``; None: a random layout); with a scripted expert also end the episode once the task
    holds success, and label it with the task's success detector. A real rig gets no hooks."""
    robot, teleop = rig.robot, rig.teleop
    task = getattr(robot, "task", None)
    if task is None or not hasattr(robot, "reset"):
        if scripted:
            raise ConfigError("a scripted expert needs the sim or the Meta-World robot (rig 'sim', 'metaworld:mt10' "
                              "or a rig file with [robot] type = \"sim\" or \"metaworld\")")
        return {}
    held = {"n": 0}
    # success held for half a second at 30 Hz: the end state is on record (Meta-World: its first success)
    hold = int(getattr(robot, "success_hold_ticks", 15))

    def before_episode(i: int) -> str | None:
        robot.reset(None if seed is None else seed + i)
        reset = getattr(teleop, "reset", None)
        if reset is not None:
            reset()
        held["n"] = 0
        # a rig that picks the task per episode (Meta-World) gives each episode its task's instruction
        return robot.task.instruction if getattr(robot, "instruction_per_episode", False) else None

    if not scripted:
        return {"before_episode": before_episode}

    def episode_done() -> bool:
        if getattr(teleop, "done", False):
            return True
        held["n"] = held["n"] + 1 if robot.task.success() else 0
        return held["n"] >= hold

    return {"before_episode": before_episode, "episode_done": episode_done,
            "auto_label": lambda: robot.task.success()}


def is_scripted(rig) -> bool:
    """The rig's teleoperator is a scripted expert (no person)."""
    return bool(getattr(rig.teleop, "scripted", False))


def session_task(rig, typed: str | None) -> str:
    """The task instruction to record with: what the person typed, except that an empty field or another
    sim task's instruction gives way to the rig's own sim task (the push rig records the push instruction)."""
    from recorder.devices.sim.robot import TASKS  # plain data; mujoco is imported only by SimRobot()

    typed = (typed or "").strip()
    sim_task = getattr(rig.robot, "task", None)
    own = getattr(sim_task, "instruction", None)
    if own and (not typed or typed in TASKS.values()):
        return own
    if not typed:
        raise ConfigError("the task instruction is empty: say what the demonstration does (--task, or the "
                          "task field)")
    return typed


def make_record_session(store, rig, *, dataset: str, task: str | None = None, fps: float | None = None,
                        episode_time_s: float | None = 60.0, reset_time_s: float | None = None,
                        auto_advance: bool = True, num_episodes: int | None = None, codec: str = "h264",
                        seed: int | None = 0, callbacks: SessionCallbacks | None = None,
                        safety=None) -> RecordSession:
    """The one way a recording session is set up (the CLI and the Record tab both call it): the rig
    decides the hooks (sim reset before every episode, the scripted expert's end and label), the source
    label and the task; ``reset_time_s`` None gives 10 s with a person, 0 with a scripted expert; ``fps`` None
    the rig's camera rate."""
    scripted = is_scripted(rig)
    if fps is None:
        fps = rig_fps(rig)
    if reset_time_s is None:
        reset_time_s = 0.0 if scripted else 10.0
    cfg = SessionConfig(
        dataset=dataset, task=session_task(rig, task), fps=fps, episode_time_s=episode_time_s,
        reset_time_s=reset_time_s, auto_advance=auto_advance, num_episodes=num_episodes,
        source="scripted" if scripted else "teleop", codec=codec, **sim_hooks(rig, seed, scripted),
    )
    return RecordSession(store, rig, cfg, callbacks, safety=safety)


def summary_line(info) -> str:
    """One line for a saved episode (the CLI prints it)."""
    label = {True: "success", False: "failure", None: "-"}[info.success]
    dropped = sum((info.dropped or {}).values())
    return (f"episode {info.id} saved: {info.num_frames} frames, {info.duration_s:.1f} s, "
            f"label {label}, {dropped} dropped, status {info.status}  [{info.dataset}] {info.task}")


__all__ = [
    "Phase", "SessionConfig", "SessionStatus", "SessionCallbacks", "RecordSession",
    "rig_features", "rig_fps", "features_diff", "open_dataset", "summary_line", "make_record_session", "sim_hooks",
    "session_task", "is_scripted",
]

