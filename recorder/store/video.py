"""Camera video files: fragmented MP4 written by one encoder thread per camera, read by exact seek.

Write side: frames carry ``pts = tick index`` in time base ``1/fps``; a dropped tick is simply
absent from the file. ``movflags=frag_keyframe+empty_moov+default_base_moof`` and
``flush_packets=1`` make every fragment reach the OS at once, so a crash leaves a file that plays
up to the last fragment. Keyframes come every ``CameraSpec.gop`` frames and at least once per
second of ticks, so a random seek decodes at most ``gop`` frames.

Read side: one demux pass builds a packet index (tick, byte offset, size, keyframe) and packets
are decoded from their bytes with a bare codec context. That needs no container seek, is exact,
and works the same on a cleanly closed file and on one cut short by a crash.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from recorder.errors import StoreError
from recorder.store.avlib import av
from recorder.store.faults import is_disk_full, read_fault
from recorder.store.types import CameraSpec

log = logging.getLogger(__name__)

MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"
_ENCODERS = {"h264": "libx264", "av1": "libsvtav1"}
_STOP = object()


def fps_fraction(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


def _open_output(path: Path, spec: CameraSpec, fps: float):
    container = av.open(str(path), "w", format="mp4", options={"movflags": MOVFLAGS, "flush_packets": "1"})
    rate = fps_fraction(fps)
    keyint = max(1, min(spec.gop, int(round(fps))))
    if spec.codec == "h264":
        options = {
            "preset": spec.effective_preset,
            "tune": "zerolatency",
            "crf": str(spec.effective_crf),
            "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0",
        }
    else:
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole config to stderr otherwise
        options = {
            "preset": spec.effective_preset,
            "crf": str(spec.effective_crf),
            "svtav1-params": f"keyint={keyint}:lp=1:pred-struct=1",
        }
    stream = container.add_stream(_ENCODERS[spec.codec], rate=rate, options=options)
    stream.width = spec.width
    stream.height = spec.height
    stream.pix_fmt = "yuv420p"
    stream.time_base = 1 / rate
    stream.codec_context.gop_size = keyint
    stream.codec_context.thread_count = 1
    return container, stream, keyint


class VideoEncoder(threading.Thread):
    """Encodes (tick, rgb frame) pairs from a bounded queue into one fragmented MP4."""

    def __init__(self, path: Path, name: str, spec: CameraSpec, fps: float) -> None:
        super().__init__(name=f"encoder-{name}", daemon=True)
        self.path = Path(path)
        self.camera = name
        self.spec = spec
        self.fps = fps
        self.queue: queue.Queue = queue.Queue(maxsize=spec.queue_size)
        self.frames_written = 0
        self.last_tick = -1
        self.error: BaseException | None = None
        self._container, self._stream, self._keyint = _open_output(self.path, spec, fps)
        self._last_key_tick: int | None = None
        self._time_base = self._stream.time_base

    def submit(self, tick: int, image: np.ndarray) -> bool:
        """Queue a frame without blocking; False when the queue is full (the frame is dropped)."""
        if self.error is not None:
            return False
        try:
            self.queue.put_nowait((tick, image))
        except queue.Full:
            return False
        return True

    def run(self) -> None:
        try:
            while True:
                item = self.queue.get()
                if item is _STOP:
                    break
                if self.error is None:
                    self._encode_one(*item)
            for packet in self._stream.encode():
                self._container.mux(packet)
        except BaseException as err:  # noqa: BLE001 - reported by finish()
            self.error = err
            if is_disk_full(err, self.path.parent):  # one line: the writer reports it to the person
                log.info("encoder for camera %s stopped: %s", self.camera, err)
            else:
                log.exception("encoder for camera %s failed", self.camera)
            # keep draining so that submit() never blocks on a dead thread
            while True:
                try:
                    if self.queue.get_nowait() is _STOP:
                        break
                except queue.Empty:
                    time.sleep(0.01)
        finally:
            try:
                self._container.close()
            except BaseException as err:  # noqa: BLE001
                if self.error is None:
                    self.error = err

    def _encode_one(self, tick: int, image: np.ndarray) -> None:
        spec = self.spec
        if image.shape != (spec.height, spec.width, 3) or image.dtype != np.uint8:
            raise StoreError(
                f"camera {self.camera!r} frame is {image.shape} {image.dtype}, expected "
                f"({spec.height}, {spec.width}, 3) uint8; fix the CameraSpec passed to begin_episode"
            )
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24").reformat(
            format="yuv420p"
        )
        frame.pts = tick
        frame.time_base = self._time_base
        if self._last_key_tick is None or tick - self._last_key_tick >= self._keyint:
            frame.pict_type = av.video.frame.PictureType.I
            self._last_key_tick = tick
        else:
            frame.pict_type = av.video.frame.PictureType.NONE
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1
        self.last_tick = tick

    def close(self, timeout: float | None = None) -> None:
        """Finish encoding what is queued and close the file (blocks)."""
        self.queue.put(_STOP)
        self.join(timeout)


@dataclass
class PacketIndex:
    ticks: np.ndarray  # int64, increasing
    pos: np.ndarray  # int64 byte offsets
    size: np.ndarray  # int64
    key: np.ndarray  # bool
    codec: str
    extradata: bytes | None
    width: int
    height: int
    truncated: bool  # the file ends inside a packet (a crash cut it short)


def scan_video(path: Path, fps: float) -> PacketIndex:
    """Demux once (no decoding). Packets cut short by the end of the file are left out."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"{path} is missing; run 'vla-studio store check --repair'")
    file_size = path.stat().st_size
    ticks, pos, size, key = [], [], [], []
    truncated = False
    try:
        container = av.open(str(path), "r")
    except av.error.FFmpegError as err:
        fault = read_fault(err, path)
        if fault is not None:
            raise fault from None
        why = getattr(err, "strerror", None) or err
        raise StoreError(
            f"{path} is truncated or not a video ({why}); run 'vla-studio store check --repair'"
        ) from None
    try:
        if not container.streams.video:
            raise StoreError(f"{path} has no video stream; run 'vla-studio store check --repair'")
        stream = container.streams.video[0]
        tb = stream.time_base
        cc = stream.codec_context
        codec, extradata, width, height = cc.name, cc.extradata, cc.width, cc.height
        rate = fps_fraction(fps)
        try:
            for p in container.demux(stream):
                if p.size == 0 or p.pts is None:
                    continue
                if p.pos is None or p.pos < 0 or p.pos + p.size >= file_size:
                    truncated = True  # the last bytes of an unfinished file: do not trust them
                    continue
                ticks.append(int(round(p.pts * tb * rate)))
                pos.append(p.pos)
                size.append(p.size)
                key.append(bool(p.is_keyframe))
        except av.error.FFmpegError:
            truncated = True
    finally:
        container.close()
    order = np.argsort(np.asarray(ticks, dtype=np.int64), kind="stable")
    return PacketIndex(
        ticks=np.asarray(ticks, dtype=np.int64)[order],
        pos=np.asarray(pos, dtype=np.int64)[order],
        size=np.asarray(size, dtype=np.int64)[order],
        key=np.asarray(key, dtype=bool)[order],
        codec=codec,
        extradata=extradata,
        width=width,
        height=height,
        truncated=truncated,
    )


