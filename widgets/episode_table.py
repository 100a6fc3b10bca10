"""Episode table: a lazily fetched QAbstractTableModel over episode records (filters and sorting are the
source's job: SQL in the studio), and the view."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PyQt6.QtCore import QAbstractTableModel, QModelIndex, Qt
from PyQt6.QtGui import QColor, QImage, QPainter, QPalette
from PyQt6.QtWidgets import QAbstractItemView, QHeaderView, QTableView

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


#: column -> sort key the episode source understands (``recorder.store.query.SORT_KEYS``); others sort by id
SORT_KEY = {"thumb": "id", "id": "id", "dataset": "dataset", "task": "task", "success": "success",
            "source": "source", "start": "start", "duration": "duration", "frames": "frames", "status": "status"}

#: fetch(sort_key, descending, last_record_or_None, limit) -> the next records in that order, or None while
#: they are being read elsewhere (a thread): the source then calls ``fetchMore()`` again once they are in
Fetch = Callable[[str, bool, object, int], list | None]


class EpisodeTableModel(QAbstractTableModel):
    """Rows are episode records (objects with the fields of ``recorder.store.EpisodeInfo``), fetched lazily.

    The model never holds the whole store: :meth:`set_source` gives it a ``fetch`` function (SQL with
    keyset paging in the studio) and it loads ``page_size`` rows, then one more page each time the view
    scrolls to the end (Qt's ``canFetchMore`` / ``fetchMore``). Sorting a column asks the source again."""

    def __init__(self, parent=None, page_size: int = 200) -> None:
        super().__init__(parent)
        self.page_size = int(page_size)
        self._rows: list = []
        self._row_of: dict[int, int] = {}
        self._thumbs: dict[int, QImage] = {}
        self._fetch: Fetch | None = None
        self._more = False
        self._sort = ("id", True)
        #: called instead of re-reading the rows on the GUI thread when a column is sorted (the source then
        #: reads the first page in the new order and calls ``set_source``)
        self.on_sort: Callable[[], None] | None = None

    # -- data in
    def set_source(self, fetch: Fetch | None, keep_rows: int = 0, rows: list | None = None) -> None:
        """Show the records ``fetch`` gives, first page now (at least ``keep_rows`` rows, to keep a scroll).

        ``rows``: that first page, already read (in a thread) with ``limit=max(page_size, keep_rows)`` in the
        current sort order; ``fetch`` then gives only the pages after it."""
        self._fetch = fetch
        self.beginResetModel()
        self._rows, self._row_of = [], {}
        self._more = fetch is not None
        if fetch is not None:
            want = max(self.page_size, int(keep_rows))
            self._append(fetch(self._sort[0], self._sort[1], None, want) if rows is None else rows, want)
        self.endResetModel()

    def set_episodes(self, episodes: list) -> None:
        """Show a fixed list (already in the order wanted)."""
        rows = list(episodes)
        self.set_source(lambda key, desc, last, limit: [] if last is not None else rows, len(rows))
        self._more = False

    def _append(self, page: list, limit: int) -> None:
        for e in page:
            self._row_of[e.id] = len(self._rows)
            self._rows.append(e)
        self._more = len(page) >= limit

    def reload(self) -> None:
        """Fetch again what is loaded now (after the store changed), keeping the loaded row count."""
        self.set_source(self._fetch, keep_rows=len(self._rows))

    def sort_order(self) -> tuple[str, bool]:
        return self._sort

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
        """The records loaded so far."""
        return list(self._rows)

    def row_of(self, episode_id: int) -> int | None:
        return self._row_of.get(episode_id)

    # -- lazy loading (called by the view when it scrolls to the end)
    def canFetchMore(self, parent: QModelIndex = QModelIndex()) -> bool:  # noqa: N802, B008
        return not parent.isValid() and self._more and self._fetch is not None

    def fetchMore(self, parent: QModelIndex = QModelIndex()) -> None:  # noqa: N802, B008
        if not self.canFetchMore(parent):
            return
        last = self._rows[-1] if self._rows else None
        page = self._fetch(self._sort[0], self._sort[1], last, self.page_size)
        if page is None:
            return  # being read; the source calls fetchMore again when it is in
        if page:
            self.beginInsertRows(QModelIndex(), len(self._rows), len(self._rows) + len(page) - 1)
            self._append(page, self.page_size)
            self.endInsertRows()
        else:
            self._more = False

    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:
        key = SORT_KEY.get(COLUMNS[column].key, "id")
        self._sort = (key, order == Qt.SortOrder.DescendingOrder)
        if self.on_sort is not None:
            self.on_sort()
        elif self._fetch is not None:
            self.reload()

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


class EpisodeTableView(QTableView):
    """Multi-select, sortable table of episodes with thumbnails (sorting asks the model's source)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setSortingEnabled(True)
        self.setAlternatingRowColors(True)
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(THUMB_SIZE[1] // 2 + 6)
        self.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)  # no per-row sizing: 10k rows stay cheap
        self.setIconSize(self.iconSize().scaled(THUMB_SIZE[0] // 2, THUMB_SIZE[1] // 2,
                                                Qt.AspectRatioMode.KeepAspectRatio))
        self.horizontalHeader().setStretchLastSection(False)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self._placeholder = ""

    def set_placeholder(self, text: str) -> None:
        """A line drawn in the middle of the table while it has no rows ("Loading…"); "" for none."""
        if text != self._placeholder:
            self._placeholder = text
            self.viewport().update()

    def placeholder(self) -> str:
        return self._placeholder

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().paintEvent(event)
        model = self.model()
        if self._placeholder and (model is None or model.rowCount() == 0):
            painter = QPainter(self.viewport())
            painter.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(self.viewport().rect(), Qt.AlignmentFlag.AlignCenter, self._placeholder)
            painter.end()

    def selected_ids(self) -> list[int]:
        rows = {i.row() for i in self.selectionModel().selectedRows()} if self.selectionModel() else set()
        model = self.model()
        return sorted(model.index(r, 0).data(ID_ROLE) for r in rows)

    def visible_rows(self) -> range:
        """The rows on screen now (for on-demand thumbnails)."""
        n = self.model().rowCount() if self.model() is not None else 0
        if not n:
            return range(0)
        top = self.rowAt(0)
        bottom = self.rowAt(self.viewport().height() - 1)
        top = 0 if top < 0 else top
        bottom = n - 1 if bottom < 0 else bottom
        return range(top, bottom + 1)

    def select_id(self, episode_id: int) -> bool:
        model = self.model()
        row_of = getattr(model, "row_of", None)
        if row_of is not None:  # EpisodeTableModel: a dict, not a walk over every loaded row
            row = row_of(episode_id)
            if row is not None:
                self.selectRow(row)
            return row is not None
        for r in range(model.rowCount()):
            if model.index(r, 0).data(ID_ROLE) == episode_id:
                self.selectRow(r)
                return True
        return False
