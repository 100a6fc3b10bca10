"""Meta-World end to end on the CPU: expert demos of two tasks -> tiny-model fine-tune -> rollouts per task."""

import io

import numpy as np
import pytest

from finetune.recipe import FinetuneRecipe
from finetune.run_config import FinetuneConfig
from finetune.runtime import load_policy
from recorder.devices.rig import load_rig, read_rig_config
from recorder.rollout import ChunkConfig, RolloutConfig, run_rollouts
from recorder.store import Store
from studio.commands.record import run_record
from tests.finetune.synth_store import one_torch_thread  # noqa: F401

pytestmark = pytest.mark.slow

TASKS = "reach-v3,button-press-topdown-v3"
INSTRUCTIONS = ["Reach a goal position", "Press a button from the top"]


def _rig_file(path, max_steps: int = 500):
    path.write_text(f'name = "mw-two"\nteleop = "scripted"\n[robot]\ntype = "metaworld"\ntasks = "{TASKS}"\n'
                    f"max_steps = {max_steps}\n"
                    '[cameras.corner2]\ntype = "metaworld"\nwidth = 56\nheight = 56\nshadows = false\n')
    return path


def test_two_task_demos_finetune_and_rollout_report_success_per_task(home, tmp_path):
    out = io.StringIO()
    assert run_record(home, str(_rig_file(tmp_path / "rec.toml")), "mw", None, 2, fps=None, scripted=True, seed=0,
                      out=out) == 0, out.getvalue()

    cfg = FinetuneConfig(dataset="mw", model="tiny", action_head="chunk", chunk_size=4, use_state=True,
                         augment=False, steps=3, batch_size=4, lr=1e-3, lora_rank=4, val_fraction=0.0,
                         eval_every=0, eval_batches=1, save_every=10**9, log_every=1, device="cpu")
    result = FinetuneRecipe(cfg, home, run_id="mw-tiny").run()
    assert result.status == "done" and result.step == 3
    policy = load_policy(result.checkpoint, device="cpu")
    assert (policy.action_dim, list(policy.camera_names)) == (4, ["corner2"])

    rig = load_rig(read_rig_config(_rig_file(tmp_path / "roll.toml", max_steps=12)))
    rig.connect()
    try:
        with Store.open(home) as store:
            res = run_rollouts(rig, policy, store,
                               RolloutConfig(instruction="unused: the rig gives each episode its task", episodes=2,
                                             fps=80.0, max_seconds=30.0, seed=0, dataset="mw-rollouts",
                                             chunk=ChunkConfig(execute=2, asynchronous=False)))
            eps = store.episodes(dataset="mw-rollouts")
            assert [e.task for e in eps] == INSTRUCTIONS  # each episode ran its own task, told by its instruction
            assert all(e.num_frames == 12 for e in eps)  # the robot's step limit ended each episode
            with store.open_episode(eps[0].id) as r:
                actions = r.lowdim()["action"]
            assert actions.shape == (12, 4) and np.abs(actions).max() <= 1.0
    finally:
        rig.disconnect()
    per_task = res.per_task()
    assert list(per_task) == INSTRUCTIONS and all(n == 1 for _k, n in per_task.values())
    assert all(isinstance(s, bool) for s in res.successes)
