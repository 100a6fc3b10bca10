"""Qt adapters for rollouts and open-loop evaluation: recorder/finetune code runs on these threads,
never on the GUI thread; callbacks become signals.
"""

from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass
from pathlib import Path

from PyQt6.QtCore import QThread, pyqtSignal

from recorder.errors import error_text
from studio.qt.threads import ThrottledThread


@dataclass
class PolicySpec:
    """Which policy to run: a local checkpoint or a policy server."""

    checkpoint: str | None = None
    url: str | None = None
    token: str | None = None
    device: str | None = None

    def describe(self) -> str:
        return self.url if self.url else str(self.checkpoint)

    def open(self, *, home: Path | None, store):
        """The policy (blocks: loads a model or connects to a server; call it on a worker thread)."""
        from studio.rollout.policy import open_policy

        return open_policy(self.checkpoint, url=self.url, token=self.token, device=self.device, home=home,
                           store=store)


class RolloutThread(ThrottledThread):
    """Loads a policy and a rig, runs a ``recorder.rollout.RolloutSession`` and turns its callbacks into signals.

    Control from the GUI thread through the events: ``estop`` (halts within one tick, ends the
    batch), ``stop`` (ends after the current tick), ``takeover`` (the rig's teleoperator drives).
    At most two ticks wait in the event queue; the rest are skipped for display only.

    Signals:
        status_posted(str): progress text (loading the model, connecting the rig, episode i).
        policy_loaded(object): the policy (for its chunk size, cameras, checkpoint id).
        rig_ready(object): the connected rig (names and joint limits, read-only use).
        ticked(object): a ``RolloutTick``.
        episode_saved(object): the stored ``EpisodeInfo``.
        finished(object): the ``RolloutResult``.
        failed(str): a one-line error; the thread ends.
    """

    status_posted = pyqtSignal(str)
    policy_loaded = pyqtSignal(object)
    rig_ready = pyqtSignal(object)
    ticked = pyqtSignal(object)
    episode_saved = pyqtSignal(object)
    finished_batch = pyqtSignal(object)
    failed = pyqtSignal(str)

    def __init__(self, *, store, rig_spec, policy: PolicySpec, config, home: Path | None = None,
                 max_delta: float = 10.0, policy_object=None, rigs=None, parent=None) -> None:
        super().__init__(parent)
        self.rigs = rigs  # the window's RigManager: it connects (or lends) the rig and keeps it
        self.store = store
        self.rig_spec = rig_spec
        self.policy_spec = policy
        self.config = config
        self.home = home
        self.max_delta = max_delta
        self.policy = policy_object
        self.stop_event = threading.Event()
        self.estop = threading.Event()
        self.takeover = threading.Event()
        self.result = None
        self.session = None  # the RolloutSession once the rig is connected

    def _on_tick(self, rt) -> None:
        self.emit_tick(self.ticked, rt)

    def run(self) -> None:
        from recorder.devices.rig import load_rig
        from recorder.rollout import RolloutCallbacks, RolloutSession

        rig = None
        close_after = False
        try:
            if self.policy is None:
                self.status_posted.emit(f"loading policy {self.policy_spec.describe()} …")
                self.policy = self.policy_spec.open(home=self.home, store=self.store)
            self.policy_loaded.emit(self.policy)
            if self.stop_event.is_set() or self.estop.is_set():
                return
            self.status_posted.emit("connecting the rig …")
            if self.rigs is not None:
                before = self.rigs.rig
                rig = self.rigs.open_rig(self.rig_spec)
                close_after = before is None or before is not rig  # we connected it: we disconnect it
            else:
                rig = self.rig_spec if hasattr(self.rig_spec, "connect") else load_rig(self.rig_spec, home=self.home)
                if not getattr(rig, "is_connected", False):
                    rig.connect()
            session = RolloutSession(self.store, rig, self.policy, self.config, RolloutCallbacks(
                on_status=self.status_posted.emit, on_tick=self._on_tick,
                on_episode=lambda i, info: self.episode_saved.emit(info)), max_delta=self.max_delta,
                stop=self.stop_event, estop=self.estop, takeover=self.takeover)
            self.session = session
            self.rig_ready.emit(rig)
            self.result = session.run()
            self.finished_batch.emit(self.result)
        except BaseException as err:  # noqa: BLE001 - never take the app down
            self.failed.emit(error_text(err))
        finally:
            if self.rigs is not None:
                if close_after:
                    try:
                        self.rigs.close_rig()
                    except Exception:  # noqa: BLE001
                        traceback.print_exc()
            elif rig is not None and not hasattr(self.rig_spec, "connect"):
                try:
                    rig.disconnect()
                except Exception:  # noqa: BLE001
                    traceback.print_exc()

    def request_stop(self) -> None:
        self.stop_event.set()

    def emergency_stop(self) -> None:
        self.estop.set()


class EvaluationThread(QThread):
    """Open-loop evaluation of a checkpoint over a dataset's recorded episodes.

    Signals:
        progressed(int, int): episodes done, episodes in all.
        evaluated(object): the ``OpenLoopResult``.
        failed(str): a one-line error.
    """

    progressed = pyqtSignal(int, int)
    evaluated = pyqtSignal(object)
    failed = pyqtSignal(str)

    def __init__(self, *, store, policy: PolicySpec, dataset: str, home: Path | None = None,
                 max_episodes: int | None = 5, stride: int = 1, max_ticks: int | None = None,
                 policy_object=None, parent=None) -> None:
        super().__init__(parent)
        self.store = store
        self.policy_spec = policy
        self.dataset = dataset
        self.home = home
        self.max_episodes = max_episodes
        self.stride = stride
        self.max_ticks = max_ticks
        self.policy = policy_object
        self.stop_event = threading.Event()

    def run(self) -> None:
        from recorder.evaluation import evaluate_open_loop

        try:
            if self.policy is None:
                self.policy = self.policy_spec.open(home=self.home, store=self.store)
            res = evaluate_open_loop(self.policy, self.store, dataset=self.dataset, max_episodes=self.max_episodes,
                                     stride=self.stride, max_ticks=self.max_ticks, stop=self.stop_event,
                                     on_progress=self.progressed.emit)
            self.evaluated.emit(res)
        except BaseException as err:  # noqa: BLE001
            self.failed.emit(error_text(err))
