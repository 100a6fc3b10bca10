"""State and action per joint over an episode (pyqtgraph), with a cursor tied to the timeline."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import QVBoxLayout, QWidget

_PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
            (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


class JointPlotWidget(QWidget):
    """Two stacked plots (state, action); one curve per joint; x is the tick index.

    Signals:
        seeked(int): the user dragged the cursor to this tick.
    """

    seeked = pyqtSignal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("w")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics)
        self.plots: dict[str, pg.PlotItem] = {}
        self.cursors: dict[str, pg.InfiniteLine] = {}
        self.curves: dict[str, list[pg.PlotDataItem]] = {}
        self._n = 0
        for row, key in enumerate(("observation.state", "action")):
            plot = self.graphics.addPlot(row=row, col=0, title=key)
            plot.showGrid(x=True, y=True, alpha=0.2)
            plot.addLegend(offset=(5, 5), labelTextSize="7pt")
            cursor = pg.InfiniteLine(pos=0, angle=90, movable=True, pen=pg.mkPen((0, 0, 0), width=1.5))
            cursor.sigDragged.connect(self._on_cursor_dragged)
            plot.addItem(cursor, ignoreBounds=True)
            self.plots[key] = plot
            self.cursors[key] = cursor
            self.curves[key] = []
        self.plots["action"].setXLink(self.plots["observation.state"])

    def set_data(self, series: dict[str, np.ndarray], names: list[str] | None = None) -> None:
        """``series`` maps "observation.state"/"action" to (N, D) arrays; missing keys leave a plot empty."""
        self._n = 0
        for key, plot in self.plots.items():
            for c in self.curves[key]:
                plot.removeItem(c)
            self.curves[key] = []
            legend = plot.legend
            if legend is not None:
                legend.clear()
            arr = series.get(key)
            if arr is None:
                continue
            arr = np.asarray(arr, dtype=np.float64).reshape(len(arr), -1)
            self._n = max(self._n, arr.shape[0])
            x = np.arange(arr.shape[0])
            for d in range(arr.shape[1]):
                label = names[d] if names and d < len(names) else f"{d}"
                pen = pg.mkPen(_PALETTE[d % len(_PALETTE)], width=1.2)
                self.curves[key].append(plot.plot(x, arr[:, d], pen=pen, name=label))
        for plot in self.plots.values():
            plot.enableAutoRange()
            if self._n > 1:
                plot.setXRange(0, self._n - 1, padding=0.02)
        self.set_cursor(0)

    def set_cursor(self, tick: int) -> None:
        for cursor in self.cursors.values():
            cursor.blockSignals(True)
            cursor.setValue(float(tick))
            cursor.blockSignals(False)

    def cursor_value(self) -> int:
        return int(round(self.cursors["observation.state"].value()))

    def _on_cursor_dragged(self, line: pg.InfiniteLine) -> None:
        tick = max(0, min(int(round(line.value())), max(0, self._n - 1)))
        self.set_cursor(tick)
        self.seeked.emit(tick)
