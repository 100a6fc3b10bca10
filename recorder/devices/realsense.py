"""Intel RealSense cameras (pyrealsense2): colour and optional depth aligned to colour, chosen by serial,
or a recording (``.db3`` / ``.bag``) played back. pyrealsense2 is imported only here, when a RealSense
camera is built. Depth comes out as HxW uint16 millimetres (the device's depth units are applied)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recorder.devices.base import ThreadedCamera
from recorder.devices.configs import RealSenseCameraConfig
from recorder.errors import ConfigError, DeviceError


def _rs():
    try:
        import pyrealsense2 as rs
    except ImportError as err:
        raise ConfigError(
            f"RealSense cameras need pyrealsense2 ({err}): pip install 'vla-studio[realsense]' "
            "(and libusb-1.0-0 on Linux)"
        ) from None
    return rs


def list_realsense() -> list[dict]:
    """Connected RealSense devices: serial, name, firmware. Empty with none (or without pyrealsense2)."""
    try:
        rs = _rs()
    except ConfigError:
        return []
    out = []
    for dev in rs.context().query_devices():

        def info(key, dev=dev):
            try:
                return dev.get_info(key)
            except RuntimeError:
                return ""

        out.append(
            {
                "serial": info(rs.camera_info.serial_number),
                "name": info(rs.camera_info.name),
                "firmware": info(rs.camera_info.firmware_version),
            }
        )
    return out


class RealSenseCamera(ThreadedCamera):
    def __init__(self, cfg: RealSenseCameraConfig, name: str = "realsense") -> None:
        super().__init__(name, cfg.width, cfg.height, cfg.fps)
        self.cfg = cfg
        self.has_depth = bool(cfg.use_depth)
        self.connect_timeout_s = cfg.connect_timeout_s
        self._pipe = None
        self._align = None
        self._depth_scale_mm = 1.0

    def describe(self) -> str:
        src = f"file {self.cfg.playback}" if self.cfg.playback else f"serial {self.cfg.serial or 'any'}"
        return f"RealSense camera '{self.name}' ({src})"

    def _open(self) -> None:
        rs = _rs()
        cfg = rs.config()
        if self.cfg.playback:
            path = Path(self.cfg.playback).expanduser()
            if not path.exists():
                raise DeviceError(
                    f"camera '{self.name}': recording {path} does not exist: check the playback path"
                )
            cfg.enable_device_from_file(str(path), bool(self.cfg.loop_playback))
        else:
            serials = [d["serial"] for d in list_realsense()]
            if not serials:
                raise DeviceError(
                    f"camera '{self.name}': no RealSense camera found: plug one in (USB 3 port)"
                )
            if self.cfg.serial and self.cfg.serial not in serials:
                raise DeviceError(
                    f"camera '{self.name}': no RealSense with serial {self.cfg.serial}: connected are "
                    f"{', '.join(serials)}"
                )
            if self.cfg.serial:
                cfg.enable_device(self.cfg.serial)
            fps = int(round(self.fps))
            cfg.enable_stream(rs.stream.color, self.width, self.height, rs.format.rgb8, fps)
            if self.has_depth:
                cfg.enable_stream(rs.stream.depth, self.width, self.height, rs.format.z16, fps)
        pipe = rs.pipeline()
        try:
            profile = pipe.start(cfg)
        except RuntimeError as err:
            raise DeviceError(f"camera '{self.name}' ({self.describe()}) failed to start: {err}") from None
        self._pipe = pipe
        if self.cfg.playback:
            color = profile.get_stream(rs.stream.color).as_video_stream_profile()
            if (color.width(), color.height()) != (self.width, self.height):
                raise DeviceError(
                    f"camera '{self.name}': recording {self.cfg.playback} is {color.width()}x{color.height()}, "
                    f"not {self.width}x{self.height}: set width/height to match"
                )
            if self.has_depth:
                try:
                    profile.get_stream(rs.stream.depth)
                except RuntimeError:
                    raise DeviceError(
                        f"camera '{self.name}': recording {self.cfg.playback} has no depth stream: "
                        "set use_depth = false"
                    ) from None
        if self.has_depth:
            try:
                scale = profile.get_device().first_depth_sensor().get_depth_scale()  # metres per unit
                self._depth_scale_mm = float(scale) * 1000.0
            except RuntimeError:
                self._depth_scale_mm = 1.0
            self._align = rs.align(rs.stream.color)

    def _grab(self):
        rs = _rs()
        try:
            frames = self._pipe.wait_for_frames(int(max(1.0, 2.0 / self.fps) * 1000))
        except RuntimeError as err:
            if self._stop.is_set():
                return None, None
            raise DeviceError(
                f"camera '{self.name}' ({self.describe()}) stopped delivering frames ({err}): "
                "check the USB cable"
            ) from None
        if self._align is not None:
            frames = self._align.process(frames)
        color = frames.get_color_frame()
        if not color:
            return None, None
        img = np.asanyarray(color.get_data())
        if color.get_profile().format() == rs.format.bgr8:
            img = img[..., ::-1]
        depth = None
        if self.has_depth:
            d = frames.get_depth_frame()
            if d:
                depth = np.asanyarray(d.get_data())
                if abs(self._depth_scale_mm - 1.0) > 1e-6:
                    depth = np.clip(depth.astype(np.float32) * self._depth_scale_mm, 0, 65535).astype(
                        np.uint16
                    )
                else:
                    depth = depth.copy()
        return np.ascontiguousarray(img), depth

    def _close(self) -> None:
        if self._pipe is not None:
            try:
                self._pipe.stop()
            except RuntimeError:
                pass
            self._pipe = None
