"""`vla-studio rollout` against a policy server, and `vla-studio serve`'s refusals."""

import numpy as np
import pytest

from finetune.server import PolicyServer
from recorder.rollout import EXTRA_CHUNK
from recorder.store import Store
from studio.cli import main
from tests.rollout_doubles import FixedChunkPolicy


@pytest.mark.slow
def test_cli_rollout_with_a_remote_policy_stores_the_episode(home, capsys):
    policy = FixedChunkPolicy(chunk_size=4, step=0.5, camera_names=("front",), checkpoint_id="7")
    with PolicyServer(policy, port=0, token="t0k") as srv:
        rc = main(["--home", str(home), "rollout", "--rig", "sim", "--policy-url", srv.url, "--token", "t0k",
                   "--episodes", "2", "--max-seconds", "0.6", "--fps", "10", "--execute", "2"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "episode 2/2: failure" in out and "0/2 successes" in out
    assert policy.calls and policy.calls[0][1] == "pick up the red cube"  # the sim task's instruction
    store = Store.open(home)
    try:
        eps = store.episodes(dataset="rollouts", source="policy")
        assert len(eps) == 2 and all(e.success is False for e in eps)
        low = store.open_episode(eps[0].id).lowdim()
        assert np.asarray(low[EXTRA_CHUNK]).shape == (len(low["action"]), 4 * 6)
        assert any(t.startswith("ckpt:") and "ws://" in t for t in eps[0].tags)
    finally:
        store.close()


def test_cli_rollout_with_a_wrong_token_is_one_clear_line(home, capsys, tmp_path):
    secret = tmp_path / "token"
    secret.write_text("wrong\n")
    secret.chmod(0o600)
    with PolicyServer(FixedChunkPolicy(), port=0, token="right") as srv:
        rc = main(["--home", str(home), "rollout", "--policy-url", srv.url, "--token-file", str(secret)])
        err = capsys.readouterr().err
        assert rc == 2 and "unauthorized" in err and len(err.strip().splitlines()) == 1
        rc = main(["--home", str(home), "rollout", "--policy-url", srv.url, "--token", "wrong"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 2 and "--token is visible to every user" in err[0] and "unauthorized" in err[1]


def test_serve_refuses_a_public_address_without_a_token(home, capsys):
    rc = main(["--home", str(home), "serve", "--checkpoint", "whatever", "--host", "0.0.0.0"])
    err = capsys.readouterr().err
    assert rc == 2 and "--token" in err


def test_rollout_with_a_missing_checkpoint_is_a_known_error(home, capsys):
    rc = main(["--home", str(home), "rollout", "--checkpoint", "no-such-run"])
    assert rc == 2 and "no such folder or run" in capsys.readouterr().err


def test_cli_open_loop_prints_the_error_per_joint(home, capsys):
    from tests.recorder.test_evaluation import _record

    store = Store.open(home)
    _record(store, n=6)
    store.close()
    with PolicyServer(FixedChunkPolicy(chunk_size=2, step=1.0), port=0) as srv:
        rc = main(["--home", str(home), "rollout", "--policy-url", srv.url, "--open-loop", "demos"])
    out = capsys.readouterr().out
    assert rc == 0, out
    rows = dict(line.split() for line in out.splitlines() if line.split()[:1] and line.split()[0] in
                ("shoulder_pan", "elbow_flex", "gripper", "mean"))
    assert rows == {"shoulder_pan": "1.000", "elbow_flex": "1.000", "gripper": "4.000", "mean": "1.833"}


def test_cli_rollout_into_a_dataset_of_another_shape_is_refused_in_one_line(home, capsys, tmp_path):
    from recorder.devices.rig import load_rig, sim_rig_config
    from recorder.session import rig_features

    with Store.open(home) as store:
        store.get_or_create_dataset("taken", features=rig_features(load_rig(sim_rig_config(width=96, height=72)), 10.0))
    secret = tmp_path / "token"
    secret.write_text("t\n")
    secret.chmod(0o600)
    with PolicyServer(FixedChunkPolicy(), port=0, token="t") as srv:
        rc = main(["--home", str(home), "rollout", "--rig", "sim", "--policy-url", srv.url, "--token-file", str(secret),
                   "--episodes", "1", "--max-seconds", "0.3", "--fps", "10", "--dataset", "taken"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "rollout dataset 'taken' holds episodes of another shape" in err and "96x72" in err
