"""The Rollout review groups rollouts by the checkpoint the store linked them to (not by an editable tag), and
its list is one page of SQL, not every episode of the store."""

import numpy as np
import pytest

from tests.rollout_doubles import FixedChunkPolicy

pytestmark = pytest.mark.gui


def _rates(review):
    return {review.rates.item(r, 0).text(): review.rates.item(r, 1).text() for r in range(review.rates.rowCount())}


def _column(review, c):
    return [review.table.item(r, c).text() for r in range(review.table.rowCount())]


def test_rollout_with_edited_tags_stays_under_its_checkpoint(home, qtbot):
    from recorder.devices.rig import load_rig, sim_rig_config
    from recorder.rollout import ChunkConfig, RolloutConfig, run_rollouts
    from studio.context import AppContext
    from studio.rollout.review import RolloutReviewWidget

    ctx = AppContext(home=home)
    folder = home / "runs" / "run-x" / "checkpoints" / "0000020"
    folder.mkdir(parents=True)
    ctx.store.add_run("run-x", None, "tiny", {}, path=home / "runs" / "run-x")
    ck = ctx.store.add_checkpoint("run-x", 20, folder, {})
    rig = load_rig(sim_rig_config(teleop="scripted", width=160, height=120))
    rig.connect()
    try:
        policy = FixedChunkPolicy(chunk_size=4, step=0.5, checkpoint_id=None)
        policy.checkpoint_dir = folder  # what load_local_policy gives a local checkpoint
        cfg = RolloutConfig(instruction="pick up the red cube", episodes=1, fps=15.0, max_seconds=0.4, seed=3,
                            chunk=ChunkConfig(execute=2, asynchronous=False))
        info = run_rollouts(rig, policy, ctx.store, cfg).episodes[0]
    finally:
        rig.disconnect()
    try:
        assert ctx.store.episode(info.id).checkpoint_id == ck.id
        # a person retags the rollout in the Datasets tab: its ckpt: tag is gone
        ctx.store.update_episode(info.id, tags=["reviewed"])
        review = RolloutReviewWidget(ctx)
        qtbot.addWidget(review)
        review.refresh()
        assert _column(review, 1) == ["run-x/20"]
        assert _rates(review) == {"run-x/20": "0/1"}
    finally:
        ctx.close()


def _policy_episode(store, *, success, checkpoint_id=None, tags=()):
    w = store.begin_episode(dataset="rollouts", task="pick", fps=10.0, source="policy",
                            lowdim={"observation.state": (2,), "action": (2,)}, checkpoint_id=checkpoint_id,
                            tags=tags)
    for t in range(2):
        w.add_tick(t=t / 10.0, frames={}, timestamps={}, values={"observation.state": np.zeros(2, np.float32),
                                                                  "action": np.zeros(2, np.float32)})
    return w.finish(success=success).id


def test_review_lists_a_page_of_rollouts_and_counts_all_of_them(home, qtbot, monkeypatch):
    import studio.rollout.review as rr
    from recorder.store import Store
    from studio.context import AppContext

    ctx = AppContext(home=home)
    store = ctx.store
    store.add_run("run-y", None, "tiny", {}, path=home / "runs" / "run-y")
    ck = store.add_checkpoint("run-y", 5, home / "runs" / "run-y" / "checkpoints" / "0000005", {})
    # two rollouts of an older store (no checkpoint_id, the tag names the checkpoint), three linked ones
    old = [_policy_episode(store, success=s, tags=["ckpt:old/1"]) for s in (True, False)]
    new = [_policy_episode(store, success=s, checkpoint_id=ck.id, tags=["ckpt:stale", "head:flow"])
           for s in (True, True, None)]

    def every_episode(*a, **k):
        raise AssertionError("the review loaded every episode")

    monkeypatch.setattr(Store, "episodes", every_episode)
    monkeypatch.setattr(rr, "LIST_LIMIT", 3, raising=False)
    try:
        review = rr.RolloutReviewWidget(ctx)
        qtbot.addWidget(review)
        review.refresh()
        assert _column(review, 0) == [str(i) for i in reversed(new)]  # the newest page, not the older rollouts
        assert not set(_column(review, 0)) & {str(i) for i in old}
        assert _column(review, 1) == ["run-y/5 (flow)"] * 3
        assert review.list_label.text() == "Stored rollouts: the newest 3 of 5"
        # the rates count every rollout, not only the listed page
        assert _rates(review) == {"old/1": "1/2", "run-y/5 (flow)": "2/2"}
        review.table.selectRow(0)  # a listed row still opens for playback
        assert review.tick_label.text() == "tick 1/2"
        review.close_reader()
    finally:
        ctx.close()


