"""Salvaging an episode whose writer died: keep every tick present in all streams, rewrite clean files."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recorder.errors import StoreError
from recorder.store.avlib import av
from recorder.store.backups import Backup
from recorder.store.faults import DiskReadError, disk_full_error, is_disk_full
from recorder.store.lowdim import FILENAME as LOWDIM_FILE
from recorder.store.lowdim import read_lowdim, write_lowdim_table
from recorder.store.types import EpisodeInfo
from recorder.store.video import MOVFLAGS, PacketIndex, fps_fraction, scan_video
from recorder.store.writer import META_FILE

log = logging.getLogger(__name__)


@dataclass
class SalvageResult:
    num_frames: int
    dropped: dict[str, int] = field(default_factory=dict)
    frames_per_camera: dict[str, int] = field(default_factory=dict)
    segments: list[dict] | None = None
    reason: str = ""
    finished: bool = False  # meta.json says finish() completed and every tick survived
    meta: dict | None = None


def usable_ticks(n_rows: int, dropped: np.ndarray, index: PacketIndex) -> int:
    """Ticks [0, n) such that each one's frame is in the video or was marked dropped when recorded."""
    ok = dropped[:n_rows].astype(bool).copy()
    present = index.ticks[(index.ticks >= 0) & (index.ticks < n_rows)]
    ok[present] = True
    bad = np.flatnonzero(~ok)
    return int(bad[0]) if len(bad) else n_rows


def remux_prefix(path: Path, fps: float, n_ticks: int, backup: Backup | None = None) -> int:
    """Rewrite ``path`` keeping only whole packets of ticks < n_ticks. Returns the frames kept.

    The new file is written beside the old one, flushed to disk and read back (every packet kept, none
    cut); only then does it replace the original, which first goes to ``backup`` when one is given. Any
    failure (a full disk, an FFmpeg error while writing) leaves the original untouched and raises
    (DiskFullError for a full disk, StoreError otherwise)."""
    file_size = path.stat().st_size
    tmp = path.with_name(path.name + ".salvage.mp4")
    rate = fps_fraction(fps)
    kept = 0
    try:
        with av.open(str(path), "r") as src:
            ist = src.streams.video[0]
            with av.open(str(tmp), "w", format="mp4", options={"movflags": MOVFLAGS}) as dst:
                ost = dst.add_stream_from_template(ist)
                packets = src.demux(ist)
                while True:
                    try:
                        p = next(packets)
                    except StopIteration:
                        break
                    except av.error.FFmpegError:  # reading the cut end of the source: stop there
                        break
                    if p.size == 0 or p.pts is None or p.pos is None or p.pos + p.size >= file_size:
                        continue
                    if int(round(p.pts * ist.time_base * rate)) >= n_ticks:
                        continue
                    p.stream = ost
                    dst.mux(p)  # a write error (ENOSPC) is not swallowed
                    kept += 1
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        check = scan_video(tmp, fps)
        if check.truncated or len(check.ticks) != kept:
            raise StoreError(
                f"{tmp}: the rewritten video holds {len(check.ticks)} of {kept} frames; {path} is left as it was"
            )
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if is_disk_full(err, path.parent):
            raise disk_full_error(path.parent, file_size, "'vla-studio store check --repair'") from None
        if isinstance(err, av.error.FFmpegError):
            raise StoreError(f"could not rewrite {path} ({err}); it is left as it was") from None
        raise
    if backup is not None:
        backup.keep(path)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return kept


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def salvage_episode(info: EpisodeInfo, backup: Backup | None = None) -> SalvageResult:
    """Keep every tick present in all streams. Healthy files are never rewritten: the index row is what
    shortens the episode, so intact streams keep every tick they hold. A file cut short (a video ending
    inside a packet, a low-dim stream ending inside a batch) is rewritten clean, its original first kept in
    ``backup``; a rewrite that fails (a full disk) leaves the original, which the reader copes with."""
    folder = info.path
    if not folder.is_dir():
        return SalvageResult(0, reason=f"{folder} is missing")
    segments = None
    try:
        meta = json.loads((folder / META_FILE).read_text())
        segments = meta.get("segments")
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict):
        meta, segments = None, None
    try:
        data, ld_truncated = read_lowdim(folder / LOWDIM_FILE)
    except DiskReadError:
        raise  # an I/O error says nothing about the file: salvage nothing, change nothing
    except StoreError as err:
        return SalvageResult(0, reason=str(err))
    n_rows = len(data["index"])
    n = n_rows
    indexes: dict[str, PacketIndex] = {}
    for cam in info.cameras:
        path = folder / "video" / f"{cam}.mp4"
        try:
            idx = scan_video(path, info.fps)
        except DiskReadError:
            raise
        except StoreError as err:
            return SalvageResult(0, reason=str(err))
        indexes[cam] = idx
        n = min(n, usable_ticks(n_rows, data[f"dropped.{cam}"], idx))
    if n == 0:
        return SalvageResult(0, reason="no tick is present in every stream")
    frames_per_camera = {}
    for cam, idx in indexes.items():
        path = folder / "video" / f"{cam}.mp4"
        keep = int(np.count_nonzero(idx.ticks < n))
        if idx.truncated:  # drop the cut tail only: every whole packet stays
            end = int(idx.ticks.max()) + 1 if len(idx.ticks) else 0
            try:
                remux_prefix(path, info.fps, end, backup=backup)
            except (av.error.FFmpegError, OSError, StoreError) as err:  # the reader copes with the raw file
                log.warning("could not rewrite %s: %s", path, err)
        frames_per_camera[cam] = keep
    if ld_truncated:  # rewrite the whole batches, every row of them
        path = folder / LOWDIM_FILE
        try:
            write_lowdim_table(path, data, list(info.cameras), info.lowdim, backup=backup)
        except (OSError, StoreError) as err:  # read_lowdim copes with the cut file
            log.warning("could not rewrite %s: %s", path, err)
    dropped = {cam: int(np.count_nonzero(data[f"dropped.{cam}"][:n])) for cam in info.cameras}
    if segments is not None:
        segments = [s for s in segments if int(s.get("start_tick", 0)) < n]
    finished = bool(meta) and meta.get("status") == "complete" and meta.get("num_frames") == n
    return SalvageResult(
        n,
        dropped=dropped,
        frames_per_camera=frames_per_camera,
        segments=segments,
        finished=finished,
        meta=meta,
    )
