"""Rollouts of different rig shapes never collide in one store (issue 12, item 5)."""

import pytest

from recorder.devices.rig import load_rig, sim_rig_config
from recorder.errors import DatasetError
from recorder.rollout import ChunkConfig, RolloutConfig, rollout_dataset, run_rollouts
from recorder.session import rig_features
from recorder.store import Store
from tests.rollout_doubles import FixedChunkPolicy


def _rig(w, h):
    return load_rig(sim_rig_config(teleop="scripted", width=w, height=h, fps=10.0))


def test_rollouts_of_another_shape_go_to_their_own_dataset(home):
    big = _rig(96, 72)
    with Store.open(home) as store:
        store.get_or_create_dataset("rollouts", features=rig_features(big, 10.0))  # an earlier rollout, 96x72
        rig = _rig(64, 48)
        assert rollout_dataset(store, big, 10.0) == "rollouts"
        assert rollout_dataset(store, rig, 10.0) == "rollouts-64x48-10fps"
        rig.connect()
        try:
            cfg = RolloutConfig(instruction="pick up the red cube", episodes=1, fps=10.0, max_seconds=0.3,
                                chunk=ChunkConfig(asynchronous=False))
            res = run_rollouts(rig, FixedChunkPolicy(step=0.0), store, cfg)
        finally:
            rig.disconnect()
        assert res.dataset == "rollouts-64x48-10fps"
        (ep,) = store.episodes(dataset="rollouts-64x48-10fps")
        assert ep.source == "policy" and ep.cameras["front"].width == 64
        assert store.episodes(dataset="rollouts") == []
        # a person who names the taken dataset is told why, in one line, before anything moves
        with pytest.raises(DatasetError, match="rollout dataset 'rollouts' holds episodes of another shape.*96x72"):
            rollout_dataset(store, rig, 10.0, "rollouts")
