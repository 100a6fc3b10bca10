"""The main window: tabs Record, Datasets, Fine-tune, Rollout over one store."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QApplication, QLabel, QMainWindow, QMessageBox, QTabWidget

from studio.context import AppContext, TabSpec

TABS = [
    TabSpec("Record", "studio.tabs.record_tab", "RecordTab"),
    TabSpec("Datasets", "studio.tabs.datasets_tab", "DatasetsTab"),
    TabSpec("Fine-tune", "studio.tabs.finetune_tab", "FinetuneTab"),
    TabSpec("Rollout", "studio.tabs.rollout_tab", "RolloutTab"),
]


class MainWindow(QMainWindow):
    """The studio window. Each tab is a controller built with the shared AppContext."""

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.setWindowTitle(f"vla-studio — {ctx.home}")
        self.resize(1400, 900)
        self.tabs = QTabWidget()
        self.setCentralWidget(self.tabs)
        self.tab_widgets = {}
        for spec in TABS:
            module = importlib.import_module(spec.module)
            widget = getattr(module, spec.cls)(ctx)
            self.tab_widgets[spec.title] = widget
            self.tabs.addTab(widget, spec.title)
        ctx.status_posted.connect(self._on_status_posted)
        ctx.error_posted.connect(self._on_error_posted)
        ctx.checkpoint_opened.connect(self._on_checkpoint_opened)
        self.statusBar().showMessage(f"store: {ctx.home}   rig: {ctx.rig}")

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
