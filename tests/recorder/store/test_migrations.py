import sqlite3

import pytest

from recorder.errors import SchemaTooNewError
from recorder.store import Store
from recorder.store import models as m


def test_migrations_from_empty_match_the_models(home):
    from pathlib import Path

    from alembic.autogenerate import compare_metadata
    from alembic.config import Config
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    Store.open(home).close()
    con = sqlite3.connect(home / "index.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    uv = con.execute("PRAGMA user_version").fetchone()[0]
    assert m.unpack_user_version(uv) == (m.SCHEMA_MAJOR, m.SCHEMA_MINOR)
    assert con.execute("SELECT version_num FROM alembic_version").fetchone()[0] == m.HEAD_REVISION
    con.close()

    import recorder.store.store as store_mod

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(store_mod.__file__).parent / "migrations"))
    assert ScriptDirectory.from_config(cfg).get_current_head() == m.HEAD_REVISION

    engine = store_mod.make_engine(home / "index.sqlite")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), m.Base.metadata)
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()
    assert diff == [], f"models and migrations disagree: {diff}"


def test_newer_schema_is_refused_with_one_line(home):
    Store.open(home).close()
    con = sqlite3.connect(home / "index.sqlite")
    con.execute(f"PRAGMA user_version = {m.pack_user_version(m.SCHEMA_MAJOR + 1, 0)}")
    con.commit()
    con.close()
    with pytest.raises(SchemaTooNewError) as err:
        Store.open(home)
    msg = str(err.value)
    assert "\n" not in msg and "index.sqlite" in msg and "upgrade vla-studio" in msg


def test_unknown_revision_with_compatible_minor_opens(home):
    Store.open(home).close()
    con = sqlite3.connect(home / "index.sqlite")
    con.execute(f"PRAGMA user_version = {m.pack_user_version(m.SCHEMA_MAJOR, m.SCHEMA_MINOR + 1)}")
    con.execute("UPDATE alembic_version SET version_num = 'ffff'")
    con.commit()
    con.close()
    with Store.open(home) as store:  # a compatible addition by a newer version: still readable
        assert store.datasets() == []


def _store_at_revision_0001(home):
    """A store as the 0001-era vla-studio left it: schema 0001, user_version 1.0, rows of every kind."""
    from pathlib import Path

    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    import recorder.store.store as store_mod

    home.mkdir(parents=True)
    (home / "episodes").mkdir()
    engine = store_mod.make_engine(home / "index.sqlite")
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(store_mod.__file__).parent / "migrations"))
    when = "2026-11-01 10:00:00.000000"
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.exec_driver_sql(f"PRAGMA user_version={m.pack_user_version(1, 0)}")
        conn.execute(
            sa.text(
                "INSERT INTO datasets (id, name, features, created_at, version) "
                "VALUES (1, 'old', '{\"fps\": 30.0}', :when, 3)"
            ),
            {"when": when},
        )
        for eid, status in ((1, "complete"), (2, "trashed"), (3, "trashed"), (4, "recovered")):
            conn.execute(
                sa.text(
                    "INSERT INTO episodes (id, uuid, dataset_id, task, rig, fps, start_time, duration_s, num_frames,"
                    " status, source, success, notes, dropped, segments, checkpoint_id, updated_at) VALUES"
                    " (:id, :uuid, 1, :task, '{\"robot\": \"sim\"}', 30.0, :when, 1.0, 30, :status, 'teleop', 1,"
                    ' \'old note\', \'{"front": 2}\', \'[{"kind": "takeover", "start_tick": 3, "end_tick": 5}]\','
                    " NULL, :when)"
                ),
                {
                    "id": eid,
                    "uuid": f"00000000-0000-0000-0000-00000000000{eid}",
                    "task": f"task {eid}",
                    "when": when,
                    "status": status,
                },
            )
            conn.execute(
                sa.text(
                    "INSERT INTO streams (episode_id, name, kind, shape, dtype, codec, path, num_frames, options)"
                    " VALUES (:id, 'front', 'video', '[24, 32, 3]', 'uint8', 'h264', 'video/front.mp4', 30,"
                    ' \'{"width": 32, "height": 24, "codec": "h264"}\'),'
                    " (:id, 'action', 'lowdim', '[6]', 'float32', 'arrow', 'lowdim.arrows', 30, '{}')"
                ),
                {"id": eid},
            )
        # the curation workaround of that era: a hidden tag on episode 2 (trashed while 'recovered')
        conn.execute(
            sa.text(
                "INSERT INTO episode_tags (episode_id, tag) VALUES (1, 'good'), (2, '_was:recovered'), (2, 'day1')"
            )
        )
    engine.dispose()


