"""Episode filters, label edits, run/checkpoint bookkeeping and the dataset statistics cache."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from recorder.errors import DatasetError, StoreError
from recorder.store import Store

from .helpers import CAMERAS, action, record

ONE_CAM = {"front": CAMERAS["front"]}


def test_filters(home):
    with Store.open(home) as store:
        a = record(
            store,
            n=3,
            dataset="pick",
            task="pick up the red cube",
            success=True,
            tags=["day1", "good"],
            cameras=ONE_CAM,
        )
        b = record(
            store,
            n=3,
            dataset="pick",
            task="pick up the red cube",
            success=False,
            tags=["day1"],
            source="scripted",
            cameras=ONE_CAM,
        )
        c = record(store, n=3, dataset="push", task="push the red cube", success=None, cameras=ONE_CAM)
        ids = lambda eps: [e.id for e in eps]  # noqa: E731
        assert ids(store.episodes()) == [a.id, b.id, c.id]
        assert ids(store.episodes(dataset="pick")) == [a.id, b.id]
        assert ids(store.episodes(dataset=["pick", "push"])) == [a.id, b.id, c.id]
        assert ids(store.episodes(task="push the red cube")) == [c.id]
        assert ids(store.episodes(success=True)) == [a.id]
        assert ids(store.episodes(success=False)) == [b.id]
        assert ids(store.episodes(source="scripted")) == [b.id]
        assert ids(store.episodes(tags=["day1"])) == [a.id, b.id]
        assert ids(store.episodes(tags=["day1", "good"])) == [a.id]
        assert ids(store.episodes(tags="good")) == [a.id]
        now = datetime.now(UTC)
        assert ids(store.episodes(since=now - timedelta(hours=1))) == [a.id, b.id, c.id]
        assert ids(store.episodes(until=now - timedelta(hours=1))) == []
        assert ids(store.episodes(since=c.start_time)) == [c.id]

        store.update_episode(b.id, status="trashed", tags=["day2"], notes="bad grasp", success=True)
        assert ids(store.episodes(dataset="pick")) == [a.id]
        assert ids(store.episodes(status="trashed")) == [b.id]
        eb = store.episode(b.id)
        assert eb.tags == ("day2",) and eb.notes == "bad grasp" and eb.success is True
        assert store.episode(b.uuid).id == b.id
        ds = {d.name: d for d in store.datasets()}
        assert ds["pick"].num_episodes == 1 and ds["pick"].counts == {"complete": 1, "trashed": 1}
        with pytest.raises(ValueError):
            store.update_episode(a.id, status="bogus")
        with pytest.raises(StoreError, match="episode 999"):
            store.episode(999)


def test_runs_checkpoints_and_rollout_link(home):
    with Store.open(home) as store:
        record(store, n=3, dataset="pick", cameras=ONE_CAM)
        run = store.add_run("lora-r8-abc", "pick", "tiny", {"lr": 1e-4}, home / "runs" / "lora-r8-abc")
        assert run.status == "running" and run.dataset == "pick" and run.path == home / "runs" / "lora-r8-abc"
        (home / "runs" / "lora-r8-abc").mkdir(parents=True)
        ck1 = store.add_checkpoint("lora-r8-abc", 100, run.path / "checkpoints" / "100", {"loss": 1.5})
        ck2 = store.add_checkpoint("lora-r8-abc", 200, run.path / "checkpoints" / "200", {"loss": 0.9})
        assert [c.step for c in store.checkpoints("lora-r8-abc")] == [100, 200]
        assert store.checkpoint(ck2.id).metrics == {"loss": 0.9}
        assert store.find_checkpoint(run.path / "checkpoints" / "200").id == ck2.id
        done = store.update_run("lora-r8-abc", status="done", best_metric=0.9, finished_at=datetime.now(UTC))
        assert done.status == "done" and done.best_metric == 0.9 and done.num_checkpoints == 2
        assert [r.run_id for r in store.runs()] == ["lora-r8-abc"]

        roll = record(store, n=3, dataset="rollouts", source="policy", checkpoint_id=ck2.id, cameras=ONE_CAM)
        assert roll.checkpoint_id == ck2.id
        assert [e.id for e in store.episodes(checkpoint_id=ck2.id)] == [roll.id]
        assert store.episodes(checkpoint_id=ck1.id) == []
        with pytest.raises(StoreError, match="checkpoint id 999"):
            store.begin_episode(dataset="rollouts", fps=30.0, cameras=ONE_CAM, lowdim={}, checkpoint_id=999)

        store.delete_run("lora-r8-abc")
        assert store.runs() == [] and store.checkpoints() == []
        assert not (home / "runs" / "lora-r8-abc").exists()
        kept = store.episode(roll.id)  # the rollout data stays, its link is cleared
        assert kept.status == "complete" and kept.checkpoint_id is None


def test_dataset_stats_cached_and_invalidated(home):
    with Store.open(home) as store:
        a = record(store, n=10, cameras=ONE_CAM)
        s1 = store.dataset_stats("demo")
        acts = np.stack([action(i) for i in range(10)]).astype(np.float64)
        np.testing.assert_allclose(s1["action"]["mean"], acts.mean(0), rtol=1e-6)
        np.testing.assert_allclose(s1["action"]["min"], acts.min(0))
        np.testing.assert_allclose(s1["action"]["q99"], np.quantile(acts, 0.99, axis=0))
        assert set(s1) == {"observation.state", "action"}
        assert store.dataset_stats("demo") == s1  # cached
        record(store, n=20, cameras=ONE_CAM)
        s2 = store.dataset_stats("demo")
        assert s2["action"]["count"] == 30 and s2["action"]["max"] != s1["action"]["max"]
        store.update_episode(a.id, status="trashed")
        assert store.dataset_stats("demo")["action"]["count"] == 20
        with pytest.raises(DatasetError):
            store.dataset_stats("nope")
