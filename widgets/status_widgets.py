"""Small status displays for the Record tab: per-camera fps / stale / dropped counters and free disk."""

from __future__ import annotations

import shutil
import time
from collections import deque
from pathlib import Path

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QGridLayout, QLabel, QProgressBar, QWidget


class RateMeter:
    """Frames per second over a sliding window of arrival times."""

    def __init__(self, window_s: float = 1.0) -> None:
        self.window_s = window_s
        self._t: deque[float] = deque()

    def tick(self, t: float | None = None) -> None:
        t = time.monotonic() if t is None else t
        self._t.append(t)
        while self._t and t - self._t[0] > self.window_s:
            self._t.popleft()

    def rate(self) -> float:
        if len(self._t) < 2:
            return 0.0
        span = self._t[-1] - self._t[0]
        return (len(self._t) - 1) / span if span > 0 else 0.0


class CameraStatsWidget(QWidget):
    """A table row per camera: preview fps, stale frames (camera slower than the loop), frames dropped.

    Signals: none.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        for col, head in enumerate(["camera", "fps", "stale", "dropped"]):
            lab = QLabel(f"<b>{head}</b>")
            self._grid.addWidget(lab, 0, col)
        self._rows: dict[str, list[QLabel]] = {}
        self.late_label = QLabel("late ticks: 0")
        self._grid.addWidget(self.late_label, 99, 0, 1, 4)

    def set_cameras(self, names: list[str]) -> None:
        for labels in self._rows.values():
            for lab in labels:
                self._grid.removeWidget(lab)
                lab.deleteLater()
        self._rows = {}
        for r, name in enumerate(names, start=1):
            labels = [QLabel(name), QLabel("-"), QLabel("0"), QLabel("0")]
            for c, lab in enumerate(labels):
                if c:
                    lab.setAlignment(Qt.AlignmentFlag.AlignRight)
                self._grid.addWidget(lab, r, c)
            self._rows[name] = labels

    def update_camera(self, name: str, fps: float, stale: int, dropped: int) -> None:
        row = self._rows.get(name)
        if row is None:
            return
        row[1].setText(f"{fps:5.1f}")
        row[2].setText(str(stale))
        row[3].setText(str(dropped))
        row[3].setStyleSheet("color: #c00; font-weight: bold" if dropped else "")

    def set_late_ticks(self, n: int, jitter_ms: float | None = None) -> None:
        text = f"late ticks: {n}"
        if jitter_ms is not None:
            text += f"   tick time {jitter_ms:.1f} ms"
        self.late_label.setText(text)

    def values(self, name: str) -> tuple[str, str, str]:
        row = self._rows[name]
        return row[1].text(), row[2].text(), row[3].text()


class DiskWidget(QProgressBar):
    """Free disk space where the store lives; red under ``warn_gb``.

    Signals: none.
    """

    def __init__(self, path: Path, warn_gb: float = 5.0, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path = Path(path)
        self.warn_gb = warn_gb
        self.setRange(0, 1000)
        self.setTextVisible(True)
        self.free_gb = 0.0
        self.refresh()

    def refresh(self) -> float:
        p = self.path
        while not p.exists() and p != p.parent:
            p = p.parent
        try:
            usage = shutil.disk_usage(p)
        except OSError:
            self.setFormat("disk: unknown")
            return 0.0
        self.free_gb = usage.free / 1e9
        self.setValue(int(1000 * usage.used / max(1, usage.total)))
        self.setFormat(f"free disk: {self.free_gb:.1f} GB")
        low = self.free_gb < self.warn_gb
        self.setStyleSheet("QProgressBar::chunk { background: #c33; }" if low else "")
        self.setToolTip(f"{p}: {self.free_gb:.1f} GB free of {usage.total / 1e9:.0f} GB")
        return self.free_gb
