"""Episode filters as SQL: one builder for ``Store.episodes``, the CLI and the Datasets tab's paged table.

Every filter a person can set (dataset, task, success, source, tags, date range, duration, status,
checkpoint) becomes a WHERE clause that an index of the ``episodes`` table serves (migration 0003;
``tests/recorder/store/test_query_plans.py`` checks the plans), so a store of 100k episodes answers
a filtered page or a count without reading every row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import select

from recorder.store import models as m

#: ``EpisodeQuery.success`` value that does not filter
ANY: Any = "any"
#: default statuses: what lists and training see
USABLE = ("complete", "recovered")

#: sort keys the table offers -> SQL expression (ties broken by id)
SORT_KEYS = {
    "id": m.Episode.id,
    "dataset": m.Dataset.name,
    "task": m.Episode.task,
    "success": sa.case((m.Episode.success.is_(True), 2), (m.Episode.success.is_(False), 0), else_=1),
    "source": m.Episode.source,
    "start": m.Episode.start_time,
    "duration": m.Episode.duration_s,
    "frames": m.Episode.num_frames,
    "status": m.Episode.status,
}


def like_escaped(text: str) -> str:
    """``text`` for a LIKE pattern with ``escape="\\"``: its ``%`` and ``_`` match themselves."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _as_list(v: Any) -> list:
    if isinstance(v, str):
        return [v]
    return list(v)


@dataclass(frozen=True, kw_only=True)
class EpisodeQuery:
    """Which episodes; None / empty / ANY fields do not filter."""

    dataset: str | tuple[str, ...] | None = None
    task: str | None = None  # exact task text
    task_contains: str = ""  # substring, case-insensitive (ASCII)
    success: bool | None | str = ANY  # True / False / None (unlabelled) / ANY
    source: str | tuple[str, ...] | None = None
    tags: tuple[str, ...] = ()  # all of them
    since: datetime | None = None  # start_time >= since
    until: datetime | None = None  # start_time < until
    min_duration: float = 0.0
    max_duration: float | None = None
    status: str | tuple[str, ...] | None = USABLE  # None: any status
    checkpoint_id: int | None = None

    def where(self, status_index: bool = True) -> list[sa.ColumnElement[bool]]:
        """The WHERE clauses (AND-ed) over ``episodes``. ``status_index=False`` writes the status test so
        that SQLite does not pick an index for it (``+status``): a page in id order then walks the table
        backwards from the newest id and stops after LIMIT rows instead of sorting every usable episode."""
        c: list[sa.ColumnElement[bool]] = []
        if self.dataset is not None:
            names = _as_list(self.dataset)
            ids = select(m.Dataset.id).where(m.Dataset.name.in_(names))
            c.append(m.Episode.dataset_id == ids.scalar_subquery() if len(names) == 1
                     else m.Episode.dataset_id.in_(ids))
        if self.task is not None:
            c.append(m.Episode.task == self.task)
        if self.task_contains:
            c.append(m.Episode.task.like(f"%{like_escaped(self.task_contains)}%", escape="\\"))
        if self.success is not ANY:
            c.append(m.Episode.success.is_(None if self.success is None else bool(self.success)))
        if self.source is not None:
            c.append(m.Episode.source.in_(_as_list(self.source)))
        for tag in dict.fromkeys(self.tags):
            c.append(m.Episode.id.in_(select(m.EpisodeTag.episode_id).where(m.EpisodeTag.tag == tag)))
        if self.since is not None:
            c.append(m.Episode.start_time >= self.since)
        if self.until is not None:
            c.append(m.Episode.start_time < self.until)
        if self.min_duration:
            c.append(m.Episode.duration_s >= float(self.min_duration))
        if self.max_duration is not None:
            c.append(m.Episode.duration_s <= float(self.max_duration))
        if self.status is not None:
            st = _as_list(self.status)
            col = m.Episode.status if status_index else sa.literal_column("+episodes.status", sa.String)
            c.append(col == st[0] if len(st) == 1 else col.in_(st))
        if self.checkpoint_id is not None:
            c.append(m.Episode.checkpoint_id == self.checkpoint_id)
        return c


def query_from(
    dataset: str | Iterable[str] | None = None,
    task: str | None = None,
    success: bool | None = None,
    source: str | Iterable[str] | None = None,
    tags: str | Iterable[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    status: str | Iterable[str] | None = USABLE,
    checkpoint_id: int | None = None,
) -> EpisodeQuery:
    """``Store.episodes`` keyword arguments (success None = any) as an :class:`EpisodeQuery`."""
    return EpisodeQuery(
        dataset=None if dataset is None else tuple(_as_list(dataset)),
        task=task,
        success=ANY if success is None else bool(success),
        source=None if source is None else tuple(_as_list(source)),
        tags=() if tags is None else tuple(_as_list(tags)),
        since=since,
        until=until,
        status=None if status is None else tuple(_as_list(status)),
        checkpoint_id=checkpoint_id,
    )


def page_statement(
    q: EpisodeQuery, columns, *, sort: str = "id", descending: bool = False, after: tuple | None = None,
    limit: int | None = None,
):
    """SELECT ``columns`` for ``q`` ordered by (sort key, id); ``after``: the (key, id) of the last row
    of the previous page (keyset paging: each page costs the same, wherever it is)."""
    key = SORT_KEYS.get(sort, m.Episode.id)
    stmt = select(*columns) if isinstance(columns, (list, tuple)) else select(columns)
    if sort == "dataset":
        stmt = stmt.join(m.Dataset, m.Dataset.id == m.Episode.dataset_id)
    # in id order with a LIMIT, walk the ids (the table's own b-tree, or the filter's index, whose entries
    # are in id order too) rather than sort every episode of a status
    stmt = stmt.where(*q.where(status_index=not (key is m.Episode.id and limit is not None)))
    if after is not None:
        last_key, last_id = after
        if sort == "id" or key is m.Episode.id:
            stmt = stmt.where(m.Episode.id < last_id if descending else m.Episode.id > last_id)
        else:
            pair, val = sa.tuple_(key, m.Episode.id), sa.tuple_(sa.literal(last_key, key.type), sa.literal(last_id))
            stmt = stmt.where(pair < val if descending else pair > val)
    if key is m.Episode.id:
        order = [m.Episode.id.desc() if descending else m.Episode.id.asc()]
    else:
        order = [key.desc(), m.Episode.id.desc()] if descending else [key.asc(), m.Episode.id.asc()]
    stmt = stmt.order_by(*order)
    if limit is not None:
        stmt = stmt.limit(int(limit))
    return stmt


def count_statement(q: EpisodeQuery):
    return select(sa.func.count()).select_from(m.Episode).where(*q.where())


def sort_value(info, sort: str):
    """The value of sort key ``sort`` for an EpisodeInfo, as the SQL expression gives it (for ``after``)."""
    if sort == "dataset":
        return info.dataset
    if sort == "success":
        return {True: 2, False: 0, None: 1}[info.success]
    if sort == "start":
        return info.start_time
    if sort == "duration":
        return float(info.duration_s)
    if sort == "frames":
        return int(info.num_frames)
    if sort in ("task", "source", "status"):
        return getattr(info, sort)
    return info.id
