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