class FrameCache:
    """Decoded frames (still YUV: ``av.VideoFrame`` references, no copy, no colour conversion) shared by the
    decoders of one process, least recently used first out once ``max_bytes`` is exceeded.

    A random seek decodes every frame from the keyframe up to its target; with a cache those frames serve later
    requests for the same ticks (neighbouring training samples, another reader of the episode) without decoding.
    Entries are keyed by (file, tick) and hold exactly the frame decoded for that tick, so cached reads are as
    exact as decoded ones. Not thread-safe (one per process or thread, like the readers)."""

    def __init__(self, max_bytes: int) -> None:
        from collections import OrderedDict

        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._frames: OrderedDict = OrderedDict()  # (path, tick) -> (frame, nbytes)

    def __len__(self) -> int:
        return len(self._frames)

    def get(self, key):
        item = self._frames.get(key)
        if item is None:
            self.misses += 1
            return None
        self._frames.move_to_end(key)
        self.hits += 1
        return item[0]

    def put(self, key, frame) -> None:
        if self.max_bytes <= 0 or key in self._frames:
            return
        nbytes = sum(p.buffer_size for p in frame.planes)
        if nbytes > self.max_bytes:
            return
        self._frames[key] = (frame, nbytes)
        self.bytes += nbytes
        while self.bytes > self.max_bytes:
            _, (_f, n) = self._frames.popitem(last=False)
            self.bytes -= n

    def clear(self) -> None:
        self._frames.clear()
        self.bytes = 0


