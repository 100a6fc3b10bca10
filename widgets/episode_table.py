"""Episode table: a QAbstractTableModel over plain episode records, a filter/sort proxy, and the view."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from PyQt6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt
from PyQt6.QtGui import QColor, QImage
from PyQt6.QtWidgets import QAbstractItemView, QHeaderView, QTableView

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
ID_ROLE = Qt.ItemDataRole.UserRole + 2
THUMB_SIZE = (96, 72)


@dataclass
class Column:
    key: str
    title: str


COLUMNS = [
    Column("thumb", ""),
    Column("id", "ID"),
    Column("dataset", "Dataset"),
    Column("task", "Task"),
    Column("success", "Success"),
    Column("source", "Source"),
    Column("tags", "Tags"),
    Column("start", "Recorded (UTC)"),
    Column("duration", "Duration s"),
    Column("frames", "Frames"),
    Column("dropped", "Dropped"),
    Column("status", "Status"),
]
COL = {c.key: i for i, c in enumerate(COLUMNS)}


def _visible_tags(tags) -> list[str]:
    return [t for t in tags if not t.startswith("_was:")]


def _success_text(v) -> str:
    return {True: "yes", False: "no", None: "-"}[v]


class EpisodeTableModel(QAbstractTableModel):
    """Rows are episode records (objects with the fields of ``recorder.store.EpisodeInfo``)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._rows: list = []
        self._row_of: dict[int, int] = {}
        self._thumbs: dict[int, QImage] = {}

    # -- data in
    def set_episodes(self, episodes: list) -> None:
        self.beginResetModel()
        self._rows = list(episodes)
        self._row_of = {e.id: i for i, e in enumerate(self._rows)}
        self.endResetModel()

    def set_thumbnail(self, episode_id: int, image: QImage) -> None:
        self._thumbs[episode_id] = image
        row = self._row_of.get(episode_id)
        if row is not None:
            idx = self.index(row, COL["thumb"])
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])

    def has_thumbnail(self, episode_id: int) -> bool:
        return episode_id in self._thumbs

    def episode(self, row: int):
        return self._rows[row]

    def episodes(self) -> list:
        return list(self._rows)

    def row_of(self, episode_id: int) -> int | None:
        return self._row_of.get(episode_id)

    # -- Qt model API
    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section].title
        return None

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        e = self._rows[index.row()]
        key = COLUMNS[index.column()].key
        if role == ID_ROLE:
            return e.id
        if role == Qt.ItemDataRole.DecorationRole and key == "thumb":
            return self._thumbs.get(e.id)
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(e, key)
        if role == SORT_ROLE:
            return self._sort_key(e, key)
        if role == Qt.ItemDataRole.ForegroundRole and key == "success":
            return {True: QColor(30, 140, 30), False: QColor(200, 30, 30)}.get(e.success)
        if role == Qt.ItemDataRole.ToolTipRole and key in ("task", "tags"):
            return self._display(e, key) + (f"\n{e.notes}" if e.notes else "")
        return None

    @staticmethod
    def _display(e, key: str):
        if key == "thumb":
            return None
        if key == "id":
            return str(e.id)
        if key == "success":
            return _success_text(e.success)
        if key == "tags":
            return ", ".join(_visible_tags(e.tags))
        if key == "start":
            return e.start_time.strftime("%Y-%m-%d %H:%M:%S") if e.start_time else ""
        if key == "duration":
            return f"{e.duration_s:.1f}"
        if key == "frames":
            return str(e.num_frames)
        if key == "dropped":
            return str(sum((e.dropped or {}).values()))
        return str(getattr(e, key, ""))

    @staticmethod
    def _sort_key(e, key: str):
        if key in ("id", "thumb"):
            return e.id
        if key == "success":
            return {True: 2, False: 0, None: 1}[e.success]
        if key == "start":
            return e.start_time.timestamp() if e.start_time else 0.0
        if key == "duration":
            return float(e.duration_s)
        if key == "frames":
            return int(e.num_frames)
        if key == "dropped":
            return sum((e.dropped or {}).values())
        return EpisodeTableModel._display(e, key).lower()


@dataclass
class EpisodeFilter:
    """What the table shows; empty/None fields do not filter."""

    dataset: str | None = None
    task: str = ""  # substring, case-insensitive
    success: str = "any"  # any | yes | no | unknown
    source: str | None = None
    tag: str = ""  # one tag that must be present (exact)
    since: datetime | None = None
    until: datetime | None = None
    min_duration: float = 0.0
    max_duration: float | None = None

    def accepts(self, e) -> bool:
        if self.dataset and e.dataset != self.dataset:
            return False
        if self.task and self.task.lower() not in (e.task or "").lower():
            return False
        want = {"yes": True, "no": False, "unknown": None}.get(self.success, "any")
        if want != "any" and e.success is not want:
            return False
        if self.source and e.source != self.source:
            return False
        if self.tag and self.tag not in e.tags:
            return False
        start = e.start_time
        if start is not None and start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        if self.since and start and start < self.since:
            return False
        if self.until and start and start > self.until:
            return False
        if e.duration_s < self.min_duration:
            return False
        return not (self.max_duration is not None and e.duration_s > self.max_duration)


class EpisodeFilterProxy(QSortFilterProxyModel):
    """Sorts by each column's natural key (numbers as numbers) and filters with an :class:`EpisodeFilter`."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._filter = EpisodeFilter()
        self.setSortRole(SORT_ROLE)

    @property
    def filter(self) -> EpisodeFilter:
        return self._filter

    def set_filter(self, f: EpisodeFilter) -> None:
        if hasattr(self, "beginFilterChange") and hasattr(self, "endFilterChange"):
            self.beginFilterChange()
            self._filter = f
            self.endFilterChange()
        else:
            self._filter = f
            self.invalidateFilter()

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex) -> bool:  # noqa: N802
        model = self.sourceModel()
        return self._filter.accepts(model.episode(source_row))

    def lessThan(self, left: QModelIndex, right: QModelIndex) -> bool:  # noqa: N802
        a, b = left.data(SORT_ROLE), right.data(SORT_ROLE)
        try:
            return a < b
        except TypeError:
            return str(a) < str(b)


class EpisodeTableView(QTableView):
    """Multi-select, sortable table of episodes with thumbnails."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setSortingEnabled(True)
        self.setAlternatingRowColors(True)
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(THUMB_SIZE[1] // 2 + 6)
        self.setIconSize(self.iconSize().scaled(THUMB_SIZE[0] // 2, THUMB_SIZE[1] // 2,
                                                Qt.AspectRatioMode.KeepAspectRatio))
        self.horizontalHeader().setStretchLastSection(False)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)

    def selected_ids(self) -> list[int]:
        rows = {i.row() for i in self.selectionModel().selectedRows()} if self.selectionModel() else set()
        model = self.model()
        return sorted(model.index(r, 0).data(ID_ROLE) for r in rows)

    def select_id(self, episode_id: int) -> bool:
        model = self.model()
        for r in range(model.rowCount()):
            if model.index(r, 0).data(ID_ROLE) == episode_id:
                self.selectRow(r)
                return True
        return False
