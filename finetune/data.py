"""Training samples from store episodes.

A sample is the camera frame(s) of one tick at the model's resolution, the episode's instruction, the
action chunk of K steps starting at that tick (normalized q01/q99 -> [-1, 1] with the statistics of the
training episodes) and optionally the normalized ``observation.state``.

Low-dim arrays (actions, state) are read once per episode when the dataset is built (they are small);
frames are decoded on demand by exact seek, inside the DataLoader workers: each worker opens its own
``Store`` and keeps a few readers open. Nothing decodes a whole episode per sample.

Data order is a seeded stream of permutations (``StreamSampler``): a run that resumes at sample N
sees exactly the samples an uninterrupted run would have seen, with the same augmentation, because
each sample's augmentation is seeded by its position in the stream, not by worker state.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from recorder.errors import DatasetError

ACTION_KEY = "action"
STATE_KEY = "observation.state"
CROP_AREA = 0.9  # OpenVLA: random_resized_crop scale (0.9, 0.9), ratio 1 (relative to the image)
# decoded frames kept per process (DataLoader worker): a seek decodes from the keyframe to its target, and the
# frames passed on the way serve later samples of the same ticks. 640x480 YUV is 0.46 MB a frame.
FRAME_CACHE_MB = 256
_INHERITED: list = []  # handles a forked DataLoader worker got from its parent: kept, never closed (see _reader)


# ----------------------------------------------------------------------------- episodes and split


@dataclass(frozen=True)
class EpisodeData:
    """What the dataset keeps in memory about one episode (frames stay on disk)."""

    episode_id: int
    instruction: str
    num_frames: int
    cameras: tuple[str, ...]
    actions: np.ndarray  # (T, D) float32, real units
    state: np.ndarray | None  # (T, S) float32 or None


def list_episodes(store, dataset: str) -> list:
    """The usable episodes of ``dataset`` (complete or recovered, at least one frame)."""
    names = [d.name for d in store.datasets()]
    if dataset not in names:
        known = ", ".join(sorted(names)) or "none"
        raise DatasetError(f"dataset {dataset!r} is not in the store {store_root(store)} (known: {known}); "
                           "record episodes into it first")
    episodes = [e for e in store.episodes(dataset=dataset) if e.num_frames and e.num_frames > 0]
    if not episodes:
        raise DatasetError(f"dataset {dataset!r} in {store_root(store)} has no complete episodes; "
                           "record or recover some first")
    return sorted(episodes, key=lambda e: e.id)


def first_episode_lowdim(home, dataset: str) -> tuple[list, dict]:
    """(the dataset's usable episodes, the first one's low-dim streams): the dims a run will see, cheaply."""
    from recorder.store import Store

    store = Store.open(Path(home))
    try:
        infos = list_episodes(store, dataset)
        reader = store.open_episode(infos[0])
        try:
            return infos, reader.lowdim()
        finally:
            reader.close()
    finally:
        store.close()


def store_root(store) -> str:
    for attr in ("root", "home", "path"):
        value = getattr(store, attr, None)
        if value is not None:
            return str(value)
    return "the store"


def split_episodes(episode_ids: list[int], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split by episode. At least one training episode; a validation episode only when
    there are two or more episodes and ``val_fraction > 0``."""
    ids = sorted(episode_ids)
    if val_fraction <= 0 or len(ids) < 2:
        return ids, []
    rng = np.random.default_rng(seed)
    order = [ids[i] for i in rng.permutation(len(ids))]
    n_val = min(len(ids) - 1, max(1, round(len(ids) * val_fraction)))
    return sorted(order[n_val:]), sorted(order[:n_val])


