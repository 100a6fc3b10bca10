"""Small status displays for the Record tab: per-camera fps / stale / dropped counters and free disk."""

from __future__ import annotations

import shutil
from pathlib import Path

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QGridLayout, QLabel, QProgressBar, QWidget

from recorder.rates import RateMeter  # noqa: F401 - the Record tab's per-camera fps meter

#: what each counter means, in plain words (tooltips on the Record tab's counters)
COUNTER_TIPS = {
    "camera": "the camera's name in the rig file",
    "fps": "frames per second this preview is showing (the camera's real rate, measured here)",
    "stale": ("ticks that reused the camera's previous frame because no new one had arrived in time "
              "(the camera is slower than the loop, or its frame was from before a reset); they are marked "
              "in the recording"),
    "dropped": ("frames lost because the video encoder fell behind (its queue was full); any at all means "
                "the recording has gaps: lower the rate or the resolution"),
    "late ticks": ("loop ticks that started later than their schedule (the computer was busy); the recording "
                   "keeps their true timestamps"),
    "tick time": "how long the last loop tick took (observe, act, write); it must stay under 1/fps",
    # rollouts: the policy side and the safety layer (recorder/safety.py)
    "held": ("held ticks: ticks where the policy had no fresh action ready in time (inference slower than the "
             "control rate), so the arm held its last goal; many of them mean a slow policy"),
    "invalid": "safety: the policy asked for NaN/infinite joint goals; the arm held where it was instead",
    "gripper": "safety: the gripper command was outside its range and was clipped",
    "joint_limits": "safety: a joint goal was beyond the joint's limits and was clipped to them",
    "max_delta": ("safety: a joint goal was more than the 'max joint step' away from where the joint is, so the "
                  "step was shortened to that many degrees this tick (the arm moves, more slowly than asked)"),
    "workspace": "safety: the gripper would have left the allowed workspace box; the goal was pulled back inside",
    "clipped": "ticks where what was sent to the arm differs from what the policy asked for (a safety rule acted)",
}


class CameraStatsWidget(QWidget):
    """A table row per camera: preview fps, stale frames (camera slower than the loop), frames dropped.

    Every header and the late-ticks line carry a plain-words tooltip (``COUNTER_TIPS``).
    Signals: none.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self.headers: dict[str, QLabel] = {}
        for col, head in enumerate(["camera", "fps", "stale", "dropped"]):
            lab = QLabel(f"<b>{head}</b>")
            lab.setToolTip(COUNTER_TIPS[head])
            self._grid.addWidget(lab, 0, col)
            self.headers[head] = lab
        self._rows: dict[str, list[QLabel]] = {}
        self.late_label = QLabel("late ticks: 0")
        self.late_label.setToolTip(f"late ticks: {COUNTER_TIPS['late ticks']}\ntick time: {COUNTER_TIPS['tick time']}")
        self._grid.addWidget(self.late_label, 99, 0, 1, 4)

    def set_cameras(self, names: list[str]) -> None:
        for labels in self._rows.values():
            for lab in labels:
                self._grid.removeWidget(lab)
                lab.deleteLater()
        self._rows = {}
        for r, name in enumerate(names, start=1):
            labels = [QLabel(name), QLabel("-"), QLabel("0"), QLabel("0")]
            for c, (lab, head) in enumerate(zip(labels, ("camera", "fps", "stale", "dropped"), strict=True)):
                lab.setToolTip(COUNTER_TIPS[head])
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

    def clear(self) -> None:
        """No live numbers (the rig is gone): every counter shows '-'."""
        for row in self._rows.values():
            for lab in row[1:]:
                lab.setText("-")
                lab.setStyleSheet("")
        self.late_label.setText("late ticks: -")

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