def test_a_0001_store_is_migrated_and_keeps_its_rows(home):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import recorder.store.store as store_mod

    _store_at_revision_0001(home)
    with Store.open(home) as store:
        eps = store.episodes(status=None)
        assert [(e.id, e.task, e.status) for e in eps] == [
            (1, "task 1", "complete"),
            (2, "task 2", "trashed"),
            (3, "task 3", "trashed"),
            (4, "task 4", "recovered"),
        ]
        one = eps[0]
        assert one.tags == ("good",) and one.notes == "old note" and one.dropped == {"front": 2}
        assert one.cameras["front"].width == 32 and one.lowdim["action"].shape == (6,)
        assert one.segments[0]["kind"] == "takeover" and one.rig == {"robot": "sim"}
        assert store.dataset("old").num_episodes == 2
        # the hidden tag became the new column; restore returns exactly the old status
        assert eps[1].tags == ("day1",) and eps[1].status_before_trash == "recovered"
        assert eps[2].status_before_trash == "complete"
        assert store.restore_episode(2).status == "recovered"
        assert store.restore_episode(3).status == "complete"
        # and the column works for new trashes
        assert store.update_episode(4, status="trashed").status_before_trash == "recovered"
    with Store.open(home) as store:
        assert store.restore_episode(4).status == "recovered"
    con = sqlite3.connect(home / "index.sqlite")
    assert con.execute("SELECT version_num FROM alembic_version").fetchone()[0] == m.HEAD_REVISION
    assert m.unpack_user_version(con.execute("PRAGMA user_version").fetchone()[0]) == (1, m.SCHEMA_MINOR)
    assert con.execute("SELECT count(*) FROM streams").fetchone()[0] == 8
    con.close()
    engine = store_mod.make_engine(home / "index.sqlite")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), m.Base.metadata)
    engine.dispose()
    assert diff == [], f"a migrated 0001 store differs from the models: {diff}"


def _alembic(home, action: str, revision: str, user_version: tuple[int, int] | None = None) -> None:
    """Run an Alembic upgrade/downgrade on the store's index as the store does (optionally set user_version)."""
    from pathlib import Path

    from alembic import command
    from alembic.config import Config

    import recorder.store.store as store_mod

    engine = store_mod.make_engine(home / "index.sqlite")
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(store_mod.__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, action)(cfg, revision)
        if user_version is not None:
            conn.exec_driver_sql(f"PRAGMA user_version={m.pack_user_version(*user_version)}")
    engine.dispose()


def test_downgrade_to_0001_keeps_rows_and_puts_the_old_tag_back(home):
    _store_at_revision_0001(home)
    Store.open(home).close()  # -> head
    _alembic(home, "downgrade", "0001")
    con = sqlite3.connect(home / "index.sqlite")
    cols = [r[1] for r in con.execute("PRAGMA table_info(episodes)")]
    assert "status_before_trash" not in cols
    assert con.execute("SELECT count(*) FROM streams").fetchone()[0] == 8
    assert con.execute("SELECT episode_id FROM episode_tags WHERE tag = '_was:recovered'").fetchall() == [
        (2,)
    ]
    con.close()


def _indexes(home) -> set[str]:
    con = sqlite3.connect(home / "index.sqlite")
    try:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
                if not r[0].startswith("sqlite_")}
    finally:
        con.close()


def test_a_0002_store_gets_the_filter_indexes_and_keeps_its_rows(home):
    """A store left by the previous schema (0002) upgrades to the filter indexes (0003); the downgrade
    puts the 0002 indexes back."""
    from recorder.store.query import EpisodeQuery
    from tests.recorder.store.helpers import SQLLog, full_scans

    _store_at_revision_0001(home)
    _alembic(home, "upgrade", "0002", user_version=(1, 1))
    before = _indexes(home)
    assert "ix_episodes_dataset_status" in before and "ix_episodes_task_success_start" not in before

    with Store.open(home) as store, SQLLog() as log:
        assert [e.id for e in store.episodes(task="task 1", success=True)] == [1]
        assert [e.id for e in store.episodes(tags="good")] == [1]
        assert store.count_episodes(EpisodeQuery(status="trashed")) == 2
        assert store.dataset("old").num_frames == 60
    assert full_scans(home / "index.sqlite", log.selects) == []
    after = _indexes(home)
    assert {"ix_episodes_task_success_start", "ix_episodes_status_start", "ix_episodes_source_status",
            "ix_episodes_success_status", "ix_episodes_status_duration", "ix_episodes_dataset_status_frames",
            "ix_episodes_dataset_id",
            "ix_episode_tags_tag_episode"} <= after
    assert "ix_episodes_dataset_status" not in after
    con = sqlite3.connect(home / "index.sqlite")
    assert con.execute("SELECT count(*) FROM episodes").fetchone()[0] == 4
    assert con.execute("SELECT count(*) FROM streams").fetchone()[0] == 8
    con.close()

    _alembic(home, "downgrade", "0002")
    assert _indexes(home) == before