def load_episode_data(store, episodes: list, cameras: list[str], use_state: bool) -> list[EpisodeData]:
    """Read each episode's low-dim arrays once and check that the episodes agree on shapes and cameras."""
    out: list[EpisodeData] = []
    action_dim = state_dim = None
    first = None
    for info in episodes:
        reader = store.open_episode(info)
        try:
            low = reader.lowdim()
            ep_cams = tuple(reader.cameras)
        finally:
            reader.close()
        where = f"episode {info.id} ({info.path})"
        if ACTION_KEY not in low:
            raise DatasetError(f"{where} has no 'action' stream; it cannot be used for training")
        actions = np.asarray(low[ACTION_KEY], dtype=np.float32)
        if actions.ndim == 1:
            actions = actions[:, None]
        if action_dim is None:
            action_dim, first = actions.shape[1], info
        elif actions.shape[1] != action_dim:
            raise DatasetError(
                f"{where} has {actions.shape[1]}-D actions but episode {first.id} has {action_dim}-D: "
                "keep one robot per dataset (move the odd episodes to another dataset)")
        missing = [c for c in cameras if c not in ep_cams]
        if missing:
            raise DatasetError(f"{where} has no camera {missing[0]!r} (it has {', '.join(ep_cams) or 'none'}); "
                               "choose cameras that every episode has with --cameras")
        state = None
        if use_state:
            if STATE_KEY not in low:
                raise DatasetError(f"{where} has no 'observation.state' stream; train without --use-state")
            state = np.asarray(low[STATE_KEY], dtype=np.float32).reshape(len(actions), -1)
            if state_dim is None:
                state_dim = state.shape[1]
            elif state.shape[1] != state_dim:
                raise DatasetError(f"{where} has {state.shape[1]}-D state but others have {state_dim}-D")
        n = min(int(info.num_frames), len(actions))
        out.append(EpisodeData(info.id, info.task or "", n, ep_cams, actions[:n], None if state is None else state[:n]))
    return out


def common_cameras(episodes: list[EpisodeData]) -> list[str]:
    cams = list(episodes[0].cameras)
    for ep in episodes[1:]:
        cams = [c for c in cams if c in ep.cameras]
    return cams


def choose_cameras(store, episodes: list, wanted: list[str], n_images: int) -> list[str]:
    """The cameras to feed: ``wanted`` if given, else the first ``n_images`` cameras all episodes share."""
    if wanted:
        return list(wanted)
    shared = None
    for info in episodes:
        cams = list(info.cameras) if getattr(info, "cameras", None) else None
        if cams is None:
            reader = store.open_episode(info)
            cams = list(reader.cameras)
            reader.close()
        shared = cams if shared is None else [c for c in shared if c in cams]
    if not shared:
        raise DatasetError("the episodes share no camera; record with at least one common camera")
    if len(shared) < n_images:
        raise DatasetError(f"the model takes {n_images} images but the episodes share only "
                           f"{len(shared)} camera(s) ({', '.join(shared)})")
    return shared[:n_images]


# ----------------------------------------------------------------------------- normalization


def compute_norm_stats(episodes: list[EpisodeData], dataset: str) -> dict:
    """OpenVLA ``norm_stats`` of the training episodes: ``{dataset: {"action": {...}, "proprio": {...}}}``."""
    from finetune import norm

    actions = np.concatenate([e.actions for e in episodes], axis=0)
    states = [e.state for e in episodes if e.state is not None]
    proprio = np.concatenate(states, axis=0) if states else None
    return norm.make_norm_stats(dataset, actions, proprio, num_trajectories=len(episodes))


# ----------------------------------------------------------------------------- augmentation


def crop_box(h: int, w: int, rng: np.random.Generator | None, area: float = CROP_AREA) -> tuple[int, int, int, int]:
    """(y0, x0, ch, cw) of a crop covering ``area`` of the image with its aspect ratio; random
    position with ``rng``, centred without (what OpenVLA does at evaluation)."""
    side = float(np.sqrt(area))
    ch, cw = max(1, round(h * side)), max(1, round(w * side))
    if rng is None:
        return (h - ch) // 2, (w - cw) // 2, ch, cw
    return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw


def color_jitter(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """OpenVLA's jitter in its order: brightness +-0.2, contrast x[0.8, 1.2], saturation x[0.8, 1.2], hue +-0.05.

    Done on uint8 with lookup tables (brightness+contrast fold into one affine map around the mean; hue
    and saturation act on cv2's full-range HSV), about 5x cheaper than float HSV at 224 px."""
    brightness = rng.uniform(-0.2, 0.2) * 255.0
    contrast = rng.uniform(0.8, 1.2)
    saturation = rng.uniform(0.8, 1.2)
    hue = rng.uniform(-0.05, 0.05)
    mean = float(img.mean()) + brightness  # contrast pivots on the brightened image's mean
    lut = np.arange(256, dtype=np.float32)
    lut = np.clip(lut + brightness, 0, 255)
    lut = np.clip((lut - mean) * contrast + mean, 0, 255)
    x = cv2.LUT(img, (lut + 0.5).astype(np.uint8))
    hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV_FULL)
    shift = int(round(hue * 256)) % 256
    hue_lut = ((np.arange(256) + shift) % 256).astype(np.uint8)
    sat_lut = np.clip(np.arange(256) * saturation + 0.5, 0, 255).astype(np.uint8)
    hsv[..., 0] = hue_lut[hsv[..., 0]]
    hsv[..., 1] = sat_lut[hsv[..., 1]]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)


