"""EpisodeReader: exact frames and whole-episode arrays of one stored episode."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recorder.errors import StoreError
from recorder.store.lowdim import FILENAME as LOWDIM_FILE
from recorder.store.lowdim import read_lowdim
from recorder.store.types import CameraSpec, EpisodeInfo
from recorder.store.video import FrameCache, VideoDecoder


class EpisodeReader:
    """Random access to one episode. Not thread-safe: open one per thread or process."""

    def __init__(self, info: EpisodeInfo) -> None:
        if not info.path.is_dir():
            raise StoreError(
                f"episode {info.id} folder {info.path} is missing; run 'vla-studio store check --repair'"
            )
        self.info = info
        self.num_frames: int = info.num_frames
        self.fps: float = info.fps
        self.cameras: dict[str, CameraSpec] = dict(info.cameras)
        self._decoders: dict[str, VideoDecoder] = {}
        # a recorder.store.video.FrameCache shared with other readers of this process (set before reading;
        # None: no cache). Decoded frames are kept and reused for later reads of the same ticks.
        self.frame_cache: FrameCache | None = None
        self._lowdim: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.num_frames

    def _decoder(self, camera: str) -> VideoDecoder:
        dec = self._decoders.get(camera)
        if dec is None:
            if camera not in self.cameras:
                raise KeyError(
                    f"episode {self.info.id} has no camera {camera!r} (has {sorted(self.cameras)})"
                )
            path = self.info.path / "video" / f"{camera}.mp4"
            dec = VideoDecoder(path, self.fps, cache=self.frame_cache)
            needed = self._last_needed_tick(camera)
            if dec.last_tick < needed:
                dec.close()
                raise StoreError(
                    f"{path} is truncated (frames up to tick {dec.last_tick}, the index says "
                    f"{needed}); run 'vla-studio store check --repair'"
                )
            self._decoders[camera] = dec
        return dec

    def _last_needed_tick(self, camera: str) -> int:
        """The last tick whose frame should be in the video (later ticks may hold a dropped frame)."""
        dropped = self.lowdim().get(f"dropped.{camera}")
        if dropped is None or not len(dropped):
            return -1
        present = np.flatnonzero(~dropped.astype(bool))
        return int(present[-1]) if len(present) else -1

    def _check(self, i: int) -> int:
        i = int(i)
        if i < 0:
            i += self.num_frames
        if not 0 <= i < self.num_frames:
            raise IndexError(f"tick {i} out of range: episode {self.info.id} has {self.num_frames} ticks")
        return i

    def frame(self, camera: str, i: int) -> np.ndarray:
        """HxWx3 uint8 RGB of tick ``i`` (a dropped tick gives the last frame held before it)."""
        return self._decoder(camera).frame(self._check(i))

    def frames(self, camera: str, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """(N,H,W,3) uint8 in the order of ``indices``; decoded in one sorted pass."""
        ticks = [self._check(i) for i in indices]
        return self._decoder(camera).frames(ticks)

    def lowdim(self) -> dict[str, np.ndarray]:
        """index, t, ts.<cam>, dropped.<cam>, stale.<cam>, observation.state, action and extras; one row per tick."""
        if self._lowdim is None:
            data, _ = read_lowdim(self.info.path / LOWDIM_FILE)
            n = len(data["index"])
            if n < self.num_frames:
                raise StoreError(
                    f"{self.info.path / LOWDIM_FILE} has {n} rows, the index says "
                    f"{self.num_frames}; run 'vla-studio store check --repair'"
                )
            self._lowdim = {k: v[: self.num_frames] for k, v in data.items()}
            for cam in self.cameras:  # episodes written before the per-tick column: from the stale segments
                if f"stale.{cam}" not in self._lowdim:
                    self._lowdim[f"stale.{cam}"] = self._stale_from_segments(cam)
        return {k: v.copy() for k, v in self._lowdim.items()}

    def _stale_from_segments(self, camera: str) -> np.ndarray:
        flags = np.zeros(self.num_frames, bool)
        for seg in self.info.segments or ():
            if seg.get("kind") == f"stale.{camera}":
                flags[int(seg["start_tick"]): int(seg["end_tick"]) + 1] = True
        return flags

    def stale(self, camera: str) -> np.ndarray:
        """(num_frames,) bool: True where ``camera``'s stored image is not of that tick (an older frame)."""
        if camera not in self.cameras:
            raise KeyError(f"episode {self.info.id} has no camera {camera!r} (has {sorted(self.cameras)})")
        return self.lowdim()[f"stale.{camera}"]

    def close(self) -> None:
        for dec in self._decoders.values():
            dec.close()
        self._decoders.clear()

    def __enter__(self) -> EpisodeReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
