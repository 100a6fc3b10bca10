"""What every tab shares: the store root, the rig spec, and a way to report errors and status."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from PyQt6.QtCore import QObject, QTimer, pyqtSignal

from studio.settings import SETTINGS_FILE, StudioSettings

log = logging.getLogger(__name__)


class SettingsModel(QObject):
    """The window's settings (a ``StudioSettings``) for Qt code: setters emit ``changed(key)`` and the file
    is written a moment later (a dragged splitter saves once, not per pixel).

    Signals:
        changed(str): the key that changed (``welcome_dismissed``, ``splitters.<name>``).
    """

    changed = pyqtSignal(str)

    def __init__(self, settings: StudioSettings, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.data = settings
        self._save_timer = QTimer(self)
        self._save_timer.setSingleShot(True)
        self._save_timer.setInterval(400)
        self._save_timer.timeout.connect(self.save)
        self._dirty = False

    def save(self) -> None:
        """Write the file now if anything changed since the last write."""
        self._save_timer.stop()
        if not self._dirty:
            return
        self._dirty = False
        try:
            self.data.save()
        except OSError:
            pass  # a read-only home keeps the settings for this session only

    def _touch(self, key: str) -> None:
        self._dirty = True
        self.changed.emit(key)
        self._save_timer.start()

    @property
    def welcome_dismissed(self) -> bool:
        return self.data.welcome_dismissed

    def set_welcome_dismissed(self, on: bool) -> None:
        if self.data.welcome_dismissed != on:
            self.data.welcome_dismissed = on
            self._touch("welcome_dismissed")

    def splitter_sizes(self, key: str) -> list[int] | None:
        return self.data.splitters.get(key)

    def set_splitter_sizes(self, key: str, sizes: list[int]) -> None:
        sizes = [int(s) for s in sizes]
        if self.data.splitters.get(key) != sizes:
            self.data.splitters[key] = sizes
            self._touch(f"splitters.{key}")

    def remember_splitter(self, splitter, key: str) -> None:
        """Restore ``splitter``'s sizes saved under ``key`` (when they fit its panes) and save them when the
        person moves it."""
        sizes = self.splitter_sizes(key)
        if sizes and len(sizes) == splitter.count() and sum(sizes) > 0:
            splitter.setSizes(sizes)
        splitter.splitterMoved.connect(lambda *_: self.set_splitter_sizes(key, splitter.sizes()))


class AppContext(QObject):
    """Shared state of the main window.

    Signals:
        status_posted(str): a one-line status message for the status bar.
        error_posted(str): a one-line error a person can act on (shown in a message box by the window).
        store_changed(): episodes, datasets or runs changed in the store (tabs refresh their lists).
        checkpoint_opened(str): a checkpoint path to open in the Rollout tab.
        local_training_changed(bool): a fine-tune started (True) or ended (False) on this machine's CPU/GPU;
            the Record tab slows an idle rig down meanwhile (``local_training`` holds the current value).
        store_opened(str): :meth:`open_store_in_background` is done: "" when the store is open, else the
            one-line error (the tabs report it again when they use the store).

    ``rigs`` is the one :class:`studio.rig_manager.RigManager` of the window: the Record and Rollout tabs
    connect the rig through it and take its lease before driving the arm. ``settings`` is the window's
    :class:`SettingsModel` (``<home>/settings.json``).
    """

    status_posted = pyqtSignal(str)
    error_posted = pyqtSignal(str)
    store_changed = pyqtSignal()
    checkpoint_opened = pyqtSignal(str)
    local_training_changed = pyqtSignal(bool)
    store_opened = pyqtSignal(str)

    def __init__(self, home: Path, rig: str = "sim", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.home = Path(home)
        self.rig = rig
        self._store = None
        self._store_lock = threading.Lock()  # the opener thread and the GUI thread open it once between them
        self._opener: threading.Thread | None = None
        from studio.rig_manager import RigManager

        self.rigs = RigManager(self.home, parent=self)
        self.settings = SettingsModel(StudioSettings.load(self.home / SETTINGS_FILE), parent=self)
        self.local_training = False
        self._changes = 0  # store_changed signals so far: what the opener's dataset list was read before
        self._opened_datasets: tuple[int, list] | None = None
        self.store_changed.connect(self._count_change)

    def _count_change(self) -> None:
        self._changes += 1

    def opened_datasets(self) -> list | None:
        """The dataset list the opener thread read (per-dataset counts: 40-60 ms of SQL at 100k episodes), if
        nothing in this window changed the store since; else None (read it again)."""
        got = self._opened_datasets
        return got[1] if got is not None and got[0] == self._changes else None

    def set_local_training(self, on: bool) -> None:
        if bool(on) != self.local_training:
            self.local_training = bool(on)
            self.local_training_changed.emit(self.local_training)

    @property
    def store(self):
        """The episode store, opened on first use (recovering episodes a crash left behind)."""
        if self._store is None:
            self.wait_for_opener()
            with self._store_lock:
                if self._store is None:
                    from recorder.store import Store

                    self._store = Store.open(self.home)
        return self._store

    def wait_for_opener(self) -> None:
        """Block until :meth:`open_store_in_background`'s thread is done, imports included: a second thread
        importing the same modules meanwhile can fail (``KeyError: 'recorder.store'`` was seen)."""
        opener = self._opener
        if opener is not None and opener is not threading.current_thread():
            opener.join()

    @property
    def store_is_open(self) -> bool:
        return self._store is not None

    def open_store_in_background(self, preload: tuple[str, ...] = ()) -> None:
        """Import ``preload`` modules and open the store in a thread (importing SQLAlchemy and opening a
        big index take seconds: the window shows meanwhile); ``store_opened`` is emitted when done.

        The thread also runs the tabs' first queries once (:func:`warm_queries`): SQLAlchemy compiles a
        statement the first time it runs (and SQLite reads the index pages), which made the first refresh
        of the Datasets tab several times longer than the next ones, on the GUI thread."""
        if self._opener is not None:
            return

        def run() -> None:
            import importlib

            from recorder.errors import KnownError

            error = ""
            try:
                for name in preload:
                    importlib.import_module(name)
                changes = self._changes
                self._opened_datasets = (changes, warm_queries(self.store))
            except KnownError as err:
                error = str(err)
            except Exception as err:  # noqa: BLE001 - shown to the person, logged with its traceback
                log.exception("opening the store %s failed", self.home)
                error = f"{self.home}: the store could not be opened ({err.__class__.__name__}: {err})"
            try:
                self.store_opened.emit(error)
            except RuntimeError:  # the window (and this context) went away meanwhile
                pass

        self._opener = threading.Thread(target=run, name="store-opener", daemon=True)
        self._opener.start()

    def close(self) -> None:
        self.settings.save()
        self.rigs.shutdown()
        if self._opener is not None:
            self._opener.join(60)
        if self._store is not None:
            self._store.close()
            self._store = None


def warm_queries(store) -> list:
    """Run, once, the kinds of query the tabs run first (counts, a page of rows, datasets, runs), so their
    SQL is compiled and their index pages read before the GUI thread asks. Returns the dataset list."""
    from recorder.store.query import EpisodeQuery

    query = EpisodeQuery()
    datasets = store.datasets()
    store.count_episodes(query)
    store.count_episodes(EpisodeQuery(status=("complete",), source="policy"))
    store.episode_rows(query, sort="id", descending=True, limit=1)
    store.episode_rows(EpisodeQuery(source=("policy",)), descending=True, limit=1)
    for run in store.runs()[:1]:
        store.checkpoints(run.run_id)
    store.checkpoints()
    return datasets


def remember_splitter(ctx, splitter, key: str) -> None:
    """Give ``splitter`` the sizes the person left it at (saved in the window's settings under ``key``)."""
    settings = getattr(ctx, "settings", None)
    if settings is not None:
        settings.remember_splitter(splitter, key)


@dataclass
class TabSpec:
    title: str
    module: str
    cls: str
    extra: dict = field(default_factory=dict)


def freeze_startup_heap(generation: int = 2) -> None:
    """Move everything alive after start-up (modules, widgets) out of the garbage collector's view.

    A full (generation 2) collection walks every tracked object: with the studio's imports that was a
    74 ms GUI freeze in the middle of scrolling a 10k-episode table (bench/scale.py); after the freeze a
    collection walks only what was made since. ``generation`` < 2: collect only the young generations
    first (a millisecond), for data that is long-lived and holds no cycles (the Datasets tab's rows:
    reference counting frees them when the table drops them, frozen or not)."""
    import gc

    gc.collect(generation)
    gc.freeze()
