"""Review of rollouts: the stored rollouts with success rate per checkpoint, playback of a stored
rollout with the live overlays, and open-loop evaluation plots (predicted vs recorded per joint).
"""

from __future__ import annotations

from collections import defaultdict

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

from recorder.errors import StoreError
from recorder.store.query import EpisodeQuery
from studio.context import remember_splitter
from studio.rollout_overlay import StoredRollout
from widgets.camera_grid import CameraGridWidget
from widgets.camera_view import CameraView
from widgets.overlays import OVERLAY_TIPS, install_overlays

JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]


#: the newest rollouts the list shows (the rates count every rollout, in SQL): opening the review costs the same
#: whatever the store holds
LIST_LIMIT = 500
#: which episodes the review lists
ROLLOUTS = EpisodeQuery(source=("policy",))


def _tag(tags, prefix: str) -> str | None:
    return next((t[len(prefix):] for t in tags if t and t.startswith(prefix)), None)


class CheckpointNames:
    """Store checkpoint id -> ``run/step``, each looked up once (a deleted run's id reads as ``checkpoint N``)."""

    def __init__(self, store) -> None:
        self.store = store
        self._names: dict[int, str] = {}

    def __call__(self, checkpoint_id: int) -> str:
        name = self._names.get(checkpoint_id)
        if name is None:
            try:
                ck = self.store.checkpoint(checkpoint_id)
                name = f"{ck.run_id}/{ck.step}"
            except StoreError:
                name = f"checkpoint {checkpoint_id}"
            self._names[checkpoint_id] = name
        return name


def checkpoint_label(checkpoint_id: int | None, ckpt_tag: str | None, head: str | None, names) -> str:
    """``run/step`` of a rollout's checkpoint, from its ``checkpoint_id`` (the store's checkpoint row) or, for
    an episode without one (stored before episodes carried it, or by a policy server the store does not
    know), its ``ckpt:`` tag; with its action head when the rollout recorded it (``run/step (flow)``): the
    per-checkpoint tables then compare heads on the same data."""
    if checkpoint_id is not None:
        label = names(int(checkpoint_id))
    else:
        label = ckpt_tag or "?"
    return f"{label} ({head})" if head else label


def row_label(row, names) -> str:
    """:func:`checkpoint_label` of an ``EpisodeRow``/``EpisodeInfo``."""
    return checkpoint_label(row.checkpoint_id, _tag(row.tags, "ckpt:"), _tag(row.tags, "head:"), names)


def success_by_checkpoint(store, query: EpisodeQuery = ROLLOUTS) -> dict[str, tuple[int, int]]:
    """checkpoint label -> (successes, labelled episodes), over every episode of ``query`` (one GROUP BY)."""
    names = CheckpointNames(store)
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for cid, ckpt, head, success, n in store.outcome_counts(query, tag_prefixes=("ckpt:", "head:")):
        label = checkpoint_label(cid, None if cid is not None or ckpt is None else ckpt[5:],
                                 None if head is None else head[5:], names)
        row = out[label]
        if success is not None:
            row[1] += n
            row[0] += n * int(bool(success))
    return {k: (v[0], v[1]) for k, v in out.items()}


def _item(text) -> QTableWidgetItem:
    it = QTableWidgetItem(str(text))
    it.setFlags(it.flags() & ~Qt.ItemFlag.ItemIsEditable)
    return it


