"""The decode workers of the Datasets tab (and the rollout review) decode in their own thread, never on the GUI
thread: a slow or seeking decoder must not freeze the window."""

import threading
from types import SimpleNamespace

import numpy as np
import pytest

from studio.datasets.workers import FrameDecodeWorker, ThumbnailWorker
from studio.qt.threads import WorkerThread

pytestmark = pytest.mark.gui


class _Reader:
    """An episode reader that notes the thread each frame is decoded on."""

    def __init__(self, info, threads):
        self.info, self.threads, self.cameras = info, threads, list(info.cameras)

    def lowdim(self):
        return {"action": np.zeros((self.info.num_frames, 6), np.float32)}

    def frame(self, camera, tick):
        self.threads.append(threading.current_thread())
        return np.full((12, 16, 3), tick, np.uint8)

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _info():
    return SimpleNamespace(id=7, cameras={"front": None}, num_frames=5, fps=10.0, rig={}, segments=(),
                           status="complete", dataset="d", task="t", source="teleop")


def test_frames_are_decoded_in_the_worker_thread(qtbot):
    threads = []
    worker = FrameDecodeWorker(reader_factory=lambda info: _Reader(info, threads))
    thread = WorkerThread(worker, "decoder")
    try:
        worker.open_episode(_info())
        with qtbot.waitSignal(worker.frames_decoded, timeout=5000) as blocker:
            worker.request(3)
        assert blocker.args[:2] == [7, 3] and blocker.args[2]["front"][0, 0, 0] == 3
        assert threads and all(t is not threading.main_thread() for t in threads)
    finally:
        thread.stop()


def test_thumbnails_are_decoded_in_the_worker_thread(qtbot, monkeypatch):
    import recorder.store

    threads = []
    monkeypatch.setattr(recorder.store, "EpisodeReader", lambda info: _Reader(info, threads))
    worker = ThumbnailWorker(width=8)
    thread = WorkerThread(worker, "thumbnails")
    try:
        with qtbot.waitSignal(worker.thumbnail_ready, timeout=5000) as blocker:
            worker.request([_info()])
        assert blocker.args[0] == 7 and blocker.args[1].shape == (6, 8, 3)
        assert threads and all(t is not threading.main_thread() for t in threads)
    finally:
        thread.stop()
