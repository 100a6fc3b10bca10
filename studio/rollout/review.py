"""Controller of the rollout review (``widgets.rollout_review.RolloutReviewView``): lists and rates from the
store, playback frames decoded by the episode viewer's decode worker off the GUI thread, overlays from the
stored predictions (``StoredRollout``), open-loop evaluation results from the tab's thread.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from recorder.devices.base import JOINT_NAMES
from recorder.errors import StoreError
from recorder.store.query import EpisodeQuery
from studio.context import remember_splitter
from studio.datasets.viewer import EpisodeViewerController
from studio.datasets.workers import FrameDecodeWorker
from studio.rollout.overlay import StoredRollout
from widgets.rollout_review import PlaybackData, RolloutReviewView

JOINTS = JOINT_NAMES


#: the newest rollouts the list shows (the rates count every rollout, in SQL): opening the review costs the same
#: whatever the store holds
LIST_LIMIT = 500
#: which episodes the review lists
ROLLOUTS = EpisodeQuery(source=("policy",))


def _tag(tags, prefix: str) -> str | None:
    return next((t[len(prefix):] for t in tags if t and t.startswith(prefix)), None)


class CheckpointNames:
    """Store checkpoint id -> ``run/step``, each looked up once (a deleted run's id reads as ``checkpoint N``)."""

    def __init__(self, store) -> None:
        self.store = store
        self._names: dict[int, str] = {}

    def __call__(self, checkpoint_id: int) -> str:
        name = self._names.get(checkpoint_id)
        if name is None:
            try:
                ck = self.store.checkpoint(checkpoint_id)
                name = f"{ck.run_id}/{ck.step}"
            except StoreError:
                name = f"checkpoint {checkpoint_id}"
            self._names[checkpoint_id] = name
        return name


def checkpoint_label(checkpoint_id: int | None, ckpt_tag: str | None, head: str | None, names) -> str:
    """``run/step`` of a rollout's checkpoint, from its ``checkpoint_id`` (the store's checkpoint row) or, for
    an episode without one (stored before episodes carried it, or by a policy server the store does not
    know), its ``ckpt:`` tag; with its action head when the rollout recorded it (``run/step (flow)``): the
    per-checkpoint tables then compare heads on the same data."""
    if checkpoint_id is not None:
        label = names(int(checkpoint_id))
    else:
        label = ckpt_tag or "?"
    return f"{label} ({head})" if head else label


def row_label(row, names) -> str:
    """:func:`checkpoint_label` of an ``EpisodeRow``/``EpisodeInfo``."""
    return checkpoint_label(row.checkpoint_id, _tag(row.tags, "ckpt:"), _tag(row.tags, "head:"), names)


def success_by_checkpoint(store, query: EpisodeQuery = ROLLOUTS) -> dict[str, tuple[int, int]]:
    """checkpoint label -> (successes, labelled episodes), over every episode of ``query`` (one GROUP BY)."""
    names = CheckpointNames(store)
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for cid, ckpt, head, success, n in store.outcome_counts(query, tag_prefixes=("ckpt:", "head:")):
        label = checkpoint_label(cid, None if cid is not None or ckpt is None else ckpt[5:],
                                 None if head is None else head[5:], names)
        row = out[label]
        if success is not None:
            row[1] += n
            row[0] += n * int(bool(success))
    return {k: (v[0], v[1]) for k, v in out.items()}


def joint_limits(info) -> tuple[np.ndarray, np.ndarray]:
    """The arm's joint limits from the episode's rig snapshot, else the SO-101's."""
    rig = getattr(info, "rig", None)
    lim = (rig.get("robot_info") or {}).get("joint_limits") if isinstance(rig, dict) else None
    if isinstance(lim, dict) and "low" in lim and "high" in lim:
        return np.asarray(lim["low"], float), np.asarray(lim["high"], float)
    return np.array([-180.0] * 5 + [0.0]), np.array([180.0] * 5 + [100.0])


def playback_data(info, lowdim: dict[str, np.ndarray] | None = None) -> PlaybackData:
    """What the playback shows of a stored rollout: with its low-dim streams (read in the decode thread),
    the overlays of each tick as they were live."""
    data = PlaybackData(episode_id=int(info.id), num_frames=int(info.num_frames), fps=float(info.fps),
                        cameras=list(info.cameras))
    if lowdim is not None:
        stored = StoredRollout(lowdim, info.fps)
        low, high = joint_limits(info)
        data.overlay = lambda tick, cam: stored.overlay(tick, cam, low=low, high=high, names=JOINTS)
    return data


class RolloutReviewWidget(RolloutReviewView):
    """The review over the window's store: rollouts list, per-checkpoint success rates, playback with overlays
    (frames decoded in the episode viewer's decode thread, never on the GUI thread), open-loop evaluation.

    Signals: those of :class:`widgets.rollout_review.RolloutReviewView`.
    """

    def __init__(self, ctx, parent=None) -> None:
        super().__init__(JOINTS, parent)
        self.ctx = ctx
        self._episodes = []
        self._player: EpisodeViewerController | None = None  # its decode thread starts with the first playback
        self.refresh_requested.connect(self.refresh)
        self.rollout_selected.connect(self.open_rollout)
        self.failed.connect(ctx.error_posted)
        remember_splitter(ctx, self.splitter, "rollout.review")  # the person's pane sizes come back next launch

    # ------------------------------------------------------------------ lists
    def refresh(self) -> None:
        store = self.ctx.store
        names = CheckpointNames(store)
        # the newest LIST_LIMIT rollouts, label columns only (one paged SQL query, not every episode)
        self._episodes = store.episode_rows(ROLLOUTS, descending=True, limit=LIST_LIMIT)
        total = store.count_episodes(ROLLOUTS) if len(self._episodes) >= LIST_LIMIT else len(self._episodes)
        self.set_rollouts([(e.id, row_label(e, names), e.task, e.success, e.num_frames,
                            e.start_time.strftime("%Y-%m-%d %H:%M:%S")) for e in self._episodes], total)
        self.set_rates(success_by_checkpoint(store))
        self.set_datasets([d.name for d in store.datasets()])

    # ------------------------------------------------------------------ playback
    @property
    def player(self) -> EpisodeViewerController:
        """The episode viewer's controller and decode worker, driving this view."""
        if self._player is None:
            store = self.ctx.store
            worker = FrameDecodeWorker(reader_factory=store.open_episode, describe=playback_data)
            self._player = EpisodeViewerController(self, parent=self, worker=worker)
            self._player.failed.connect(self.ctx.error_posted)
        return self._player

    def open_rollout(self, episode_id: int) -> None:
        """Play a stored rollout back: its cameras and cursor at once, its frames as they are decoded."""
        self.close_reader()
        info = self.ctx.store.episode(episode_id)
        self.player.show_episode(info)  # opened and read in the decode thread
        self.set_episode(playback_data(info))

    def close_reader(self) -> None:
        """Stop playing and close the episode (the decode thread keeps running for the next one)."""
        self.pause()
        if self._player is not None:
            self._player.show_episode(None)
        else:
            self.set_episode(None)

    def shutdown(self) -> None:
        self.close_reader()
        if self._player is not None:
            self._player.shutdown()
            self._player = None

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self.shutdown()
        super().closeEvent(event)
