"""A policy whose head sometimes gives no valid chunk (FAST): the rollout counts it, stores it and shows it."""

from dataclasses import dataclass

import numpy as np
import pytest

from recorder.devices.rig import load_rig, sim_rig_config
from recorder.rollout import ChunkConfig, RolloutConfig, run_rollouts
from recorder.store import Store
from tests.rollout_doubles import FixedChunkPolicy

pytestmark = pytest.mark.slow


@dataclass
class HeldOutput:
    actions: np.ndarray
    confidence: np.ndarray | None
    latency_s: float
    held: bool = False


class SometimesUndecodable(FixedChunkPolicy):
    """Every second prediction is a hold-still chunk (as finetune.runtime.Policy returns for FAST)."""

    def predict(self, images, state, instruction):
        out = super().predict(images, state, instruction)
        held = len(self.calls) % 2 == 0
        acts = np.tile(np.asarray(state, np.float32), (self.chunk_size, 1)) if held else out.actions
        return HeldOutput(acts, np.zeros(self.chunk_size, np.float32) if held else out.confidence, out.latency_s, held)


def test_undecodable_chunks_are_counted_stored_in_the_notes_and_shown_on_the_overlay(home, qapp):
    from studio.rollout.overlay import overlay_from_live
    from widgets.overlays import OverlayData

    rig = load_rig(sim_rig_config(teleop="scripted", width=160, height=120))
    rig.connect()
    store = Store.open(home)
    try:
        policy = SometimesUndecodable(chunk_size=4, step=0.5)
        ticks = []
        cfg = RolloutConfig(instruction="pick up the red cube", episodes=1, fps=15.0, max_seconds=1.0, seed=3,
                            chunk=ChunkConfig(execute=2, asynchronous=False))
        run_rollouts(rig, policy, store, cfg, on_tick=ticks.append)
        held = len(policy.calls) // 2
        assert held >= 3 and ticks[-1].policy.undecodable == held
        info = store.episodes(source="policy")[0]
        assert f"undecodable chunks held still {held}" in info.notes
        data = overlay_from_live(ticks[-1], "front", low=-100.0, high=100.0, names=[], rate_hz=15.0, target_hz=15.0)
        assert isinstance(data, OverlayData) and data.undecodable == held
    finally:
        store.close()
        rig.disconnect()


def test_open_loop_evaluation_and_the_policy_server_report_held_chunks(home):
    from finetune.server import PolicyServer, RemotePolicy
    from recorder.evaluation import evaluate_open_loop
    from tests.finetune.synth_store import write_dataset

    write_dataset(home, "demos", episodes=1, frames=6)
    store = Store.open(home)
    try:
        policy = SometimesUndecodable(chunk_size=4, step=0.5)
        policy.action_head = "fast"
        result = evaluate_open_loop(policy, store, dataset="demos")
        assert result.held_chunks == 3 and "held still (undecodable chunks): 3" in result.table()
    finally:
        store.close()
    srv = PolicyServer(policy, port=0).start()
    try:
        with RemotePolicy(srv.url) as remote:
            assert remote.action_head == "fast"
            img = np.zeros((24, 32, 3), np.uint8)
            held = [remote.predict({"front": img}, np.zeros(6, np.float32), "pick").held for _ in range(2)]
        assert sorted(held) == [False, True]  # every second prediction of the double is a hold-still chunk
    finally:
        srv.stop()
