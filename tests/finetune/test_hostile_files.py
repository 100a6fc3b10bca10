"""Hostile files in run and model folders: one clear line (exit 2), never a traceback, never unpickled code.

A run folder can come back from a remote GPU host (rsync) and a checkpoint can be copied from anywhere, so
everything read from them is parsed as data: the training state is JSON + safetensors, an old pickled state
is read with torch's restricted unpickler, a damaged JSON file is named with what to do.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from finetune.checkpoint import LEGACY_STATE_FILE, STATE_FILE, STATE_TENSORS_FILE, load_training_state
from finetune.recipe import FinetuneRecipe
from finetune.run_config import FinetuneConfig, last_checkpoint
from recorder.errors import ModelError
from studio.cli import main
from tests.finetune.synth_store import one_torch_thread, write_dataset  # noqa: F401


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A store with a two-step run ``base-run`` and its checkpoint (written by the real recipe)."""
    home = tmp_path_factory.mktemp("hostile") / "home"
    write_dataset(home, "toy", episodes=2, frames=6)
    cfg = FinetuneConfig(dataset="toy", model="tiny", steps=2, batch_size=2, lora_rank=4, eval_every=0,
                         save_every=0, val_fraction=0.0, augment=False, seed=3)
    result = FinetuneRecipe(cfg, home, run_id="base-run", install_signal_handlers=False).run()
    assert result.status == "done"
    return home


def _copy_run(home, name):
    src = home / "runs" / "base-run"
    dst = home / "runs" / name
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["run_id"] = name
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst, last_checkpoint(dst)


def _one_line_error(capsys, rc):
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert rc == 2, captured.err[-2000:]
    assert len(err) == 1 and "Traceback" not in captured.err, captured.err[-2000:]
    return err[0]


def test_checkpoint_training_state_is_json_and_safetensors_not_a_pickle(trained):
    ckpt = last_checkpoint(trained / "runs" / "base-run")
    assert (ckpt / STATE_FILE).is_file() and (ckpt / STATE_TENSORS_FILE).is_file()
    assert not (ckpt / LEGACY_STATE_FILE).exists()
    doc = json.loads((ckpt / STATE_FILE).read_text())  # plain JSON a person can read
    assert doc["state"]["step"] == 2 and doc["state"]["samples_seen"] == 4
    state = load_training_state(ckpt)
    assert torch.is_tensor(state["rng"]["torch"]) and state["rng"]["torch"].dtype == torch.uint8
    name, keys, pos, *_ = state["rng"]["numpy"]
    assert name == "MT19937" and keys.dtype == np.uint32 and keys.shape == (624,)
    assert isinstance(state["rng"]["python"], tuple) and len(state["rng"]["python"][1]) == 625
    assert set(state["optimizer"]["state"]) == set(range(len(state["optimizer"]["state"])))  # int keys kept


