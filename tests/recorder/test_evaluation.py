import numpy as np
import pytest

from recorder.errors import DatasetError
from recorder.evaluation import evaluate_open_loop, mae_per_joint
from recorder.store import CameraSpec, Store
from tests.rollout_doubles import FixedChunkPolicy

OFFSETS = np.arange(6, dtype=np.float32)  # recorded action = state + [0, 1, 2, 3, 4, 5]


def _record(store, n=12, dataset="demos"):
    w = store.begin_episode(dataset=dataset, task="pick up the red cube", fps=10.0, source="scripted",
                            cameras={"front": CameraSpec(width=32, height=24)},
                            lowdim={"observation.state": (6,), "action": (6,)})
    for t in range(n):
        state = np.full(6, float(t), np.float32)
        w.add_tick(t=float(t) / 10, frames={"front": np.full((24, 32, 3), t * 10, np.uint8)},
                   timestamps={"front": float(t) / 10}, values={"observation.state": state, "action": state + OFFSETS})
    return w.finish(success=True)


def test_mae_per_joint_on_a_known_case():
    pred = np.array([[0, 0], [2, 2], [np.nan, 4]])
    rec = np.array([[1, 0], [0, 2], [5, 0]])
    np.testing.assert_allclose(mae_per_joint(pred, rec), [1.5, 4 / 3])
    with pytest.raises(DatasetError):
        mae_per_joint(np.zeros((2, 3)), np.zeros((3, 3)))


def test_open_loop_evaluation_compares_predictions_with_recorded_actions(home):
    store = Store.open(home)
    try:
        _record(store, n=12)
        _record(store, n=8)
        policy = FixedChunkPolicy(chunk_size=3, step=1.0)  # predicts state + 1, + 2, + 3
        progress = []
        res = evaluate_open_loop(policy, store, dataset="demos", stride=2,
                                 on_progress=lambda i, n: progress.append((i, n)))
    finally:
        store.close()
    assert progress == [(1, 2), (2, 2)]
    assert [len(e.indices) for e in res.episodes] == [6, 4]
    ep = res.episodes[0]
    np.testing.assert_allclose(ep.predicted[:, 0], ep.indices + 1)  # row 0 of each chunk, per joint
    np.testing.assert_allclose(ep.recorded[:, 3], ep.indices + 3)
    # |(t + 1) - (t + j)| = |1 - j| for joint j
    np.testing.assert_allclose(res.mae_per_joint, [1, 0, 1, 2, 3, 4])
    assert res.mae == pytest.approx(11 / 6)
    np.testing.assert_allclose(res.mae_by_horizon, [11 / 6] * 3)
    assert len(policy.calls) == 10 and policy.calls[0][1] == "pick up the red cube"
    assert "shoulder_pan" in res.table() and res.joint_names[5] == "gripper"


def test_open_loop_on_an_empty_dataset_is_a_known_error(home):
    store = Store.open(home)
    try:
        store.get_or_create_dataset("empty")
        with pytest.raises(DatasetError, match="no recorded episodes"):
            evaluate_open_loop(FixedChunkPolicy(), store, dataset="empty")
    finally:
        store.close()
