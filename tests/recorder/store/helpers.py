"""Shared helpers for the store tests: smooth synthetic frames and a small episode recorder."""

from __future__ import annotations

import numpy as np

from recorder.store import CameraSpec, Store

H, W = 120, 160


def smooth_image(i: int, k: int = 0, h: int = H, w: int = W) -> np.ndarray:
    """A smooth moving gradient (codec-friendly) that differs per tick ``i`` and camera ``k``."""
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 200 // w + 3 * i) % 256
    g = (y * 200 // h + 2 * i + 40 * k) % 256
    b = np.full_like(r, (60 + 4 * i + 30 * k) % 256)
    return np.dstack([r, g, b]).astype(np.uint8)


def state(i: int) -> np.ndarray:
    return (np.arange(6, dtype=np.float32) * 1.5 + i * 0.25).astype(np.float32)


def action(i: int) -> np.ndarray:
    return (np.arange(6, dtype=np.float32) * -0.5 + i * 0.125 + 0.1).astype(np.float32)


CAMERAS = {"front": CameraSpec(width=W, height=H), "wrist": CameraSpec(width=W, height=H)}
LOWDIM = {"observation.state": (6,), "action": (6,)}


def record(
    store: Store,
    n: int = 12,
    dataset: str = "demo",
    task: str = "pick up the red cube",
    success: bool | None = True,
    source: str = "teleop",
    tags=(),
    cameras=None,
    **kw,
):
    cams = cameras or CAMERAS
    w = store.begin_episode(
        dataset=dataset,
        task=task,
        fps=30.0,
        rig={"robot": "sim"},
        source=source,
        cameras=cams,
        lowdim=LOWDIM,
        tags=tags,
        **kw,
    )
    for i in range(n):
        w.add_tick(
            t=100.0 + i / 30,
            frames={c: smooth_image(i, k) for k, c in enumerate(cams)},
            timestamps={c: 100.0 + i / 30 - 0.01 for c in cams},
            values={"observation.state": state(i), "action": action(i)},
        )
    return w.finish(success=success)


# -- query plans: every filter query the code runs must be served by an index -------------------------------
_BIG_TABLES = ("episodes", "episode_tags", "streams")


class SQLLog:
    """Collects the SELECTs every SQLAlchemy engine of this process runs while in the ``with`` block."""

    def __init__(self) -> None:
        self.selects: list[tuple[str, tuple]] = []

    def _on_execute(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if not executemany and statement.lstrip().upper().startswith("SELECT"):
            self.selects.append((statement, tuple(parameters or ())))

    def __enter__(self) -> SQLLog:
        import sqlalchemy as sa

        sa.event.listen(sa.engine.Engine, "before_cursor_execute", self._on_execute)
        return self

    def __exit__(self, *exc) -> None:
        import sqlalchemy as sa

        sa.event.remove(sa.engine.Engine, "before_cursor_execute", self._on_execute)

    def touching(self, *words: str) -> list[tuple[str, tuple]]:
        """The statements that mention every one of ``words`` (e.g. a column a filter uses)."""
        return [(s, p) for s, p in self.selects if all(w in s for w in words)]


def _bounded_id_walk(stmt: str, plan: list[str]) -> bool:
    """A page in id order (ORDER BY id, LIMIT, no sort): SQLite walks the table's own b-tree from the newest
    (or oldest) id and stops after LIMIT matching rows; EXPLAIN calls that a SCAN, it reads only the page."""
    return "ORDER BY episodes.id" in stmt and " LIMIT " in stmt and not any("TEMP B-TREE" in p for p in plan)


def full_scans(index_path, statements) -> list[str]:
    """``EXPLAIN QUERY PLAN`` of each statement; a description of each one that scans a big table
    (other than a LIMIT-bounded walk in id order)."""
    import re
    import sqlite3

    con = sqlite3.connect(index_path)
    bad = []
    try:
        for stmt, params in statements:
            plan = [row[3] for row in con.execute("EXPLAIN QUERY PLAN " + stmt, params)]
            scans = [line for line in plan if re.match(rf"SCAN ({'|'.join(_BIG_TABLES)})\b", line)]
            if scans and not (scans == ["SCAN episodes"] and _bounded_id_walk(" ".join(stmt.split()), plan)):
                bad.append(f"{' '.join(stmt.split())}\n    plan: {plan}")
    finally:
        con.close()
    return bad


def plan(index_path, statement: str, params: tuple = ()) -> list[str]:
    """The ``EXPLAIN QUERY PLAN`` lines of one statement."""
    import sqlite3

    con = sqlite3.connect(index_path)
    try:
        return [row[3] for row in con.execute("EXPLAIN QUERY PLAN " + statement, params)]
    finally:
        con.close()
def drop_index_row(home, episode_id: int) -> None:
    """Delete an episode's index row behind the store's back (its folder stays: an orphan)."""
    import sqlite3

    con = sqlite3.connect(home / "index.sqlite")
    con.execute("PRAGMA foreign_keys=ON")
    con.execute("DELETE FROM episodes WHERE id = ?", (episode_id,))
    con.commit()
    con.close()
