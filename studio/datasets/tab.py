"""The Datasets tab: browse datasets and episodes, review them in the viewer, curate, import and export.

Reads come from the SQLite index through ``ctx.store`` (quick queries on the GUI thread); frames are
decoded in worker threads; import/export/merge run as :class:`StoreJob` threads with their own Store.
Every change emits ``ctx.store_changed`` and the tab refreshes on it.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from PyQt6.QtCore import QDate, Qt, QTimer, pyqtSignal
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDateEdit,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from recorder import curation
from recorder.errors import KnownError, error_text
from recorder.store.query import ANY, USABLE, EpisodeQuery, sort_value
from studio.context import freeze_startup_heap, remember_splitter
from studio.datasets.viewer import EpisodeViewerController
from studio.datasets.workers import StoreJob, ThumbnailWorker, WorkerThread
from widgets.episode_table import EpisodeTableModel, EpisodeTableView
from widgets.episode_viewer import EpisodeViewerWidget, to_qimage
from widgets.later import Later

ALL = "All datasets"
FAILED = object()
SUCCESS_CHOICES = [("any", "any"), ("yes", "success"), ("no", "failure"), ("unknown", "unlabelled")]


@dataclasses.dataclass(frozen=True)
class _Read:
    """What the page-reading thread read for the table (see ``DatasetsTab._start_read``)."""

    datasets: list | None  # the dataset list with counts, when a refresh asked for it
    query: EpisodeQuery  # the filters it read (the dataset dropped when it is gone)
    sort: tuple[str, bool]
    limit: int  # rows asked for the first page
    rows: list
    shown: int  # episodes the filters select
    total: int  # episodes in the store (with the same status filter)


class DatasetsTab(QWidget):
    """Controller of the Datasets tab (dataset list, episode table, viewer, edit panel, actions).

    Signals:
        _rows_read(int, object): (thread -> GUI) the number of a read and its ``_Read``, or an error line.
        _page_ready(int): (thread -> GUI) a page the table may ask for is read (the number of its pager).
    """

    _rows_read = pyqtSignal(int, object)
    _page_ready = pyqtSignal(int)

    #: episode rows fetched per page (one more page each time the table is scrolled to its end)
    PAGE_SIZE = 100
    #: a refresh (after any store change) reloads the rows already loaded, up to this many (~25 ms of SQL)
    KEEP_ROWS = 2000
    #: the thumbnail thread rests this long after each thumbnail (the GUI thread gets the GIL meanwhile)
    THUMB_PAUSE_S = 0.004
    #: from this many rows on, each page scrolled in is moved out of the garbage collector's view
    FREEZE_ROWS = 2000
    #: thumbnails are asked for this long after scrolling stops, and after the tab is shown
    THUMBS_AFTER_SCROLL_MS = 60
    THUMBS_AFTER_SHOW_MS = 250

    def __init__(self, ctx, parent=None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.jobs: list[StoreJob] = []
        self._current_id: int | None = None
        self._read_seq = self._applied_seq = 0  # the newest read of the table's rows asked for, and shown
        self._pager_seq = 0  # the table's current page source (a page read for an older one is dropped)
        self._fetch_wanted = 0  # the pager whose next page the table asked for before it was read
        self._want_datasets = True  # the dataset list is read again with the next rows (a refresh asked)
        self._prefetch_closed = True  # until the thread is made
        self._build()
        # scrolling: the next page of rows is read in this thread while the person looks at the last one
        self._prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="episode-rows")
        self._prefetch_closed = False
        self._rows_read.connect(self._on_rows_read)
        self._page_ready.connect(self._on_page_ready)
        self.model.on_sort = lambda: self._start_read(keep_rows=False)  # the new order's first page: a thread
        # full records, a screenful in one read, in its thread
        self.thumbs = ThumbnailWorker(load_many=lambda ids: self.ctx.store.episodes_by_id(ids), pause_s=self.THUMB_PAUSE_S)
        self._thumb_thread = WorkerThread(self.thumbs, "thumbnails")
        self.thumbs.thumbnail_ready.connect(self._on_thumbnail_ready)
        # thumbnails only for the rows on screen, asked for once scrolling pauses
        self._thumb_timer = QTimer(self)
        self._thumb_timer.setSingleShot(True)
        self._thumb_timer.setInterval(self.THUMBS_AFTER_SCROLL_MS)
        self._thumb_timer.timeout.connect(self._request_visible_thumbnails)
        self.table.verticalScrollBar().valueChanged.connect(self._thumb_timer.start)
        self.model.modelReset.connect(self._thumb_timer.start)
        self.model.rowsInserted.connect(self._thumb_timer.start)
        # the full record (streams, rig) is read in the decode thread; the GUI thread has the table's row
        self.viewer_ctl = EpisodeViewerController(self.viewer, load=lambda eid: self.ctx.store.episode(eid))
        self.viewer_ctl.failed.connect(ctx.error_posted)
        ctx.store_changed.connect(self.refresh)
        # the first rows in the next event-loop pass: building the widgets and the first queries are two
        # short passes, not one long one (the main window builds its tabs one per pass as well)
        self._first_refresh = Later(self, self.refresh)
        self._first_refresh.start()

    # ------------------------------------------------------------------------------ layout
    def _build(self) -> None:
        # left: datasets and dataset actions
        self.dataset_list = QListWidget()
        self.dataset_list.currentItemChanged.connect(self._on_dataset_changed)
        self.import_button = QPushButton("Import LeRobot…")
        self.import_button.clicked.connect(self._on_import_clicked)
        self.export_dataset_button = QPushButton("Export dataset…")
        self.export_dataset_button.clicked.connect(self._on_export_dataset_clicked)
        self.split_button = QPushButton("Train/val split…")
        self.split_button.clicked.connect(self._on_split_clicked)
        self.merge_button = QPushButton("Merge…")
        self.merge_button.clicked.connect(self._on_merge_clicked)
        self.stats_button = QPushButton("Statistics")
        self.stats_button.clicked.connect(self._on_stats_clicked)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.addWidget(QLabel("Datasets"))
        ll.addWidget(self.dataset_list, 1)
        for b in (self.import_button, self.export_dataset_button, self.split_button, self.merge_button,
                  self.stats_button):
            ll.addWidget(b)
        ll.addWidget(self.progress)

        # middle: filters, table, selection actions
        self.task_filter = QLineEdit()
        self.task_filter.setPlaceholderText("task contains…")
        self.success_filter = QComboBox()
        for key, text in SUCCESS_CHOICES:
            self.success_filter.addItem(text, key)
        self.source_filter = QComboBox()
        for s in ("any", "teleop", "policy", "scripted"):
            self.source_filter.addItem(s, None if s == "any" else s)
        self.tag_filter = QLineEdit()
        self.tag_filter.setPlaceholderText("tag")
        self.since_filter = QDateEdit()
        self.since_filter.setCalendarPopup(True)
        self.since_filter.setMinimumDate(QDate(2000, 1, 1))
        self.since_filter.setSpecialValueText("any date")
        self.since_filter.setDate(self.since_filter.minimumDate())
        self.min_duration = QDoubleSpinBox()
        self.min_duration.setRange(0, 1e5)
        self.min_duration.setSuffix(" s min")
        self.show_trash = QCheckBox("Trash")
        for w in (self.task_filter, self.tag_filter):
            w.textChanged.connect(self._apply_filter)
        for w in (self.success_filter, self.source_filter):
            w.currentIndexChanged.connect(self._apply_filter)
        self.since_filter.dateChanged.connect(self._apply_filter)
        self.min_duration.valueChanged.connect(self._apply_filter)
        self.show_trash.toggled.connect(self._apply_filter)  # the other rows at once (Restore acts on them)
        filters = QHBoxLayout()
        for w in (self.task_filter, self.success_filter, self.source_filter, self.tag_filter, self.since_filter,
                  self.min_duration, self.show_trash):
            filters.addWidget(w)

        self.model = EpisodeTableModel(self, page_size=self.PAGE_SIZE)  # rows come from SQL a page at a time (see _apply_filter)
        self.table = EpisodeTableView()
        self.table.setModel(self.model)
        self.table.horizontalHeader().setSortIndicator(1, Qt.SortOrder.DescendingOrder)
        self.table.setColumnWidth(0, 56)
        self.table.selectionModel().selectionChanged.connect(self._on_selection_changed)

        self.success_button = QPushButton("Success")
        self.success_button.clicked.connect(lambda: self.label_selected(True))
        self.failure_button = QPushButton("Failure")
        self.failure_button.clicked.connect(lambda: self.label_selected(False))
        self.tag_button = QPushButton("Tag…")
        self.tag_button.clicked.connect(self._on_tag_clicked)
        self.trash_button = QPushButton("Trash")
        self.trash_button.clicked.connect(self.trash_selected)
        self.restore_button = QPushButton("Restore")
        self.restore_button.clicked.connect(self.restore_selected)
        self.purge_button = QPushButton("Purge…")
        self.purge_button.clicked.connect(lambda: self.purge_selected(ask=True))
        self.export_button = QPushButton("Export selected…")
        self.export_button.clicked.connect(self._on_export_selected_clicked)
        self.count_label = QLabel("")
        # wraps rather than widening the tab: "100000 of 100000 episodes" on one line made the tab wider than
        # the window, which then grew (a relayout and two whole-window repaints when the tab was first shown)
        self.count_label.setWordWrap(True)
        actions = QHBoxLayout()
        for b in (self.success_button, self.failure_button, self.tag_button, self.trash_button,
                  self.restore_button, self.purge_button, self.export_button):
            actions.addWidget(b)
        actions.addStretch(1)
        actions.addWidget(self.count_label)
        middle = QWidget()
        ml = QVBoxLayout(middle)
        ml.addLayout(filters)
        ml.addWidget(self.table, 1)
        ml.addLayout(actions)

        # right: viewer and edit panel
        self.viewer = EpisodeViewerWidget()
        self.task_edit = QLineEdit()
        self.success_edit = QComboBox()
        for text, value in (("unlabelled", None), ("success", True), ("failure", False)):
            self.success_edit.addItem(text, value)
        self.tags_edit = QLineEdit()
        self.tags_edit.setPlaceholderText("comma-separated")
        self.notes_edit = QPlainTextEdit()
        self.notes_edit.setMaximumHeight(60)
        self.save_button = QPushButton("Save")
        self.save_button.clicked.connect(self.save_edits)
        form = QFormLayout()
        form.addRow("Task", self.task_edit)
        form.addRow("Success", self.success_edit)
        form.addRow("Tags", self.tags_edit)
        form.addRow("Notes", self.notes_edit)
        form.addRow("", self.save_button)
        self.edit_panel = QWidget()
        self.edit_panel.setLayout(form)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.addWidget(self.viewer, 1)
        rl.addWidget(self.edit_panel)

        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(left)
        top.addWidget(middle)
        top.addWidget(right)
        top.setStretchFactor(0, 0)
        top.setStretchFactor(1, 2)
        top.setStretchFactor(2, 3)
        layout = QVBoxLayout(self)
        layout.addWidget(top)
        self.splitter = top
        remember_splitter(self.ctx, top, "datasets.main")  # the person's pane sizes come back next launch
        remember_splitter(self.ctx, self.viewer.splitter, "datasets.viewer")
        self._update_buttons()

    # ------------------------------------------------------------------------------ data
    def refresh(self) -> None:
        """Reload datasets and the loaded episode rows from the index, keeping the selection.

        The queries run in the page-reading thread (at 100k episodes the per-dataset counts, the two counts
        and the first page are ~70 ms of SQL); the table keeps its rows and the count says "Loading…" until
        they are in (:meth:`_on_rows_read`)."""
        self._first_refresh.cancel()
        self._want_datasets = True
        self._start_read(keep_rows=True)

    def _start_read(self, keep_rows: bool) -> None:
        """Read the dataset list (if a refresh asked for it), the counts and the first page of the filters
        now set, in the page-reading thread; a newer read makes this one's result stale (dropped)."""
        self._read_seq += 1
        seq = self._read_seq
        query = self.current_query()
        keep = min(self.model.rowCount(), self.KEEP_ROWS) if keep_rows else 0
        limit = max(self.model.page_size, keep)
        key, descending = self.model.sort_order()
        if not keep_rows:  # the old filter's rows go at once: never acted on as if they matched the new one
            self.model.set_source(None)
        self.table.set_placeholder("Loading…")
        self.count_label.setText("Loading…")
        if self._prefetch_closed:
            return
        ctx, datasets = self.ctx, self._want_datasets

        def read():
            if seq != self._read_seq:  # a newer read is on its way: skip the SQL
                return
            try:
                store = ctx.store  # (opened here, off the GUI thread, if nothing opened it yet)
                q = query
                names = None
                if datasets:
                    names = store.datasets()
                    if q.dataset is not None and q.dataset not in {d.name for d in names}:
                        q = dataclasses.replace(q, dataset=None)  # merged or emptied away: All datasets
                rows = store.episode_rows(q, sort=key, descending=descending, limit=limit)
                shown = store.count_episodes(q)
                total = store.count_episodes(EpisodeQuery(status=q.status))
            except KnownError as err:
                self._rows_read.emit(seq, str(err))
                return
            except Exception as err:  # noqa: BLE001 - shown to the user, a bug logged with traceback
                self._rows_read.emit(seq, error_text(err, "reading the episode index"))
                return
            self._rows_read.emit(seq, _Read(names, q, (key, descending), limit, rows, shown, total))

        self._prefetch.submit(read)

    def _on_rows_read(self, seq: int, got) -> None:
        if seq != self._read_seq:
            return  # an older read's (the filters or the store changed since): the newer one follows
        if isinstance(got, str):
            self._applied_seq = seq
            self.table.set_placeholder(got)  # in the table too: it stays as it was, or empty
            self.count_label.setText("")
            self.ctx.error_posted.emit(got)
            return
        if got.sort != self.model.sort_order():  # a column was sorted meanwhile: read again in its order
            self._start_read(keep_rows=False)
            return
        self._applied_seq = seq
        # the viewer's joint plots are made in the passes after the first rows, while the tab may still be
        # hidden (made on its first show, they were two passes of 60-100 ms: build + the plots' first
        # paint; made while the rows were read, the read's Python work and theirs waited for each other)
        self.viewer.plots.build_soon()
        if got.datasets is not None:
            self._want_datasets = False
            self._fill_dataset_list(got.datasets, got.query.dataset)
        keep = self.table.selected_ids()
        fetch, prefetch = self._pager(got.query)
        self.model.set_source(fetch, keep_rows=got.limit, rows=got.rows)
        prefetch(got.rows, *got.sort, got.limit)
        self.table.set_placeholder("" if got.rows else "No episodes match the filters")
        for eid in keep:
            self._select_more(eid)
        if self._current_id is not None and self.model.row_of(self._current_id) is not None:
            self._load_edit_panel(self.model.episode(self.model.row_of(self._current_id)))
        self.count_label.setText(f"{got.shown} of {got.total} episodes")
        self._update_buttons()

    def _fill_dataset_list(self, datasets: list, current_name: str | None) -> None:
        self.dataset_list.blockSignals(True)
        self.dataset_list.clear()
        item = QListWidgetItem(ALL)
        item.setData(Qt.ItemDataRole.UserRole, None)
        self.dataset_list.addItem(item)
        select = item
        for d in datasets:
            it = QListWidgetItem(f"{d.name}  ({d.num_episodes})")
            it.setData(Qt.ItemDataRole.UserRole, d.name)
            self.dataset_list.addItem(it)
            if d.name == current_name:
                select = it
        self.dataset_list.setCurrentItem(select)
        self.dataset_list.blockSignals(False)

    @property
    def loaded(self) -> bool:
        """The rows of the filters now set are in (read in a thread after the tab is built, a filter
        changes or the store changes)."""
        return not self._first_refresh.pending and self._applied_seq == self._read_seq

    def _select_more(self, eid: int) -> None:
        from PyQt6.QtCore import QItemSelectionModel

        row = self.model.row_of(eid)
        if row is not None:
            self.table.selectionModel().select(
                self.model.index(row, 0),
                QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows)

    def current_query(self) -> EpisodeQuery:
        """The filters as one SQL query (dataset, task text, success, source, tag, date, duration, trash)."""
        item = self.dataset_list.currentItem()
        since = None
        if self.since_filter.date() != self.since_filter.minimumDate():
            d = self.since_filter.date()
            since = datetime(d.year(), d.month(), d.day(), tzinfo=UTC)
        success = {"yes": True, "no": False, "unknown": None}.get(self.success_filter.currentData(), ANY)
        tag = self.tag_filter.text().strip()
        return EpisodeQuery(
            dataset=item.data(Qt.ItemDataRole.UserRole) if item else None,
            task_contains=self.task_filter.text().strip(),
            success=success,
            source=self.source_filter.currentData(),
            tags=(tag,) if tag else (),
            since=since,
            min_duration=self.min_duration.value(),
            status=("trashed",) if self.show_trash.isChecked() else USABLE,
        )

    def _apply_filter(self, *_args) -> None:
        self._start_read(keep_rows=False)

    def _pager(self, query: EpisodeQuery):
        """The table's ``fetch`` for ``query`` (keyset pages) and ``prefetch(rows, key, descending, limit)``,
        which reads the page after ``rows`` (the last page served, ``limit`` rows asked) in the page-reading
        thread while the person looks at the rows before. ``fetch`` never reads on the GUI thread: a page
        not read yet is asked for, ``fetch`` answers None, and the table's ``fetchMore`` is called again
        when the page is in (``_page_ready``)."""
        store = self.ctx.store
        ahead: dict = {}
        self._pager_seq += 1
        pager = self._pager_seq

        def page(key, descending, last, limit):
            after = None if last is None else (sort_value(last, key), last.id)
            return store.episode_rows(query, sort=key, descending=descending, after=after, limit=limit)

        def ready(_future) -> None:  # in the page-reading thread
            try:
                self._page_ready.emit(pager)
            except RuntimeError:  # the tab is gone
                pass

        def prefetch(rows, key, descending, limit):
            step = self.model.page_size
            if len(rows) >= limit and rows and not self._prefetch_closed:
                future = self._prefetch.submit(page, key, descending, rows[-1], step)
                ahead["next"] = ((key, descending, rows[-1].id, step), future)
                future.add_done_callback(ready)

        def fetch(key, descending, last, limit):
            want = (key, descending, None if last is None else last.id, limit)
            got = ahead.get("next")
            if got is None or got[0] != want:  # not asked for (another order or size): ask now
                if self._prefetch_closed or last is None:
                    return []
                future = self._prefetch.submit(page, key, descending, last, limit)
                ahead["next"] = got = (want, future)
                future.add_done_callback(ready)
            if not got[1].done():
                self._fetch_wanted = pager  # the table asked: it gets the page when it is in
                return None
            del ahead["next"]
            try:
                rows = got[1].result()
            except KnownError as err:
                self.ctx.error_posted.emit(str(err))
                return []
            except Exception as err:  # noqa: BLE001 - shown to the user, a bug logged with traceback
                self.ctx.error_posted.emit(error_text(err, "reading the next episodes"))
                return []
            prefetch(rows, key, descending, limit)
            if rows and self.model.rowCount() >= self.FREEZE_ROWS:
                # the rows scrolled in stay while the table shows them: out of the collector's view, or its
                # full collections walk every one (a 52 ms collection, GIL held, at 70k rows)
                freeze_startup_heap(generation=1)
            return rows

        return fetch, prefetch

    def _on_page_ready(self, pager: int) -> None:
        if pager == self._pager_seq and self._fetch_wanted == pager:
            self._fetch_wanted = 0
            self.model.fetchMore()  # the page the table asked for while it was being read

    def matching_ids(self) -> list[int]:
        """Every episode id the filters select (all of them, not only the rows loaded so far)."""
        return self.ctx.store.episode_ids(self.current_query())

    def visible_ids(self) -> list[int]:
        """The ids of the rows loaded in the table, in table order."""
        return [self.model.episode(r).id for r in range(self.model.rowCount())]

    def showEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().showEvent(event)
        # thumbnails of the rows now on screen, once the tab's first paint is done: decoded meanwhile, their
        # Python work held the GIL the paint needed (a 0.1 s paint took 0.2-0.3 s)
        self._thumb_timer.start(self.THUMBS_AFTER_SHOW_MS)

    def _request_visible_thumbnails(self) -> None:
        self._thumb_timer.setInterval(self.THUMBS_AFTER_SCROLL_MS)
        if not self.table.isVisible():
            return  # asked again when the tab is shown
        rows = self.table.visible_rows()
        want = [self.model.episode(r) for r in rows]
        self.thumbs.request([e for e in want if not self.model.has_thumbnail(e.id)])

    def select_episode(self, episode_id: int) -> bool:
        self.table.clearSelection()
        return self.table.select_id(episode_id)

    # ------------------------------------------------------------------------------ slots
    def _on_dataset_changed(self, *_args) -> None:
        self._apply_filter()

    def _on_thumbnail_ready(self, episode_id: int, img) -> None:
        self.model.set_thumbnail(episode_id, to_qimage(img))

    def _on_selection_changed(self, *_args) -> None:
        ids = self.table.selected_ids()
        self._update_buttons()
        if len(ids) == 1:
            if ids[0] != self._current_id:
                self._current_id = ids[0]
                row = self.model.row_of(ids[0])
                info = self.model.episode(row) if row is not None else self._guard(self.ctx.store.episode, ids[0])
                if info is FAILED:
                    return
                self._load_edit_panel(info)
                self.viewer_ctl.show_episode(info)
        elif not ids:
            self._current_id = None
            self.viewer_ctl.show_episode(None)

    def _update_buttons(self) -> None:
        n = len(self.table.selected_ids()) if self.table.model() is not None else 0
        trash = self.show_trash.isChecked()
        for b in (self.success_button, self.failure_button, self.tag_button, self.export_button):
            b.setEnabled(n > 0 and not trash)
        self.trash_button.setEnabled(n > 0 and not trash)
        self.restore_button.setEnabled(n > 0 and trash)
        self.purge_button.setEnabled(n > 0)
        self.edit_panel.setEnabled(n == 1)

    def _load_edit_panel(self, info) -> None:
        self.task_edit.setText(info.task)
        self.success_edit.setCurrentIndex({None: 0, True: 1, False: 2}[info.success])
        self.tags_edit.setText(", ".join(curation.visible_tags(info.tags)))
        self.notes_edit.setPlainText(info.notes or "")

    # ------------------------------------------------------------------------------ actions
    def _changed(self, message: str) -> None:
        self.ctx.status_posted.emit(message)
        self.ctx.store_changed.emit()

    def _guard(self, fn, *args):
        """fn(*args), or FAILED after posting a KnownError's message."""
        try:
            return fn(*args)
        except KnownError as err:
            self.ctx.error_posted.emit(str(err))
            return FAILED

    def save_edits(self) -> None:
        if self._current_id is None:
            return
        eid = self._current_id
        done = self._guard(lambda: curation.edit_episode(
            self.ctx.store, eid, task=self.task_edit.text(), success=self.success_edit.currentData(),
            tags=curation.parse_tags(self.tags_edit.text()), notes=self.notes_edit.toPlainText()))
        if done is not FAILED:
            self._changed(f"episode {eid} saved")

    def label_selected(self, success: bool | None) -> None:
        ids = self.table.selected_ids()
        if ids and self._guard(curation.set_success, self.ctx.store, ids, success) is not FAILED:
            word = {True: "success", False: "failure", None: "unlabelled"}[success]
            self._changed(f"{len(ids)} episodes marked {word}")

    def tag_selected(self, tag: str) -> None:
        ids = self.table.selected_ids()
        tags = curation.parse_tags(tag) or []
        if ids and tags and self._guard(curation.add_tags, self.ctx.store, ids, tags) is not FAILED:
            self._changed(f"tagged {len(ids)} episodes {', '.join(tags)}")

    def trash_selected(self) -> None:
        ids = self.table.selected_ids()
        done = self._guard(curation.trash, self.ctx.store, ids)
        if done and done is not FAILED:
            self._changed(f"{len(done)} episodes moved to the trash")

    def restore_selected(self) -> None:
        ids = self.table.selected_ids()
        done = self._guard(curation.restore, self.ctx.store, ids)
        if done and done is not FAILED:
            self._changed(f"{len(done)} episodes restored")

    def purge_selected(self, ask: bool = True) -> None:
        ids = self.table.selected_ids()
        if not ids:
            return
        if ask:
            answer = QMessageBox.question(
                self, "Purge episodes",
                f"Delete the files of {len(ids)} episodes for good? This cannot be undone.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                return
        if self._current_id in ids:
            self._current_id = None
            self.viewer_ctl.show_episode(None)
        done = self._guard(curation.purge, self.ctx.store, ids)
        if done and done is not FAILED:
            self._changed(f"{len(done)} episodes purged")

    def _on_tag_clicked(self) -> None:
        tag, ok = QInputDialog.getText(self, "Tag episodes", "Tag(s), comma-separated:")
        if ok and tag.strip():
            self.tag_selected(tag)

    # -- jobs
    def run_job(self, title: str, fn) -> StoreJob:
        """Run ``fn(store, progress) -> str`` in a thread; refresh when it ends."""
        job = StoreJob(self.ctx.home, fn, title, self)
        job.progressed.connect(self._on_job_progress)
        job.succeeded.connect(self._on_job_succeeded)
        job.failed.connect(self._on_job_failed)
        job.finished.connect(lambda j=job: self._on_job_finished(j))
        self.jobs.append(job)
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self.ctx.status_posted.emit(f"{title}…")
        job.start()
        return job

    def _on_job_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)

    def _on_job_succeeded(self, message: str) -> None:
        self._changed(message)

    def _on_job_failed(self, message: str) -> None:
        self.ctx.error_posted.emit(message)

    def _on_job_finished(self, job: StoreJob) -> None:
        if job in self.jobs:
            self.jobs.remove(job)
        job.deleteLater()
        if not self.jobs:
            self.progress.setVisible(False)

    def export_episodes(self, ids: list[int], out: Path, *, include_failed: bool = True) -> StoreJob:
        """Export to LeRobot v3. ``include_failed=False`` (a whole dataset, as the CLI does by default): only the
        successful and unlabelled episodes; the labels travel in meta/episodes either way."""
        from recorder.interop.lerobot import export_lerobot, exportable

        def fn(store, progress):
            eps = [store.episode(i) for i in ids]
            chosen = exportable(eps, include_failed=include_failed)
            res = export_lerobot(store, out, chosen, progress=progress)
            left = len(eps) - len(chosen)
            note = (f"; {left} failed episode{'s' if left != 1 else ''} left out (select them and use Export "
                    "selected… to include them)") if left else ""
            return f"exported {res.episodes} episodes ({res.frames} frames) to {res.path}{note}"

        return self.run_job(f"exporting {len(ids)} episodes", fn)

    def import_folder(self, folder: Path, dataset: str | None = None) -> StoreJob:
        from recorder.interop.lerobot import import_lerobot

        def fn(store, progress):
            eps = import_lerobot(store, folder, dataset, progress=progress)
            return f"imported {len(eps)} episodes into {eps[0].dataset!r}"

        return self.run_job(f"importing {folder}", fn)

    def merge_datasets(self, sources: list[str], into: str) -> StoreJob:
        def fn(store, progress):
            eps = curation.merge(store, sources, into, progress=progress)
            return f"moved {len(eps)} episodes into {into!r}"

        return self.run_job(f"merging into {into}", fn)

    def split_dataset(self, name: str, val: float, seed: int = 0) -> dict | None:
        parts = self._guard(curation.split, self.ctx.store, name, val, seed)
        if parts is FAILED:
            return None
        self._changed(f"{name}: {len(parts['train'])} train, {len(parts['val'])} val")
        return parts

    def _selected_dataset(self) -> str | None:
        item = self.dataset_list.currentItem()
        name = item.data(Qt.ItemDataRole.UserRole) if item else None
        if name is None:
            self.ctx.error_posted.emit("pick a dataset in the list first")
        return name

    def _on_import_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "LeRobot dataset folder (holds meta/, data/, videos/)")
        if folder:
            name, ok = QInputDialog.getText(self, "Import", "Dataset name:", text=Path(folder).name)
            if ok:
                self.import_folder(Path(folder), name.strip() or None)

    def _ask_out_dir(self, default: str) -> Path | None:
        parent = QFileDialog.getExistingDirectory(self, "Export into which folder?")
        if not parent:
            return None
        name, ok = QInputDialog.getText(self, "Export", "New dataset folder name:", text=default)
        return Path(parent) / name.strip() if ok and name.strip() else None

    def _on_export_dataset_clicked(self) -> None:
        name = self._selected_dataset()
        if name is None:
            return
        ids = self.matching_ids()
        out = self._ask_out_dir(f"{name}_lerobot")
        if out is not None:
            self.export_episodes(ids, out, include_failed=False)

    def _on_export_selected_clicked(self) -> None:
        ids = self.table.selected_ids()
        out = self._ask_out_dir("episodes_lerobot")
        if ids and out is not None:
            self.export_episodes(ids, out)

    def _on_split_clicked(self) -> None:
        name = self._selected_dataset()
        if name is None:
            return
        val, ok = QInputDialog.getDouble(self, "Train/val split", "Validation fraction:", 0.1, 0.0, 0.9, 2)
        if ok:
            self.split_dataset(name, val)

    def _on_merge_clicked(self) -> None:
        names = [self.dataset_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.dataset_list.count())]
        names = [n for n in names if n]
        dlg = QDialog(self)
        dlg.setWindowTitle("Merge datasets")
        lst = QListWidget()
        lst.setSelectionMode(QListWidget.SelectionMode.MultiSelection)
        lst.addItems(names)
        into = QLineEdit("merged")
        ok = QPushButton("Move episodes")
        ok.clicked.connect(dlg.accept)
        lay = QVBoxLayout(dlg)
        lay.addWidget(QLabel("Datasets to merge (their episodes move):"))
        lay.addWidget(lst)
        lay.addWidget(QLabel("Into dataset:"))
        lay.addWidget(into)
        lay.addWidget(ok)
        if dlg.exec() and lst.selectedItems() and into.text().strip():
            self.merge_datasets([i.text() for i in lst.selectedItems()], into.text().strip())

    def stats_rows(self, name: str) -> list | None:
        rows = self._guard(curation.stats_table, self.ctx.store, name)
        return None if rows is FAILED else rows

    def _on_stats_clicked(self) -> None:
        name = self._selected_dataset()
        if name is None:
            return
        rows = self.stats_rows(name)
        if rows is None:
            return
        dlg = QDialog(self)
        dlg.setWindowTitle(f"Statistics of {name}")
        keys = ("min", "max", "mean", "std", "q01", "q99")
        table = QTableWidget(len(rows), 2 + len(keys))
        table.setHorizontalHeaderLabels(["stream", "dim", *keys])
        for r, (key, d, st) in enumerate(rows):
            table.setItem(r, 0, QTableWidgetItem(key))
            table.setItem(r, 1, QTableWidgetItem(str(d)))
            for c, k in enumerate(keys):
                table.setItem(r, 2 + c, QTableWidgetItem(f"{st.get(k, float('nan')):.4g}"))
        lay = QVBoxLayout(dlg)
        lay.addWidget(table)
        dlg.resize(720, 400)
        dlg.exec()

    # ------------------------------------------------------------------------------ lifetime
    def shutdown(self) -> None:
        for job in list(self.jobs):
            job.wait(30000)
        self.viewer_ctl.shutdown()
        self._thumb_thread.stop()
        self._prefetch_closed = True
        self._prefetch.shutdown(wait=True, cancel_futures=True)
