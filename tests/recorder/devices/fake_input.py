"""Test doubles for the optional teleop SDKs: a fake ``pygame`` (joystick API only) and a fake
``pyspacemouse`` (1.x module-level open/read/close and 2.x device-object styles). Inject them with
``monkeypatch.setitem(sys.modules, "pygame", fake)``; production code never imports this file."""

from __future__ import annotations

import types
from dataclasses import dataclass, field


class FakePad:
    """The state of one game controller, as SDL's joystick API reports it (Xbox layout on Linux)."""

    def __init__(self, n_axes: int = 6, n_buttons: int = 11, n_hats: int = 1) -> None:
        self.axes = [0.0] * n_axes
        for t in (2, 5):  # triggers rest at -1 once moved; SDL reports 0 before the first move
            if t < n_axes:
                self.axes[t] = 0.0
        self.buttons = [0] * n_buttons
        self.hats = [(0, 0)] * n_hats
        self.unplugged = False


def make_fake_pygame(pads: list[FakePad]):
    pg = types.ModuleType("pygame")

    class error(RuntimeError):  # noqa: N801 (pygame's name)
        pass

    pg.error = error
    pg.init_calls = 0
    pg.pumps = 0

    def init():
        pg.init_calls += 1
        return (6, 0)

    pg.init = init

    joystick = types.ModuleType("pygame.joystick")
    joystick.init = lambda: None
    joystick.get_count = lambda: sum(not p.unplugged for p in pads)

    class Joystick:
        def __init__(self, i: int) -> None:
            if i >= joystick.get_count():
                raise error("Invalid joystick device number")
            self.pad = pads[i]
            self.initialized = False

        def _check(self):
            if self.pad.unplugged:
                raise error("Joystick not initialized")

        def init(self):
            self.initialized = True

        def quit(self):
            self.initialized = False

        def get_numaxes(self):
            return len(self.pad.axes)

        def get_numbuttons(self):
            return len(self.pad.buttons)

        def get_numhats(self):
            return len(self.pad.hats)

        def get_axis(self, i):
            self._check()
            return self.pad.axes[i]

        def get_button(self, i):
            self._check()
            return self.pad.buttons[i]

        def get_hat(self, i):
            self._check()
            return self.pad.hats[i]

    joystick.Joystick = Joystick
    pg.joystick = joystick

    event = types.ModuleType("pygame.event")

    def pump():
        pg.pumps += 1

    event.pump = pump
    pg.event = event
    return pg


@dataclass
class FakeMouseState:
    t: float = 0.0
    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    roll: float = 0.0
    pitch: float = 0.0
    yaw: float = 0.0
    buttons: list = field(default_factory=lambda: [0, 0])


def make_fake_pyspacemouse(state: FakeMouseState | None, *, style: str = "1.x"):
    """``state=None`` means no SpaceMouse is plugged in. style "1.x": open() -> True/False and module
    read()/close(); "2.x": open() -> a device with read()/close(), or RuntimeError when none is found."""
    sm = types.ModuleType("pyspacemouse")
    sm.opened = False
    sm.closed = False

    class Device:
        def read(self):
            return state

        def close(self):
            sm.closed = True

    def open(*args, **kwargs):  # noqa: A001 (the library's name)
        if state is None:
            if style == "2.x":
                raise RuntimeError("No connected or supported devices found.")
            return False
        sm.opened = True
        return Device() if style == "2.x" else True

    sm.open = open
    if style == "1.x":
        sm.read = lambda: state if sm.opened else None

        def close():
            sm.closed = True

        sm.close = close
    return sm
