"""State and action per joint over an episode (pyqtgraph), with a cursor tied to the timeline."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import QVBoxLayout, QWidget

from widgets.later import BuiltWhenShown, Later

_PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
            (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


class JointPlotWidget(BuiltWhenShown, QWidget):
    """Two stacked plots (state, action); one curve per joint; x is the tick index.

    The pyqtgraph plots (~20 ms each to make, as much again to paint first) are made one per event-loop
    pass once the widget is first shown (or at once when asked for, :meth:`ensure_plots`), so the tab
    holding it paints at once; data given before is kept and drawn when they exist.

    Signals:
        seeked(int): the user dragged the cursor to this tick.
    """

    seeked = pyqtSignal(int)
    KEYS = ("observation.state", "action")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.graphics: pg.GraphicsLayoutWidget | None = None
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self.plots: dict[str, pg.PlotItem] = {}
        self.cursors: dict[str, pg.InfiniteLine] = {}
        self.curves: dict[str, list[pg.PlotDataItem]] = {}
        self._labels: dict[str, list[str]] = {}
        self._n = 0
        self._series: dict[str, np.ndarray] = {}
        self._names: list[str] | None = None
        self._tick = 0
        self._init_built_when_shown()
        self._steps = None  # the drawing under way (see _draw)
        self._draw_timer = Later(self, self._on_draw_timer)  # one piece per event-loop pass (widgets.later)

    @property
    def built(self) -> bool:
        return len(self.plots) == len(self.KEYS)

    def _build_step(self) -> None:
        """Make the next plot (the layout first; the last one draws the data given so far), then give each
        its right-click menu (pyqtgraph builds a menu as dear as the plot: a pass of its own)."""
        if self.built:
            menu = next((p for p in self.plots.values() if not p.vb.menuEnabled()), None)
            if menu is not None:
                menu.setMenuEnabled(True)
                self._build_timer.start()
            return
        if self.graphics is None:
            self.graphics = pg.GraphicsLayoutWidget()
            self.graphics.setBackground("w")
            self._layout.addWidget(self.graphics)
        row = len(self.plots)
        key = self.KEYS[row]
        plot = self.graphics.addPlot(row=row, col=0, title=key, enableMenu=False)
        plot.showGrid(x=True, y=True, alpha=0.2)
        plot.addLegend(offset=(5, 5), labelTextSize="7pt")
        cursor = pg.InfiniteLine(pos=self._tick, angle=90, movable=True, pen=pg.mkPen((0, 0, 0), width=1.5))
        cursor.sigDragged.connect(self._on_cursor_dragged)
        plot.addItem(cursor, ignoreBounds=True)
        self.plots[key] = plot
        self.cursors[key] = cursor
        self.curves[key] = []
        self._labels[key] = []
        if self.built:
            self.plots["action"].setXLink(self.plots["observation.state"])
            self._draw()
        self._build_timer.start()  # the next step in the next pass

    @property
    def drawn(self) -> bool:
        """The plots exist and show the data given last."""
        return self.built and self._steps is None and not self._draw_timer.pending

    def set_data(self, series: dict[str, np.ndarray], names: list[str] | None = None) -> None:
        """``series`` maps "observation.state"/"action" to (N, D) arrays; missing keys leave a plot empty."""
        self._series, self._names = dict(series), names
        self._n = max((len(v) for v in series.values()), default=0)
        self._tick = 0
        if self.built:
            self._draw()

    def _draw(self) -> None:
        """Draw the data given last, a few curves per event-loop pass (a new curve with its legend entry is
        ~5-10 ms of pyqtgraph: twelve at once were one long pass); curves are reused when the joints match."""
        self._steps = self._draw_steps()
        self._draw_timer.start()

    def _on_draw_timer(self) -> None:
        if self._steps is None:
            return
        try:
            next(self._steps)
        except StopIteration:
            self._steps = None
            return
        self._draw_timer.start()

    def _draw_steps(self):
        n = 0
        for key, plot in self.plots.items():
            arr = self._series.get(key)
            arr = None if arr is None else np.asarray(arr, dtype=np.float64).reshape(len(arr), -1)
            dims = 0 if arr is None else arr.shape[1]
            labels = [self._names[d] if self._names and d < len(self._names) else f"{d}" for d in range(dims)]
            if labels != self._labels[key]:  # other joints: new curves (else the curves take the new data)
                plot.disableAutoRange()  # one range update at the end, not one per curve added
                for c in self.curves[key]:
                    plot.removeItem(c)
                legend = plot.legend
                if legend is not None:
                    legend.clear()
                self.curves[key] = []
                for d, label in enumerate(labels):
                    if d % 2 == 0:
                        yield  # two curves per pass
                    pen = pg.mkPen(_PALETTE[d % len(_PALETTE)], width=1.2)
                    self.curves[key].append(plot.plot([], [], pen=pen, name=label))
                self._labels[key] = labels
            if arr is None:
                continue
            n = max(n, arr.shape[0])
            x = np.arange(arr.shape[0])
            for d, curve in enumerate(self.curves[key]):
                curve.setData(x, arr[:, d])
        self._n = n
        for plot in self.plots.values():
            plot.enableAutoRange()
            if n > 1:
                plot.setXRange(0, n - 1, padding=0.02)
        self.set_cursor(self._tick)

    def set_cursor(self, tick: int) -> None:
        self._tick = int(tick)
        for cursor in self.cursors.values():
            cursor.blockSignals(True)
            cursor.setValue(float(tick))
            cursor.blockSignals(False)

    def cursor_value(self) -> int:
        if not self.built:
            return self._tick
        return int(round(self.cursors["observation.state"].value()))

    def _on_cursor_dragged(self, line: pg.InfiniteLine) -> None:
        tick = max(0, min(int(round(line.value())), max(0, self._n - 1)))
        self.set_cursor(tick)
        self.seeked.emit(tick)
