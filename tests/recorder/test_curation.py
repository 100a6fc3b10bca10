"""Curation: edits that persist, trash/restore/purge, split, merge, statistics."""

from __future__ import annotations

import numpy as np
import pytest

from recorder import curation
from recorder.errors import DatasetError, StoreError
from recorder.store import Store
from tests.recorder.test_lerobot import make_episode


@pytest.fixture
def store(home):
    s = Store.open(home)
    yield s
    s.close()


def test_edits_persist_across_reopen(home):
    store = Store.open(home)
    e, _, _ = make_episode(store, n=3)
    curation.edit_episode(store, e.id, task="stack the cubes", success=True, tags=["good", "day1"],
                          notes="clean grasp")
    store.close()
    store = Store.open(home)
    got = store.episode(e.id)
    assert (got.task, got.success, set(got.tags), got.notes) == ("stack the cubes", True, {"good", "day1"},
                                                                 "clean grasp")
    curation.edit_episode(store, e.id, success=None)  # clear only the label
    assert store.episode(e.id).success is None and store.episode(e.id).task == "stack the cubes"
    with pytest.raises(DatasetError, match="cannot be empty"):
        curation.edit_episode(store, e.id, task="  ")
    store.close()


def test_trash_restore_purge(store):
    a, _, _ = make_episode(store, n=3, seed=1)
    b, _, _ = make_episode(store, n=3, seed=2)
    curation.trash(store, [a.id])
    assert [e.id for e in store.episodes(dataset="demo")] == [b.id]
    assert (a.path / "meta.json").exists()
    curation.restore(store, [a.id])
    assert [e.id for e in store.episodes(dataset="demo")] == [a.id, b.id]
    assert store.episode(a.id).status == "complete"
    with pytest.raises(DatasetError, match="not in the trash"):
        curation.restore(store, [a.id])
    curation.trash(store, [b.id])
    curation.purge(store, [b.id])
    assert not b.path.exists()
    assert [e.id for e in store.episodes(dataset="demo", status=None) if e.status != "discarded"] == [a.id]


def test_split_by_episode_is_seeded_and_tags_every_episode(store):
    ids = [make_episode(store, n=2, seed=i)[0].id for i in range(10)]
    parts = curation.split(store, "demo", val=0.2, seed=7)
    assert len(parts["val"]) == 2 and sorted(parts["train"] + parts["val"]) == ids
    assert {e.id for e in store.episodes(dataset="demo", tags=["split:val"])} == set(parts["val"])
    again = curation.split(store, "demo", val=0.2, seed=7)
    assert again == parts
    for e in store.episodes(dataset="demo"):
        assert sum(t.startswith("split:") for t in e.tags) == 1
    other = curation.split(store, "demo", val=0.2, seed=8)
    assert other["val"] != parts["val"] or len(ids) < 3


def test_merge_same_features_moves_episodes(store):
    a, _, _ = make_episode(store, dataset="A", n=3)
    b, _, _ = make_episode(store, dataset="B", n=4)
    moved = curation.merge(store, ["A", "B"], "C")
    assert sorted(e.id for e in moved) == [a.id, b.id]
    assert {e.id for e in store.episodes(dataset="C")} == {a.id, b.id}
    assert store.episodes(dataset="A") == []


def test_merge_copy_keeps_sources_and_content(store):
    a, state, _ = make_episode(store, dataset="A", n=4, segments=[("takeover", 1, 2)], tags=["x"])
    copies = curation.merge(store, ["A"], "C", copy=True)
    assert len(copies) == 1 and store.episodes(dataset="A")[0].id == a.id
    c = copies[0]
    assert c.task == a.task and "x" in c.tags and c.segments[0]["kind"] == "takeover"
    with store.open_episode(c.id) as r:
        np.testing.assert_array_equal(r.lowdim()["observation.state"], state)


def test_merge_different_features_names_the_difference(store):
    make_episode(store, dataset="A", n=2)
    make_episode(store, dataset="B", n=2, cameras=("front",))
    with pytest.raises(DatasetError, match="camera 'wrist' only in A"):
        curation.merge(store, ["A", "B"], "C")
    make_episode(store, dataset="D", n=2, state_dim=7)
    with pytest.raises(DatasetError, match=r"'action' has shape \(6,\) in A"):
        curation.merge(store, ["A", "D"], "E")
    with pytest.raises(DatasetError, match="no dataset named"):
        curation.merge(store, ["A", "nope"], "E")


def test_stats_table_matches_numpy(store):
    _, s1, _ = make_episode(store, n=5, seed=1)
    _, s2, _ = make_episode(store, n=5, seed=2)
    rows = {(k, d): st for k, d, st in curation.stats_table(store, "demo")}
    both = np.concatenate([s1, s2]).astype(np.float64)
    assert rows[("observation.state", 3)]["mean"] == pytest.approx(both[:, 3].mean())
    assert rows[("observation.state", 0)]["q99"] == pytest.approx(np.quantile(both[:, 0], 0.99))


def test_unknown_episode_is_a_known_error(store):
    with pytest.raises(StoreError):
        curation.trash(store, [999])
