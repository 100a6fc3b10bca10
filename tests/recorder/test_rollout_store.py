"""A rollout in the simulated rig, stored in a real store, with its predictions."""

import threading

import numpy as np
import pytest

from recorder.devices.rig import load_rig, sim_rig_config
from recorder.rollout import EXTRA_CHUNK, EXTRA_PATH, EXTRA_ROW, ChunkConfig, RolloutConfig, run_rollouts
from recorder.store import Store
from tests.rollout_doubles import FixedChunkPolicy

pytestmark = pytest.mark.slow


@pytest.fixture
def sim_rig():
    rig = load_rig(sim_rig_config(teleop="scripted", width=160, height=120))
    rig.connect()
    yield rig
    rig.disconnect()


def test_rollout_episode_is_stored_with_its_predictions(home, sim_rig):
    store = Store.open(home)
    policy = FixedChunkPolicy(chunk_size=4, step=0.5, camera_names=("front",), checkpoint_id="double/7")
    ticks = []
    cfg = RolloutConfig(instruction="pick up the red cube", episodes=1, fps=15.0, max_seconds=1.0, seed=3,
                        chunk=ChunkConfig(execute=2, asynchronous=False))
    result = run_rollouts(sim_rig, policy, store, cfg, on_tick=ticks.append)
    assert len(result.episodes) == 1 and result.successes == [False]  # an arm drifting away picks nothing up
    info = store.episodes(source="policy")[0]
    assert info.source == "policy" and info.task == "pick up the red cube"
    assert "ckpt:double/7" in info.tags and info.success is False
    assert "safety:" in info.notes
    reader = store.open_episode(info.id)
    try:
        low = reader.lowdim()
        n = reader.num_frames
        assert n == len(ticks) == 15
        chunks = np.asarray(low[EXTRA_CHUNK]).reshape(n, 4, 6)
        state = np.asarray(low["observation.state"])
        # the chunk stored at tick 0 is the policy's prediction from the state it saw
        np.testing.assert_allclose(chunks[0, :, 0], state[0, 0] + 0.5 * np.arange(1, 5), atol=1e-4)
        assert np.asarray(low[EXTRA_ROW])[:4, 0].tolist() == [0, 1, 0, 1]
        path = np.asarray(low[EXTRA_PATH + "front"]).reshape(n, 4, 2)
        assert np.isfinite(path).all()  # the sim projects the future end-effector path exactly
        robot = sim_rig.robot
        tool = robot.forward_kinematics(chunks[-1, 0])
        expected = robot.project(tool[None], "front", width=160, height=120)[0]
        np.testing.assert_allclose(path[-1, 0], expected, atol=0.01)  # in the 160x120 image's pixels
        assert (path[..., 0] > 0).all() and (path[..., 0] < 160).all()
        assert reader.frame("front", n - 1).shape == (120, 160, 3)
    finally:
        reader.close()
        store.close()
    # the live overlay data carried the same path
    assert ticks[-1].policy.path_px["front"].shape == (4, 2)


def test_stop_event_ends_the_batch_and_keeps_the_episode(home, sim_rig):
    store = Store.open(home)
    stop = threading.Event()
    policy = FixedChunkPolicy(chunk_size=2, step=0.0)
    cfg = RolloutConfig(instruction="x", episodes=3, fps=20.0, max_seconds=5.0,
                        chunk=ChunkConfig(asynchronous=False))

    def on_tick(rt):
        if rt.info.tick == 4:
            stop.set()

    result = run_rollouts(sim_rig, policy, store, cfg, stop=stop, on_tick=on_tick)
    assert len(result.episodes) == 1 and result.episodes[0].num_frames <= 7
    store.close()


def test_a_policy_that_fails_mid_episode_keeps_what_was_recorded(home, sim_rig):
    from recorder.errors import ModelError

    class Flaky(FixedChunkPolicy):
        def predict(self, images, state, instruction):
            if len(self.calls) >= 3:
                raise ModelError("policy server ws://x: connection lost")
            return super().predict(images, state, instruction)

    store = Store.open(home)
    try:
        cfg = RolloutConfig(instruction="x", episodes=2, fps=20.0, max_seconds=3.0,
                            chunk=ChunkConfig(execute=1, asynchronous=False))
        with pytest.raises(ModelError, match="connection lost"):
            run_rollouts(sim_rig, Flaky(chunk_size=2), store, cfg)
        eps = store.episodes(source="policy")
        assert len(eps) == 1 and eps[0].num_frames == 3 and eps[0].success is None
        assert "connection lost" in eps[0].notes
    finally:
        store.close()
