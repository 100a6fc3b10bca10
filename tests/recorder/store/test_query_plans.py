"""Every episode filter the store offers is answered through an index (``EXPLAIN QUERY PLAN``), so a
100k-episode store lists, filters, pages and counts without reading every row; a later schema or
query change that falls back to a full table scan fails here."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from recorder.store import Store
from recorder.store.query import SORT_KEYS, EpisodeQuery
from tests.recorder.store.helpers import SQLLog, full_scans, plan, record

NOW = datetime.now(UTC)

QUERIES = {
    "default (usable episodes)": EpisodeQuery(),
    "dataset": EpisodeQuery(dataset="demo"),
    "datasets": EpisodeQuery(dataset=("demo", "other")),
    "task": EpisodeQuery(task="pick up the red cube"),
    "task contains": EpisodeQuery(task_contains="red"),
    "success": EpisodeQuery(success=True),
    "failure": EpisodeQuery(success=False),
    "unlabelled": EpisodeQuery(success=None),
    "source": EpisodeQuery(source="policy"),
    "tag": EpisodeQuery(tags=("good",)),
    "two tags": EpisodeQuery(tags=("good", "day1")),
    "since": EpisodeQuery(since=NOW - timedelta(days=1)),
    "date range": EpisodeQuery(since=NOW - timedelta(days=1), until=NOW + timedelta(days=1)),
    "duration": EpisodeQuery(min_duration=0.2),
    "max duration": EpisodeQuery(max_duration=10.0),
    "trash": EpisodeQuery(status="trashed"),
    "any status": EpisodeQuery(status=None, dataset="demo"),
    "checkpoint": EpisodeQuery(checkpoint_id=1),
    "task + success + date": EpisodeQuery(task="pick up the red cube", success=True, since=NOW - timedelta(days=1)),
    "dataset + source + tag": EpisodeQuery(dataset="demo", source="teleop", tags=("good",)),
}


#: what the index search of each query must constrain (the filter's own column, not just the status)
EXPECT = {
    "default (usable episodes)": "SEARCH episodes USING COVERING INDEX ix_episodes_status",
    "dataset": "(dataset_id=? AND status=?)",  # the count; a page in id order uses ix_episodes_dataset_id
    "datasets": "(dataset_id=? AND status=?)",
    "task": "(task=?",
    "task contains": "(status=?)",  # a substring cannot use a b-tree: the status index narrows it
    "success": "(success=? AND status=?)",
    "failure": "(success=? AND status=?)",
    "unlabelled": "(success=? AND status=?)",
    "source": "(source=? AND status=?)",
    "tag": "SEARCH episode_tags USING COVERING INDEX ix_episode_tags_tag_episode (tag=?)",
    "two tags": "SEARCH episode_tags USING COVERING INDEX ix_episode_tags_tag_episode (tag=?)",
    "since": "(status=? AND start_time>?)",
    "date range": "(status=? AND start_time>? AND start_time<?)",
    "duration": "(status=? AND duration_s>?)",
    "max duration": "(status=? AND duration_s<?)",
    "trash": "(status=?)",
    "any status": "(dataset_id=?)",
    "checkpoint": "(checkpoint_id=?)",
    "task + success + date": "(task=? AND success=? AND start_time>?)",
    "dataset + source + tag": "episode_tags",
}


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("plans") / "store"
    with Store.open(root) as store:
        record(store, n=3, tags=("good",))
        record(store, n=3, dataset="other", success=False, source="policy")
    return root


@pytest.mark.parametrize("name", list(QUERIES))
def test_each_filter_pages_and_counts_through_an_index(small_store, name):
    q = QUERIES[name]
    with Store.open(small_store) as store, SQLLog() as log:
        store.count_episodes(q)
        store.episode_ids(q)
        first = store.episode_page(q, descending=True, limit=50)
        store.episode_page(q, descending=True, after=(1, 10**9), limit=50)  # a later page (keyset)
    assert first is not None
    assert log.selects, "no SQL was captured"
    assert full_scans(small_store / "index.sqlite", log.selects) == []
    count = next(s for s in log.selects if "count(" in s[0])
    lines = plan(small_store / "index.sqlite", *count)
    assert any(EXPECT[name] in line for line in lines), f"{name}: {lines}"


def test_keyword_filters_datasets_and_counts_use_indexes(small_store):
    with Store.open(small_store) as store, SQLLog() as log:
        assert len(store.episodes()) == 2
        store.episodes(dataset="demo", task="pick up the red cube", success=True, source="teleop", tags="good",
                       since=NOW - timedelta(days=1), until=NOW + timedelta(days=1))
        store.episodes(status=("trashed",))
        store.episodes(checkpoint_id=1)
        store.datasets()
        store.dataset("demo")
        store.recover()
    assert log.touching("episodes.task =") and log.touching("episode_tags.tag =")
    assert full_scans(small_store / "index.sqlite", log.selects) == []


def test_sorted_pages_use_an_index_for_the_filter(small_store):
    with Store.open(small_store) as store, SQLLog() as log:
        for key in SORT_KEYS:
            store.episode_page(EpisodeQuery(dataset="demo"), sort=key, limit=20)
    assert full_scans(small_store / "index.sqlite", log.selects) == []


def test_the_check_itself_catches_a_scan(small_store):
    """The plan check is not vacuous: a filter on a column without an index is reported."""
    stmt = "SELECT id FROM episodes WHERE notes = ?"
    assert len(full_scans(small_store / "index.sqlite", [(stmt, ("x",))])) == 1
    unbounded = "SELECT episodes.id FROM episodes WHERE episodes.notes = ? ORDER BY episodes.id DESC"
    assert len(full_scans(small_store / "index.sqlite", [(unbounded, ("x",))])) == 1


def test_the_newest_page_is_read_in_id_order_without_sorting_the_store(small_store):
    """The table's first page (newest first) walks ids from the newest one: no sort of every usable episode."""
    with Store.open(small_store) as store, SQLLog() as log:
        store.episode_rows(EpisodeQuery(), descending=True, limit=100)
        store.episode_rows(EpisodeQuery(dataset="demo"), descending=True, after=(9, 9), limit=100)
    pages = log.touching("ORDER BY episodes.id DESC", "LIMIT")
    assert pages
    for stmt, params in pages:
        assert not any("TEMP B-TREE" in line for line in plan(small_store / "index.sqlite", stmt, params)), stmt
    con = sqlite3.connect(small_store / "index.sqlite")
    names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    con.close()
    assert {"ix_episodes_task_success_start", "ix_episode_tags_tag_episode"} <= names


def test_episode_rows_match_the_full_records_and_use_indexes(small_store):
    """The light listing (what `datasets show` prints) agrees with the full records, through indexes."""
    with Store.open(small_store) as store:
        store.update_episode(1, tags=["good", "day1"], notes="n")
        with SQLLog() as log:
            for q in (EpisodeQuery(), EpisodeQuery(tags=("good",)), EpisodeQuery(dataset="other", success=False)):
                rows = store.episode_rows(q)
                full = store.episodes(query=q)
                assert [(r.id, r.uuid, r.dataset, r.task, r.start_time, r.num_frames, r.status, r.source, r.success,
                         r.tags, r.notes) for r in rows] == [
                    (e.id, e.uuid, e.dataset, e.task, e.start_time, e.num_frames, e.status, e.source, e.success,
                     e.tags, e.notes) for e in full]
            assert [r.id for r in store.episode_rows(EpisodeQuery(), descending=True, limit=1)] == [2]
    assert full_scans(small_store / "index.sqlite", log.selects) == []
