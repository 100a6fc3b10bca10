"""Live training curves: train loss, validation loss and action accuracy against the step (pyqtgraph).

Plain numbers in (``add_train``, ``add_eval``); the widget never reads a file or a process itself.
"""

from __future__ import annotations

import math

import pyqtgraph as pg
from PyQt6.QtCore import QSize
from PyQt6.QtWidgets import QVBoxLayout, QWidget

from widgets.later import BuiltWhenShown


class CurvesWidget(BuiltWhenShown, QWidget):
    """Two stacked plots sharing the step axis: losses (train, val) and val action accuracy / L1.

    The pyqtgraph plots (~35 ms each to make and first paint) are made one per event-loop pass once the
    widget is first shown (:meth:`ensure_plots` makes them at once); the points are kept in plain lists
    and drawn when they exist.

    Signals: none (a view).
    """

    HINT = QSize(600, 966)  # two stacked plots
    MIN_HINT = QSize(68, 142)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self.loss_plot = self.metric_plot = None
        self._train = self._val = self._acc = self._l1 = None
        self._init_built_when_shown()
        self.clear()

    @property
    def built(self) -> bool:
        return self._l1 is not None

    def _build_step(self) -> None:
        """One plot per pass, then each one's right-click menu (as dear to make as the plot) per pass."""
        if self.built:
            plot = next((p for p in (self.loss_plot, self.metric_plot) if not p.getPlotItem().vb.menuEnabled()), None)
            if plot is not None:
                plot.getPlotItem().setMenuEnabled(True)
                self._build_timer.start()
            return
        if self.loss_plot is None:
            self.loss_plot = pg.PlotWidget(title="loss", enableMenu=False)
            self.loss_plot.addLegend(offset=(-10, 10))
            self.loss_plot.setLabel("bottom", "step")
            self.loss_plot.showGrid(x=True, y=True, alpha=0.3)
            self._train = self.loss_plot.plot([], [], pen=pg.mkPen((80, 160, 255), width=1.5), name="train")
            self._val = self.loss_plot.plot([], [], pen=pg.mkPen((255, 140, 60), width=2), symbol="o",
                                            symbolSize=6, symbolBrush=(255, 140, 60), name="val")
            self._layout.addWidget(self.loss_plot, 3)
            self._build_timer.start()  # the second plot in the next pass
            return
        self.metric_plot = pg.PlotWidget(title="validation", enableMenu=False)
        self.metric_plot.addLegend(offset=(-10, 10))
        self.metric_plot.setLabel("bottom", "step")
        self.metric_plot.showGrid(x=True, y=True, alpha=0.3)
        self.metric_plot.setXLink(self.loss_plot)
        self._acc = self.metric_plot.plot([], [], pen=pg.mkPen((90, 200, 120), width=2), symbol="t", symbolSize=6,
                                          symbolBrush=(90, 200, 120), name="action accuracy")
        self._l1 = self.metric_plot.plot([], [], pen=pg.mkPen((200, 90, 200), width=2), symbol="s", symbolSize=5,
                                         symbolBrush=(200, 90, 200), name="L1 (normalized)")
        self._layout.addWidget(self.metric_plot, 2)
        self._draw_train()
        self._draw_eval()
        self._build_timer.start()  # the menus

    def _draw_train(self) -> None:
        if self.built:
            self._train.setData(self.train_steps, self.train_loss)

    def _draw_eval(self) -> None:
        if self.built:
            self._val.setData(self.val_steps, self.val_loss)
            self._acc.setData(self.val_steps[-len(self.val_acc):] if self.val_acc else [], self.val_acc)
            self._l1.setData(self.val_steps[-len(self.val_l1):] if self.val_l1 else [], self.val_l1)

    def clear(self) -> None:
        self.train_steps: list[float] = []
        self.train_loss: list[float] = []
        self.val_steps: list[float] = []
        self.val_loss: list[float] = []
        self.val_acc: list[float] = []
        self.val_l1: list[float] = []
        self._draw_train()
        self._draw_eval()

    @staticmethod
    def _ok(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    def add_train(self, step: int, loss: float) -> None:
        if not self._ok(loss):
            return
        if self.train_steps and step <= self.train_steps[-1]:  # a resumed run replays from its checkpoint
            keep = sum(1 for s in self.train_steps if s < step)
            del self.train_steps[keep:], self.train_loss[keep:]
        self.train_steps.append(step)
        self.train_loss.append(float(loss))
        self._draw_train()

    def drop_after(self, step: int) -> None:
        """Forget the points after ``step`` (a resumed run goes back to its checkpoint and trains them again)."""
        keep = sum(1 for s in self.train_steps if s <= step)
        del self.train_steps[keep:], self.train_loss[keep:]
        self._draw_train()
        self._drop_eval_after(step)

    def _drop_eval_after(self, step: int) -> None:
        gone = sum(1 for s in self.val_steps if s > step)
        if not gone:
            return
        del self.val_steps[-gone:], self.val_loss[-gone:]
        for values in (self.val_acc, self.val_l1):  # aligned with the last len(values) val steps
            del values[len(values) - min(gone, len(values)):]
        self._draw_eval()

    def add_eval(self, step: int, val_loss: float | None, accuracy: float | None = None,
                 l1: float | None = None) -> None:
        self._drop_eval_after(step - 1)  # a resumed run evaluates a step again: one point per step
        if self._ok(val_loss):
            self.val_steps.append(step)
            self.val_loss.append(float(val_loss))
        if self._ok(accuracy):
            self.val_acc.append(float(accuracy))
        if self._ok(l1):
            self.val_l1.append(float(l1))
        self._draw_eval()
