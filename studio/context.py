"""What every tab shares: the store root, the rig spec, and a way to report errors and status."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PyQt6.QtCore import QObject, pyqtSignal


class AppContext(QObject):
    """Shared state of the main window.

    Signals:
        status_posted(str): a one-line status message for the status bar.
        error_posted(str): a one-line error a person can act on (shown in a message box by the window).
        store_changed(): episodes, datasets or runs changed in the store (tabs refresh their lists).
        checkpoint_opened(str): a checkpoint path to open in the Rollout tab.
        local_training_changed(bool): a fine-tune started (True) or ended (False) on this machine's CPU/GPU;
            the Record tab slows an idle rig down meanwhile (``local_training`` holds the current value).

    ``rigs`` is the one :class:`studio.rig_manager.RigManager` of the window: the Record and Rollout tabs
    connect the rig through it and take its lease before driving the arm.
    """

    status_posted = pyqtSignal(str)
    error_posted = pyqtSignal(str)
    store_changed = pyqtSignal()
    checkpoint_opened = pyqtSignal(str)
    local_training_changed = pyqtSignal(bool)

    def __init__(self, home: Path, rig: str = "sim", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.home = Path(home)
        self.rig = rig
        self._store = None
        from studio.rig_manager import RigManager

        self.rigs = RigManager(self.home, parent=self)
        self.local_training = False

    def set_local_training(self, on: bool) -> None:
        if bool(on) != self.local_training:
            self.local_training = bool(on)
            self.local_training_changed.emit(self.local_training)

    @property
    def store(self):
        """The episode store, opened on first use (recovering episodes a crash left behind)."""
        if self._store is None:
            from recorder.store import Store

            self._store = Store.open(self.home)
        return self._store

    def close(self) -> None:
        self.rigs.shutdown()
        if self._store is not None:
            self._store.close()
            self._store = None


@dataclass
class TabSpec:
    title: str
    module: str
    cls: str
    extra: dict = field(default_factory=dict)
