"""OpenCV (from a video file) and RealSense (from a .db3 recording made here) cameras."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from recorder.devices import make_camera
from recorder.devices.configs import OpenCVCameraConfig, RealSenseCameraConfig
from recorder.errors import DeviceError

W, H = 64, 48


def test_opencv_camera_plays_a_video_file_in_rgb(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (W, H))
    assert writer.isOpened()
    for i in range(6):
        bgr = np.zeros((H, W, 3), np.uint8)
        bgr[..., 2] = 220  # red in BGR
        bgr[:, : 8 * (i + 1), 1] = 200
        writer.write(bgr)
    writer.release()
    cam = make_camera(OpenCVCameraConfig(index_or_path=str(path), width=W, height=H, fps=60), name="file")
    with cam:
        pkt = cam.read_latest()
        assert pkt.image.shape == (H, W, 3)
        assert pkt.image[..., 0].mean() > 150 and pkt.image[..., 2].mean() < 60  # converted to RGB
        later = cam.wait_for_frame(pkt.index + 8, timeout=3.0)  # loops past the end of the file
        assert later.index > pkt.index + 8


def _record_db3(path, n=12):
    rs = pytest.importorskip("pyrealsense2")
    try:
        sdev = rs.software_device()
        dsen, csen = sdev.add_sensor("Depth"), sdev.add_sensor("Color")

        def stream(kind, fmt, bpp, uid):
            intr = rs.intrinsics()
            intr.width, intr.height, intr.fx, intr.fy, intr.ppx, intr.ppy = W, H, 50.0, 50.0, W / 2, H / 2
            intr.model, intr.coeffs = rs.distortion.none, [0.0] * 5
            vs = rs.video_stream()
            vs.type, vs.index, vs.uid, vs.width, vs.height, vs.fps, vs.bpp, vs.fmt = (
                kind,
                0,
                uid,
                W,
                H,
                30,
                bpp,
                fmt,
            )
            vs.intrinsics = intr
            return vs

        cp = csen.add_video_stream(stream(rs.stream.color, rs.format.rgb8, 3, 1))
        dp = dsen.add_video_stream(stream(rs.stream.depth, rs.format.z16, 2, 2))
        dsen.add_read_only_option(rs.option.depth_units, 0.001)
        ext = rs.extrinsics()
        ext.rotation, ext.translation = [1, 0, 0, 0, 1, 0, 0, 0, 1], [0, 0, 0]
        dp.register_extrinsics_to(cp, ext)
        sdev.create_matcher(rs.matchers.dlr_c)
        rec = rs.recorder(str(path), sdev)
        csen.open(cp)
        dsen.open(dp)
        q = rs.frame_queue(100)
        csen.start(q)
        dsen.start(q)
        for i in range(n):
            img = np.zeros((H, W, 3), np.uint8)
            img[..., 0] = 200
            img[..., 1] = 10 * i
            dep = np.full((H, W), 700 + i, np.uint16)
            for sen, prof, arr, bpp in ((csen, cp, img, 3), (dsen, dp, dep, 2)):
                f = rs.software_video_frame()
                f.pixels, f.stride, f.bpp = arr, W * bpp, bpp
                f.timestamp, f.domain, f.frame_number = i * 1000 / 30, rs.timestamp_domain.hardware_clock, i
                f.profile = prof.as_video_stream_profile()
                if sen is dsen:
                    f.depth_units = 0.001
                sen.on_video_frame(f)
            time.sleep(0.005)
        csen.stop()
        dsen.stop()
        csen.close()
        dsen.close()
        del rec
    except (RuntimeError, AttributeError, TypeError) as err:  # pragma: no cover - depends on the build
        pytest.skip(f"pyrealsense2 cannot record a software device here: {err}")
    if not path.exists() or path.stat().st_size == 0:  # pragma: no cover
        pytest.skip("pyrealsense2 wrote no recording here")


def test_realsense_playback_colour_and_aligned_depth(tmp_path):
    path = tmp_path / "rs.db3"
    _record_db3(path)
    cam = make_camera(RealSenseCameraConfig(playback=str(path), width=W, height=H, use_depth=True), name="rs")
    assert cam.features["depth"] == {"shape": (H, W), "dtype": "uint16", "unit": "mm"}
    with cam:
        pkt = cam.read_latest(timeout=3.0)
        assert pkt.image.shape == (H, W, 3) and pkt.image.dtype == np.uint8
        assert pkt.image[..., 0].mean() > 150  # the red we recorded, in RGB order
        assert pkt.depth is not None and pkt.depth.shape == (H, W) and pkt.depth.dtype == np.uint16
        assert 690 <= int(np.median(pkt.depth)) <= 720  # millimetres
        later = cam.wait_for_frame(pkt.index, timeout=3.0)
        assert later.index > pkt.index


def test_realsense_wrong_size_and_missing_file(tmp_path):
    path = tmp_path / "rs.db3"
    _record_db3(path, n=4)
    with pytest.raises(DeviceError, match="64x48"):
        make_camera(RealSenseCameraConfig(playback=str(path), width=320, height=240), name="rs").connect()
    with pytest.raises(DeviceError, match="does not exist"):
        make_camera(RealSenseCameraConfig(playback=str(tmp_path / "none.db3")), name="rs").connect()
