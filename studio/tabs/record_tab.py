"""The Record tab (placeholder until its issue lands)."""

from __future__ import annotations

from PyQt6.QtWidgets import QVBoxLayout, QWidget

from studio.app import placeholder


class RecordTab(QWidget):
    def __init__(self, ctx, parent=None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        layout = QVBoxLayout(self)
        layout.addWidget(placeholder("Record teleoperated demonstrations."))