def prepare_image(img: np.ndarray, size: int, rng: np.random.Generator | None, augment: bool,
                  crop: bool = True, transform: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Crop (random when augmenting, centred otherwise), resize to ``size`` x ``size``, jitter colours.

    ``transform``: the model's ``image_transform`` when it is a published checkpoint (OpenVLA's exact PIL
    resize / letterbox, :mod:`finetune.models.preprocess`) in place of our fast cv2 resize; training, rollout,
    serving and open-loop evaluation all come through here, so they see the same pixels."""
    h, w = img.shape[:2]
    if crop:
        y0, x0, ch, cw = crop_box(h, w, rng if augment else None)
        img = img[y0:y0 + ch, x0:x0 + cw]
    if transform is not None:
        out = transform(np.ascontiguousarray(img))
    else:
        interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR
        out = cv2.resize(img, (size, size), interpolation=interp)
    if augment and rng is not None:
        out = color_jitter(out, rng)
    return np.ascontiguousarray(out)


# ----------------------------------------------------------------------------- data order


class StreamSampler:
    """An endless stream of seeded permutations of ``range(n)``, starting at stream position ``start``.

    Yields ``(index, position)``; the position seeds that sample's augmentation. A run that consumed
    ``start`` samples resumes exactly where it stopped.

    ``block > 1`` trades some shuffling for decode locality: the permutation is over blocks of
    ``block`` consecutive ticks, and ``interleave`` blocks are emitted round-robin, so a batch of
    ``interleave`` samples holds one tick from each of ``interleave`` blocks and the next batch the
    following ticks: each worker's video decoders then move forward instead of seeking. ``lanes``
    (the number of DataLoader workers, which take batches round-robin) keeps each worker on its own
    blocks, so consecutive batches of one worker are consecutive ticks.
    """

    def __init__(self, n: int, seed: int, start: int = 0, shuffle: bool = True, block: int = 1,
                 interleave: int = 1, lanes: int = 1) -> None:
        self.n, self.seed, self.start, self.shuffle = n, seed, start, shuffle
        self.block, self.interleave, self.lanes = max(1, block), max(1, interleave), max(1, lanes)

    def order(self, epoch: int) -> np.ndarray:
        """The n dataset indices of one pass, in stream order."""
        if not self.shuffle:
            return np.arange(self.n)
        rng = np.random.default_rng([self.seed, epoch])
        if self.block == 1:
            return rng.permutation(self.n)
        starts = np.arange(0, self.n, self.block)
        blocks = [np.arange(s, min(s + self.block, self.n)) for s in starts[rng.permutation(len(starts))]]
        groups = [blocks[g:g + self.interleave] for g in range(0, len(blocks), self.interleave)]
        out = []
        for c in range(0, len(groups), self.lanes):  # lane j's batches go to DataLoader worker j
            lane_groups = groups[c:c + self.lanes]
            for t in range(self.block):
                for group in lane_groups:
                    out.extend(int(b[t]) for b in group if t < len(b))
        return np.asarray(out, dtype=np.int64)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        pos = self.start
        epoch, offset = divmod(pos, self.n)
        while True:
            perm = self.order(epoch)
            for i in range(offset, self.n):
                yield int(perm[i]), pos
                pos += 1
            epoch, offset = epoch + 1, 0

    def __len__(self) -> int:  # DataLoader asks; the stream is endless
        return 2**62


class StreamBatchSampler:
    """Groups a ``StreamSampler`` into lists of ``batch_size``; endless."""

    def __init__(self, sampler: StreamSampler, batch_size: int, rank: int = 0, world: int = 1) -> None:
        self.sampler, self.batch_size, self.rank, self.world = sampler, batch_size, rank, world

    def __iter__(self):
        it = iter(self.sampler)
        global_batch = self.batch_size * self.world
        while True:
            chunk = [next(it) for _ in range(global_batch)]
            yield chunk[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]

    def __len__(self) -> int:
        return 2**62


# ----------------------------------------------------------------------------- the dataset


class EpisodeDataset:
    """A map-style torch dataset over store episodes.

    ``dataset[i]`` or ``dataset[(i, position)]`` returns ``transform(sample)`` where ``sample`` is
    ``dict(images=[HxWx3 uint8 per camera], instruction=str, actions=(K, D) float32 in [-1, 1],
    state=(S,) float32 or None, episode_id, tick)``. ``transform`` is usually ``VLA.prepare``.
    """

    def __init__(self, home: Path | str, episodes: list[EpisodeData], cameras: list[str], image_size: int,
                 chunk_size: int, norm_stats: dict, dataset: str, *, augment: bool = False, seed: int = 0,
                 transform: Callable[[dict], Any] | None = None, max_open_readers: int = 32,
                 crop: bool | None = None, frame_cache_mb: float = FRAME_CACHE_MB,
                 image_transform: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        from finetune import norm

        self.home = Path(home)
        self.episodes = episodes
        self.cameras = list(cameras)
        self.image_size = int(image_size)
        self.chunk_size = int(chunk_size)
        self.augment = augment
        self.crop = augment if crop is None else crop  # centre crop at eval when training augments
        self.image_transform = image_transform  # the base model's published preprocessing, or None (fast path)
        self.seed = seed
        self.transform = transform
        self.max_open_readers = max_open_readers
        self.frame_cache_mb = frame_cache_mb
        self._frame_cache = None  # one per process (each DataLoader worker builds its own)
        stats = norm_stats[dataset]
        # normalized arrays, computed once here (in the parent: workers inherit them)
        self._actions = [np.asarray(norm.normalize(e.actions, stats["action"]), dtype=np.float32) for e in episodes]
        self._state = [None if e.state is None else
                       np.asarray(norm.normalize(e.state, stats["proprio"]), dtype=np.float32) for e in episodes]
        lengths = np.array([e.num_frames for e in episodes], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(lengths)])
        self._store = None
        self._readers: OrderedDict[tuple[int, int], tuple[Any, int]] = OrderedDict()  # (episode, slot) -> (reader, tick)
        self._pid = None

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def action_dim(self) -> int:
        return int(self.episodes[0].actions.shape[1])

    def locate(self, index: int) -> tuple[int, int]:
        e = int(np.searchsorted(self._starts, index, side="right") - 1)
        return e, int(index - self._starts[e])

    READERS_PER_EPISODE = 4  # one episode can be read at several places at once (block shuffle)
    FORWARD_WINDOW = 16  # a reader at tick t serves ticks t..t+16 by decoding forward

    def _reader(self, episode_id: int, tick: int = 0):
        """An open reader for the episode, preferably one whose decoders sit just before ``tick``."""
        if self._pid != os.getpid():  # a fresh worker process (or first use): open our own store
            if self._pid is not None:
                # a forked worker inherits the parent's open store and readers: never close or free them here.
                # Dropping the inherited readers (their FFmpeg decoder contexts) blocked the worker forever
                # (tests/finetune/test_data.py::test_dataloader_workers_decode_the_same_samples); the OS
                # closes the handles when the worker exits.
                _INHERITED.append((self._store, self._readers, self._frame_cache))
            self._store, self._readers, self._pid = None, OrderedDict(), os.getpid()
            self._frame_cache = None
        if self._frame_cache is None and self.frame_cache_mb > 0:
            from recorder.store.video import FrameCache

            self._frame_cache = FrameCache(int(self.frame_cache_mb * 2**20))
        if self._store is None:
            from recorder.store import Store

            self._store = Store.open(self.home)
        mine = [(key, last) for key, (_r, last) in self._readers.items() if key[0] == episode_id]
        ahead = [(tick - last, key) for key, last in mine if 0 <= tick - last <= self.FORWARD_WINDOW]
        if ahead:
            key = min(ahead)[1]
        elif mine and len(mine) >= self.READERS_PER_EPISODE:
            key = mine[0][0]  # least recently used of this episode's readers
        elif mine and not ahead and len(mine) < self.READERS_PER_EPISODE:
            key = (episode_id, max(k[1] for k, _ in mine) + 1)
        else:
            key = (episode_id, 0)
        entry = self._readers.get(key)
        if entry is None:
            reader = self._store.open_episode(episode_id)
            reader.frame_cache = self._frame_cache
            entry = (reader, tick)
            while len(self._readers) >= self.max_open_readers:
                _, (old, _last) = self._readers.popitem(last=False)
                old.close()
        self._readers[key] = (entry[0], tick)
        self._readers.move_to_end(key)
        return entry[0]

    def action_chunks(self, max_chunks: int = 20000, seed: int = 0) -> np.ndarray:
        """Every training target chunk ``(N, K, D)`` (normalized, padded with the last action as samples are),
        at most ``max_chunks`` of them (a seeded subset): what the FAST tokenizer is fitted on."""
        idx = np.arange(len(self))
        if len(idx) > max_chunks:
            idx = np.sort(np.random.default_rng(seed).choice(idx, max_chunks, replace=False))
        out = []
        for i in idx:
            e, t = self.locate(int(i))
            n = self.episodes[e].num_frames
            out.append(self._actions[e][np.minimum(np.arange(t, t + self.chunk_size), n - 1)])
        return np.stack(out) if out else np.zeros((0, self.chunk_size, self.action_dim), np.float32)

    def raw_sample(self, index: int, position: int | None = None) -> dict:
        e, t = self.locate(index)
        ep = self.episodes[e]
        rng = np.random.default_rng([self.seed, 1, position if position is not None else index]) \
            if self.augment else None
        reader = self._reader(ep.episode_id, t)
        images = [prepare_image(reader.frame(cam, t), self.image_size, rng, self.augment, self.crop,
                                self.image_transform) for cam in self.cameras]
        acts = self._actions[e]
        idx = np.minimum(np.arange(t, t + self.chunk_size), ep.num_frames - 1)  # pad with the last action
        state = None if self._state[e] is None else self._state[e][t]
        return {"images": images, "instruction": ep.instruction, "actions": acts[idx], "state": state,
                "episode_id": ep.episode_id, "tick": t}

    def __getitem__(self, item):
        index, position = item if isinstance(item, tuple) else (item, None)
        sample = self.raw_sample(int(index), position)
        if self.transform is None:
            return sample
        return self.transform(sample)

    def close(self) -> None:
        for reader, _last in self._readers.values():
            reader.close()
        self._readers.clear()
        if self._frame_cache is not None:
            self._frame_cache.clear()
        if self._store is not None:
            self._store.close()
            self._store = None

    def __getstate__(self):  # spawn-started workers: do not pickle open handles
        state = self.__dict__.copy()
        state["_store"], state["_readers"], state["_pid"], state["_frame_cache"] = None, OrderedDict(), None, None
        return state


# ----------------------------------------------------------------------------- building it all


@dataclass
class TrainData:
    train: EpisodeDataset
    val: EpisodeDataset | None
    norm_stats: dict
    cameras: list[str]
    train_episode_ids: list[int]
    val_episode_ids: list[int]


def build_datasets(home: Path | str, dataset: str, *, cameras: list[str], n_images: int, image_size: int,
                   chunk_size: int, val_fraction: float, seed: int, augment: bool, use_state: bool,
                   transform: Callable | None = None, norm_stats: dict | None = None,
                   image_transform: Callable | None = None) -> TrainData:
    """Open the store, pick and split episodes, compute (or reuse) norm stats, build both datasets."""
    from recorder.store import Store

    store = Store.open(Path(home))
    try:
        infos = list_episodes(store, dataset)
        cams = choose_cameras(store, infos, cameras, n_images)
        train_ids, val_ids = split_episodes([e.id for e in infos], val_fraction, seed)
        by_id = {e.id: e for e in infos}
        train_eps = load_episode_data(store, [by_id[i] for i in train_ids], cams, use_state)
        val_eps = load_episode_data(store, [by_id[i] for i in val_ids], cams, use_state) if val_ids else []
    finally:
        store.close()
    all_eps = train_eps + val_eps
    if len({e.actions.shape[1] for e in all_eps}) > 1:  # split halves checked separately above
        dims = sorted({e.actions.shape[1] for e in all_eps})
        raise DatasetError(f"dataset {dataset!r} mixes action sizes {dims}: keep one robot per dataset")
    stats = norm_stats if norm_stats is not None else compute_norm_stats(train_eps, dataset)
    if dataset not in stats:  # resuming with stats saved under another key: use its only entry
        stats = {dataset: next(iter(stats.values()))}
    kw = dict(cameras=cams, image_size=image_size, chunk_size=chunk_size, norm_stats=stats, dataset=dataset,
              seed=seed, transform=transform, image_transform=image_transform)
    train = EpisodeDataset(home, train_eps, augment=augment, **kw)
    val = EpisodeDataset(home, val_eps, augment=False, crop=augment, **kw) if val_eps else None
    return TrainData(train, val, stats, cams, train_ids, val_ids)
