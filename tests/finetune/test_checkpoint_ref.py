"""One checkpoint identity: every spelling a person types (or the GUI lists) resolves to the same folder."""

import pytest

from finetune.checkpoint_ref import CheckpointRef, in_run, resolve
from recorder.errors import ModelError
from studio.rollout.policy import checkpoint_label, resolve_checkpoint_arg


@pytest.fixture
def run(tmp_path):
    """<home>/runs/pick-run with checkpoints at steps 5 and 10 (last: 10), laid out as save_checkpoint does."""
    run = tmp_path / "runs" / "pick-run"
    for step in (5, 10):
        (run / "checkpoints" / f"{step:07d}" / "adapter").mkdir(parents=True)
    (run / "checkpoints" / "last").write_text("0000010\n")
    (run / "config.json").write_text("{}")
    return run


@pytest.mark.parametrize("spec", ["pick-run", "pick-run/0000010", "pick-run/10", "pick-run @ 10",
                                  "pick-run @ 0000010", "{run}", "{run}/checkpoints", "{run}/checkpoints/0000010"])
def test_every_spelling_of_the_last_checkpoint_is_one_ref(run, spec):
    ref = resolve(spec.format(run=run), home=run.parent.parent)
    assert ref == CheckpointRef(run / "checkpoints" / "0000010", "pick-run", 10)
    assert ref.label == "pick-run/10"
    assert ref.display == "pick-run @ 10"


def test_the_label_the_store_gives_opens_the_checkpoint_again(run):
    """The rollout's label (``run/step`` with the step a number, as the store's index has it) is a spelling
    the rollout command takes back; before, only the zero-padded folder name was found."""
    home = run.parent.parent
    label = checkpoint_label(run / "checkpoints" / "0000005")
    assert label == "pick-run/5"
    assert resolve_checkpoint_arg(label, home) == run / "checkpoints" / "0000005"
    assert resolve_checkpoint_arg("pick-run @ 5", home) == run / "checkpoints" / "0000005"


def test_a_merged_export_is_loaded_as_it_is(tmp_path):
    merged = tmp_path / "export"
    merged.mkdir()
    (merged / "config.json").write_text("{}")
    ref = resolve(str(merged))
    assert ref == CheckpointRef(merged) and ref.label == "export" and not ref.is_run_checkpoint


def test_unknown_spellings_name_what_was_asked(run):
    home = run.parent.parent
    with pytest.raises(ModelError, match=r"checkpoint pick-run/7: no such folder or run in .*/runs"):
        resolve("pick-run/7", home)
    with pytest.raises(ModelError, match="has no checkpoint at step 7"):
        in_run(run, 7)
    (home / "runs" / "empty").mkdir()
    with pytest.raises(ModelError, match="holds no checkpoint"):
        resolve("empty", home)


def test_a_picked_folder_is_named_by_its_place_in_the_layout_before_it_is_read(tmp_path, run):
    # the Rollout tab names a folder the Fine-tune tab opens (maybe still being written) without loading it
    assert CheckpointRef.from_path(tmp_path / "runs" / "r1" / "checkpoints" / "20").display == "r1 @ 20"
    assert CheckpointRef.from_path(tmp_path / "exports" / "merged").display == "merged"
    # and a real step folder gets the same name both ways
    step = run / "checkpoints" / "0000005"
    assert CheckpointRef.from_path(step) == CheckpointRef.from_folder(step) == CheckpointRef(step, "pick-run", 5)