class RolloutReviewWidget(QWidget):
    """Rollouts list, per-checkpoint success rates, playback with overlays, open-loop evaluation.

    Signals:
        evaluation_requested(str, int): dataset name, max episodes (the tab runs it on a thread).
    """

    evaluation_requested = pyqtSignal(str, int)

    def __init__(self, ctx, parent=None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self._episodes = []
        self._reader = None
        self._stored: StoredRollout | None = None
        self._tick = 0
        self._overlay_data = {}
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
        refresh.clicked.connect(self.refresh)
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
        self.views_grid.set_placeholder("Select a rollout above to play it back with its overlays.")
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
        remember_splitter(ctx, split, "rollout.review")  # the person's pane sizes come back next launch

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
        self.joint_combo.addItems(JOINTS)
        self.joint_combo.currentIndexChanged.connect(self._replot)
        self.episode_combo = QComboBox()
        self.episode_combo.currentIndexChanged.connect(self._replot)
        for w in (QLabel("dataset"), self.dataset_combo, QLabel("episodes"), self.eval_episodes, self.eval_button,
                  QLabel("joint"), self.joint_combo, QLabel("episode"), self.episode_combo, self.eval_status):
            row.addWidget(w)
        row.addStretch(1)
        el.addLayout(row)
        body = QHBoxLayout()
        # the plot (~40 ms of pyqtgraph) is made when this section is first shown or plotted, not with the tab
        self.plot = self.curve_recorded = self.curve_predicted = None
        self._plot_box = QWidget()
        self._plot_box_layout = QVBoxLayout(self._plot_box)
        self._plot_box_layout.setContentsMargins(0, 0, 0, 0)
        self.mae_table = QTableWidget(0, len(JOINTS) + 2)
        self.mae_table.setHorizontalHeaderLabels(["checkpoint", *JOINTS, "mean"])
        body.addWidget(self._plot_box, 3)
        body.addWidget(self.mae_table, 2)
        el.addLayout(body)
        self.sections.addTab(eval_box, "Open-loop evaluation")
        self.sections.currentChanged.connect(
            lambda i: self._ensure_plot() if self.sections.widget(i) is eval_box else None)

    def _ensure_plot(self) -> None:
        if self.plot is not None:
            return
        self.plot = pg.PlotWidget()
        self.plot.setBackground("w")
        self.plot.addLegend()
        self.plot.setLabel("bottom", "tick")
        self.plot.setLabel("left", "action")
        self.curve_recorded = self.plot.plot([], [], pen=pg.mkPen((40, 40, 40), width=2), name="recorded")
        self.curve_predicted = self.plot.plot([], [], pen=pg.mkPen((30, 120, 255), width=2), name="predicted")
        self._plot_box_layout.addWidget(self.plot)

    # ------------------------------------------------------------------ lists
    def refresh(self) -> None:
        store = self.ctx.store
        names = CheckpointNames(store)
        # the newest LIST_LIMIT rollouts, label columns only (one paged SQL query, not every episode)
        self._episodes = store.episode_rows(ROLLOUTS, descending=True, limit=LIST_LIMIT)
        self.table.setRowCount(len(self._episodes))
        total = store.count_episodes(ROLLOUTS) if len(self._episodes) >= LIST_LIMIT else len(self._episodes)
        self.list_label.setText(f"Stored rollouts: the newest {len(self._episodes)} of {total}"
                                if total > len(self._episodes) else "Stored rollouts")
        for r, e in enumerate(self._episodes):
            succ = {True: "yes", False: "no", None: "—"}[e.success]
            for c, v in enumerate([e.id, row_label(e, names), e.task, succ, e.num_frames,
                                   e.start_time.strftime("%Y-%m-%d %H:%M:%S")]):
                self.table.setItem(r, c, _item(v))
        rates = success_by_checkpoint(store)
        self.rates.setRowCount(len(rates))
        for r, (k, (s, n)) in enumerate(sorted(rates.items())):
            self.rates.setItem(r, 0, _item(k))
            self.rates.setItem(r, 1, _item(f"{s}/{n}"))
            self.rates.setItem(r, 2, _item(f"{s / n:.0%}" if n else "—"))
        current = self.dataset_combo.currentText()
        self.dataset_combo.blockSignals(True)
        self.dataset_combo.clear()
        self.dataset_combo.addItems([d.name for d in store.datasets()])
        if current:
            self.dataset_combo.setCurrentText(current)
        self.dataset_combo.blockSignals(False)

    # ------------------------------------------------------------------ playback
    def _on_selection_changed(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self.open_rollout(self._episodes[rows[0].row()].id)

    def open_rollout(self, episode_id: int) -> None:
        self.close_reader()
        reader = self.ctx.store.open_episode(episode_id)
        self._reader = reader
        self._stored = StoredRollout(reader.lowdim(), reader.fps)
        self.views = dict(self.views_grid.set_cameras(list(reader.cameras)))
        for cam, view in self.views.items():
            install_overlays(view, lambda c=cam: self._overlay_data.get(c))
            view.setToolTip(OVERLAY_TIPS)
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, reader.num_frames - 1))
        self.slider.setValue(0)
        self.slider.blockSignals(False)
        self.show_tick(0)

    def show_tick(self, tick: int) -> None:
        if self._reader is None or self._stored is None:
            return
        self._tick = int(tick)
        low, high = self._limits()
        for cam, view in self.views.items():
            view.set_frame(self._reader.frame(cam, self._tick))
            self._overlay_data[cam] = self._stored.overlay(self._tick, cam, low=low, high=high, names=JOINTS)
        self.tick_label.setText(f"tick {self._tick + 1}/{self._reader.num_frames}")

    def _limits(self):
        rig = getattr(self._reader.info, "rig", None) if self._reader is not None else None
        lim = (rig.get("robot_info") or {}).get("joint_limits") if isinstance(rig, dict) else None
        if isinstance(lim, dict) and "low" in lim and "high" in lim:
            return np.asarray(lim["low"], float), np.asarray(lim["high"], float)
        return np.array([-180.0] * 5 + [0.0]), np.array([180.0] * 5 + [100.0])

    def _on_slider_moved(self, value: int) -> None:
        self.show_tick(value)

    def _on_play_toggled(self, on: bool) -> None:
        if on and self._stored is not None:
            if self._reader is not None and self._tick >= self._reader.num_frames - 1:
                self.slider.setValue(0)  # at the end: Play starts over
            self._timer.start(int(1000 / max(self._stored.fps, 1)))
        else:
            self._timer.stop()
        playing = self._timer.isActive()
        self.play_button.setText("Pause" if playing else "Play")
        if on and not playing:  # nothing to play
            with QSignalBlocker(self.play_button):
                self.play_button.setChecked(False)

    def _advance(self) -> None:
        if self._reader is None:
            return
        nxt = self._tick + 1
        if nxt >= self._reader.num_frames:
            self.play_button.setChecked(False)
            return
        self.slider.setValue(nxt)

    def close_reader(self) -> None:
        self._timer.stop()
        with QSignalBlocker(self.play_button):
            self.play_button.setChecked(False)
        self.play_button.setText("Play")
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # ------------------------------------------------------------------ evaluation
    def _on_evaluate_clicked(self) -> None:
        name = self.dataset_combo.currentText()
        if not name:
            self.ctx.error_posted.emit("open-loop evaluation: the store has no dataset; record demonstrations first")
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
        """Add a checkpoint's MAE row and plot its predictions."""
        self.eval_button.setEnabled(True)
        self.eval_results.append(result)
        r = self.mae_table.rowCount()
        self.mae_table.insertRow(r)
        head = result.action_head
        self.mae_table.setItem(r, 0, _item(f"{result.checkpoint_id} ({head})" if head else result.checkpoint_id))
        for j, v in enumerate(result.mae_per_joint if result.mae_per_joint is not None else []):
            if j < len(JOINTS):
                self.mae_table.setItem(r, j + 1, _item(f"{v:.2f}"))
        self.mae_table.setItem(r, len(JOINTS) + 1, _item(f"{result.mae:.2f}"))
        self.eval_status.setText(f"MAE {result.mae:.2f} over {len(result.episodes)} episodes")
        self.episode_combo.blockSignals(True)
        self.episode_combo.clear()
        self.episode_combo.addItems([f"episode {e.episode_id}" for e in result.episodes])
        self.episode_combo.blockSignals(False)
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
        self._ensure_plot()
        self.curve_recorded.setData(ep.indices.astype(float), ep.recorded[:, j].astype(float))
        self.curve_predicted.setData(ep.indices.astype(float), np.nan_to_num(ep.predicted[:, j]).astype(float))
        self.plot.setTitle(f"{res.checkpoint_id}: {JOINTS[j]}  MAE {ep.mae[j]:.2f}")
