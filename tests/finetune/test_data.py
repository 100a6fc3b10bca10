"""Training samples from store episodes: shapes, normalization, split, augmentation, data order, bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from finetune.data import (
    StreamBatchSampler,
    StreamSampler,
    build_datasets,
    color_jitter,
    prepare_image,
)
from recorder.errors import DatasetError
from tests.finetune.synth_store import CHILD_ENV, one_torch_thread, write_dataset  # noqa: F401


@pytest.fixture(scope="module")
def toy_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("data") / "home"
    write_dataset(home, "toy", episodes=4, frames=10, cameras=("front", "wrist"), size=64)
    return home


def _build(home, **kw):
    args = dict(cameras=[], n_images=1, image_size=32, chunk_size=4, val_fraction=0.25, seed=3, augment=False,
                use_state=True)
    args.update(kw)
    return build_datasets(home, "toy", **args)


def test_samples_have_model_resolution_normalized_chunks_and_state(toy_home):
    data = _build(toy_home, cameras=["front", "wrist"], n_images=2)
    assert len(data.train) == 30 and len(data.val) == 10  # 3 + 1 episodes of 10 ticks
    s = data.train[0]
    assert [im.shape for im in s["images"]] == [(32, 32, 3), (32, 32, 3)]
    assert s["images"][0].dtype == np.uint8 and s["images"][0].flags["C_CONTIGUOUS"]
    assert s["actions"].shape == (4, 6) and s["actions"].dtype == np.float32
    assert s["state"].shape == (6,)
    assert s["instruction"] == "pick up the red cube"
    every = np.concatenate([data.train[i]["actions"] for i in range(len(data.train))])
    assert every.min() >= -1.0 and every.max() <= 1.0 and every.max() > 0.9 and every.min() < -0.9
    # the chunk at the last tick repeats the last action (padding), the one before steps forward
    last = data.train[9]["actions"]
    assert np.array_equal(last[0], last[3])
    assert np.array_equal(data.train[8]["actions"][1], last[0])


def test_norm_stats_are_openvla_form_over_training_episodes_only(toy_home):
    from finetune import norm

    data = _build(toy_home)
    stats = data.norm_stats["toy"]
    assert set(stats["action"]) >= {"q01", "q99", "mean", "std", "min", "max", "mask"}
    assert stats["num_trajectories"] == len(data.train_episode_ids) == 3
    assert stats["num_transitions"] == 30
    assert "proprio" in stats
    # unnormalizing a sample's chunk gives back real units (degrees-like, |a| <= 40)
    real = norm.unnormalize(data.train[3]["actions"], stats["action"])
    assert np.abs(real).max() <= 40.5 and np.abs(real).max() > 1.0


def test_set_up_reads_the_episode_list_once_not_the_index_per_episode(toy_home, monkeypatch):
    """The set-up over a lab-sized dataset: one listing query, then only the episodes' own low-dim files
    (looking each episode up in the index again cost ~4 ms an episode: 80 s over 20k)."""
    from recorder.store import Store

    lookups = []
    real = Store.episode
    monkeypatch.setattr(Store, "episode", lambda self, eid: lookups.append(eid) or real(self, eid))
    data = _build(toy_home, cameras=["front", "wrist"], n_images=2)
    assert lookups == []
    assert len(data.train) == 30 and data.train[0]["instruction"] == "pick up the red cube"
    with Store.open(toy_home) as store:  # what it read is what the store holds
        info = store.episodes(dataset="toy")[0]
        with store.open_episode(info.id) as by_id, store.open_episode(info) as by_info:
            assert np.array_equal(by_id.lowdim()["action"], by_info.lowdim()["action"])
    ep = next(e for e in data.train.episodes + data.val.episodes if e.episode_id == info.id)
    assert np.array_equal(ep.actions, by_id.lowdim()["action"])


def test_split_is_by_episode_seeded_and_disjoint(toy_home):
    a, b = _build(toy_home, seed=1), _build(toy_home, seed=1)
    assert a.train_episode_ids == b.train_episode_ids and a.val_episode_ids == b.val_episode_ids
    assert not set(a.train_episode_ids) & set(a.val_episode_ids)
    seen_val = {tuple(_build(toy_home, seed=s).val_episode_ids) for s in range(6)}
    assert len(seen_val) > 1  # the seed changes the split
    val_eps = {a.val[i]["episode_id"] for i in range(len(a.val))}
    assert val_eps == set(a.val_episode_ids)


def test_augmentation_is_seeded_by_stream_position(toy_home):
    data = _build(toy_home, augment=True)
    x1 = data.train[(5, 100)]["images"][0]
    x2 = data.train[(5, 100)]["images"][0]
    x3 = data.train[(5, 101)]["images"][0]
    plain = _build(toy_home, augment=False).train[5]["images"][0]
    assert np.array_equal(x1, x2)
    assert not np.array_equal(x1, x3)
    assert not np.array_equal(x1, plain)
    # validation samples of an augmented run are centre-cropped, never jittered
    v1, v2 = data.val[(2, 7)]["images"][0], data.val[(2, 8)]["images"][0]
    assert np.array_equal(v1, v2)


def test_crop_and_jitter_stay_in_range_and_change_colour():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    out = prepare_image(img, 32, np.random.default_rng(1), augment=True)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    j = color_jitter(img, np.random.default_rng(2))
    assert j.shape == img.shape and np.abs(j.astype(int) - img).mean() > 1


def test_stream_resumes_exactly_and_splits_global_batches_across_ranks():
    full = list(itertools.islice(iter(StreamSampler(7, seed=5)), 30))
    tail = list(itertools.islice(iter(StreamSampler(7, seed=5, start=11)), 19))
    assert tail == full[11:]
    assert sorted(i for i, _ in full[:7]) == list(range(7))  # each pass is a permutation
    one = list(itertools.islice(iter(StreamBatchSampler(StreamSampler(7, 5), 4)), 3))
    r0 = list(itertools.islice(iter(StreamBatchSampler(StreamSampler(7, 5), 2, rank=0, world=2)), 3))
    r1 = list(itertools.islice(iter(StreamBatchSampler(StreamSampler(7, 5), 2, rank=1, world=2)), 3))
    assert [a + b for a, b in zip(r0, r1)] == one


def test_dataloader_workers_decode_the_same_samples(toy_home):
    import torch
    from torch.utils.data import DataLoader

    data = _build(toy_home, augment=True)
    sampler = StreamBatchSampler(StreamSampler(len(data.train), 0), 4)

    def collate(items):
        return np.stack([np.stack(it["images"]) for it in items]), np.stack([it["actions"] for it in items])

    inproc = list(itertools.islice(iter(DataLoader(data.train, batch_sampler=sampler, collate_fn=collate)), 3))
    workers = list(itertools.islice(iter(DataLoader(data.train, batch_sampler=sampler, collate_fn=collate,
                                                    num_workers=2)), 3))
    for (a, b), (c, d) in zip(inproc, workers):
        assert np.array_equal(a, c) and np.array_equal(b, d)
    assert torch.utils.data.get_worker_info() is None


def test_unknown_or_empty_dataset_is_a_clear_error(tmp_path):
    home = tmp_path / "home"
    write_dataset(home, "toy", episodes=1, frames=3)
    from recorder.store import Store

    with Store.open(home) as store:
        store.get_or_create_dataset("empty")
    with pytest.raises(DatasetError, match="no complete episodes") as err:
        build_datasets(home, "empty", cameras=[], n_images=1, image_size=32, chunk_size=1, val_fraction=0.1,
                       seed=0, augment=False, use_state=False)
    assert "\n" not in str(err.value)
    with pytest.raises(DatasetError, match="'nope' is not in the store"):
        build_datasets(home, "nope", cameras=[], n_images=1, image_size=32, chunk_size=1, val_fraction=0.1,
                       seed=0, augment=False, use_state=False)
    with pytest.raises(DatasetError, match="no camera 'wrist'"):
        build_datasets(home, "toy", cameras=["wrist"], n_images=1, image_size=32, chunk_size=1, val_fraction=0.0,
                       seed=0, augment=False, use_state=False)


def test_mixed_action_sizes_are_a_clear_error(tmp_path):
    # the store checks shapes against the features a dataset declares; one created without any
    # (e.g. by an import) lets mixed episodes in, and training must still refuse them
    from recorder.store import Store

    home = tmp_path / "home"
    with Store.open(home) as store:
        store.get_or_create_dataset("mixed", features={"imported": True})
    write_dataset(home, "mixed", episodes=3, frames=3, action_dims=[6, 6, 7])
    with pytest.raises(DatasetError, match="7-D actions but episode 1 has 6-D") as err:
        build_datasets(home, "mixed", cameras=[], n_images=1, image_size=32, chunk_size=1, val_fraction=0.0,
                       seed=0, augment=False, use_state=False)
    assert "\n" not in str(err.value)


def test_block_order_is_a_permutation_that_walks_blocks_forward():
    s = StreamSampler(40, seed=2, block=4, interleave=3)
    order = s.order(0)
    assert sorted(order.tolist()) == list(range(40))
    first = order[:3]  # one tick of each of three blocks, then the next tick of the same blocks
    assert order[3:6].tolist() == (first + 1).tolist()
    assert not np.array_equal(s.order(0), s.order(1))
    tail = list(itertools.islice(iter(StreamSampler(40, 2, start=13, block=4, interleave=3)), 10))
    assert tail == list(itertools.islice(iter(s), 23))[13:]
