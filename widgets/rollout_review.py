"""The review of rollouts as a view: the stored rollouts with success rate per checkpoint, playback of one
rollout with the overlays it had live, and open-loop evaluation plots (predicted vs recorded per joint).

Plain data only, like the episode viewer it shares its protocol with: rows and rates come in as values, the
playback asks for the frames of a tick with ``frame_requested(tick)`` and shows what comes back through
:meth:`RolloutReviewView.show_frames` (a controller in ``studio/`` decodes them off the GUI thread), with the
overlays :class:`PlaybackData` computes for that very tick.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QSignalBlocker, Qt, QTimer, pyqtSignal
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSlider,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from widgets.camera_grid import CameraGridWidget
from widgets.camera_view import CameraView
from widgets.later import BuiltWhenShown
from widgets.overlays import OVERLAY_TIPS, OverlayData, install_overlays

PLACEHOLDER = "Select a rollout above to play it back with its overlays."


@dataclass
class PlaybackData:
    """One stored rollout as the playback shows it, besides its frames."""

    episode_id: int
    num_frames: int
    fps: float
    cameras: list[str]
    #: (tick, camera) -> the overlays drawn over that frame; None until the episode's streams are read
    overlay: Callable[[int, str], OverlayData | None] | None = None


def _item(text) -> QTableWidgetItem:
    it = QTableWidgetItem(str(text))
    it.setFlags(it.flags() & ~Qt.ItemFlag.ItemIsEditable)
    return it


class EvalPlotWidget(BuiltWhenShown, QWidget):
    """The open-loop evaluation's plot (one joint, recorded vs predicted): the pyqtgraph plot (~20 ms to make)
    is made when the widget is first shown (:meth:`ensure_plots`: at once), so building the Rollout tab never
    pays for a section the person may not open."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self.plot: pg.PlotWidget | None = None
        self.curve_recorded = self.curve_predicted = None
        self._init_built_when_shown()

    @property
    def built(self) -> bool:
        return self.plot is not None

    def _build_step(self) -> None:
        if self.built:
            return
        plot = pg.PlotWidget()
        plot.setBackground("w")
        plot.addLegend()
        plot.setLabel("bottom", "tick")
        plot.setLabel("left", "action")
        self.curve_recorded = plot.plot([], [], pen=pg.mkPen((40, 40, 40), width=2), name="recorded")
        self.curve_predicted = plot.plot([], [], pen=pg.mkPen((30, 120, 255), width=2), name="predicted")
        self._layout.addWidget(plot)
        self.plot = plot


