"""Salvaging an episode whose writer died: keep every tick present in all streams, rewrite clean files."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from recorder.errors import StoreError
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


def remux_prefix(path: Path, fps: float, n_ticks: int) -> int:
    """Rewrite ``path`` keeping only whole packets of ticks < n_ticks (atomic). Returns the frames kept."""
    file_size = path.stat().st_size
    tmp = path.with_name(path.name + ".salvage.mp4")
    rate = fps_fraction(fps)
    kept = 0
    with av.open(str(path), "r") as src:
        ist = src.streams.video[0]
        with av.open(str(tmp), "w", format="mp4", options={"movflags": MOVFLAGS}) as dst:
            ost = dst.add_stream_from_template(ist)
            try:
                for p in src.demux(ist):
                    if p.size == 0 or p.pts is None or p.pos is None or p.pos + p.size >= file_size:
                        continue
                    if int(round(p.pts * ist.time_base * rate)) >= n_ticks:
                        continue
                    p.stream = ost
                    dst.mux(p)
                    kept += 1
            except av.error.FFmpegError:
                pass
    os.replace(tmp, path)
    return kept


def salvage_episode(info: EpisodeInfo) -> SalvageResult:
    folder = info.path
    if not folder.is_dir():
        return SalvageResult(0, reason=f"{folder} is missing")
    segments = None
    try:
        meta = json.loads((folder / META_FILE).read_text())
        segments = meta.get("segments")
    except (OSError, ValueError):
        meta = None
    try:
        data, ld_truncated = read_lowdim(folder / LOWDIM_FILE)
    except StoreError as err:
        return SalvageResult(0, reason=str(err))
    n_rows = len(data["index"])
    n = n_rows
    indexes: dict[str, PacketIndex] = {}
    for cam in info.cameras:
        path = folder / "video" / f"{cam}.mp4"
        try:
            idx = scan_video(path, info.fps)
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
        if idx.truncated or keep < len(idx.ticks):
            try:
                keep = remux_prefix(path, info.fps, n)
            except (av.error.FFmpegError, OSError) as err:  # the reader copes with the raw file too
                log.warning("could not rewrite %s after a crash: %s", path, err)
        frames_per_camera[cam] = keep
    if ld_truncated or n_rows > n:
        write_lowdim_table(
            folder / LOWDIM_FILE, {k: v[:n] for k, v in data.items()}, list(info.cameras), info.lowdim
        )
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
