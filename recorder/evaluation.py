"""Open-loop evaluation: run a policy over recorded episodes and compare with the recorded actions.

For every evaluated tick ``t`` of an episode the policy sees the recorded camera frames and joint
state of tick ``t`` and predicts a chunk; row 0 is compared with the recorded action of tick ``t``
(``predicted`` / ``recorded`` per joint, for the plots), and row ``j`` with the recorded action of
tick ``t + j`` (error by horizon). Errors are mean absolute errors in the action's own units
(degrees; gripper 0..100), per joint, pooled over all evaluated ticks of all episodes.

The policy is duck-typed (``predict``, ``camera_names``, ``chunk_size``, ``action_dim``,
``checkpoint_id``): ``recorder`` never imports ``finetune``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from recorder.devices.base import JOINT_NAMES
from recorder.errors import DatasetError
from recorder.policy import checkpoint_name
from recorder.rollout import match_cameras

SO101_JOINTS = JOINT_NAMES  # the SO-101's joints, named in one place (recorder.devices.base)


def mae_per_joint(predicted: np.ndarray, recorded: np.ndarray) -> np.ndarray:
    """Mean absolute error per column of two (T, D) arrays, ignoring rows with NaN."""
    p = np.asarray(predicted, dtype=np.float64)
    r = np.asarray(recorded, dtype=np.float64)
    if p.shape != r.shape:
        raise DatasetError(f"open-loop evaluation: predicted {p.shape} and recorded {r.shape} differ in shape")
    err = np.abs(p - r)
    ok = np.isfinite(err)
    n = ok.sum(0)
    with np.errstate(invalid="ignore"):
        return np.where(n > 0, np.where(ok, err, 0).sum(0) / np.maximum(n, 1), np.nan)


@dataclass
class EpisodeEval:
    episode_id: int
    task: str
    indices: np.ndarray  # (T,) evaluated ticks
    predicted: np.ndarray  # (T, D) row 0 of each predicted chunk
    recorded: np.ndarray  # (T, D) the recorded action at the same ticks
    chunks: np.ndarray  # (T, K, D) every predicted chunk
    latency_s: np.ndarray  # (T,)

    @property
    def mae(self) -> np.ndarray:
        return mae_per_joint(self.predicted, self.recorded)


@dataclass
class OpenLoopResult:
    checkpoint_id: str  # readable name of the checkpoint (run/step, or the policy's id)
    dataset: str | None
    joint_names: list[str]
    episodes: list[EpisodeEval] = field(default_factory=list)
    mae_per_joint: np.ndarray | None = None  # (D,) pooled over all evaluated ticks
    mae_by_horizon: np.ndarray | None = None  # (K,) error of chunk row j vs the action recorded j ticks later
    mean_latency_s: float = 0.0
    action_head: str | None = None  # the policy's action head (tokens / chunk / flow / fast), when it says
    held_chunks: int = 0  # predictions that were not a valid chunk (FAST) and were replaced by a hold-still chunk

    @property
    def mae(self) -> float:
        return float(np.nanmean(self.mae_per_joint)) if self.mae_per_joint is not None else float("nan")

    def table(self) -> str:
        """A short text table (joint, MAE) for the CLI and the report."""
        lines = [f"checkpoint {self.checkpoint_id}  dataset {self.dataset}  episodes {len(self.episodes)}",
                 f"{'joint':<16}{'MAE':>10}"]
        for name, v in zip(self.joint_names, self.mae_per_joint if self.mae_per_joint is not None else []):
            lines.append(f"{name:<16}{v:>10.3f}")
        lines.append(f"{'mean':<16}{self.mae:>10.3f}")
        if self.held_chunks:
            lines.append(f"held still (undecodable chunks): {self.held_chunks}")
        return "\n".join(lines)


def evaluate_open_loop(policy, store, *, dataset: str | None = None, episode_ids: list[int] | None = None,
                       max_episodes: int | None = None, stride: int = 1, max_ticks: int | None = None,
                       instruction: str | None = None, stop: threading.Event | None = None,
                       on_progress: Callable[[int, int], None] | None = None) -> OpenLoopResult:
    """Evaluate ``policy`` on recorded episodes (those ids, or a dataset's complete episodes)."""
    if episode_ids is None:
        if dataset is None:
            raise DatasetError("open-loop evaluation: name a dataset or episodes to evaluate on")
        infos = [e for e in store.episodes(dataset=dataset) if e.source != "policy"]
        if not infos:
            raise DatasetError(f"open-loop evaluation: dataset {dataset!r} has no recorded episodes; record some first")
    else:
        infos = [store.episode(i) for i in episode_ids]
    if max_episodes is not None:
        infos = infos[: int(max_episodes)]
    stride = max(1, int(stride))
    K, D = int(policy.chunk_size), int(policy.action_dim)
    joint_names: list[str] = []
    result = OpenLoopResult(checkpoint_id=checkpoint_name(policy), dataset=dataset,
                            joint_names=joint_names, action_head=policy.action_head)
    horizon_err = np.zeros((K, D))
    horizon_n = np.zeros((K, D))
    for n_ep, info in enumerate(infos):
        if stop is not None and stop.is_set():
            break
        reader = store.open_episode(info.id)
        try:
            low = reader.lowdim()
            if "action" not in low:
                raise DatasetError(f"episode {info.id} has no 'action' stream; it cannot be evaluated")
            actions = np.asarray(low["action"], dtype=np.float64)
            state = low.get("observation.state")
            if actions.shape[1] != D:
                raise DatasetError(f"episode {info.id} has {actions.shape[1]}-D actions, the policy predicts {D}")
            if not joint_names:
                joint_names.extend(SO101_JOINTS if D == len(SO101_JOINTS) else [f"joint {i}" for i in range(D)])
            T = len(actions)
            idx = np.arange(0, T, stride)
            if max_ticks is not None:
                idx = idx[: int(max_ticks)]
            cam_map = match_cameras(list(policy.camera_names), list(reader.cameras))
            frames = {pol: reader.frames(rig, idx) for pol, rig in cam_map.items()}
            chunks = np.full((len(idx), K, D), np.nan)
            lat = np.zeros(len(idx))
            task = instruction or info.task
            for j, t in enumerate(idx):
                if stop is not None and stop.is_set():
                    idx, chunks, lat = idx[:j], chunks[:j], lat[:j]
                    break
                images = {pol: np.ascontiguousarray(f[j]) for pol, f in frames.items()}
                out = policy.predict(images, None if state is None else np.asarray(state[t], np.float32), task)
                a = np.asarray(out.actions, dtype=np.float64)
                k = min(K, a.shape[0])
                chunks[j, :k] = a[:k]
                lat[j] = float(out.latency_s)
                result.held_chunks += int(bool(getattr(out, "held", False)))
                for h in range(k):
                    if t + h < T:
                        horizon_err[h] += np.abs(a[h] - actions[t + h])
                        horizon_n[h] += 1
        finally:
            reader.close()
        result.episodes.append(EpisodeEval(info.id, info.task, idx, chunks[:, 0], actions[idx], chunks, lat))
        if on_progress is not None:
            on_progress(n_ep + 1, len(infos))
    if result.episodes:
        pred = np.concatenate([e.predicted for e in result.episodes])
        rec = np.concatenate([e.recorded for e in result.episodes])
        result.mae_per_joint = mae_per_joint(pred, rec)
        with np.errstate(invalid="ignore"):
            result.mae_by_horizon = (horizon_err.sum(1) / np.maximum(horizon_n.sum(1), 1))
        lats = np.concatenate([e.latency_s for e in result.episodes])
        result.mean_latency_s = float(lats.mean()) if len(lats) else 0.0
    return result
