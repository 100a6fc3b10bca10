"""A small real disk for disk-full tests: a 30 MB tmpfs (skips cleanly where mounting is not allowed).

``small_disk`` (the fixture, in tests/conftest.py) calls :func:`mount_small_disk`; :func:`fill` leaves N bytes."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

SIZE_MB = 30


def mount_small_disk(tmp_path):
    """A fresh 30 MB tmpfs folder; the test is skipped where this machine does not allow mounting one."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(mnt)],
                           capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as err:
        pytest.skip(f"cannot mount a tmpfs here ({err})")
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode(errors='replace').strip()})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=20)


def fill(disk, leave: int = 0) -> os.PathLike:
    """Fill ``disk`` until only ``leave`` bytes are free; returns the filler file (delete it to free space)."""
    path = disk / "filler.bin"
    with open(path, "ab") as f:
        free = shutil.disk_usage(disk).free - leave
        chunk = b"\0" * (1 << 20)
        while free > 0:
            n = min(free, len(chunk))
            try:
                f.write(chunk[:n])
                f.flush()
            except OSError:
                break
            free = shutil.disk_usage(disk).free - leave
    return path


def encoder_enospc_from(monkeypatch, first_tick: int) -> None:
    """Inject a full disk at the video write: every camera's encoder fails with ENOSPC (as FFmpeg reports it)
    from ``first_tick`` on."""
    import errno

    import av

    from recorder.store.video import VideoEncoder

    real = VideoEncoder._encode_one

    def encode(self, tick, image):
        if tick >= first_tick:
            raise av.error.OSError(errno.ENOSPC, "No space left on device", str(self.path))
        real(self, tick, image)

    monkeypatch.setattr(VideoEncoder, "_encode_one", encode)
