"""The Rollout review compares action heads: each checkpoint's rows name the head its rollouts and its
open-loop evaluation ran with."""

import pytest

from tests.finetune.synth_store import write_dataset
from tests.rollout_doubles import FixedChunkPolicy

pytestmark = [pytest.mark.gui, pytest.mark.slow]


class HeadPolicy(FixedChunkPolicy):
    def __init__(self, head, checkpoint_id):
        super().__init__(chunk_size=4, step=0.5, checkpoint_id=checkpoint_id)
        self.action_head = head


def test_review_tables_name_the_head_of_each_checkpoint(home, qtbot):
    from recorder.devices.rig import load_rig, sim_rig_config
    from recorder.evaluation import evaluate_open_loop
    from recorder.rollout import ChunkConfig, RolloutConfig, run_rollouts
    from studio.context import AppContext
    from studio.rollout.review import RolloutReviewWidget

    write_dataset(home, "demos", episodes=1, frames=4)
    ctx = AppContext(home=home)
    rig = load_rig(sim_rig_config(teleop="scripted", width=160, height=120))
    rig.connect()
    try:
        flow, fast = HeadPolicy("flow", "run-a/10"), HeadPolicy("fast", "run-b/10")
        cfg = RolloutConfig(instruction="pick up the red cube", episodes=1, fps=15.0, max_seconds=0.4, seed=3,
                            chunk=ChunkConfig(execute=2, asynchronous=False))
        for policy in (flow, fast):
            run_rollouts(rig, policy, ctx.store, cfg)
        review = RolloutReviewWidget(ctx)
        qtbot.addWidget(review)
        review.refresh()
        rates = sorted(review.rates.item(r, 0).text() for r in range(review.rates.rowCount()))
        assert rates == ["run-a/10 (flow)", "run-b/10 (fast)"]
        result = evaluate_open_loop(flow, ctx.store, dataset="demos", max_ticks=2)
        assert result.action_head == "flow"
        review.show_evaluation(result)
        assert review.mae_table.item(0, 0).text() == "run-a/10 (flow)"
    finally:
        rig.disconnect()
        ctx.close()
