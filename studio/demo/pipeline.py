"""The whole mission with no hardware (`vla-studio demo`), as a Qt-free pipeline:

1. record a few scripted demonstrations in the sim (the task's scripted expert drives the arm);
2. fine-tune the tiny model on them on the CPU (``vla-studio finetune`` as a child process, its
   JSON-lines progress read from stdout);
3. load the tuned checkpoint and roll it out closed-loop in the sim, stored as rollout episodes.

The GUI (``studio.commands.demo``) runs it on a QThread and shows each stage; ``--headless`` prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from finetune.checkpoint_ref import run_dir
from recorder.errors import KnownError, ModelError

STAGES = ("record", "finetune", "rollout")


@dataclass(kw_only=True)
class DemoConfig:
    home: Path  # store root
    task: str = "pick"  # sim task
    demos: int = 3  # scripted demonstrations to record
    steps: int = 60  # fine-tuning steps
    batch: int = 4  # fine-tuning batch
    lr: float = 3e-3  # fine-tuning learning rate
    chunk: int = 4  # action chunk size of the tuned head
    rollouts: int = 2  # rollout episodes
    width: int = 160  # sim camera size
    height: int = 120
    fps: float = 15.0  # control rate of recording and rollouts
    episode_time: float = 15.0  # longest scripted demonstration (s)
    rollout_time: float = 10.0  # longest rollout (s)
    dataset: str = "demo"  # dataset the demonstrations go into
    seed: int = 0  # first sim seed (rollouts use seeds after the demonstrations')
    run_id: str | None = None  # fine-tune run id (default: demo-<time>)


@dataclass
class DemoCallbacks:
    on_stage: Callable[[str, str], None] = lambda stage, text: None  # stage name, status line
    on_record_tick: Callable[[object], None] | None = None  # TickInfo while recording
    on_train_event: Callable[[dict], None] | None = None  # one JSON event of the fine-tune
    on_rollout_tick: Callable[[object], None] | None = None  # RolloutTick
    on_policy: Callable[[object], None] | None = None  # the loaded policy


@dataclass
class DemoResult:
    demos: list = field(default_factory=list)  # EpisodeInfo of the demonstrations
    run_id: str | None = None
    checkpoint: Path | None = None
    final_loss: float | None = None
    rollout: object | None = None  # RolloutResult


class DemoPipeline:
    def __init__(self, cfg: DemoConfig, callbacks: DemoCallbacks | None = None) -> None:
        self.cfg = cfg
        self.cb = callbacks or DemoCallbacks()
        self.stop = threading.Event()
        self.estop = threading.Event()
        self._proc: subprocess.Popen | None = None
        self.result = DemoResult()

    # ------------------------------------------------------------------ helpers
    def _rig(self):
        from recorder.devices.rig import load_rig, sim_rig_config

        return load_rig(sim_rig_config(task=self.cfg.task, teleop="scripted", width=self.cfg.width,
                                       height=self.cfg.height, fps=self.cfg.fps), home=self.cfg.home)

    def cancel(self) -> None:
        self.stop.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()

    # ------------------------------------------------------------------ stages
    def record(self, store) -> list:
        """The scripted demonstrations, through the same record session as the Record tab and the CLI."""
        from recorder.session import Phase, SessionCallbacks, make_record_session

        cfg = self.cfg
        rig = self._rig()
        rig.connect()
        infos: list = []
        faults: list[str] = []
        done = threading.Event()

        def on_tick(info, _status) -> None:
            if info.recording and self.cb.on_record_tick is not None:
                self.cb.on_record_tick(info)

        def on_state(st) -> None:
            if st.phase in (Phase.DONE, Phase.CLOSED):
                done.set()
            elif st.phase is Phase.RECORDING:
                self.cb.on_stage("record", f"recording scripted demonstration {st.saved + 1}/{cfg.demos}")

        def on_fault(msg: str) -> None:
            faults.append(msg)
            done.set()

        try:
            session = make_record_session(
                store, rig, dataset=cfg.dataset, fps=cfg.fps, episode_time_s=cfg.episode_time, reset_time_s=0.0,
                num_episodes=cfg.demos, seed=cfg.seed,
                callbacks=SessionCallbacks(on_tick=on_tick, on_state=on_state, on_saved=infos.append,
                                           on_fault=on_fault))
            session.start_thread()
            session.start()
            while not done.wait(0.1) and not self.stop.is_set():
                pass
            session.close()
        finally:
            rig.disconnect()
        if faults:
            raise KnownError(f"recording the demonstrations failed: {faults[0]}")
        self.result.demos = infos
        ok = sum(bool(e.success) for e in infos)
        self.cb.on_stage("record", f"recorded {len(infos)} demonstrations ({ok} succeeded)")
        return infos

    def finetune(self) -> Path:
        cfg = self.cfg
        run_id = cfg.run_id or time.strftime("demo-%Y%m%d-%H%M%S")
        self.result.run_id = run_id
        cmd = [sys.executable, "-m", "studio.cli", "--home", str(cfg.home), "finetune", "--dataset", cfg.dataset,
               "--model", "tiny", "--preset", "cpu", "--steps", str(cfg.steps), "--batch", str(cfg.batch),
               "--lr", str(cfg.lr), "--action-head", "chunk", "--chunk", str(cfg.chunk), "--val-fraction", "0",
               "--eval-every", "0", "--device", "cpu", "--num-workers", "0", "--run-id", run_id]
        self.cb.on_stage("finetune", f"fine-tuning the tiny model on the CPU ({cfg.steps} steps)")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        root = Path(__file__).resolve().parents[1]
        env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        err_lines: list[str] = []
        drain = threading.Thread(target=lambda: err_lines.extend(self._proc.stderr), daemon=True)
        drain.start()
        last_error = None
        for line in self._proc.stdout:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue
            if ev.get("event") == "train" and ev.get("loss") is not None:
                self.result.final_loss = float(ev["loss"])
                self.cb.on_stage("finetune", f"step {ev.get('step')}/{cfg.steps}  loss {ev['loss']:.4f}")
            elif ev.get("event") == "error":
                last_error = ev.get("message") or ev.get("error")
            if self.cb.on_train_event is not None:
                self.cb.on_train_event(ev)
        rc = self._proc.wait()
        drain.join(5)
        self._proc = None
        if self.stop.is_set():
            raise KnownError("demo: cancelled during fine-tuning")
        if rc != 0:
            tail = (last_error or "".join(err_lines[-3:]).strip() or f"exit status {rc}").splitlines()[-1]
            raise ModelError(f"demo: the fine-tune child process failed: {tail}")
        ckpt = run_dir(cfg.home, run_id)
        self.result.checkpoint = ckpt
        self.cb.on_stage("finetune", f"fine-tuned run {run_id} (final loss {self.result.final_loss})")
        return ckpt

    def rollout(self, store, checkpoint: Path):
        from recorder.rollout import ROLLOUT_SEED, RolloutCallbacks, make_rollout_session
        from studio.rollout.policy import load_local_policy

        cfg = self.cfg
        self.cb.on_stage("rollout", "loading the tuned policy")
        policy = load_local_policy(checkpoint, device="cpu", home=cfg.home, store=store)
        if self.cb.on_policy is not None:
            self.cb.on_policy(policy)
        rig = self._rig()
        rig.connect()
        try:
            def on_episode(i, info):
                label = "success" if info.success else "failure"
                self.cb.on_stage("rollout", f"rollout {i + 1}/{cfg.rollouts}: {label}")

            session = make_rollout_session(
                store, rig, policy, episodes=cfg.rollouts, fps=cfg.fps, max_seconds=cfg.rollout_time,
                seed=cfg.seed + ROLLOUT_SEED, stop=self.stop, estop=self.estop,
                callbacks=RolloutCallbacks(on_tick=self.cb.on_rollout_tick, on_episode=on_episode))
            self.cb.on_stage("rollout", f"rolling out {session.checkpoint} in the sim")
            res = session.run()
        finally:
            rig.disconnect()
        self.result.rollout = res
        n = len(res.successes)
        self.cb.on_stage("rollout", f"{sum(bool(s) for s in res.successes)}/{n} rollouts succeeded "
                                    f"(the tiny model, {cfg.demos} demos, {cfg.steps} CPU steps)")
        return res

    def run(self) -> DemoResult:
        from recorder.store import Store

        store = Store.open(self.cfg.home)
        try:
            self.record(store)
            if self.stop.is_set():
                return self.result
            if not self.result.demos:
                raise KnownError("demo: no demonstration was recorded")
        finally:
            store.close()
        ckpt = self.finetune()  # the child process opens the store itself
        store = Store.open(self.cfg.home)
        try:
            if not self.stop.is_set():
                self.rollout(store, ckpt)
        finally:
            store.close()
        return self.result
