"""The main window: tabs Record, Datasets, Fine-tune, Rollout over one store."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QApplication, QLabel, QMainWindow, QMessageBox, QTabWidget, QVBoxLayout, QWidget

from studio.context import AppContext, TabSpec
from studio.welcome import Progress, WelcomeWidget

TABS = [
    TabSpec("Record", "studio.record.tab", "RecordTab"),
    TabSpec("Datasets", "studio.datasets.tab", "DatasetsTab"),
    TabSpec("Fine-tune", "studio.finetune.tab", "FinetuneTab"),
    TabSpec("Rollout", "studio.rollout.tab", "RolloutTab"),
]


class MainWindow(QMainWindow):
    """The studio window. Each tab is a controller built with the shared AppContext; above them the
    first-launch guide (``welcome``) says what to do next until the person hides it."""

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.setWindowTitle(f"vla-studio — {ctx.home}")
        self.resize(1400, 900)
        self.tabs = QTabWidget()
        self.welcome = WelcomeWidget()
        central = QWidget()
        box = QVBoxLayout(central)
        box.setContentsMargins(4, 4, 4, 0)
        box.addWidget(self.welcome)
        box.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        self.tab_widgets = {}
        for spec in TABS:
            module = importlib.import_module(spec.module)
            widget = getattr(module, spec.cls)(ctx)
            self.tab_widgets[spec.title] = widget
            self.tabs.addTab(widget, spec.title)
        ctx.status_posted.connect(self._on_status_posted)
        ctx.error_posted.connect(self._on_error_posted)
        ctx.checkpoint_opened.connect(self._on_checkpoint_opened)
        self.welcome.connect_requested.connect(self._on_welcome_connect_requested)
        self.welcome.dismissed.connect(self._on_welcome_dismissed)
        for sig in (ctx.store_changed, ctx.rigs.rig_connected, ctx.rigs.rig_disconnected, ctx.rigs.lease_changed,
                    ctx.rigs.rig_failed):
            sig.connect(self.refresh_welcome)
        record = self.tab_widgets.get("Record")
        if hasattr(record, "rig_combo"):
            record.rig_combo.currentTextChanged.connect(self.refresh_welcome)  # its keys follow the rig chosen
        self.refresh_welcome()
        self.statusBar().showMessage(f"store: {ctx.home}   rig: {ctx.rig}")
        if ctx.settings.data.load_warning:
            self.statusBar().showMessage(ctx.settings.data.load_warning, 20000)

    # ------------------------------------------------------------------ first-launch guide
    def guide_progress(self) -> Progress:
        try:
            store = self.ctx.store
            episodes = store.episodes(status=("complete",))
            demos = sum(1 for e in episodes if e.source != "policy")
            rollouts = sum(1 for e in episodes if e.source == "policy")
            checkpoints = len(store.checkpoints())
        except Exception:  # noqa: BLE001 - a broken store is reported by the tabs; the guide stays
            demos = rollouts = checkpoints = 0
        record = self.tab_widgets.get("Record")
        connected = bool(self.ctx.rigs.holder) or getattr(record, "rig", None) is not None
        return Progress(connected=connected, demos=demos, checkpoints=checkpoints, rollouts=rollouts)

    def refresh_welcome(self, *_args) -> None:
        progress = self.guide_progress()
        record = self.tab_widgets.get("Record")
        hint = record.key_hint() if hasattr(record, "key_hint") else "Space starts and stops an episode"
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

    def _on_checkpoint_opened(self, _path: str) -> None:
        self.tabs.setCurrentWidget(self.tab_widgets["Rollout"])

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
        self.ctx.close()
        super().closeEvent(event)


def placeholder(text: str) -> QLabel:
    label = QLabel(text)
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.setWordWrap(True)
    return label


def run_gui(home: Path, rig: str = "sim") -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("vla-studio")
    ctx = AppContext(home=home, rig=rig)
    window = MainWindow(ctx)
    window.show()
    freeze_startup_heap()
    return app.exec()


def freeze_startup_heap() -> None:
    """Move everything alive after start-up (modules, widgets) out of the garbage collector's view.

    A full (generation 2) collection walks every tracked object: with the studio's imports that was a
    74 ms GUI freeze in the middle of scrolling a 10k-episode table (bench/scale.py); after the freeze a
    collection walks only what was made since."""
    import gc

    gc.collect()
    gc.freeze()
