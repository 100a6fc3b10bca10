"""Learning in the sim: scripted demonstrations -> fine-tune a small VLA -> closed-loop rollouts on new seeds.

Issue 8's third benchmark. Stages (each can run alone; ``all`` runs them in order):

    record  N scripted-expert demonstrations of the sim "pick" task (non-realtime physics, cameras rendered
            synchronously at the model's input size) into a store (dataset ``sim-pick``)
    train   fine-tune a small OpenVLA-layout model (``bench/sim_learning_model.py``: the tiny model scaled up)
            with the public recipe (``finetune.recipe.FinetuneRecipe``): chunk head (L1), proprio state,
            LoRA on every linear layer incl. the vision towers; CUDA when present
    eval    closed-loop rollouts with ``finetune.runtime.load_policy`` on NEW seeds (disjoint from the demo
            seeds), success by the task's own detector; baselines in the same run: the scripted expert
            itself and an open-loop replay of the mean demonstration trajectory

    .venv/bin/python bench/sim_learning.py --stage all --demos 5 --steps 20 --eval-seeds 3   # smoke test
    .venv/bin/python bench/sim_learning.py --stage record --demos 120
    python3 bench/sim_learning.py --stage train --steps 3000 --batch 64         # on the GPU
    .venv/bin/python bench/sim_learning.py --stage eval --eval-seeds 50 --write-doc

Second attempt (docs/benchmarks.md, "Learning in the sim, second attempt"): 100 extra demos with DART noise
(``--stage record --demos 100 --dart-deg 2 --dart-hold 8`` into a copy of the store), frames decoded once into
memory on the GPU machine (``--in-memory``) and the step count sized by a probe run (``--train-budget 420``);
rollout settings chosen on validation seeds (``--seed0 800000 --eval-seeds 20 --policy-only`` with
``--execute N`` or ``--ensemble --ensemble-decay M``), reported once on the test seeds (the default ``--seed0``).

Per action head (issue 15): record both tasks into the one dataset (``--stage record --task pick``, then
``--task push``), train once per head with the same model size and budget (``--stage train --action-head
tokens|chunk|flow|fast --train-budget S --run-id H``), choose rollout settings on validation seeds, then
``--stage eval --task pick|push --checkpoint <run>/checkpoints/last-step --eval-name H-T.json`` on the test seeds.

Episode protocol (recording and evaluation alike): control at ``--fps`` (30 Hz); an episode ends when the
detector has held for ``--hold`` ticks (success) or after ``--max-ticks`` ticks (failure).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("MUJOCO_GL", "egl")

DEFAULT_WORK = ".devcarry/sim_learning"  # relative to the repo root: git-ignored, carried to the device
DATASET = "sim-pick"
TRAIN_SEED0 = 1_000  # demo i uses seed TRAIN_SEED0 + i
EVAL_SEED0 = 900_000  # test seed j is EVAL_SEED0 + j: never a demo seed
VAL_SEED0 = 800_000  # validation seeds (choose rollout/training settings here, never on the test seeds)


# ----------------------------------------------------------------------------- sim episode driver


class SimEpisodes:
    """The sim robot in non-realtime mode plus a synchronous renderer for the chosen cameras."""

    def __init__(self, task: str, cameras: list[str], size: int, fps: float) -> None:
        from recorder.devices.configs import ScriptedTeleopConfig, SimRobotConfig
        from recorder.devices.sim import SimRobot, make_expert
        from recorder.devices.sim.camera import OffscreenRenderer

        self.robot = SimRobot(SimRobotConfig(task=task, realtime=False, seed=0))
        self.robot.connect()
        self.fps = float(fps)
        self.expert = make_expert(self.robot, ScriptedTeleopConfig(fps=fps))
        self.cameras = list(cameras)
        self.size = int(size)
        self.renderer = OffscreenRenderer(self.robot.model, self.size, self.size)
        self.cam_ids = {c: self.robot.model.camera(c).id for c in self.cameras}

    @property
    def instruction(self) -> str:
        return self.robot.task.instruction

    def reset(self, seed: int) -> None:
        self.robot.reset(seed)
        self.expert.reset()

    def observe(self) -> np.ndarray:
        return self.robot.get_observation()["observation.state"]

    def render(self) -> dict[str, np.ndarray]:
        r = self.robot
        out = {}
        for c in self.cameras:
            with r._lock:  # the scene is copied under the sim lock, as the sim camera does
                self.renderer.update_scene(r.model, r.data, self.cam_ids[c])
            out[c] = self.renderer.render().copy()
        return out

    def act(self, action: np.ndarray) -> np.ndarray:
        sent = self.robot.send_action(np.asarray(action, dtype=np.float32))
        self.robot.step_physics(1.0 / self.fps)
        return sent

    def success(self) -> bool:
        return self.robot.task.success()

    def close(self) -> None:
        self.renderer.close()
        self.robot.disconnect()


def run_episode(sim: SimEpisodes, seed: int, source, *, max_ticks: int, hold: int, on_tick=None,
                perturb=None) -> dict:
    """One episode; ``source(tick, state, render) -> action`` (``render()`` gives the frames when needed).

    ``perturb(tick, action) -> executed action`` (DART): the robot runs the perturbed action while ``on_tick``
    still sees (and records) the source's own action.
    """
    sim.reset(seed)
    held, first, ticks = 0, None, 0
    for t in range(max_ticks):
        state = sim.observe()
        frames_cache: dict = {}

        def render(_c=frames_cache):
            if not _c:
                _c.update(sim.render())
            return _c

        action = np.asarray(source(t, state, render), dtype=np.float32)
        if on_tick is not None:
            on_tick(t, state, render, action)
        sim.act(action if perturb is None else perturb(t, action))
        ticks = t + 1
        if sim.success():
            held += 1
            first = t if first is None else first
            if held >= hold:
                break
        else:
            held = 0
    return {"seed": seed, "success": held >= hold, "ticks": ticks, "first_success_tick": first}


def dart_perturb(seed: int, deg: float, hold: int):
    """DART-style noise for recording (None when ``deg`` is 0): a random joint offset (arm joints 0-3; wrist roll
    and gripper untouched), redrawn every ``hold`` ticks from a generator seeded by the episode seed, is added to
    what is executed; the expert's own command is what gets recorded, so the demos show the way back from
    off-nominal states."""
    if deg <= 0:
        return None
    rng = np.random.default_rng([seed, 7])
    box = {"off": np.zeros(6, np.float32)}

    def perturb(t, action):
        if t % hold == 0:
            box["off"] = np.zeros(6, np.float32)
            box["off"][:4] = rng.normal(0.0, deg, 4)
        return np.asarray(action, np.float32) + box["off"]

    return perturb


def chunk_policy_source(policy, instruction: str, chunk_cfg, latencies: list | None = None, idle=None):
    """A ``run_episode`` source that drives the sim with ``policy``: each predicted chunk is executed by the
    rollout tab's own scheduler (recorder/rollout.py: execute n of K, or ACT temporal ensembling). One source per
    episode (it keeps the episode's scheduler). ``idle``: the action before any chunk (default: the state, i.e.
    hold still for joint-position control)."""
    from recorder.rollout import ChunkScheduler

    box: dict = {}

    def source(t, state, render):
        sched = box.get("sched")
        if sched is None or sched.needs_chunk(t):
            out = policy.predict(render(), state, instruction)
            if latencies is not None:
                latencies.append(out.latency_s)
            if sched is None:
                sched = box["sched"] = ChunkScheduler(chunk_cfg, len(out.actions))
            sched.add(t, out.actions, now=t)
        a, _row = sched.action(t)
        if a is None:  # nothing to execute (cannot happen without latency): hold the last action
            a = box.get("last", state if idle is None else idle)
        box["last"] = a
        return a

    return source


# ----------------------------------------------------------------------------- record


def stage_record(args) -> dict:
    from recorder.store import Store
    from recorder.store.types import CameraSpec

    home = Path(args.work) / "home"
    if args.fresh and home.exists():
        shutil.rmtree(home)
    store = Store.open(home)
    sim = SimEpisodes(args.task, args.cameras, args.image_size, args.fps)
    t0 = time.perf_counter()
    kept, failed, dropped, ticks_total = 0, 0, 0, 0
    existing = len(store.episodes(dataset=DATASET)) if DATASET in [d.name for d in store.datasets()] else 0
    seed = TRAIN_SEED0 + existing
    try:
        while kept < args.demos:
            w = store.begin_episode(
                dataset=DATASET, task=sim.instruction, fps=args.fps, source="scripted",
                rig={"name": "sim", "task": args.task, "seed": seed, "bench": "sim_learning", "realtime": False},
                cameras={c: CameraSpec(width=args.image_size, height=args.image_size, queue_size=4096)
                         for c in args.cameras},
                lowdim={"observation.state": (6,), "action": (6,)}, tags=["sim_learning", f"seed={seed}"] + ([f"dart={args.dart_deg:g}"] if args.dart_deg else []))

            def expert(t, state, render):
                return sim.expert.get_action({"observation.state": state})

            def write(t, state, render, action, w=w):
                frames = render()
                w.add_tick(t=t / args.fps, frames=frames, timestamps={c: t / args.fps for c in frames},
                           values={"observation.state": state, "action": action})

            perturb = dart_perturb(seed, args.dart_deg, args.dart_hold)
            res = run_episode(sim, seed, expert, max_ticks=args.max_ticks, hold=args.hold, on_tick=write,
                              perturb=perturb)
            seed += 1
            if not res["success"]:  # keep only successful demonstrations
                w.discard()
                failed += 1
                continue
            info = w.finish(success=True, notes=f"scripted expert, seed {res['seed']}")
            dropped += sum(w.stats.frames_dropped.values())
            ticks_total += info.num_frames
            kept += 1
            if kept % 20 == 0:
                print(f"  {kept}/{args.demos} demos, {time.perf_counter() - t0:.1f} s", flush=True)
    finally:
        sim.close()
        store.close()
    dt = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in home.rglob("*") if p.is_file())
    out = {"demos": kept, "expert_failures_discarded": failed, "ticks": ticks_total, "frames_dropped": dropped,
           "seconds": dt, "store_mib": size / 2**20, "seeds": [TRAIN_SEED0 + existing, seed - 1]}
    print(json.dumps({"event": "recorded", **out}), flush=True)
    (Path(args.work) / "record.json").write_text(json.dumps(out, indent=2))
    return out


# ----------------------------------------------------------------------------- train


_MEM_CACHE: dict = {}


def _preload_frames(ds, threads: int = 16) -> float:
    """Decode every frame of an EpisodeDataset once into memory and serve samples from there (seconds taken).

    The first GPU run was input-bound (~700 samples/s: h264 decoded by seek in 15 workers for a 5.5M-param
    model). Here the whole store (~14k ticks x 2 cameras x 112x112x3, < 1 GB) is decoded in one sorted pass per
    episode and camera; forked DataLoader workers share the arrays. Only without augmentation (the images are
    prepared once, exactly as ``raw_sample`` prepares them with ``augment=False``).
    """
    from concurrent.futures import ThreadPoolExecutor

    from finetune.data import prepare_image
    from recorder.store import Store

    if ds.augment or ds.crop:
        raise SystemExit("--in-memory needs augment off (the images are prepared once)")
    t0 = time.perf_counter()
    store = Store.open(ds.home)
    try:
        def load(ep):
            r = store.open_episode(ep.episode_id)
            try:
                out = {}
                for cam in ds.cameras:
                    fr = r.frames(cam, np.arange(ep.num_frames))
                    out[cam] = np.stack([prepare_image(f, ds.image_size, None, False, False) for f in fr])
                return out
            finally:
                r.close()

        key = (str(ds.home), tuple(ep.episode_id for ep in ds.episodes), tuple(ds.cameras), ds.image_size)
        if key not in _MEM_CACHE:  # the probe run and the real run share one decode
            with ThreadPoolExecutor(threads) as pool:
                _MEM_CACHE[key] = list(pool.map(load, ds.episodes))
        ds._mem = _MEM_CACHE[key]
    finally:
        store.close()
    ds.__class__ = type("InMemory" + type(ds).__name__, (type(ds),), {"raw_sample": _mem_raw_sample})
    return time.perf_counter() - t0


def _mem_raw_sample(self, index: int, position: int | None = None) -> dict:
    """EpisodeDataset.raw_sample with the frames from memory (augment off)."""
    e, t = self.locate(index)
    ep = self.episodes[e]
    images = [self._mem[e][cam][t] for cam in self.cameras]
    idx = np.minimum(np.arange(t, t + self.chunk_size), ep.num_frames - 1)  # pad with the last action
    state = None if self._state[e] is None else self._state[e][t]
    return {"images": images, "instruction": ep.instruction, "actions": self._actions[e][idx], "state": state,
            "episode_id": ep.episode_id, "tick": t}


def build_lowdim_only(orig, *a, **kw):
    """``build_datasets`` on a store whose episodes hold no video (the frames live in memory): skip the camera
    check."""
    import finetune.data as data_mod

    saved = data_mod.choose_cameras
    data_mod.choose_cameras = lambda store, infos, wanted, n_images: []
    try:
        return orig(*a, **kw)
    finally:
        data_mod.choose_cameras = saved


def install_memory_frames(frames_of, cameras: list[str]) -> None:
    """Make the recipe's ``finetune.data.build_datasets`` serve frames from memory for a store whose episodes hold
    only low-dim streams (no package code edited). ``frames_of(episode_id) -> {camera: (T, H, W, 3) uint8}``: any
    array (a memory map too); frames already at the model's size are used as they are (``prepare_image`` with
    augment and crop off is the identity there), others are prepared once."""
    import finetune.data as data_mod
    from finetune.data import prepare_image

    orig = data_mod.build_datasets

    def prepared(frames, size):
        if frames.ndim == 4 and frames.shape[1:3] == (size, size):
            return frames
        return np.stack([prepare_image(f, size, None, False, False) for f in frames])

    def build_mem(*a, **kw):
        kw["cameras"] = []  # the store holds no video: the cameras are set by hand below
        td = build_lowdim_only(orig, *a, **kw)
        for ds in (td.train, td.val):
            if ds is None:
                continue
            ds.cameras = list(cameras)
            ds._mem = [{c: prepared(f[c], ds.image_size) for c in cameras}
                       for f in (frames_of(ep.episode_id) for ep in ds.episodes)]
            ds.__class__ = type("InMemory" + type(ds).__name__, (type(ds),), {"raw_sample": _mem_raw_sample})
        td.cameras = list(cameras)
        return td

    data_mod.build_datasets = build_mem


def _install_in_memory_data(log: dict) -> None:
    """Make the recipe's ``finetune.data.build_datasets`` return in-memory datasets (no package code edited)."""
    import finetune.data as data_mod

    orig = data_mod.build_datasets
    if getattr(orig, "_in_memory", False):
        return

    def build(*a, **kw):
        td = orig(*a, **kw)
        log["preload_s"] = sum(_preload_frames(ds) for ds in (td.train, td.val) if ds is not None)
        log["preload_ticks"] = len(td.train) + (len(td.val) if td.val is not None else 0)
        print(json.dumps({"event": "preloaded", **log}), flush=True)
        return td

    build._in_memory = True
    data_mod.build_datasets = build


