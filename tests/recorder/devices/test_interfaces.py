"""Camera / robot / teleop interfaces with the test-pattern camera, and typed errors."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from recorder.devices import FramePacket, make_camera
from recorder.devices.base import ThreadedCamera
from recorder.devices.configs import (
    OpenCVCameraConfig,
    TestPatternCameraConfig,
    config_from_dict,
    config_to_dict,
)
from recorder.errors import ConfigError, DeviceError, DeviceNotConnectedError, DeviceTimeoutError


def test_test_pattern_camera_delivers_fresh_frames_with_counter():
    cam = make_camera(TestPatternCameraConfig(width=160, height=120, fps=60), name="pattern")
    assert cam.features == {"shape": (120, 160, 3), "dtype": "uint8", "fps": 60.0}
    with cam:
        assert cam.is_connected
        first = cam.read_latest()
        assert isinstance(first, FramePacket)
        assert first.image.shape == (120, 160, 3) and first.image.dtype == np.uint8
        assert first.image.flags["C_CONTIGUOUS"]
        later = cam.wait_for_frame(first.index + 3, timeout=2.0)
        assert later.index > first.index + 3
        assert later.timestamp > first.timestamp
        # the counter is drawn in the centre on a black box: its last digits differ between frames
        band = (slice(50, 70), slice(95, 115))
        assert (first.image[band] == 0).all(axis=-1).any()
        assert not np.array_equal(first.image[band], later.image[band])
        # rate: about 60 fps (loose bounds: the machine is shared)
        a = cam.read_latest()
        time.sleep(0.5)
        b = cam.read_latest()
        assert 10 <= b.index - a.index <= 40
    assert not cam.is_connected
    with pytest.raises(DeviceNotConnectedError, match="pattern"):
        cam.read_latest()


def test_read_latest_never_blocks_and_is_shared_between_readers():
    cam = make_camera(TestPatternCameraConfig(width=64, height=48, fps=20), name="p")
    with cam:
        t0 = time.monotonic()
        pkts = [cam.read_latest(timeout=0.1) for _ in range(200)]
        assert time.monotonic() - t0 < 0.5  # 200 reads well under a frame period each
        assert len({p.index for p in pkts}) <= 3


class _NeverCamera(ThreadedCamera):
    """A camera whose device opens but never produces a frame."""

    def _open(self):
        pass

    def _grab(self):
        self._stop.wait(0.05)
        return None, None


class _BrokenCamera(ThreadedCamera):
    def _open(self):
        raise DeviceError("camera 'broken': device /dev/video9 vanished: plug it back in")

    def _grab(self):  # pragma: no cover
        return None, None


def test_camera_that_never_delivers_times_out_naming_it():
    cam = _NeverCamera("left_wrist", 64, 48, 30)
    cam.connect_timeout_s = 0.3
    t0 = time.monotonic()
    with pytest.raises(DeviceTimeoutError, match="left_wrist"):
        cam.connect()
    assert time.monotonic() - t0 < 2.0
    assert not cam.is_connected
    assert threading.active_count() < 50


class _UnpluggedCamera(ThreadedCamera):
    """Delivers three frames, then the device goes away."""

    def _open(self):
        self.n = 0

    def _grab(self):
        self.n += 1
        if self.n > 3:
            raise DeviceError("camera 'desk': /dev/video4 was unplugged: plug it back in and reconnect")
        time.sleep(0.01)
        return np.zeros((48, 64, 3), np.uint8), None


def test_camera_unplugged_while_running_raises_a_typed_error():
    cam = _UnpluggedCamera("desk", 64, 48, 30)
    cam.connect()
    deadline = time.monotonic() + 2
    while cam.is_connected and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(DeviceError, match="unplugged"):
        cam.read_latest()
    cam.disconnect()


def test_camera_open_error_is_reraised():
    with pytest.raises(DeviceError, match="vanished"):
        _BrokenCamera("broken", 64, 48, 30).connect()


def test_opencv_camera_that_does_not_exist_names_the_device():
    cam = make_camera(OpenCVCameraConfig(index_or_path="/dev/video-none", connect_timeout_s=1.0), name="top")
    with pytest.raises(DeviceError, match="/dev/video-none"):
        cam.connect()


def test_config_registry_roundtrip_and_errors():
    cfg = config_from_dict("camera", {"type": "test_pattern", "width": 64, "height": 48})
    assert isinstance(cfg, TestPatternCameraConfig) and cfg.width == 64
    assert config_from_dict("camera", config_to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match="unknown camera type 'webcam'"):
        config_from_dict("camera", {"type": "webcam"})
    with pytest.raises(ConfigError, match="resolution"):
        config_from_dict("camera", {"type": "opencv", "resolution": [640, 480]})
    with pytest.raises(ConfigError, match="positive"):
        config_from_dict("camera", {"type": "test_pattern", "width": 0})