class RolloutReviewView(QWidget):
    """Rollouts list, per-checkpoint success rates, playback with overlays, open-loop evaluation.

    Signals:
        rollout_selected(int): the person picked this episode id in the list.
        refresh_requested(): the Refresh button.
        frame_requested(int): show this tick (the controller answers with ``show_frames``).
        evaluation_requested(str, int): dataset name, max episodes (the tab runs it on a thread).
        failed(str): a one-line message for the person (evaluation asked with no dataset).
    """

    rollout_selected = pyqtSignal(int)
    refresh_requested = pyqtSignal()
    frame_requested = pyqtSignal(int)
    evaluation_requested = pyqtSignal(str, int)
    failed = pyqtSignal(str)

    def __init__(self, joint_names: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.joint_names = list(joint_names)
        self.row_ids: list[int] = []
        self._data: PlaybackData | None = None
        self._tick = 0
        self._overlay_data: dict[str, OverlayData] = {}
        self.eval_results: list = []  # OpenLoopResult per evaluation, newest last
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.sections = QTabWidget()
        layout.addWidget(self.sections)
        split = QSplitter(Qt.Orientation.Vertical)
        self.sections.addTab(split, "Rollouts")

        # --- lists
        top = QWidget()
        tl = QHBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        self.table = QTableWidget(0, 6)
        self.table.setHorizontalHeaderLabels(["id", "checkpoint", "task", "success", "ticks", "started"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._on_selection_changed)
        self.rates = QTableWidget(0, 3)
        self.rates.setHorizontalHeaderLabels(["checkpoint", "successes", "rate"])
        self.rates.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh_requested)
        left = QVBoxLayout()
        self.list_label = QLabel("Stored rollouts")
        left.addWidget(self.list_label)
        left.addWidget(self.table)
        right = QVBoxLayout()
        right.addWidget(QLabel("Success rate per checkpoint"))
        right.addWidget(self.rates)
        right.addWidget(refresh)
        tl.addLayout(left, 3)
        tl.addLayout(right, 2)
        split.addWidget(top)

        # --- playback
        play_box = QGroupBox("Playback (the overlays as they were live, from the stored predictions)")
        pl = QVBoxLayout(play_box)
        self.views_grid = CameraGridWidget()  # the stored cameras as large as the space allows
        self.views_grid.set_placeholder(PLACEHOLDER)
        self.views_grid.setToolTip(OVERLAY_TIPS)
        pl.addWidget(self.views_grid, 1)
        self.views: dict[str, CameraView] = {}
        controls = QHBoxLayout()
        self.play_button = QPushButton("Play")
        self.play_button.setCheckable(True)
        self.play_button.toggled.connect(self._on_play_toggled)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.valueChanged.connect(self._on_slider_moved)
        self.tick_label = QLabel("no rollout selected")
        controls.addWidget(self.play_button)
        controls.addWidget(self.slider, 1)
        controls.addWidget(self.tick_label)
        pl.addLayout(controls)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._advance)
        split.addWidget(play_box)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 3)
        split.setSizes([180, 560])
        self.splitter = split

        # --- open-loop evaluation
        eval_box = QGroupBox("Open-loop evaluation: the checkpoint picked in Live over a dataset's recorded episodes")
        el = QVBoxLayout(eval_box)
        row = QHBoxLayout()
        self.dataset_combo = QComboBox()
        self.eval_episodes = QSpinBox()
        self.eval_episodes.setRange(1, 1000)
        self.eval_episodes.setValue(3)
        self.eval_button = QPushButton("Evaluate")
        self.eval_button.clicked.connect(self._on_evaluate_clicked)
        self.eval_status = QLabel("")
        self.joint_combo = QComboBox()
        self.joint_combo.addItems(self.joint_names)
        self.joint_combo.currentIndexChanged.connect(self._replot)
        self.episode_combo = QComboBox()
        self.episode_combo.currentIndexChanged.connect(self._replot)
        for w in (QLabel("dataset"), self.dataset_combo, QLabel("episodes"), self.eval_episodes, self.eval_button,
                  QLabel("joint"), self.joint_combo, QLabel("episode"), self.episode_combo, self.eval_status):
            row.addWidget(w)
        row.addStretch(1)
        el.addLayout(row)
        body = QHBoxLayout()
        self.eval_plot = EvalPlotWidget()  # its pyqtgraph plot is made when the section is first opened
        self.mae_table = QTableWidget(0, len(self.joint_names) + 2)
        self.mae_table.setHorizontalHeaderLabels(["checkpoint", *self.joint_names, "mean"])
        body.addWidget(self.eval_plot, 3)
        body.addWidget(self.mae_table, 2)
        el.addLayout(body)
        self.sections.addTab(eval_box, "Open-loop evaluation")

    @property
    def plot(self) -> pg.PlotWidget:
        """The open-loop plot (made now if its section was never opened)."""
        self.eval_plot.ensure_plots()
        return self.eval_plot.plot

    @property
    def curve_recorded(self) -> pg.PlotDataItem:
        self.eval_plot.ensure_plots()
        return self.eval_plot.curve_recorded

    @property
    def curve_predicted(self) -> pg.PlotDataItem:
        self.eval_plot.ensure_plots()
        return self.eval_plot.curve_predicted

    # ------------------------------------------------------------------ lists
    def set_rollouts(self, rows: list[tuple[int, str, str, bool | None, int, str]], total: int) -> None:
        """Rows of (episode id, checkpoint, task, success, ticks, started), newest first; ``total``: how many
        rollouts the store holds (more than the rows when only a page is listed)."""
        self.row_ids = [int(r[0]) for r in rows]
        with QSignalBlocker(self.table):
            self.table.setRowCount(len(rows))
            for r, values in enumerate(rows):
                ep, label, task, success, ticks, started = values
                succ = {True: "yes", False: "no", None: "—"}[success]
                for c, v in enumerate([ep, label, task, succ, ticks, started]):
                    self.table.setItem(r, c, _item(v))
        self.list_label.setText(f"Stored rollouts: the newest {len(rows)} of {total}"
                                if total > len(rows) else "Stored rollouts")

    def set_rates(self, rates: dict[str, tuple[int, int]]) -> None:
        """checkpoint label -> (successes, labelled episodes)."""
        self.rates.setRowCount(len(rates))
        for r, (k, (s, n)) in enumerate(sorted(rates.items())):
            self.rates.setItem(r, 0, _item(k))
            self.rates.setItem(r, 1, _item(f"{s}/{n}"))
            self.rates.setItem(r, 2, _item(f"{s / n:.0%}" if n else "—"))

    def set_datasets(self, names: list[str]) -> None:
        current = self.dataset_combo.currentText()
        with QSignalBlocker(self.dataset_combo):
            self.dataset_combo.clear()
            self.dataset_combo.addItems(names)
            if current:
                self.dataset_combo.setCurrentText(current)

    def _on_selection_changed(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows and rows[0].row() < len(self.row_ids):
            self.rollout_selected.emit(self.row_ids[rows[0].row()])

    # ------------------------------------------------------------------ playback
    def set_episode(self, data: PlaybackData | None) -> None:
        """Show a rollout (None: none). The same episode again (its streams now read) keeps the cursor."""
        if data is None:
            self.pause()
            self._data = None
            self._overlay_data = {}
            self.views = dict(self.views_grid.set_cameras([]))
            self.tick_label.setText("no rollout selected")
            return
        same = self._data is not None and self._data.episode_id == data.episode_id
        self._data = data
        if same:
            return
        self._overlay_data = {}
        self.views = dict(self.views_grid.set_cameras(list(data.cameras)))
        for cam, view in self.views.items():
            install_overlays(view, lambda c=cam: self._overlay_data.get(c))
            view.setToolTip(OVERLAY_TIPS)
        with QSignalBlocker(self.slider):
            self.slider.setRange(0, max(0, data.num_frames - 1))
            self.slider.setValue(0)
        self.show_tick(0)

    def show_tick(self, tick: int) -> None:
        """Move the cursor to ``tick`` and ask for its frames."""
        if self._data is None:
            return
        self._tick = int(tick)
        self.tick_label.setText(f"tick {self._tick + 1}/{self._data.num_frames}")
        self.frame_requested.emit(self._tick)

    def show_frames(self, tick: int, frames: dict[str, np.ndarray]) -> None:
        """The decoded frames of ``tick`` (camera -> HxWx3 uint8), drawn with that tick's overlays."""
        data = self._data
        if data is None:
            return
        for cam, view in self.views.items():
            if data.overlay is not None:
                overlay = data.overlay(int(tick), cam)
                if overlay is not None:
                    self._overlay_data[cam] = overlay
            if cam in frames:
                view.set_frame(frames[cam])

    def pause(self) -> None:
        self._timer.stop()
        with QSignalBlocker(self.play_button):
            self.play_button.setChecked(False)
        self.play_button.setText("Play")

    def _on_slider_moved(self, value: int) -> None:
        self.show_tick(value)

    def _on_play_toggled(self, on: bool) -> None:
        if on and self._data is not None:
            if self._tick >= self._data.num_frames - 1:
                self.slider.setValue(0)  # at the end: Play starts over
            self._timer.start(int(1000 / max(self._data.fps, 1)))
        else:
            self._timer.stop()
        playing = self._timer.isActive()
        self.play_button.setText("Pause" if playing else "Play")
        if on and not playing:  # nothing to play
            with QSignalBlocker(self.play_button):
                self.play_button.setChecked(False)

    def _advance(self) -> None:
        if self._data is None:
            return
        nxt = self._tick + 1
        if nxt >= self._data.num_frames:
            self.play_button.setChecked(False)
            return
        self.slider.setValue(nxt)

    # ------------------------------------------------------------------ evaluation
    def _on_evaluate_clicked(self) -> None:
        name = self.dataset_combo.currentText()
        if not name:
            self.failed.emit("open-loop evaluation: the store has no dataset; record demonstrations first")
            return
        self.eval_status.setText("evaluating …")
        self.eval_button.setEnabled(False)
        self.evaluation_requested.emit(name, self.eval_episodes.value())

    def on_eval_progress(self, done: int, total: int) -> None:
        self.eval_status.setText(f"episode {done}/{total}")

    def on_eval_failed(self, text: str) -> None:
        self.eval_button.setEnabled(True)
        self.eval_status.setText("failed")

    def show_evaluation(self, result) -> None:
        """Add a checkpoint's MAE row and plot its predictions (``result``: a ``recorder.evaluation.OpenLoopResult``)."""
        names = self.joint_names
        self.eval_button.setEnabled(True)
        self.eval_results.append(result)
        r = self.mae_table.rowCount()
        self.mae_table.insertRow(r)
        head = result.action_head
        self.mae_table.setItem(r, 0, _item(f"{result.checkpoint_id} ({head})" if head else result.checkpoint_id))
        for j, v in enumerate(result.mae_per_joint if result.mae_per_joint is not None else []):
            if j < len(names):
                self.mae_table.setItem(r, j + 1, _item(f"{v:.2f}"))
        self.mae_table.setItem(r, len(names) + 1, _item(f"{result.mae:.2f}"))
        self.eval_status.setText(f"MAE {result.mae:.2f} over {len(result.episodes)} episodes")
        with QSignalBlocker(self.episode_combo):
            self.episode_combo.clear()
            self.episode_combo.addItems([f"episode {e.episode_id}" for e in result.episodes])
        self._replot()

    def _replot(self) -> None:
        if not self.eval_results:
            return
        res = self.eval_results[-1]
        i = max(0, self.episode_combo.currentIndex())
        if i >= len(res.episodes):
            return
        ep = res.episodes[i]
        j = self.joint_combo.currentIndex()
        self.curve_recorded.setData(ep.indices.astype(float), ep.recorded[:, j].astype(float))
        self.curve_predicted.setData(ep.indices.astype(float), np.nan_to_num(ep.predicted[:, j]).astype(float))
        self.plot.setTitle(f"{res.checkpoint_id}: {self.joint_names[j]}  MAE {ep.mae[j]:.2f}")
