"""Teleoperators a person drives: keyboard, gamepad (SDL via pygame), SpaceMouse (pyspacemouse).

All three integrate a *goal* joint vector once per ``get_action`` call (``cfg.fps`` calls per second):
in end-effector mode a Cartesian velocity of the tool point (plus gripper pitch) goes through
damped-least-squares differential IK on the robot's kinematics (:mod:`recorder.devices.kinematics`);
wrist roll and the gripper are driven directly. The goal starts from the measured joints.

Keyboard keys (lower-case names; the GUI or terminal calls ``press(key)`` / ``release(key)``)::

    end-effector mode ("ee")                   joint mode ("joint")
    w / s  or up / down      tool +x / -x       1 / q  shoulder_pan  + / -
    a / d  or left / right   tool +y / -y       2 / w  shoulder_lift + / -
    r / f  or page_up / page_down  +z / -z      3 / e  elbow_flex    + / -
    t / g   gripper pitch down / up             4 / r  wrist_flex    + / -
    q / e   wrist roll + / -                    5 / t  wrist_roll    + / -
    o / c   open / close the gripper            6 / y  gripper       + / -
    space   toggle gripper open/closed   (both modes)       tab or m  switch mode
"""

from __future__ import annotations

import threading

import numpy as np

from recorder.devices.base import JOINT_NAMES, Robot, SimpleTeleoperator, Teleoperator
from recorder.devices.configs import GamepadTeleopConfig, KeyboardTeleopConfig, SpaceMouseTeleopConfig
from recorder.errors import ConfigError, DeviceError, DeviceNotConnectedError

EE_KEYS = {
    "w": (0, +1),
    "up": (0, +1),
    "s": (0, -1),
    "down": (0, -1),
    "a": (1, +1),
    "left": (1, +1),
    "d": (1, -1),
    "right": (1, -1),
    "r": (2, +1),
    "page_up": (2, +1),
    "f": (2, -1),
    "page_down": (2, -1),
    "t": (3, +1),
    "g": (3, -1),  # pitch
    "q": (4, +1),
    "e": (4, -1),  # roll
    "o": (5, +1),
    "c": (5, -1),  # gripper
}
JOINT_KEYS = {
    "1": (0, +1),
    "q": (0, -1),
    "2": (1, +1),
    "w": (1, -1),
    "3": (2, +1),
    "e": (2, -1),
    "4": (3, +1),
    "r": (3, -1),
    "5": (4, +1),
    "t": (4, -1),
    "6": (5, +1),
    "y": (5, -1),
}


# other names the GUI or a terminal may send for the same keys: a Qt key event's text is " " for the
# space bar and "\t" for tab; "m" switches mode where Tab is taken by focus navigation (the GUI)
KEY_ALIASES = {" ": "space", "\t": "tab", "m": "tab", "pageup": "page_up", "pagedown": "page_down"}


def _key_name(key: str) -> str:
    key = key.lower()
    return KEY_ALIASES.get(key, key)


class EEIntegrator:
    """Integrates end-effector / joint velocity commands into goal joints (degrees, gripper 0..100)."""

    def __init__(self, robot: Robot | None, fps: float, damping: float = 0.05) -> None:
        self.robot = robot
        self.dt = 1.0 / fps
        self.damping = damping
        self.goal: np.ndarray | None = None
        self.kinematics = getattr(robot, "kinematics", None)
        if robot is not None:
            self.low, self.high = (np.asarray(x, dtype=np.float64) for x in robot.joint_limits)
        else:
            self.low = np.array([-110, -100, -96.83, -95, -157.2, 0.0])
            self.high = np.array([110, 100, 96.83, 95, 162.8, 100.0])

    def reset(self) -> None:
        self.goal = None

    def start(self, observation: dict) -> np.ndarray:
        if self.goal is None:
            state = observation.get("observation.state") if observation else None
            if state is None:
                raise DeviceError("teleop: the first observation has no 'observation.state' to start from")
            self.goal = np.asarray(state, dtype=np.float64).copy()
        return self.goal

    def ee_step(self, v_xyz, pitch_rate: float, roll_rate: float, grip_rate: float) -> np.ndarray:
        if self.kinematics is None:
            raise ConfigError(
                f"end-effector teleop needs the robot's kinematics, which {type(self.robot).__name__} lacks: "
                'use mode = "joint"'
            )
        g = self.goal
        dx = np.array([*(np.asarray(v_xyz, dtype=np.float64) * self.dt), pitch_rate * self.dt])
        if np.any(dx != 0):
            g[:4] += self.kinematics.dls_step(g[:4], dx, damping=self.damping)
        g[4] += roll_rate * self.dt
        g[5] += grip_rate * self.dt
        np.clip(g, self.low, self.high, out=g)
        return g.astype(np.float32)

    def joint_step(self, rates) -> np.ndarray:
        g = self.goal
        g += np.asarray(rates, dtype=np.float64) * self.dt
        np.clip(g, self.low, self.high, out=g)
        return g.astype(np.float32)


