"""A fine-tune on a full disk, killed runs, and runs rebuilt with a lost index (issue 13 items 4 and 6)."""

from __future__ import annotations

import errno
import json

from recorder.store import Store
from studio.cli import main
from tests.diskfull import fill
from tests.finetune.synth_store import one_torch_thread, write_dataset  # noqa: F401

TRAIN = ["--model", "tiny", "--steps", "3", "--batch", "2", "--lora-rank", "4", "--save-every", "1",
         "--val-fraction", "0"]


def _list(home, capsys) -> dict:
    capsys.readouterr()
    assert main(["--home", str(home), "finetune", "list", "--json"]) == 0
    return {r["run_id"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}


def _fails_at_second_checkpoint_then_resumes(home, capsys, free_space):
    rc = main(["--home", str(home), "finetune", "--dataset", "toy", *TRAIN, "--run-id", "full"])
    err = capsys.readouterr().err
    assert rc == 2
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "disk full at" in lines[0] and "MB needed" in lines[0], err
    assert "finetune --resume full" in lines[0] and "Traceback" not in err
    ckpts = home / "runs" / "full" / "checkpoints"
    assert not list(ckpts.glob(".*partial*"))  # no half-written step folder left
    assert (ckpts / "last").read_text().strip() == "0000001"
    free_space()
    row = _list(home, capsys)["full"]
    assert row["status"] in ("failed", "interrupted")
    assert main(["--home", str(home), "finetune", "--resume", "full"]) == 0
    capsys.readouterr()
    row = _list(home, capsys)["full"]
    assert row["status"] == "done" and row["last_step"] == 3


def test_finetune_into_a_full_tmpfs_is_one_line_and_resumes(small_disk, capsys, monkeypatch):
    import finetune.recipe as recipe

    home = small_disk / "home"
    write_dataset(home, "toy", episodes=2, frames=6)
    real = recipe.save_checkpoint
    state = {"filler": None}

    def save_then_fill(*a, **kw):
        path = real(*a, **kw)
        if state["filler"] is None:  # the first checkpoint is written, then the disk fills
            state["filler"] = fill(small_disk, leave=0)
        return path

    monkeypatch.setattr(recipe, "save_checkpoint", save_then_fill)
    _fails_at_second_checkpoint_then_resumes(home, capsys, lambda: state["filler"].unlink())


def test_finetune_with_injected_enospc_is_one_line_and_resumes(home, capsys, monkeypatch):
    from peft import PeftModel

    write_dataset(home, "toy", episodes=2, frames=6)
    real = PeftModel.save_pretrained
    calls = {"n": 0, "full": True}

    def save(self, folder, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2 and calls["full"]:
            import os

            os.makedirs(folder, exist_ok=True)
            open(os.path.join(folder, "adapter_model.safetensors"), "wb").write(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device", folder)
        return real(self, folder, *a, **kw)

    monkeypatch.setattr(PeftModel, "save_pretrained", save)

    def free():
        calls["full"] = False

    _fails_at_second_checkpoint_then_resumes(home, capsys, free)


def test_a_killed_run_is_not_listed_as_running(home, capsys):
    with Store.open(home) as store:
        store.add_run("killed", None, "tiny", {}, home / "runs" / "killed")  # status running
    (home / "runs" / "killed").mkdir(parents=True)
    (home / "runs" / "killed" / "pid").write_text("999999 12345.0\n")  # a process that is gone
    assert _list(home, capsys)["killed"]["status"] == "interrupted"


def test_a_rebuilt_index_keeps_runs_and_checkpoints(home, capsys):
    write_dataset(home, "toy", episodes=2, frames=6)
    assert main(["--home", str(home), "finetune", "--dataset", "toy", *TRAIN, "--run-id", "kept",
                 "--stop-at-step", "2"]) == 0
    capsys.readouterr()
    with Store.open(home) as store:
        before = {(c.step, c.path) for c in store.checkpoints("kept")}
        assert len(before) == 2 and store.run("kept").status == "cancelled"
        first, second = store.checkpoints("kept")
        store.delete_run("kept", delete_files=False)  # ids of a rebuilt index differ from the old ones
        store.add_run("kept", "toy", "tiny", {}, home / "runs" / "kept")
        store.update_run("kept", status="cancelled")
        for ck in (second, first):
            store.add_checkpoint("kept", ck.step, ck.path, ck.metrics)
        linked = store.checkpoints("kept")[1]  # step 2, registered first: its id differs from a rebuilt one's
        w = store.begin_episode(dataset="rollouts", task="t", fps=10.0, source="policy", checkpoint_id=linked.id,
                                lowdim={"action": (6,)})
        for i in range(3):
            w.add_tick(t=i / 10, values={"action": [0.0] * 6})
        rollout = w.finish()
    for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm"):
        (home / name).unlink(missing_ok=True)
    assert main(["--home", str(home), "store", "check", "--repair"]) == 0
    out = capsys.readouterr().out
    assert "fine-tune run kept" in out and "re-indexed (cancelled, 2 checkpoints)" in out
    with Store.open(home) as store:
        run = store.run("kept")
        assert run.status == "cancelled" and run.dataset == "toy" and run.model == "tiny"
        assert {(c.step, c.path) for c in store.checkpoints("kept")} == before
        ep = store.episode(rollout.uuid)  # the rollout episode links to the same checkpoint folder again
        assert ep.checkpoint_id is not None and store.checkpoint(ep.checkpoint_id).path == linked.path


def test_a_lost_index_beside_runs_only_is_refused_then_rebuilt(home, capsys):
    write_dataset(home, "toy", episodes=2, frames=6)
    assert main(["--home", str(home), "finetune", "--dataset", "toy", *TRAIN, "--run-id", "only",
                 "--stop-at-step", "1"]) == 0
    import shutil

    shutil.rmtree(home / "episodes")
    for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm"):
        (home / name).unlink(missing_ok=True)
    capsys.readouterr()
    assert main(["--home", str(home), "finetune", "list"]) == 2  # not a silent new, empty store
    assert "holds fine-tune runs" in capsys.readouterr().err
    assert main(["--home", str(home), "store", "check", "--repair"]) == 0
    assert _list(home, capsys)["only"]["status"] == "cancelled"
