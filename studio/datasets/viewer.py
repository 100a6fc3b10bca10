"""Controller of the episode viewer: wires EpisodeViewerWidget to a FrameDecodeWorker thread."""

from __future__ import annotations

from PyQt6.QtCore import QObject, pyqtSignal

from studio.datasets.workers import FrameDecodeWorker, WorkerThread
from widgets.episode_viewer import EpisodeViewerWidget


class EpisodeViewerController(QObject):
    """Opens episodes in the decode thread and feeds the viewer; the GUI thread never decodes.

    Signals:
        frame_shown(int): the viewer now shows this tick (all cameras).
        failed(str): a one-line error.
    """

    frame_shown = pyqtSignal(int)
    failed = pyqtSignal(str)

    def __init__(self, viewer: EpisodeViewerWidget, parent: QObject | None = None,
                 worker: FrameDecodeWorker | None = None, load=None) -> None:
        """``load``: episode id -> its full record, called in the decode thread (then :meth:`show_episode`
        takes a light row: the GUI thread does not read the record either)."""
        super().__init__(parent)
        self.viewer = viewer  # an EpisodeViewerWidget, or a view with its protocol (the rollout review)
        self.worker = worker if worker is not None else FrameDecodeWorker(load=load)
        self._thread = WorkerThread(self.worker, "episode-decoder")
        self.episode_id: int | None = None
        self.worker.episode_loaded.connect(self._on_episode_loaded)
        self.worker.frames_decoded.connect(self._on_frames_decoded)
        self.worker.failed.connect(self.failed)
        viewer.frame_requested.connect(self._on_frame_requested)

    def show_episode(self, info) -> None:
        """Load an episode (None clears the viewer)."""
        self.episode_id = None if info is None else info.id
        if info is None:
            self.viewer.set_episode(None)
            self.worker.close_episode()
            return
        placeholder = getattr(self.viewer, "show_placeholder", None)  # the review's view has none
        if placeholder is not None:
            placeholder(f"Opening episode #{info.id}…")
        else:
            self.viewer.pause()
        self.worker.open_episode(info)

    def _on_episode_loaded(self, episode_id: int, data) -> None:
        if episode_id != self.episode_id:
            return
        self.viewer.set_episode(data)

    def _on_frame_requested(self, tick: int) -> None:
        if self.episode_id is not None:
            self.worker.request(tick)

    def _on_frames_decoded(self, episode_id: int, tick: int, frames: dict) -> None:
        if episode_id != self.episode_id:
            return
        self.viewer.show_frames(tick, frames)
        self.frame_shown.emit(tick)

    def shutdown(self) -> None:
        self.viewer.pause()
        self._thread.stop()
