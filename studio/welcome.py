"""The first-launch guide: what to do, in order, with a tick for each step the store shows done.

1. connect the sim rig (a button does it), 2. record a few demonstrations (naming the keys of the
teleoperator in force), 3. fine-tune, 4. roll the checkpoint out. Shown above the tabs until the person
hides it (remembered in the settings) or every step is done.
"""

from __future__ import annotations

from dataclasses import dataclass

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

DONE, PENDING = "\u2714", "\u25cb"  # heavy check mark, white circle


@dataclass
class Progress:
    """What a person has done so far (read from the store and the rig manager)."""

    connected: bool = False
    demos: int = 0  # complete recorded (non-rollout) episodes
    checkpoints: int = 0  # fine-tune checkpoints
    rollouts: int = 0  # stored rollout episodes

    @property
    def all_done(self) -> bool:
        return self.demos > 0 and self.checkpoints > 0 and self.rollouts > 0


class WelcomeWidget(QFrame):
    """The guide banner.

    Signals:
        connect_requested(): "Connect the sim rig" was clicked.
        dismissed(): "Hide this guide" was clicked.
    """

    connect_requested = pyqtSignal()
    dismissed = pyqtSignal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("welcome")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet("QFrame#welcome { background: #eef5ff; border: 1px solid #9bbce6; border-radius: 6px; }")
        outer = QHBoxLayout(self)
        text = QVBoxLayout()
        self.title = QLabel("<b>Start here</b>: record demonstrations, fine-tune a policy on them, watch it drive "
                            "the arm. No hardware needed: the built-in sim rig is a simulated arm with two cameras.")
        self.title.setWordWrap(True)
        text.addWidget(self.title)
        self.steps = [QLabel() for _ in range(4)]
        for lab in self.steps:
            lab.setWordWrap(True)
            lab.setTextFormat(Qt.TextFormat.PlainText)
            text.addWidget(lab)
        outer.addLayout(text, 1)
        buttons = QVBoxLayout()
        self.connect_button = QPushButton("Connect the sim rig")
        self.connect_button.clicked.connect(self.connect_requested.emit)
        self.hide_button = QPushButton("Hide this guide")
        self.hide_button.clicked.connect(self.dismissed.emit)
        buttons.addWidget(self.connect_button)
        buttons.addWidget(self.hide_button)
        buttons.addStretch(1)
        outer.addLayout(buttons)
        self.progress = Progress()
        self.key_hint = ""

    def show_progress(self, progress: Progress, key_hint: str) -> None:
        self.progress, self.key_hint = progress, key_hint
        p = progress
        rows = [
            (p.connected or p.demos > 0,
             "1. Connect a rig: in the Record tab choose 'sim' (or your rig file) and press Connect."),
            (p.demos > 0,
             f"2. Record demonstrations in the Record tab: {key_hint}."
             + (f" {p.demos} recorded so far." if p.demos else " Ten or more make a useful dataset.")),
            (p.checkpoints > 0,
             "3. Fine-tune: in the Fine-tune tab pick the dataset, the 'tiny' model for a quick CPU run (or an "
             "OpenVLA folder on a GPU) and press Start fine-tune."),
            (p.rollouts > 0,
             "4. Roll out: in the Fine-tune tab press 'Open checkpoint in Rollout', then Start in the Rollout tab; "
             "the policy drives the arm with its predicted path drawn on the cameras."),
        ]
        for lab, (done, line) in zip(self.steps, rows, strict=True):
            lab.setText(f"{DONE if done else PENDING}  {line}")
            lab.setStyleSheet("color: #2a7a2a" if done else "")
        self.connect_button.setEnabled(not p.connected)
        self.connect_button.setText("Sim rig connected" if p.connected else "Connect the sim rig")

    def step_texts(self) -> list[str]:
        return [lab.text() for lab in self.steps]
