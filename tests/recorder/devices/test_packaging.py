"""Vendor SDKs load lazily; example rig files parse; optional teleop SDKs fail with a clear message."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from recorder.devices import make_teleop
from recorder.devices.configs import GamepadTeleopConfig, SpaceMouseTeleopConfig
from recorder.devices.rig import load_rig, read_rig_config
from recorder.errors import ConfigError

RIGS = Path(__file__).resolve().parents[3] / "assets" / "rigs"


def test_building_a_real_rig_imports_no_vendor_sdk():
    code = (
        "import sys\n"
        "from recorder.devices.rig import load_rig, read_rig_config\n"
        f"rig = load_rig(read_rig_config({str(RIGS / 'so101_leader_follower.toml')!r}))\n"
        "bad = [m for m in ('mujoco', 'pyrealsense2', 'pygame', 'pyspacemouse', 'PyQt6', 'torch') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=str(RIGS.parents[1])
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("path", sorted(RIGS.glob("*.toml")), ids=lambda p: p.name)
def test_example_rig_files_parse(path):
    cfg = read_rig_config(path)
    assert cfg.robot is not None and cfg.cameras
    if cfg.robot.type == "sim":
        rig = load_rig(cfg)
        assert set(rig.cameras) == {"front", "wrist"}


@pytest.mark.parametrize(
    "cfg, module", [(GamepadTeleopConfig(), "pygame"), (SpaceMouseTeleopConfig(), "pyspacemouse")]
)
def test_optional_teleop_without_its_sdk_says_what_to_install(cfg, module):
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here")
    teleop = make_teleop(cfg)
    with pytest.raises(ConfigError, match=f"pip install {module}"):
        teleop.connect()
