import json

import numpy as np
import pytest

from finetune.norm import Normalizer, load_norm_stats, make_norm_stats, save_norm_stats, select_stats
from recorder.errors import ModelError


def _data():
    rng = np.random.default_rng(0)
    joints = rng.uniform(-90, 90, size=(500, 5))
    gripper = rng.uniform(0, 100, size=(500, 1))
    return np.concatenate([joints, gripper], 1)


def test_stats_in_openvla_form_and_round_trip(tmp_path):
    x = _data()
    stats = make_norm_stats("pick", x, proprio=x, action_mask=[True] * 5 + [False])
    a = stats["pick"]["action"]
    assert set(a) == {"mean", "std", "min", "max", "q01", "q99", "mask"}
    assert a["mask"] == [True, True, True, True, True, False]
    assert np.allclose(a["q01"], np.quantile(x, 0.01, axis=0))
    path = save_norm_stats(stats, tmp_path / "norm_stats.json")
    back = load_norm_stats(path)
    assert json.loads(path.read_text()) == back
    n = Normalizer(select_stats(back, None, "action"))
    xn = n.normalize(x)
    assert xn[:, :5].min() >= -1 and xn[:, :5].max() <= 1
    # masked gripper passes through unchanged
    assert np.allclose(xn[:, 5], x[:, 5])
    inside = (x >= np.array(a["q01"])) & (x <= np.array(a["q99"]))
    assert np.allclose(n.unnormalize(xn)[inside], x[inside], atol=1e-3)


def test_values_outside_q01_q99_are_clipped():
    n = Normalizer({"q01": [0.0], "q99": [10.0], "mask": [True]})
    assert np.allclose(n.normalize(np.array([[-5.0], [5.0], [50.0]])).ravel(), [-1.0, 0.0, 1.0], atol=1e-6)
    assert np.allclose(n.unnormalize(np.array([[-1.0], [1.0]])).ravel(), [0.0, 10.0])


def test_bad_stats_are_model_errors(tmp_path):
    with pytest.raises(ModelError, match="several datasets"):
        select_stats({"a": {}, "b": {}})
    with pytest.raises(ModelError, match="missing"):
        load_norm_stats(tmp_path / "nope.json")