class VideoDecoder:
    """Exact frame access by tick index over a PacketIndex; a missing tick gives the last held frame.

    ``cache`` (optional, shared): keeps every frame this decoder decodes, including those passed on the way
    from a keyframe to a target, and answers from it before decoding."""

    def __init__(self, path: Path, fps: float, index: PacketIndex | None = None,
                 cache: FrameCache | None = None) -> None:
        self.path = Path(path)
        self.cache = cache
        self._key = str(self.path)
        self.index = index if index is not None else scan_video(self.path, fps)
        if len(self.index.ticks) == 0:
            why = "it was cut short" if self.index.truncated else "the camera delivered none"
            raise StoreError(f"{self.path} holds no complete frame ({why}); see 'vla-studio store check'")
        self._fd = os.open(self.path, os.O_RDONLY)
        self._ctx = self._new_context()
        # one colour converter for every frame: a frame's own to_ndarray(format=...) builds a fresh swscale
        # context each time (same result, ~2-10x the cost of the conversion itself)
        self._rgb = av.video.reformatter.VideoReformatter()
        self._next_packet = None  # index of the next packet the decoder expects (None: needs a keyframe)
        self._last: tuple[int, np.ndarray] | None = None  # (packet index, rgb)

    def _new_context(self):
        ctx = av.CodecContext.create(self.index.codec, "r")
        if self.index.extradata:
            ctx.extradata = self.index.extradata
        ctx.thread_count = 1
        return ctx

    @property
    def last_tick(self) -> int:
        return int(self.index.ticks[-1])

    def packet_for_tick(self, tick: int) -> int:
        """Index of the packet shown at ``tick`` (the last one at or before it; the first one before the start)."""
        j = int(np.searchsorted(self.index.ticks, tick, side="right")) - 1
        return max(j, 0)

    def _decode_packet(self, j: int):
        """Decode packet ``j`` and return the decoder's newest frame (an ``av.VideoFrame``, still YUV)
        or None. Frames skipped on the way to a target are never converted to RGB."""
        data = os.pread(self._fd, int(self.index.size[j]), int(self.index.pos[j]))
        packet = av.Packet(data)
        packet.pts = int(self.index.ticks[j])
        frames = self._ctx.decode(packet)
        self._next_packet = j + 1
        if self.cache is not None:
            for f in frames:  # keyed by the tick the frame carries (pts = tick), exact even with a delay
                if f.pts is not None:
                    self.cache.put((self._key, int(f.pts)), f)
        return frames[-1] if frames else None

    def _goto(self, j: int) -> np.ndarray:
        if self._last is not None and self._last[0] == j:
            return self._last[1]
        if self.cache is not None:
            cached = self.cache.get((self._key, int(self.index.ticks[j])))
            if cached is not None:  # decoded before (here or by another reader): convert, keep decoder state
                img = self._rgb.reformat(cached, format="rgb24").to_ndarray()
                self._last = (j, img)
                return img
        keys = np.flatnonzero(self.index.key[: j + 1])
        k = int(keys[-1]) if len(keys) else 0
        if self._next_packet is not None and k < self._next_packet <= j:
            start = self._next_packet  # keep decoding forward from where we are
        else:
            self._ctx = self._new_context()
            start = k
        frame = None
        for q in range(start, j + 1):
            frame = self._decode_packet(q)  # decode only: no RGB conversion of skipped frames
        if frame is None:  # a decoder that holds frames back: drain it
            out = self._ctx.decode(None)
            self._ctx = self._new_context()
            self._next_packet = None
            if not out:
                raise StoreError(
                    f"{self.path}: frame at tick {int(self.index.ticks[j])} does not decode; "
                    "run 'vla-studio store check --repair'"
                )
            frame = out[-1]
        img = self._rgb.reformat(frame, format="rgb24").to_ndarray()  # the target frame only
        self._last = (j, img)
        return img

    def frame(self, tick: int) -> np.ndarray:
        try:
            return self._goto(self.packet_for_tick(tick)).copy()
        except av.error.FFmpegError as err:
            self._ctx = self._new_context()
            self._next_packet = None
            raise StoreError(
                f"{self.path}: cannot decode tick {tick} ({err}); run 'vla-studio store check --repair'"
            ) from None

    def frames(self, ticks) -> np.ndarray:
        ticks = np.asarray(ticks, dtype=np.int64)
        out = np.empty((len(ticks), self.index.height, self.index.width, 3), dtype=np.uint8)
        packets = np.array([self.packet_for_tick(int(t)) for t in ticks], dtype=np.int64)
        for j in np.unique(packets):  # sorted: one forward pass, jumping only to keyframes
            img = self._goto(int(j))
            out[packets == j] = img
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._ctx = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass
