"""The main window: tabs Record, Datasets, Fine-tune, Rollout over one store."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from PyQt6.QtCore import QSignalBlocker, Qt, QTimer, pyqtSignal
from PyQt6.QtWidgets import QLabel, QMainWindow, QMessageBox, QTabWidget, QVBoxLayout, QWidget

from studio.context import AppContext, TabSpec, freeze_startup_heap  # noqa: F401 (run_gui; bench/scale.py)
from studio.welcome import Progress, WelcomeWidget
from widgets.gui_gc import gui_app
from widgets.later import Later

TABS = [
    TabSpec("Record", "studio.record.tab", "RecordTab"),
    TabSpec("Datasets", "studio.datasets.tab", "DatasetsTab"),
    TabSpec("Fine-tune", "studio.finetune.tab", "FinetuneTab"),
    TabSpec("Rollout", "studio.rollout.tab", "RolloutTab"),
]

DEFAULT_KEY_HINT = "Space starts and stops an episode"


class MainWindow(QMainWindow):
    """The studio window. Each tab is a controller built with the shared AppContext; above them the
    first-launch guide (``welcome``) says what to do next until the person hides it.

    The window shows at once: the store is opened (and the tabs' modules imported) in a thread, each tab
    page says "Opening the store…" meanwhile, and then the tabs are built one per event-loop pass, the
    one on screen first, so no pass is long. ``tab_widgets[title]`` builds a tab there and then if it is
    not built yet (waiting for the store if it is still opening).

    Signals:
        tabs_ready(): every tab is built.
    """

    tabs_ready = pyqtSignal()

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.setWindowTitle(f"vla-studio — {ctx.home}")
        self.resize(1400, 900)
        self.tabs = QTabWidget()
        self.welcome = WelcomeWidget()
        # until the store says how far the person got: the steps unticked, shown unless hidden for good
        self.welcome.show_progress(Progress(), DEFAULT_KEY_HINT)
        self.welcome.setVisible(not ctx.settings.welcome_dismissed)
        central = QWidget()
        box = QVBoxLayout(central)
        box.setContentsMargins(4, 4, 4, 0)
        box.addWidget(self.welcome)
        box.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        self.tab_widgets = _TabWidgets(self)
        self._specs = {spec.title: spec for spec in TABS}
        for spec in TABS:
            self.tabs.addTab(placeholder(f"Opening the store {ctx.home}…"), spec.title)
        self.tabs.currentChanged.connect(self._on_current_tab_changed)
        self._pending: list[str] = []  # titles still to build, once the store is open
        self._closed = False
        self._build_timer = Later(self, self._build_next_tab)  # one tab per pass (widgets.later)
        self._welcome_timer = Later(self, self.refresh_welcome)  # the guide's SQL counts: not in a tab's pass
        ctx.status_posted.connect(self._on_status_posted)
        ctx.error_posted.connect(self._on_error_posted)
        ctx.checkpoint_opened.connect(self._on_checkpoint_opened)
        ctx.store_opened.connect(self._on_store_opened)
        self.welcome.connect_requested.connect(self._on_welcome_connect_requested)
        self.welcome.dismissed.connect(self._on_welcome_dismissed)
        for sig in (ctx.store_changed, ctx.rigs.rig_connected, ctx.rigs.rig_disconnected, ctx.rigs.lease_changed,
                    ctx.rigs.rig_failed):
            sig.connect(self.refresh_welcome)
        self.statusBar().showMessage(f"store: {ctx.home}   rig: {ctx.rig}")
        if ctx.settings.data.load_warning:
            self.statusBar().showMessage(ctx.settings.data.load_warning, 20000)
        # the opener thread's imports hold the GIL for long stretches: started after the window's first paint
        # (which waited for them: 60-100 ms wall for ~20 ms of its own CPU), or after 100 ms if never painted
        self._opening = False
        QTimer.singleShot(100, self._open_store)

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().paintEvent(event)
        if not self._opening:
            QTimer.singleShot(0, self._open_store)

    def _open_store(self) -> None:
        if self._opening or self._closed:
            return
        self._opening = True
        self.ctx.open_store_in_background(preload=tuple(spec.module for spec in TABS))

    # ------------------------------------------------------------------ tabs, built once the store is open
    @property
    def all_tabs_built(self) -> bool:
        return len(self.tab_widgets) == len(TABS)

    def _on_store_opened(self, error: str) -> None:
        if self._closed:
            return
        if error:
            self.ctx.error_posted.emit(error)
        current = self.tabs.tabText(self.tabs.currentIndex())
        self._pending = [current] + [t for t in self._specs if t != current]
        self.refresh_welcome()
        self._build_timer.start()

    def _on_current_tab_changed(self, index: int) -> None:
        title = self.tabs.tabText(index)
        if title in self._pending:  # the person went there: build it next
            self._pending.remove(title)
            self._pending.insert(0, title)

    def _build_next_tab(self) -> None:
        while self._pending and self._pending[0] in self.tab_widgets:
            self._pending.pop(0)
        if self._pending:
            self.build_tab(self._pending.pop(0))
            self._build_timer.start()  # the next one in the next event-loop pass

    def build_tab(self, title: str) -> QWidget:
        """The tab ``title``, built now if it is not yet (it takes the place of its placeholder page)."""
        widget = dict.get(self.tab_widgets, title)
        if widget is not None:
            return widget
        spec = self._specs[title]
        if not self.ctx.store_is_open:  # asked for before the opener thread is done: wait for it here
            self.ctx.wait_for_opener()  # its imports too: never two threads importing at once
            try:
                self.ctx.store  # noqa: B018
            except Exception:  # noqa: BLE001 - the tab reports a broken store itself
                pass
        module = importlib.import_module(spec.module)
        widget = getattr(module, spec.cls)(self.ctx)
        dict.__setitem__(self.tab_widgets, title, widget)
        index = next(i for i in range(self.tabs.count()) if self.tabs.tabText(i) == title)
        current = self.tabs.currentIndex()
        old = self.tabs.widget(index)
        with QSignalBlocker(self.tabs):
            self.tabs.removeTab(index)
            self.tabs.insertTab(index, widget, title)
            self.tabs.setCurrentIndex(current)
        old.deleteLater()
        if title == "Record":
            if hasattr(widget, "rig_combo"):
                widget.rig_combo.currentTextChanged.connect(self.refresh_welcome)  # its keys follow the rig
            self._welcome_timer.start()  # the guide's keys follow the Record tab's rig, a pass later
        if self.all_tabs_built:
            self.tabs_ready.emit()
        return widget

    # ------------------------------------------------------------------ first-launch guide
    def guide_progress(self) -> Progress:
        try:
            if not self.ctx.store_is_open:
                raise LookupError("not open yet")  # the guide fills in when it is
            from recorder.store.query import EpisodeQuery

            store = self.ctx.store
            complete = store.count_episodes(EpisodeQuery(status=("complete",)))  # counts: indexed, any size
            rollouts = store.count_episodes(EpisodeQuery(status=("complete",), source="policy"))
            demos = complete - rollouts
            checkpoints = len(store.checkpoints())
        except Exception:  # noqa: BLE001 - a broken store is reported by the tabs; the guide stays
            demos = rollouts = checkpoints = 0
        record = self.tab_widgets.get("Record")
        connected = bool(self.ctx.rigs.holder) or getattr(record, "rig", None) is not None
        return Progress(connected=connected, demos=demos, checkpoints=checkpoints, rollouts=rollouts)

    def refresh_welcome(self, *_args) -> None:
        if not self.ctx.store_is_open:
            return  # shown once the store says how far the person got
        progress = self.guide_progress()
        record = self.tab_widgets.get("Record")
        hint = record.key_hint() if hasattr(record, "key_hint") else DEFAULT_KEY_HINT
        self.welcome.show_progress(progress, hint)
        self.welcome.setVisible(not self.ctx.settings.welcome_dismissed and not progress.all_done)

    def _on_welcome_connect_requested(self) -> None:
        record = self.tab_widgets["Record"]
        self.tabs.setCurrentWidget(record)
        if record.rig is None:
            record.rig_combo.setCurrentText("sim")
            record.connect_rig()

    def _on_welcome_dismissed(self) -> None:
        self.ctx.settings.set_welcome_dismissed(True)
        self.welcome.setVisible(False)

    def _on_status_posted(self, text: str) -> None:
        self.statusBar().showMessage(text, 10000)

    def _on_error_posted(self, text: str) -> None:
        self.statusBar().showMessage(text, 20000)
        if os.environ.get("QT_QPA_PLATFORM") != "offscreen":
            QMessageBox.warning(self, "vla-studio", text)

    def _on_checkpoint_opened(self, path: str) -> None:
        built = "Rollout" in self.tab_widgets
        rollout = self.tab_widgets["Rollout"]
        if not built:  # built just now: it missed this signal
            rollout._on_checkpoint_opened(path)
        self.tabs.setCurrentWidget(rollout)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        for widget in self.tab_widgets.values():
            ask = getattr(widget, "confirm_close", None)
            if ask is not None and not ask():
                event.ignore()
                return
        for widget in self.tab_widgets.values():
            shutdown = getattr(widget, "shutdown", None)
            if shutdown is not None:
                shutdown()
        self._closed = True
        self._pending = []
        self._build_timer.cancel()
        self.ctx.close()
        super().closeEvent(event)


class _TabWidgets(dict):
    """title -> tab widget of the tabs built so far; looking up one not built yet builds it."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__()
        self._window = window

    def __missing__(self, title: str) -> QWidget:
        if title not in self._window._specs:
            raise KeyError(title)
        return self._window.build_tab(title)


def placeholder(text: str) -> QLabel:
    label = QLabel(text)
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.setWordWrap(True)
    return label


def run_gui(home: Path, rig: str = "sim") -> int:
    app = gui_app()  # cyclic garbage (closed widgets, old plots) is collected in this thread only
    ctx = AppContext(home=home, rig=rig)
    window = MainWindow(ctx)
    window.show()
    window.tabs_ready.connect(freeze_startup_heap)  # the tabs' modules and widgets are the start-up heap
    return app.exec()