def test_review_plays_a_rollouts_frames_decoded_off_the_gui_thread(home, qtbot, monkeypatch):
    import threading

    from recorder.devices.rig import load_rig, sim_rig_config
    from recorder.rollout import ChunkConfig, RolloutConfig, run_rollouts
    from recorder.store import EpisodeReader
    from studio.context import AppContext
    from studio.rollout.review import RolloutReviewWidget

    ctx = AppContext(home=home)
    rig = load_rig(sim_rig_config(teleop="scripted", width=160, height=120))
    rig.connect()
    try:
        cfg = RolloutConfig(instruction="pick up the red cube", episodes=1, fps=15.0, max_seconds=0.5, seed=3,
                            chunk=ChunkConfig(execute=2, asynchronous=False))
        info = run_rollouts(rig, FixedChunkPolicy(chunk_size=4, step=0.5, camera_names=("front",)), ctx.store,
                            cfg).episodes[0]
    finally:
        rig.disconnect()
    with EpisodeReader(info) as r:
        expected = {cam: r.frame(cam, 3) for cam in r.cameras}
    decoded_on = []
    real_frame = EpisodeReader.frame

    def frame(self, camera, i):
        decoded_on.append(threading.current_thread() is threading.main_thread())
        return real_frame(self, camera, i)

    monkeypatch.setattr(EpisodeReader, "frame", frame)
    review = RolloutReviewWidget(ctx)
    qtbot.addWidget(review)
    try:
        review.refresh()
        review.table.selectRow(0)
        assert set(review.views) == {"front", "wrist"}  # the cameras are laid out at once
        with qtbot.waitSignal(review.player.frame_shown, timeout=10000, check_params_cb=lambda t: t == 3):
            review.slider.setValue(3)
        assert review.tick_label.text() == f"tick 4/{info.num_frames}"
        for cam, view in review.views.items():
            assert view.image_size() == (160, 120)
            np.testing.assert_array_equal(view._array, expected[cam])  # the stored picture of that tick
        assert review._overlay_data["front"].mode == "playback"  # with the overlays it had live
        assert decoded_on and not any(decoded_on)  # every frame was decoded off the GUI thread
    finally:
        review.shutdown()
        ctx.close()


def test_the_evaluation_plot_is_made_when_its_section_is_opened_not_with_the_tab(home, qtbot):
    # building the Rollout tab does not pay for the open-loop plot (a pyqtgraph plot, ~20 ms of one GUI pass):
    # it appears when the person opens "Open-loop evaluation"
    from studio.context import AppContext
    from studio.rollout.review import RolloutReviewWidget

    ctx = AppContext(home=home)
    try:
        review = RolloutReviewWidget(ctx)
        qtbot.addWidget(review)
        review.show()
        qtbot.waitExposed(review)
        qtbot.wait(50)
        assert review.eval_plot.plot is None  # the Rollouts section is on screen, the evaluation's is not
        titles = [review.sections.tabText(i) for i in range(review.sections.count())]
        review.sections.setCurrentIndex(titles.index("Open-loop evaluation"))
        qtbot.waitUntil(lambda: review.eval_plot.plot is not None and review.eval_plot.plot.isVisible())
        assert review.curve_predicted.getData()[0] is None or len(review.curve_predicted.getData()[0]) == 0
    finally:
        ctx.close()