class KeyboardTeleop(SimpleTeleoperator):
    """Keyboard teleoperation fed with key events by the GUI or a terminal (see the module docstring)."""

    def __init__(self, cfg: KeyboardTeleopConfig | None = None, robot: Robot | None = None) -> None:
        super().__init__()
        self.cfg = cfg or KeyboardTeleopConfig()
        if self.cfg.mode not in ("ee", "joint"):
            raise ConfigError(f'keyboard teleop: unknown mode \'{self.cfg.mode}\': use "ee" or "joint"')
        self.name = "keyboard"
        self.mode = self.cfg.mode
        self.joint_names = list(getattr(robot, "joint_names", JOINT_NAMES))
        self._int = EEIntegrator(robot, self.cfg.fps, self.cfg.damping)
        self._held: set[str] = set()
        self._toggles: list[str] = []
        self._lock = threading.Lock()
        self._gripper_target: float | None = None

    # key events (any thread)
    def press(self, key: str) -> None:
        key = _key_name(key)
        with self._lock:
            if key in ("space", "tab"):
                self._toggles.append(key)
            else:
                self._held.add(key)

    def release(self, key: str) -> None:
        with self._lock:
            self._held.discard(_key_name(key))

    def release_all(self) -> None:
        with self._lock:
            self._held.clear()

    def set_mode(self, mode: str) -> None:
        if mode not in ("ee", "joint"):
            raise ConfigError(f'keyboard teleop: unknown mode \'{mode}\': use "ee" or "joint"')
        self.mode = mode

    def reset(self) -> None:
        """Forget the goal: the next get_action starts from the measured joints."""
        self._int.reset()
        self._gripper_target = None

    def disconnect(self) -> None:
        self.release_all()
        super().disconnect()

    def get_action(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        if not self.is_connected:
            raise DeviceNotConnectedError("keyboard teleop is not connected: call connect() first")
        goal = self._int.start(observation)
        with self._lock:
            held = set(self._held)
            toggles, self._toggles = self._toggles, []
        for t in toggles:
            if t == "tab":
                self.mode = "joint" if self.mode == "ee" else "ee"
            elif t == "space":
                self._gripper_target = 0.0 if goal[5] > 50 else 100.0
        cfg = self.cfg
        if self.mode == "ee":
            cmd = np.zeros(6)
            for k in held:
                if k in EE_KEYS:
                    i, s = EE_KEYS[k]
                    cmd[i] += s
            cmd = np.clip(cmd, -1, 1)
            grip = cmd[5] * cfg.gripper_speed
            if cmd[5] != 0:
                self._gripper_target = None
            grip = self._toward_gripper_target(goal, grip)
            return self._int.ee_step(
                cmd[:3] * cfg.linear_speed, cmd[3] * cfg.angular_speed, cmd[4] * cfg.angular_speed, grip
            )
        rates = np.zeros(6)
        for k in held:
            if k in JOINT_KEYS:
                i, s = JOINT_KEYS[k]
                rates[i] += s
        rates = np.clip(rates, -1, 1) * cfg.angular_speed
        rates[5] = rates[5] / cfg.angular_speed * cfg.gripper_speed
        if rates[5] != 0:
            self._gripper_target = None
        rates[5] = self._toward_gripper_target(goal, rates[5])
        return self._int.joint_step(rates)

    def _toward_gripper_target(self, goal, rate: float) -> float:
        if self._gripper_target is None:
            return rate
        d = self._gripper_target - goal[5]
        if abs(d) < 1e-6:
            self._gripper_target = None
            return rate
        step = self.cfg.gripper_speed
        return float(np.clip(d / self._int.dt, -step, step))


class GamepadTeleop(Teleoperator):
    """A game controller through SDL (pygame), in end-effector mode. Needs ``pip install pygame``.

    Left stick: tool x (push forward = +x) and y (push left = +y); right stick: z (push up = +z) and
    wrist roll; d-pad up/down: z as well (for pads whose right stick is missing or mapped elsewhere);
    shoulder buttons (4 / 5): gripper pitch up / down; right / left trigger: close / open the gripper,
    and buttons 0 / 1 (A / B on an Xbox layout) close / open it on pads without analog triggers.
    """

    TRIGGERS = (2, 5)  # SDL axes of the left / right analog trigger (rest at -1)

    def __init__(self, cfg: GamepadTeleopConfig | None = None, robot: Robot | None = None) -> None:
        self.cfg = cfg or GamepadTeleopConfig()
        self.name = f"gamepad {self.cfg.index}"
        self.joint_names = list(getattr(robot, "joint_names", JOINT_NAMES))
        self._int = EEIntegrator(robot, self.cfg.fps)
        self._pg = None
        self._joy = None
        self._trigger_moved: set[int] = set()

    @property
    def is_connected(self) -> bool:
        return self._joy is not None

    def connect(self) -> None:
        import os

        try:
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
            os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
            import pygame
        except ImportError:
            raise ConfigError(
                "gamepad teleop needs pygame: pip install pygame (or vla-studio[hardware])"
            ) from None
        pygame.init()
        pygame.joystick.init()
        n = pygame.joystick.get_count()
        if self.cfg.index >= n:
            raise DeviceError(
                f"gamepad {self.cfg.index} not found (SDL sees {n} game controller(s)): plug one in, "
                "or set the teleop index in the rig file"
            )
        self._pg = pygame
        self._joy = pygame.joystick.Joystick(self.cfg.index)
        self._joy.init()
        self._trigger_moved = set()
        self._int.reset()

    def disconnect(self) -> None:
        joy, self._joy = self._joy, None
        if joy is not None:
            try:
                joy.quit()
            except Exception:  # the pad may already be gone; disconnect must not fail
                pass

    def reset(self) -> None:
        """Forget the goal: the next get_action starts from the measured joints."""
        self._int.reset()

    def _axis(self, i: int) -> float:
        if i >= self._joy.get_numaxes():
            return 0.0
        v = float(self._joy.get_axis(i))
        return 0.0 if abs(v) < self.cfg.deadzone else v

    def _trigger(self, i: int) -> float:
        """0 released .. 1 fully pressed. SDL reports 0 (half-pressed) for a trigger that has not moved
        since the pad was opened, so an untouched trigger counts as released."""
        if i >= self._joy.get_numaxes():
            return 0.0
        raw = float(self._joy.get_axis(i))
        if raw != 0.0:
            self._trigger_moved.add(i)
        if i not in self._trigger_moved:
            return 0.0
        v = (raw + 1.0) / 2.0
        return 0.0 if v < self.cfg.deadzone else v

    def _button(self, i: int) -> float:
        return float(bool(self._joy.get_button(i))) if i < self._joy.get_numbuttons() else 0.0

    def get_action(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        self._require_connected()
        pg = self._pg
        try:
            pg.event.pump()
            if pg.joystick.get_count() <= self.cfg.index:
                raise DeviceError(
                    f"gamepad {self.cfg.index} was unplugged: plug it back in and reconnect the teleoperator"
                )
            self._int.start(observation)
            c = self.cfg
            hat_y = float(self._joy.get_hat(0)[1]) if self._joy.get_numhats() > 0 else 0.0
            vx, vy = -self._axis(1), -self._axis(0)
            vz = float(np.clip(-self._axis(4) + hat_y, -1.0, 1.0))
            roll = self._axis(3)
            close = self._trigger(self.TRIGGERS[1]) - self._trigger(self.TRIGGERS[0])
            close = float(np.clip(close + self._button(0) - self._button(1), -1.0, 1.0))
            pitch = self._button(5) - self._button(4)
        except pg.error as e:
            raise DeviceError(
                f"gamepad {self.cfg.index} stopped answering ({e}): check its cable and reconnect"
            ) from e
        return self._int.ee_step(
            np.array([vx, vy, vz]) * c.linear_speed,
            pitch * c.angular_speed,
            roll * c.angular_speed,
            -close * c.gripper_speed,
        )


class SpaceMouseTeleop(Teleoperator):
    """A 3Dconnexion SpaceMouse (pyspacemouse 1.x or 2.x): push forward / left / up -> tool +x / +y / +z,
    tilt forward -> gripper pitch down, tilt sideways -> wrist roll; the left button closes and the right
    button opens the gripper. Needs ``pip install pyspacemouse``."""

    def __init__(self, cfg: SpaceMouseTeleopConfig | None = None, robot: Robot | None = None) -> None:
        self.cfg = cfg or SpaceMouseTeleopConfig()
        self.name = "spacemouse"
        self.joint_names = list(getattr(robot, "joint_names", JOINT_NAMES))
        self._int = EEIntegrator(robot, self.cfg.fps)
        self._sm = None

    @property
    def is_connected(self) -> bool:
        return self._sm is not None

    def connect(self) -> None:
        try:
            import pyspacemouse
        except ImportError:
            raise ConfigError("SpaceMouse teleop needs pyspacemouse: pip install pyspacemouse") from None
        hint = "plug it in, and on Linux give your user access to /dev/hidraw* (udev rule)"
        try:
            # 1.x returns a device (or True) / None and keeps module-level read(); 2.x returns a device
            # object with read() / read_latest() and raises RuntimeError when none is found.
            dev = pyspacemouse.open()
        except (RuntimeError, OSError, ValueError) as e:
            raise DeviceError(f"SpaceMouse not found ({e}): {hint}") from None
        if not dev:
            raise DeviceError(f"SpaceMouse not found: {hint}")
        self._sm = dev if hasattr(dev, "read") else pyspacemouse
        self._int.reset()

    def disconnect(self) -> None:
        sm, self._sm = self._sm, None
        if sm is not None and hasattr(sm, "close"):
            try:
                sm.close()
            except Exception:  # already unplugged; disconnect must not fail
                pass

    def reset(self) -> None:
        """Forget the goal: the next get_action starts from the measured joints."""
        self._int.reset()

    def _read(self):
        latest = getattr(self._sm, "read_latest", None)  # 2.x: newest report, no backlog at 30 Hz
        try:
            s = latest(block=False) if latest is not None else self._sm.read()
        except OSError as e:
            raise DeviceError(f"SpaceMouse stopped answering ({e}): check its cable and reconnect") from e
        if s is None:
            raise DeviceError("SpaceMouse returned no state: it was unplugged or closed; reconnect it")
        return s

    def get_action(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        self._require_connected()
        self._int.start(observation)
        s = self._read()
        c = self.cfg

        def dz(v):
            return 0.0 if abs(v) < c.deadzone else float(v)

        buttons = list(getattr(s, "buttons", []) or [])
        grip = (1.0 if len(buttons) > 1 and buttons[1] else 0.0) - (1.0 if buttons and buttons[0] else 0.0)
        return self._int.ee_step(
            np.array([dz(s.y), -dz(s.x), dz(s.z)]) * c.linear_speed,
            dz(s.pitch) * c.angular_speed,
            dz(s.roll) * c.angular_speed,
            grip * c.gripper_speed,
        )
