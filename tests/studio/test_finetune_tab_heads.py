"""The Fine-tune tab offers the four action heads, each with its one-line description and memory estimate."""

from __future__ import annotations

import json

import pytest

from tests.finetune.synth_store import write_dataset

pytestmark = pytest.mark.gui


def test_each_action_head_shows_its_description_and_estimate_and_reaches_the_command(home, qtbot, tmp_path):
    from finetune.models.tiny import openvla_7b_config
    from finetune.run_config import ACTION_HEADS
    from studio.context import AppContext
    from studio.finetune.tab import FinetuneTab

    write_dataset(home, "toy", episodes=1, frames=3)
    model = tmp_path / "openvla-7b-shape"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(openvla_7b_config()))  # shape from the config alone
    ctx = AppContext(home=home)
    try:
        tab = FinetuneTab(ctx)
        qtbot.addWidget(tab)
        tab.preset_combo.setCurrentIndex(tab.preset_combo.findData("gpu-80gb"))
        tab.dataset_combo.setCurrentText("toy")
        tab.model_edit.setCurrentText(str(model))
        tab.chunk_spin.setValue(8)
        assert [tab.head_combo.itemText(i) for i in range(tab.head_combo.count())] == list(ACTION_HEADS)
        seen = {}
        for head in ACTION_HEADS:
            tab.head_combo.setCurrentText(head)
            assert tab.head_desc_label.text() == ACTION_HEADS[head]
            seen[head] = tab.estimate_label.text()
            assert f"({head} head)" in seen[head]
            args = tab.build_args(tab.build_config(), "run-x")
            assert args[args.index("--action-head") + 1] == head
        assert len(set(seen.values())) == 4  # the estimate follows the head (tokens, expert, FAST length)
    finally:
        ctx.close()