def stage_train(args) -> dict:
    import torch

    from bench.sim_learning_model import count_params, prepare_small_model
    from finetune.recipe import FinetuneRecipe
    from finetune.run_config import FinetuneConfig

    work = Path(args.work)
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model_dir, targets = prepare_small_model(work, args.model_size, action_head=args.action_head, chunk=args.chunk,
                                             action_dim=6, n_images=len(args.cameras), state_dim=6)
    def make_cfg(steps: int) -> FinetuneConfig:
        return FinetuneConfig(
            dataset=DATASET, cameras=list(args.cameras), val_fraction=args.val_fraction, augment=False,
            use_state=True, num_workers=args.workers, model=os.path.relpath(model_dir, Path.cwd()),
            action_head=args.action_head, chunk_size=args.chunk, lora_rank=args.rank, lora_alpha=args.rank,
            lora_targets=targets, steps=steps, batch_size=args.batch, lr=args.lr,
            warmup_steps=min(100, steps // 10), lr_min_ratio=0.05, eval_every=0, eval_batches=4, save_every=10**9,
            log_every=max(1, steps // 20), seed=7, dtype=args.dtype,
        )

    preload: dict = {}
    if args.in_memory:
        _install_in_memory_data(preload)
    t_start = time.perf_counter()
    steps = args.steps
    probe_info = None
    if args.train_budget:
        # measure the real throughput with a short run, then size the run to end inside the budget (so the LR
        # schedule decays fully instead of a wall-clock guard cutting it short)
        probe = FinetuneRecipe(make_cfg(args.probe_steps), work / "home", run_id=None)
        probe.run()
        rates = [json.loads(line)["samples_per_s"] for line in (probe.path / "metrics.jsonl").read_text().splitlines()
                 if '"event":"train"' in line.replace(" ", "")]
        sps = float(np.median(rates[1:] or rates))
        left = args.train_budget - (time.perf_counter() - t_start) - 25  # model load + final eval + save
        steps = max(args.probe_steps, int(0.9 * left * sps / args.batch))
        probe_info = {"samples_per_s": sps, "steps_chosen": steps, "probe_s": time.perf_counter() - t_start}
        print(json.dumps({"event": "probe", **probe_info}), flush=True)
    cfg = make_cfg(steps)
    t0 = time.perf_counter()
    recipe = FinetuneRecipe(cfg, work / "home", run_id=args.run_id)
    timer = None
    if args.time_limit:  # a wall-clock guard: stop as a cancel would (a checkpoint is still written)
        import threading

        timer = threading.Timer(args.time_limit, recipe.request_stop)
        timer.daemon = True
        timer.start()
    try:
        result = recipe.run()
    finally:
        if timer is not None:
            timer.cancel()
    dt = time.perf_counter() - t0
    ckpt = Path(result.checkpoint) if result.checkpoint else None
    if ckpt is not None and ckpt.is_absolute() and ckpt.is_relative_to(ROOT):
        ckpt = ckpt.relative_to(ROOT)
    out = {"run_id": result.run_id, "status": result.status, "steps": result.step, "checkpoint": str(ckpt),
           "seconds": dt, "base_params": count_params(model_dir), "trainable_params": int(recipe.n_trainable),
           "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
           "batch": args.batch, "lr": args.lr, "rank": args.rank, "chunk": args.chunk, "model_size": args.model_size,
           "val": getattr(recipe, "last_eval", None), "in_memory": bool(args.in_memory), "preload": preload,
           "probe": probe_info, "workers": args.workers}
    print(json.dumps({"event": "trained", **out}), flush=True)
    (work / "train.json").write_text(json.dumps(out, indent=2))
    if args.bundle:
        bundle(work, model_dir, Path(result.checkpoint), Path(args.bundle))
    return out


def bundle(work: Path, model_dir: Path, ckpt: Path, out: Path, part_mib: int = 15) -> None:
    """Pack what an evaluation elsewhere needs (base model, adapter, norm stats, results) into <= part_mib parts."""
    import hashlib
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for p in sorted(model_dir.iterdir()):
            tar.add(p, arcname=os.path.relpath(p.resolve(), ROOT))
        run = ckpt.parent.parent
        for p in sorted(ckpt.rglob("*")):
            if p.is_file() and not p.name.startswith("training_state"):
                tar.add(p, arcname=os.path.relpath(p.resolve(), ROOT))
        for p in [run / "checkpoints" / "last", run / "config.json", run / "metrics.jsonl", run / "norm_stats.json",
                  work / "train.json"]:
            if p.exists():
                tar.add(p, arcname=os.path.relpath(p.resolve(), ROOT))
    data = buf.getvalue()
    out.mkdir(parents=True, exist_ok=True)
    step = part_mib * 2**20
    for i in range(0, len(data), step):
        (out / f"sl_bundle.tar.part{i // step:02d}").write_bytes(data[i:i + step])
    sha = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()
    print(json.dumps({"event": "bundled", "bytes": len(data), "parts": (len(data) + step - 1) // step,
                      "model_sha256": sha}), flush=True)


# ----------------------------------------------------------------------------- eval


def _mean_trajectory(home: Path, max_ticks: int) -> np.ndarray:
    """Per-tick mean action over the demonstrations (episodes padded with their last action)."""
    from recorder.store import Store

    store = Store.open(home)
    try:
        acts = []
        for e in store.episodes(dataset=DATASET):
            r = store.open_episode(e.id)
            try:
                a = np.asarray(r.lowdim()["action"], dtype=np.float32)
            finally:
                r.close()
            pad = np.repeat(a[-1:], max(0, max_ticks - len(a)), axis=0)
            acts.append(np.concatenate([a, pad])[:max_ticks])
    finally:
        store.close()
    if not acts:
        raise SystemExit(f"no demonstrations of {DATASET!r} in {home}: record them (or copy mean_traj.npy here)")
    return np.mean(acts, axis=0)


def _find_checkpoint(args) -> Path:
    if args.checkpoint:
        return Path(args.checkpoint)
    tj = Path(args.work) / "train.json"
    if tj.exists():
        ck = Path(json.loads(tj.read_text())["checkpoint"])
        if not ck.is_absolute():
            ck = ROOT / ck
        if ck.exists():
            return ck
    runs = sorted((Path(args.work) / "home" / "runs").glob("*/checkpoints/last"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise SystemExit(f"no checkpoint under {args.work}/home/runs: run --stage train first (or pass --checkpoint)")
    return runs[-1].parent / runs[-1].read_text().strip()


def stage_eval(args) -> dict:
    import torch

    from finetune.runtime import load_policy

    work = Path(args.work)
    ckpt = _find_checkpoint(args)
    device = args.eval_device if args.eval_device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        torch.set_num_threads(args.threads or max(1, min(4, os.cpu_count() or 1)))
    policy = load_policy(ckpt, device=device)
    cams = policy.camera_names
    sim = SimEpisodes(args.task, cams, args.image_size, args.fps)
    seeds = [args.seed0 + j for j in range(args.eval_seeds)]
    cache = work / "mean_traj.npy"  # lets the eval run where the store's packages are not installed
    if cache.exists() and len(np.load(cache)) >= args.max_ticks:
        mean_traj = np.load(cache)
    else:
        mean_traj = _mean_trajectory(work / "home", args.max_ticks)
        np.save(cache, mean_traj)
    results: dict[str, list[dict]] = {}
    latencies: list[float] = []
    t0 = time.perf_counter()
    try:
        # 1) the tuned policy, closed loop: execute `--execute` actions of each predicted chunk, then re-plan
        # chunks are executed by the rollout tab's own scheduler (recorder/rollout.py): execute n of K, or ACT
        # temporal ensembling (a chunk every tick, overlapping predictions averaged)
        from recorder.rollout import ChunkConfig

        chunk_cfg = ChunkConfig(execute=None if args.ensemble else args.execute, ensemble=args.ensemble,
                                ensemble_decay=args.ensemble_decay)
        rows = []
        for s in seeds:
            source = chunk_policy_source(policy, sim.instruction, chunk_cfg, latencies)
            rows.append(run_episode(sim, s, source, max_ticks=args.max_ticks, hold=args.hold))
        results["tuned policy"] = rows
        t_policy = time.perf_counter() - t0
        # 2) the scripted expert on the same seeds
        if not args.policy_only:
            results["scripted expert"] = [
                run_episode(sim, s, lambda t, st, r: sim.expert.get_action({"observation.state": st}),
                            max_ticks=args.max_ticks, hold=args.hold) for s in seeds]
            # 3) open-loop replay of the mean demonstration (no perception)
            results["mean demo, open loop"] = [
                run_episode(sim, s, lambda t, st, r: mean_traj[min(t, len(mean_traj) - 1)],
                            max_ticks=args.max_ticks, hold=args.hold) for s in seeds]
    finally:
        sim.close()
    summary = {}
    for name, rows in results.items():
        ok = [r for r in rows if r["success"]]
        summary[name] = {"success": len(ok), "n": len(rows), "rate": len(ok) / max(1, len(rows)),
                         "mean_ticks_success": float(np.mean([r["ticks"] for r in ok])) if ok else None,
                         "failed_seeds": [r["seed"] for r in rows if not r["success"]][:10]}
    mode = f"ensemble m={args.ensemble_decay:g}" if args.ensemble else f"execute {args.execute} of K"
    out = {"checkpoint": str(ckpt), "device": device, "seeds": [seeds[0], seeds[-1]], "summary": summary,
           "mode": mode,
           "policy_latency_ms_median": 1000 * float(np.median(latencies)) if latencies else None,
           "policy_calls": len(latencies), "policy_rollout_s": t_policy, "seconds": time.perf_counter() - t0}
    print(json.dumps({"event": "evaluated", **out}), flush=True)
    (work / (args.eval_name or "eval.json")).write_text(json.dumps(out, indent=2))
    print()
    print(_table(summary))
    return out


def _table(summary: dict) -> str:
    lines = ["| controller | success | rate | mean ticks to done (successes) |", "|---|---|---|---|"]
    for name, s in summary.items():
        mt = f"{s['mean_ticks_success']:.0f}" if s["mean_ticks_success"] is not None else "-"
        lines.append(f"| {name} | {s['success']}/{s['n']} | {100 * s['rate']:.0f}% | {mt} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stage", choices=["record", "train", "eval", "all"], default="all")
    p.add_argument("--work", default=DEFAULT_WORK, help="folder for the store, the model and the results")
    p.add_argument("--demos", type=int, default=120, help="successful scripted demonstrations to record")
    p.add_argument("--fresh", action="store_true", help="delete the store first")
    p.add_argument("--dart-deg", type=float, default=0.0,
                   help="record: std (deg) of a joint offset added to the executed action, not the recorded one")
    p.add_argument("--dart-hold", type=int, default=10, help="record: ticks each DART offset is held")
    p.add_argument("--cameras", default="front,wrist", help="comma-separated sim cameras fed to the model")
    p.add_argument("--image-size", type=int, default=112, help="render size = the model's input size")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--max-ticks", type=int, default=240, help="episode limit (ticks)")
    p.add_argument("--hold", type=int, default=10, help="ticks the detector must hold for success")
    p.add_argument("--model-size", default="small", choices=["tiny", "small", "base"])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--rank", type=int, default=32)
    p.add_argument("--chunk", type=int, default=8)
    p.add_argument("--action-head", default="chunk", choices=["tokens", "chunk", "flow", "fast"],
                   help="train: the action head (issue 15 compares all four on the same demonstrations)")
    p.add_argument("--task", default="pick", choices=["pick", "push"],
                   help="record / eval: the sim task (record both into the one dataset: the instruction decides)")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.05)
    p.add_argument("--run-id", default=None)
    p.add_argument("--dtype", default="fp32", choices=["auto", "fp32", "bf16"], help="training dtype")
    p.add_argument("--in-memory", action="store_true", help="train: decode all frames into memory once")
    p.add_argument("--train-budget", type=float, default=0,
                   help="train: size --steps from a short probe run so training ends within this many s")
    p.add_argument("--probe-steps", type=int, default=150, help="train: steps of that probe run")
    p.add_argument("--time-limit", type=float, default=0, help="train: stop (with a checkpoint) after this many s")
    p.add_argument("--bundle", default=None, help="train: write the checkpoint + base model as tar parts here")
    p.add_argument("--checkpoint", default=None, help="eval: checkpoint folder (default: the last trained one)")
    p.add_argument("--eval-seeds", type=int, default=50)
    p.add_argument("--execute", type=int, default=4, help="actions of each predicted chunk executed before re-planning")
    p.add_argument("--ensemble", action="store_true", help="eval: ACT temporal ensembling instead of execute n of K")
    p.add_argument("--ensemble-decay", type=float, default=0.01, help="eval: ACT's m (oldest prediction weighs most)")
    p.add_argument("--seed0", type=int, default=EVAL_SEED0,
                   help=f"eval: first seed ({EVAL_SEED0} = the test seeds; pick settings on {VAL_SEED0}.. instead)")
    p.add_argument("--policy-only", action="store_true", help="eval: skip the expert and mean-demo baselines")
    p.add_argument("--eval-name", default=None, help="eval: result file name in --work (default eval.json)")
    p.add_argument("--eval-device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="eval: torch CPU threads (0: up to 4)")
    p.add_argument("--write-doc", action="store_true", help="append a section to docs/benchmarks.md")
    args = p.parse_args(argv)
    args.cameras = [c.strip() for c in args.cameras.split(",") if c.strip()]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    res = {}
    if args.stage in ("record", "all"):
        res["record"] = stage_record(args)
    if args.stage in ("train", "all"):
        res["train"] = stage_train(args)
    if args.stage in ("eval", "all"):
        res["eval"] = stage_eval(args)
    if args.write_doc:
        from bench.sim_learning_doc import append_doc

        append_doc(args, Path(args.work), " ".join(["bench/sim_learning.py"] + (argv or sys.argv[1:])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
