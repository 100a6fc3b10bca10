"""Qt key events -> the key names a keyboard teleoperator understands (shared by the Record and Rollout tabs)."""

from __future__ import annotations

from PyQt6.QtCore import Qt
from PyQt6.QtGui import QKeyEvent

# Qt keys forwarded to a keyboard teleoperator by name; other keys go by their text (letters, space)
TELEOP_KEYS = {
    Qt.Key.Key_Up: "up", Qt.Key.Key_Down: "down", Qt.Key.Key_Left: "left", Qt.Key.Key_Right: "right",
    Qt.Key.Key_PageUp: "page_up", Qt.Key.Key_PageDown: "page_down", Qt.Key.Key_Tab: "tab",
}


def forward_teleop_key(teleop, event: QKeyEvent, pressed: bool) -> bool:
    """Send a key press/release to ``teleop`` if it takes keys; True when the key was consumed."""
    fn = getattr(teleop, "press" if pressed else "release", None)
    if fn is None:
        return False
    name = TELEOP_KEYS.get(Qt.Key(event.key())) or (event.text().lower() or None)
    if name is None:
        return False
    fn(name)
    return True