class _Payload:
    """What an attacker would put in a run folder: unpickling it creates a folder (it could do anything)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.mkdir, (self.marker,)


def test_a_pickle_in_a_run_folder_is_never_run(trained, capsys, tmp_path):
    run, ckpt = _copy_run(trained, "evil-run")
    marker = tmp_path / "code-ran"
    (ckpt / STATE_FILE).unlink()
    (ckpt / STATE_TENSORS_FILE).unlink()
    torch.save({"step": 2, "optimizer": _Payload(marker)}, ckpt / LEGACY_STATE_FILE)
    rc = main(["--home", str(trained), "finetune", "--resume", "evil-run"])
    line = _one_line_error(capsys, rc)
    assert not marker.exists()
    assert LEGACY_STATE_FILE in line and "nothing in it was run" in line and "start a new run" in line


def test_an_old_pickled_training_state_still_loads(trained, tmp_path):
    ckpt = last_checkpoint(trained / "runs" / "base-run")
    state = load_training_state(ckpt)
    old = tmp_path / "old"
    old.mkdir()
    torch.save(state, old / LEGACY_STATE_FILE)  # exactly what earlier versions wrote (torch.save of this dict)
    back = load_training_state(old)
    assert back["step"] == 2 and torch.equal(back["rng"]["torch"], state["rng"]["torch"])
    np.testing.assert_array_equal(back["rng"]["numpy"][1], state["rng"]["numpy"][1])
    assert back["rng"]["python"] == state["rng"]["python"]
    a, b = back["optimizer"]["state"][0], state["optimizer"]["state"][0]
    assert torch.equal(a["exp_avg"], b["exp_avg"])


def _garbage_pt(ckpt):
    (ckpt / STATE_FILE).unlink()
    (ckpt / STATE_TENSORS_FILE).unlink()
    (ckpt / LEGACY_STATE_FILE).write_bytes(b"\x80\x04garbage, not a pickle at all" * 10)
    return LEGACY_STATE_FILE


def _garbage_json(ckpt):
    (ckpt / STATE_FILE).write_bytes(b"\xff\xfe\x00binary")
    return STATE_FILE


def _json_of_a_list(ckpt):
    (ckpt / STATE_FILE).write_text("[1, 2, 3]")
    return STATE_FILE


def _truncated_tensors(ckpt):
    data = (ckpt / STATE_TENSORS_FILE).read_bytes()
    (ckpt / STATE_TENSORS_FILE).write_bytes(data[: len(data) // 3])
    return STATE_FILE


def _missing_tensor(ckpt):
    doc = json.loads((ckpt / STATE_FILE).read_text())
    doc["state"]["rng"]["torch"] = {"__tensor__": "t9999"}
    (ckpt / STATE_FILE).write_text(json.dumps(doc))
    return STATE_FILE


def _wrong_optimizer(ckpt):
    doc = json.loads((ckpt / STATE_FILE).read_text())
    doc["state"]["optimizer"] = {"state": {}, "param_groups": []}
    (ckpt / STATE_FILE).write_text(json.dumps(doc))
    return "training state does not fit this run"


@pytest.mark.parametrize("damage", [_garbage_pt, _garbage_json, _json_of_a_list, _truncated_tensors,
                                    _missing_tensor, _wrong_optimizer])
def test_resume_with_a_damaged_training_state_is_one_line(trained, capsys, damage):
    run, ckpt = _copy_run(trained, f"damaged-{damage.__name__.strip('_')}")
    named = damage(ckpt)
    rc = main(["--home", str(trained), "finetune", "--resume", run.name])
    line = _one_line_error(capsys, rc)
    assert named in line and ("older checkpoint" in line or "new run" in line), line


def test_load_training_state_names_a_missing_state():
    with pytest.raises(ModelError, match="training_state.json is missing"):
        load_training_state(__import__("pathlib").Path("/nonexistent/ckpt"))


_NOT_UTF8 = b"\xff\xfe{\x00\"model\": \x00\xc3\x28}"


@pytest.mark.parametrize("command", ["serve", "rollout", "export"])
@pytest.mark.parametrize("name", ["config.json", "norm_stats.json"])
def test_a_non_utf8_checkpoint_file_is_one_line_in_serve_rollout_and_export(trained, capsys, tmp_path, command, name):
    run, ckpt = _copy_run(trained, f"binary-{command}-{name.split('.')[0]}")
    (ckpt / name).write_bytes(_NOT_UTF8)
    args = ["--home", str(trained), command, "--checkpoint", str(ckpt)]
    if command == "rollout":
        args += ["--rig", "sim", "--max-seconds", "1"]
    if command == "export":
        args = ["--home", str(trained), "finetune", "export", run.name, "--out", str(tmp_path / "merged")]
    line = _one_line_error(capsys, main(args))
    assert f"{ckpt}/{name}" in line and "UTF-8" in line, line


def test_a_non_utf8_run_config_is_one_line_on_resume(trained, capsys):
    run, _ = _copy_run(trained, "binary-run-config")
    (run / "config.json").write_bytes(_NOT_UTF8)
    line = _one_line_error(capsys, main(["--home", str(trained), "finetune", "--resume", run.name]))
    assert f"{run}/config.json" in line and "UTF-8" in line


@pytest.mark.parametrize("damage, message", [
    (lambda d: [p.unlink() for p in d.glob("tokenizer*")], "no tokenizer (neither tokenizer.json nor tokenizer.model"),
    (lambda d: [(d / "tokenizer.json").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))],
     "cannot load the tokenizer"),
])
def test_a_base_model_with_a_broken_tokenizer_is_one_line(trained, capsys, tmp_path, damage, message):
    from finetune.models import build_tiny_openvla

    base = build_tiny_openvla(tmp_path / "base")
    damage(base)
    line = _one_line_error(capsys, main(["--home", str(trained), "finetune", "--dataset", "toy", "--model", str(base),
                                         "--steps", "1", "--run-id", f"tok-{len(message)}"]))
    assert str(base) in line and message in line and "tokenizer files" in line, line


def test_a_metrics_file_with_binary_junk_still_replays_its_events(trained):
    """What the Fine-tune tab reads to redraw a run's curves before resuming it."""
    from finetune.metrics import read_events

    run, _ = _copy_run(trained, "binary-metrics")
    good = read_events(run / "metrics.jsonl")
    with open(run / "metrics.jsonl", "ab") as fh:
        fh.write(b"\xff\xfe\x00\x89 garbage \xc3\x28\n")
    assert read_events(run / "metrics.jsonl") == good and any(e["event"] == "train" for e in good)
