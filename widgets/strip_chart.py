"""A scrolling strip chart of joint states (pyqtgraph): one curve per joint over the last N samples."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtWidgets import QVBoxLayout, QWidget

from widgets.later import BuiltWhenShown

_PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
            (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (0, 0, 0), (120, 60, 200)]


class StripChartWidget(BuiltWhenShown, QWidget):
    """Appends one vector per call to ``append``; redraws at most every ``redraw_every`` samples.

    The pyqtgraph plot (~40 ms to make and first paint) is made in the event-loop pass after the widget is
    first shown, or when first used (``plot``), so the tab holding it paints at once.

    Signals: none.
    """

    def __init__(self, history: int = 300, title: str = "joint state", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.history = history
        self._title = title
        self._plot: pg.PlotWidget | None = None
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._init_built_when_shown()
        self._names: list[str] = []
        self._buf = np.zeros((0, 0), np.float32)
        self._n = 0
        self._curves: list[pg.PlotDataItem] = []

    @property
    def plot(self) -> pg.PlotWidget:
        self.ensure_plots()
        return self._plot

    @property
    def built(self) -> bool:
        return self._plot is not None

    def _build_step(self) -> None:
        if self._plot is not None:
            return
        plot = pg.PlotWidget(title=self._title)
        plot.setBackground("w")
        plot.showGrid(x=True, y=True, alpha=0.3)
        plot.addLegend(offset=(5, 5))
        plot.setMouseEnabled(x=False, y=False)
        self._layout.addWidget(plot)
        self._plot = plot

    def set_names(self, names: list[str]) -> None:
        self.plot.clear()
        self._names = list(names)
        self._buf = np.full((self.history, len(names)), np.nan, np.float32)
        self._n = 0
        self._curves = [
            self.plot.plot(pen=pg.mkPen(_PALETTE[i % len(_PALETTE)], width=1.5), name=n) for i, n in enumerate(names)
        ]

    def clear(self) -> None:
        if self._names:
            self.set_names(self._names)

    @property
    def samples(self) -> int:
        return self._n

    def latest(self) -> np.ndarray | None:
        return None if self._n == 0 else self._buf[(self._n - 1) % self.history].copy()

    def append(self, values: np.ndarray, redraw: bool = True) -> None:
        v = np.asarray(values, np.float32).reshape(-1)
        if len(v) != len(self._names):
            self.set_names([f"j{i}" for i in range(len(v))])
        self._buf[self._n % self.history] = v
        self._n += 1
        if redraw:
            self.redraw()

    def redraw(self) -> None:
        n = min(self._n, self.history)
        if n == 0:
            return
        start = self._n - n
        idx = np.arange(start, self._n) % self.history
        x = np.arange(start, self._n)
        data = self._buf[idx]
        for i, c in enumerate(self._curves):
            c.setData(x, data[:, i])
