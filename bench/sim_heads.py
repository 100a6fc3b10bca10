"""Issue 15's per-head success benchmark on the sim rig, in one process tree on one machine (the GPU machine).

    python3 bench/sim_heads.py --demos 300 --workers 15 --heads tokens,chunk,flow,fast --deadline-s 400 --out $OUT
    .venv/bin/python bench/sim_heads.py --demos 3 --workers 2 --model-size tiny --image-size 56 --probe-steps 3 \\
        --train-s 30 --val-seeds 1 --test-seeds 1 --max-ticks 40 --loader-workers 0          # CPU smoke test

Protocol (the same for every head):
1. record: ``--demos`` successful scripted-expert demos of ``pick`` AND of ``push`` (seeds TRAIN_SEED0.. per task;
   a share ``--dart-frac`` of them with DART noise, bench/sim_learning.py's ``dart_perturb``) in ``--workers``
   processes, frames rendered at the model's input size. All of them go into ONE dataset: the instruction
   ("pick up the red cube" / "push the red cube onto the green square") is what tells the tasks apart. The store
   holds state/action/instruction per episode; the frames stay in memory (a memory-mapped file shared by the
   training processes), never encoded.
2. train: one process per head, all at once on the one GPU, each ``finetune.recipe.FinetuneRecipe`` on the same
   random-init model (bench/sim_learning_model.py), chunk K=``--chunk``, proprio state, LoRA on every linear layer,
   the same batch, lr and seed. The budget is in SAMPLES, the same for every head: each head runs a short probe,
   the slowest head's samples/s sizes the common step count to fit the training time left.
3. validation: every head with each ``--val-execute`` setting (execute n of K) on ``--val-seeds`` validation seeds
   (VAL_SEED0..) per task; the setting with the most successes (ties: fewer ticks, then the larger n) is kept.
4. test, once: each head with its chosen setting on ``--test-seeds`` test seeds (EVAL_SEED0..) per task, and the
   scripted expert on the same seeds in the same run. Success = the task detector holds ``--hold`` ticks within
   ``--max-ticks`` (bench/sim_learning.py's episode protocol).

Writes ``results.json`` and ``table.md`` (to ``--work`` and ``--out``) and progress lines as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
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

from bench.sim_learning import (  # noqa: E402
    EVAL_SEED0,
    TRAIN_SEED0,
    VAL_SEED0,
    SimEpisodes,
    chunk_policy_source,
    dart_perturb,
    install_memory_frames,
    run_episode,
)

DATASET = "sim-pick-push"
TASKS = ("pick", "push")
HEADS = ("tokens", "chunk", "flow", "fast")
PART_BYTES = 15 << 20
SOFTWARE_GL = ("llvmpipe", "softpipe", "swrast", "software", "osmesa")


def _log(event: str, **kw) -> None:
    print(json.dumps({"event": event, "t": round(time.time() - _T0, 1), **kw}, default=str), flush=True)


_T0 = float(os.environ.get("VLA_BENCH_SIM_HEADS_T0") or time.time())  # the parent's start: one clock in every process
os.environ["VLA_BENCH_SIM_HEADS_T0"] = str(_T0)  # spawned children inherit it

# ----------------------------------------------------------------------------- worker processes

_W: dict = {}


def gl_info() -> dict:
    """The GL vendor/renderer of the context current in this process (after a renderer was made)."""
    from OpenGL import GL

    def s(x):
        v = GL.glGetString(x)
        return v.decode() if isinstance(v, bytes) else str(v)

    from recorder.devices.sim.camera import gl_backend

    return {"backend": gl_backend(), "vendor": s(GL.GL_VENDOR), "renderer": s(GL.GL_RENDERER)}


def _sim(task: str, cameras: list[str], size: int, fps: float) -> SimEpisodes:
    """This process's sim for ``task`` (one per task, kept for all jobs), its GL context made current."""
    sims = _W.setdefault("sims", {})
    if task not in sims:
        sims[task] = SimEpisodes(task, cameras, size, fps)
        if "gl" not in _W:
            _W["gl"] = gl_info()
    sim = sims[task]
    sim.renderer._gl.make_current()  # two renderers in one process: each renders in its own context
    return sim


def _record_job(job) -> dict:
    task, seed, dart_deg, dart_hold, cams, size, fps, max_ticks, hold = job
    sim = _sim(task, cams, size, fps)
    frames = {c: [] for c in cams}
    states, actions = [], []

    def expert(t, state, render):
        return sim.expert.get_action({"observation.state": state})

    def keep(t, state, render, action):
        for c, f in render().items():
            frames[c].append(f)
        states.append(np.asarray(state, np.float32))
        actions.append(np.asarray(action, np.float32))

    t0 = time.perf_counter()
    res = run_episode(sim, seed, expert, max_ticks=max_ticks, hold=hold, on_tick=keep,
                      perturb=dart_perturb(seed, dart_deg, dart_hold))
    out = {"task": task, "seed": seed, "dart": dart_deg, "success": res["success"], "ticks": res["ticks"],
           "instruction": sim.instruction, "seconds": time.perf_counter() - t0, "gl": _W.get("gl")}
    if res["success"]:
        out.update(frames={c: np.stack(v) for c, v in frames.items()}, state=np.stack(states),
                   action=np.stack(actions))
    return out


def _eval_init(ckpts: dict, device: str, threads: int) -> None:
    import torch

    from finetune.runtime import load_policy

    torch.set_num_threads(threads)
    # CUDA graphs, no torch.compile: each of the many eval processes would autotune its own kernels
    _W["policies"] = {h: load_policy(c, device=device, compile_decode=False) for h, c in ckpts.items()}


def _eval_job(job) -> dict:
    who, task, seed, execute, cams, size, fps, max_ticks, hold = job
    sim = _sim(task, cams, size, fps)
    if who == "expert":
        res = run_episode(sim, seed, lambda t, st, r: sim.expert.get_action({"observation.state": st}),
                          max_ticks=max_ticks, hold=hold)
        return res | {"who": who, "task": task, "execute": None}
    from recorder.rollout import ChunkConfig

    policy = _W["policies"][who]
    lat: list[float] = []
    held0 = getattr(policy, "undecodable", 0)
    source = chunk_policy_source(policy, sim.instruction, ChunkConfig(execute=execute), lat)
    res = run_episode(sim, seed, source, max_ticks=max_ticks, hold=hold)
    return res | {"who": who, "task": task, "execute": execute, "calls": len(lat),
                  "latency_ms": 1000 * float(np.median(lat)) if lat else None,
                  "held": getattr(policy, "undecodable", 0) - held0}


def _train_job(spec: dict) -> dict:
    """One head's training (its own process): the probe, the common step count, the run."""
    import threading

    import torch

    from finetune.recipe import FinetuneRecipe
    from finetune.run_config import FinetuneConfig

    torch.set_num_threads(spec["threads"])
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    frames = {c: np.load(p, mmap_mode="c") for c, p in spec["frames"].items()}  # "c": writable views
    offsets = {int(k): v for k, v in spec["offsets"].items()}
    install_memory_frames(lambda eid: {c: frames[c][offsets[eid][0]:offsets[eid][1]] for c in frames},
                          list(frames))
    head, home, sync = spec["head"], Path(spec["home"]), Path(spec["sync"])

    def cfg(steps: int, probe: bool = False) -> FinetuneConfig:
        # the probe holds nothing out: no end-of-run validation (FAST's decodes every held-out row, ~85 s here)
        return FinetuneConfig(
            dataset=DATASET, cameras=list(frames), val_fraction=0.0 if probe else spec["val_fraction"],
            augment=False, use_state=True,
            num_workers=spec["loader_workers"], model=spec["model"], action_head=head, chunk_size=spec["chunk"],
            lora_rank=spec["rank"], lora_alpha=spec["rank"], lora_targets=spec["targets"], steps=steps,
            batch_size=spec["batch"], lr=spec["lr"], warmup_steps=min(100, steps // 10), lr_min_ratio=0.05,
            eval_every=0, eval_batches=spec["eval_batches"], save_every=10**9, log_every=max(1, min(50, steps // 20)), seed=7,
            dtype=spec["dtype"])

    def rates(recipe) -> list[float]:
        rows = [json.loads(line) for line in (recipe.path / "metrics.jsonl").read_text().splitlines()]
        return [r["samples_per_s"] for r in rows if r.get("event") == "train"]

    t0 = time.time()
    steps, probe = spec["steps"], None
    if spec["probe_steps"]:
        rec = FinetuneRecipe(cfg(spec["probe_steps"], probe=True), home, run_id=f"{head}-probe",
                             install_signal_handlers=False)
        rec.run()
        r = rates(rec)
        sps = float(np.median(r[1:] or r))
        (sync / f"{head}.json").write_text(json.dumps({"samples_per_s": sps}))
        want = set(spec["all_heads"])
        wait_until = min(spec["train_end"] - spec["save_s"] - 30, time.time() + 90)
        while {p.stem for p in sync.glob("*.json")} < want and time.time() < wait_until:
            time.sleep(0.2)  # every head waits for every probe: the slowest one sizes the common budget
        files = list(sync.glob("*.json"))
        got = {p.stem: json.loads(p.read_text())["samples_per_s"] for p in files}
        slowest = min(got.values())
        # from the last probe's time, not this process's clock: every head computes the same step count
        left = spec["train_end"] - max(p.stat().st_mtime for p in files) - spec["save_s"]
        steps = max(spec["probe_steps"], int(spec["probe_margin"] * left * slowest / spec["batch"]))
        if spec["max_samples"]:
            steps = min(steps, spec["max_samples"] // spec["batch"])
        probe = {"samples_per_s": sps, "all": got, "steps_chosen": steps, "seconds": time.time() - t0}
    recipe = FinetuneRecipe(cfg(steps), home, run_id=head, install_signal_handlers=False)
    guard = threading.Timer(max(1.0, spec["train_end"] - time.time()), recipe.request_stop)
    guard.daemon = True
    guard.start()  # a wall-clock guard (should not fire: the step count was sized to end before it)
    t1 = time.time()
    try:
        result = recipe.run()
    finally:
        guard.cancel()
    r = rates(recipe)
    ev = [json.loads(line) for line in (recipe.path / "metrics.jsonl").read_text().splitlines()]
    at = {e["event"]: e["time"] for e in reversed(ev)}  # each event's first time
    trains = [e["time"] for e in ev if e["event"] == "train"]
    phases = {"setup_s": at.get("start", t1) - t1,  # model, data, LoRA, loaders: before the first step
              "steps_s": (trains[-1] - at["start"]) if trains and "start" in at else None,
              "after_s": time.time() - trains[-1] if trains else None}  # validation + save
    return {"head": head, "phases": phases, "chunk_size": int(recipe.model_info()["chunk_size"]), "status": result.status, "steps": result.step, "samples": result.step * spec["batch"],
            "checkpoint": str(result.checkpoint), "seconds": time.time() - t1,
            "samples_per_s_median": float(np.median(r[1:] or r)) if r else None, "probe": probe,
            "trainable_params": int(recipe.n_trainable), "val": getattr(recipe, "last_eval", None),
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}


def _train_main(spec: dict) -> None:
    import multiprocessing as mp

    # a spawned child defaults to spawn; the DataLoader's workers must be forked to share the memory-mapped
    # frames (and the in-memory dataset class, which does not pickle)
    mp.set_start_method("fork", force=True)
    out = _train_job(spec)
    Path(spec["result"]).write_text(json.dumps(out, default=str))
    _log("head_trained", **{k: v for k, v in out.items() if k != "val"})
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # the run is saved and logged: skip a slow interpreter teardown (seen: ~1 min on a busy CPU)


# ----------------------------------------------------------------------------- stages


def check_gl(args) -> dict:
    sim = SimEpisodes("pick", args.cameras, args.image_size, args.fps)
    try:
        info = gl_info()
        sim.reset(0)
        sim.render()
        t0 = time.perf_counter()
        for _ in range(50):
            sim.render()
        info["render_ms_per_tick"] = 1000 * (time.perf_counter() - t0) / 50  # all cameras
    finally:
        sim.close()
    _log("gl", **info)
    soft = info["backend"] != "egl" or any(w in info["renderer"].lower() for w in SOFTWARE_GL)
    if args.require_gpu_gl and (soft or "nvidia" not in info["vendor"].lower()):
        raise SystemExit(f"software rendering ({info}): refusing to run the benchmark on it")
    return info


def record(args, pool) -> tuple[list[dict], dict]:
    t0 = time.perf_counter()
    n_dart = int(round(args.demos * args.dart_frac))
    jobs, extra = [], max(3, int(math.ceil(args.demos * args.spare)))
    for task in TASKS:
        for i in range(args.demos + extra):  # a few spare seeds in case the expert fails some
            dart = args.dart_deg if int((i + 1) * args.dart_frac) > int(i * args.dart_frac) else 0.0  # evenly spread
            jobs.append((task, TRAIN_SEED0 + i, dart, args.dart_hold, args.cameras, args.image_size, args.fps,
                         args.max_ticks, args.hold))
    rows = pool.map(_record_job, jobs, chunksize=1)
    demos, failed, gls = [], {t: 0 for t in TASKS}, set()
    for task in TASKS:
        mine = [r for r in rows if r["task"] == task]
        failed[task] = sum(not r["success"] for r in mine)
        demos += [r for r in mine if r["success"]][: args.demos]
    for r in rows:
        if r.get("gl"):
            gls.add(json.dumps(r["gl"], sort_keys=True))
    info = {"seconds": time.perf_counter() - t0, "demos": {t: sum(d["task"] == t for d in demos) for t in TASKS},
            "dart_demos": {t: sum(d["task"] == t and d["dart"] > 0 for d in demos) for t in TASKS},
            "expert_failures": failed, "ticks": int(sum(d["ticks"] for d in demos)),
            "ticks_per_s": sum(r["ticks"] for r in rows) / max(1e-9, time.perf_counter() - t0),
            "worker_gl": [json.loads(g) for g in gls], "dart_deg": args.dart_deg, "dart_hold": args.dart_hold,
            "planned_dart_share": n_dart / max(1, args.demos)}
    _log("recorded", **info)
    return demos, info


def write_store(home: Path, demos: list[dict]) -> list[int]:
    """The demos' low-dim streams and instructions as store episodes of one dataset (the frames stay in memory)."""
    from recorder.store import Store

    ids = []
    with Store.open(home) as store:
        for d in demos:
            w = store.begin_episode(dataset=DATASET, task=d["instruction"], fps=30.0, source="scripted",
                                    rig={"name": "sim", "task": d["task"], "seed": d["seed"], "bench": "sim_heads",
                                         "realtime": False},
                                    lowdim={"observation.state": (6,), "action": (6,)},
                                    tags=["bench:sim_heads", f"task={d['task']}", f"seed={d['seed']}"]
                                    + ([f"dart={d['dart']:g}"] if d["dart"] else []))
            for t in range(len(d["action"])):
                w.add_tick(t=t / 30.0, values={"observation.state": d["state"][t], "action": d["action"][t]})
            ids.append(w.finish(success=True, notes=f"scripted expert ({d['task']}), seed {d['seed']}").id)
    return ids


def write_frames(work: Path, demos: list[dict], ids: list[int], cameras: list[str]) -> tuple[dict, dict]:
    """All frames into one .npy per camera (memory-mapped by the training processes) + each episode's row range."""
    total = sum(len(d["action"]) for d in demos)
    paths, offsets = {}, {}
    for c in cameras:
        shape = (total,) + demos[0]["frames"][c].shape[1:]
        p = work / f"frames_{c}.npy"
        mm = np.lib.format.open_memmap(p, mode="w+", dtype=np.uint8, shape=shape)
        at = 0
        for i, d in zip(ids, demos):
            n = len(d["action"])
            mm[at:at + n] = d["frames"][c]
            offsets[i] = (at, at + n)
            at += n
        mm.flush()
        del mm
        paths[c] = str(p)
    return paths, offsets


def train_all(args, work: Path, home: Path, frames: dict, offsets: dict, train_end: float) -> dict:
    import multiprocessing as mp

    from bench.sim_learning_model import count_params, prepare_small_model

    model_dir, targets = None, {}
    for head in args.heads:  # the same base model for every head; each head's LoRA targets (the same linears)
        model_dir, targets[head] = prepare_small_model(work, args.model_size, action_head=head, chunk=args.chunk,
                                                       action_dim=6, n_images=len(args.cameras), state_dim=6)
    sync = work / "probe_sync"
    shutil.rmtree(sync, ignore_errors=True)
    sync.mkdir()
    specs = []
    for head in args.heads:
        h = work / f"home-{head}"  # one store copy per head: four recipes never write one index at once
        shutil.rmtree(h, ignore_errors=True)
        shutil.copytree(home, h)
        specs.append({"head": head, "home": str(h), "sync": str(sync), "frames": frames,
                      "offsets": {str(k): v for k, v in offsets.items()}, "model": str(model_dir),
                      "targets": targets[head], "chunk": args.chunk, "rank": args.rank, "batch": args.batch,
                      "lr": args.lr, "dtype": args.dtype, "val_fraction": args.val_fraction,
                      "loader_workers": args.loader_workers, "eval_batches": args.eval_batches, "threads": args.train_threads,
                      "probe_steps": args.probe_steps, "steps": args.steps, "max_samples": args.max_samples,
                      "train_end": train_end, "save_s": args.save_s, "probe_margin": args.probe_margin, "all_heads": list(args.heads)})
    t0 = time.perf_counter()
    # plain processes, not a Pool: a Pool's daemonic workers may not start the DataLoader's worker processes
    ctx = mp.get_context("spawn")
    procs = []
    for spec in specs:
        spec["result"] = str(work / f"train-{spec['head']}.json")
        procs.append(ctx.Process(target=_train_main, args=(spec,), name=f"train-{spec['head']}"))
        procs[-1].start()
    for pr in procs:
        pr.join()
    out = {}
    for spec, pr in zip(specs, procs):
        f = Path(spec["result"])
        out[spec["head"]] = json.loads(f.read_text()) if f.exists() else {"head": spec["head"], "status": "crashed",
                                                                           "exitcode": pr.exitcode}
    info = {"seconds": time.perf_counter() - t0, "base_params": count_params(model_dir), "model_size": args.model_size,
            "batch": args.batch, "lr": args.lr, "rank": args.rank, "chunk": args.chunk, "heads": out}
    _log("trained", **info)
    return info


def evaluate(args, pool, heads: list[str], phase: str) -> list[dict]:
    """``phase`` "val": every head x every --val-execute on the validation seeds; "test": the chosen settings
    (``args.chosen``) and the expert on the test seeds."""
    if phase == "val":
        seeds = [VAL_SEED0 + j for j in range(args.val_seeds)]
        plan = [(h, e) for h in heads for e in settings(args, h)]
    else:
        seeds = [EVAL_SEED0 + j for j in range(args.test_seeds)]
        plan = [(h, args.chosen[h]) for h in heads] + [("expert", None)]
    jobs = [(who, task, s, e, args.cameras, args.image_size, args.fps, args.max_ticks, args.hold)
            for who, e in plan for task in TASKS for s in seeds]
    # seed by seed (a run cut short still has every controller on its first seeds), the longest decodes first
    slow = {"tokens": 0, "fast": 1}
    jobs.sort(key=lambda j: (j[2], slow.get(j[0], 2)))
    t0 = time.perf_counter()
    rows = []
    sink = [Path(args.work)] + ([Path(args.out)] if args.out else [])
    for f in sink:
        f.mkdir(parents=True, exist_ok=True)
    files = [open(f / f"rows_{phase}.jsonl", "w") for f in sink]  # kept even if the call is cut short
    try:
        for r in pool.imap_unordered(_eval_job, jobs, chunksize=1):
            r["phase"] = phase
            rows.append(r)
            for f in files:
                f.write(json.dumps(r) + "\n")
                f.flush()
            if len(rows) % 50 == 0:
                _log(f"eval_{phase}_progress", done=len(rows), of=len(jobs), seconds=time.perf_counter() - t0)
    finally:
        for f in files:
            f.close()
    _log(f"evaluated_{phase}", episodes=len(rows), seconds=time.perf_counter() - t0)
    return rows


def settings(args, head: str) -> list[int]:
    """The execute-n-of-K values tried for a head: those of --val-execute that fit its chunk (the tokens head
    predicts one action per call, OpenVLA's way: it re-plans every tick)."""
    K = args.chunk_sizes[head]
    return [e for e in args.val_execute if e <= K] or [K]


def choose(args, rows: list[dict], heads: list[str]) -> dict:
    chosen, table = {}, {}
    for h in heads:
        scores = []
        for e in settings(args, h):
            mine = [r for r in rows if r["who"] == h and r["execute"] == e]
            ok = [r for r in mine if r["success"]]
            ticks = float(np.mean([r["ticks"] for r in ok])) if ok else float("inf")
            table[f"{h} execute {e}"] = {t: sum(r["success"] for r in mine if r["task"] == t) for t in TASKS} | {
                "n_per_task": len(mine) // len(TASKS), "mean_ticks": ticks}
            scores.append((len(ok), -ticks, e))
        chosen[h] = max(scores)[2]
    return {"chosen": chosen, "table": table}


def summarize(rows: list[dict]) -> dict:
    out = {}
    present = {r["who"] for r in rows}
    for who in [h for h in HEADS if h in present] + [w for w in sorted(present) if w not in HEADS]:
        out[who] = {}
        for task in TASKS:
            mine = [r for r in rows if r["who"] == who and r["task"] == task]
            ok = [r for r in mine if r["success"]]
            lat = [r["latency_ms"] for r in mine if r.get("latency_ms") is not None]
            out[who][task] = {"success": len(ok), "n": len(mine), "rate": len(ok) / max(1, len(mine)),
                              "mean_ticks_success": float(np.mean([r["ticks"] for r in ok])) if ok else None,
                              "latency_ms_median": float(np.median(lat)) if lat else None,
                              "held_chunks": int(sum(r.get("held", 0) for r in mine)),
                              "execute": mine[0]["execute"] if mine else None}
    return out


def table(summary: dict, train: dict | None) -> str:
    lines = ["| controller | execute n of K | pick | pick mean ticks | push | push mean ticks | training samples/s "
             "(4 heads at once) | samples trained |", "|---|---|---|---|---|---|---|---|"]
    for who, s in summary.items():
        cells = []
        for task in TASKS:
            t = s[task]
            mt = f"{t['mean_ticks_success']:.0f}" if t["mean_ticks_success"] is not None else "-"
            cells += [f"{t['success']}/{t['n']} ({100 * t['rate']:.0f}%)", mt]
        tr = (train or {}).get("heads", {}).get(who)
        sps = f"{tr['samples_per_s_median']:.0f}" if tr and tr.get("samples_per_s_median") else "-"
        n = f"{tr['samples']:,}" if tr else "-"
        ex = s["pick"]["execute"]
        lines.append(f"| {who} | {ex if ex is not None else '-'} | " + " | ".join(cells) + f" | {sps} | {n} |")
    return "\n".join(lines)


def validation_table(result: dict) -> str:
    v = result.get("validation") or {}
    lines = ["| head, setting | pick | push | total | mean ticks (successes) | chosen |", "|---|---|---|---|---|---|"]
    for name, row in (v.get("table") or {}).items():
        head, e = name.split(" execute ")
        n = row["n_per_task"]
        mt = f"{row['mean_ticks']:.0f}" if math.isfinite(row["mean_ticks"]) else "-"
        mark = "yes" if v["chosen"].get(head) == int(e) else ""
        lines.append(f"| {head}, execute {e} | {row['pick']}/{n} | {row['push']}/{n} | {row['pick'] + row['push']}/"
                     f"{2 * n} | {mt} | {mark} |")
    return "\n".join(lines)


def complete_seeds(rows: list[dict]) -> list[int]:
    """The test seeds on which every controller finished both tasks (all of them when the run was not cut short)."""
    have: dict = {}
    for r in rows:
        have.setdefault((r["who"], r["task"]), set()).add(r["seed"])
    return sorted(set.intersection(*have.values())) if have else []


def from_rows(folder: Path) -> dict:
    """results.json + the streamed test rows of a run that was cut short: the summary on the seeds every
    controller completed (a prefix of the test seeds, since the jobs ran seed by seed)."""
    result = json.loads((folder / "results.json").read_text())
    rows = [json.loads(line) for line in (folder / "rows_test.jsonl").read_text().splitlines() if line.strip()]
    seeds = complete_seeds(rows)
    result["summary"] = summarize([r for r in rows if r["seed"] in set(seeds)])
    result["test_seeds_complete"] = [seeds[0], seeds[-1], len(seeds)] if seeds else []
    result["test_rows_streamed"] = len(rows)
    return result


def render_doc(result: dict) -> str:
    """The tables of a results.json, as docs/benchmarks.md shows them (the prose is written by hand)."""
    return ("Validation (settings chosen here):\n\n" + validation_table(result) + "\n\nTest (once):\n\n"
            + table(result["summary"], result.get("train")) + "\n")


# ----------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", default="/tmp/sim_heads", help="folder for the store, frames, models and results")
    p.add_argument("--out", default=None, help="also copy results.json / table.md here")
    p.add_argument("--heads", default=",".join(HEADS))
    p.add_argument("--demos", type=int, default=300, help="successful expert demos PER TASK")
    p.add_argument("--spare", type=float, default=0.08, help="extra seeds tried per task (share of --demos)")
    p.add_argument("--dart-frac", type=float, default=0.5, help="share of the demos recorded with DART noise")
    p.add_argument("--dart-deg", type=float, default=2.0, help="DART joint offset std (deg)")
    p.add_argument("--dart-hold", type=int, default=8, help="ticks each DART offset is held")
    p.add_argument("--cameras", default="front,wrist")
    p.add_argument("--image-size", type=int, default=112)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--max-ticks", type=int, default=240)
    p.add_argument("--hold", type=int, default=10)
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1), help="sim processes")
    p.add_argument("--model-size", default="small", choices=["tiny", "small", "base"])
    p.add_argument("--chunk", type=int, default=8)
    p.add_argument("--rank", type=int, default=32)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--dtype", default="fp32", choices=["auto", "fp32", "bf16"])
    p.add_argument("--val-fraction", type=float, default=0.02)
    p.add_argument("--loader-workers", type=int, default=2, help="DataLoader workers per training process")
    p.add_argument("--eval-batches", type=int, default=1,
                   help="held-out batches of the end-of-run validation (FAST decodes each row: ~65 s for 4 x 128)")
    p.add_argument("--train-threads", type=int, default=2, help="torch threads per training process")
    p.add_argument("--probe-steps", type=int, default=60, help="0: no probe, train --steps")
    p.add_argument("--probe-margin", type=float, default=0.7,
                   help="share of the probes' samples/s the common step count assumes (2026-12-01: the runs went "
                        "at 73-74%% of their probes' rates, and 0.92 let the time guard stop every head early)")
    p.add_argument("--steps", type=int, default=2000, help="without a probe: the steps of every head")
    p.add_argument("--max-samples", type=int, default=0, help="cap on the samples per head (0: the time decides)")
    p.add_argument("--train-s", type=float, default=0, help="training wall-clock budget (default: from --deadline-s)")
    p.add_argument("--save-s", type=float, default=12, help="kept at the end of training for the final save")
    p.add_argument("--deadline-s", type=float, default=0, help="the whole run's budget: sizes the training time")
    p.add_argument("--eval-reserve-s", type=float, default=120, help="with --deadline-s: seconds kept for eval")
    p.add_argument("--val-seeds", type=int, default=10, help="validation seeds per task")
    p.add_argument("--val-execute", default="4,8", help="execute-n-of-K settings tried on the validation seeds")
    p.add_argument("--test-seeds", type=int, default=50, help="test seeds per task")
    p.add_argument("--eval-cpu", action="store_true")
    p.add_argument("--require-gpu-gl", action="store_true", help="fail unless MuJoCo renders on an NVIDIA GPU")
    p.add_argument("--stop-after", default=None, choices=["train"], help="end after training (with --bundle: "
                   "the checkpoints for a second call's --eval-from)")
    p.add_argument("--bundle", default=None, help="with --stop-after train: write ckpt_<head>.tgz + results.json here")
    p.add_argument("--eval-from", default=None, help="a --bundle folder: evaluate its checkpoints (same --work)")
    p.add_argument("--render-doc", default=None,
                   help="only print the tables of a run's output folder (results.json [+ rows_test.jsonl])")
    args = p.parse_args(argv)
    args.heads = [h.strip() for h in args.heads.split(",") if h.strip()]
    args.cameras = [c.strip() for c in args.cameras.split(",") if c.strip()]
    args.val_execute = [int(x) for x in args.val_execute.split(",") if x.strip()]
    bad = [h for h in args.heads if h not in HEADS]
    if bad:
        p.error(f"unknown head(s) {bad}: use {', '.join(HEADS)}")
    return args


def _save(args, work: Path, result: dict) -> None:
    for folder in [work] + ([Path(args.out)] if args.out else []):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "results.json").write_text(json.dumps(result, indent=1, default=str))


def bundle(args, work: Path, result: dict) -> None:
    """Each head's trained run as one ``ckpt_<head>.tgz`` under ``--bundle`` (paths relative to ``--work``; the
    optimizer state left out): what a second call's ``--eval-from`` evaluates."""
    import tarfile

    out = Path(args.bundle)
    out.mkdir(parents=True, exist_ok=True)
    for head, r in result["train"]["heads"].items():
        if not r.get("checkpoint"):
            continue
        run = Path(r["checkpoint"]).parent.parent
        tgz = out / f"ckpt_{head}.tgz"
        with tarfile.open(tgz, "w:gz") as tar:
            tar.add(run, arcname=str(run.relative_to(work)),
                    filter=lambda ti: None if ti.name.endswith("training_state.safetensors") else ti)
        if tgz.stat().st_size > PART_BYTES:  # the device returns files of at most 16 MiB (flow's was 20 MB)
            data = tgz.read_bytes()
            tgz.unlink()
            for i in range(0, len(data), PART_BYTES):
                (out / f"ckpt_{head}.tgz.part{i // PART_BYTES}").write_bytes(data[i:i + PART_BYTES])
    (out / "results.json").write_text(json.dumps(result, indent=1, default=str))
    _log("bundled", folder=str(out), files=sorted(p.name for p in out.iterdir()))


def unbundle(args, work: Path) -> dict:
    """``--eval-from``: the first call's results.json and checkpoints back under the same ``--work`` (the base model
    rebuilt there: the same deterministic random init as bench/sim_learning_model.py writes)."""
    import tarfile

    from bench.sim_learning_model import prepare_small_model

    src = Path(args.eval_from)
    result = json.loads((src / "results.json").read_text())
    a = result["args"]
    for k in ("cameras", "image_size", "fps", "model_size", "chunk"):  # what the checkpoints were trained on
        setattr(args, k, a[k])
    result["eval_args"] = vars(args)
    old_work = Path(a["work"])
    for head, r in result["train"]["heads"].items():
        if r.get("checkpoint"):
            r["checkpoint"] = str(work / Path(r["checkpoint"]).relative_to(old_work))
        tgz = src / f"ckpt_{head}.tgz"
        parts = sorted(src.glob(f"ckpt_{head}.tgz.part*"), key=lambda p: int(p.name.rsplit("part", 1)[1]))
        if parts and not tgz.exists():
            tgz = work / tgz.name
            tgz.write_bytes(b"".join(p.read_bytes() for p in parts))
        if tgz.exists():
            with tarfile.open(tgz) as tar:
                tar.extractall(work, filter="data")
        prepare_small_model(work, a["model_size"], action_head=head, chunk=a["chunk"], action_dim=6,
                            n_images=len(a["cameras"]), state_dim=6)
    result["eval_from"] = str(src)
    return result


def evaluate_all(args, work: Path, result: dict) -> None:
    import multiprocessing as mp

    import torch

    ckpts = {h: r["checkpoint"] for h, r in result["train"]["heads"].items()
             if r.get("checkpoint") and Path(r["checkpoint"]).exists()}
    heads = [h for h in args.heads if h in ckpts]
    args.chunk_sizes = {h: result["train"]["heads"][h]["chunk_size"] for h in heads}
    device = "cuda" if torch.cuda.is_available() and not args.eval_cpu else "cpu"
    t0 = time.time()
    with mp.get_context("spawn").Pool(args.workers, initializer=_eval_init, initargs=(ckpts, device, 1)) as pool:
        val = evaluate(args, pool, heads, "val")
        result["validation"] = choose(args, val, heads)
        args.chosen = result["validation"]["chosen"]
        _log("chosen", **args.chosen)
        _save(args, work, result)
        test = evaluate(args, pool, heads, "test")
    result["eval_seconds"] = time.time() - t0
    result["eval_device"] = device
    result["summary"] = summarize(test)
    result["rows"] = val + test


def main(argv=None) -> int:
    import multiprocessing as mp

    args = parse_args(argv)
    if args.render_doc:
        folder = Path(args.render_doc)
        result = from_rows(folder) if (folder / "rows_test.jsonl").exists() else \
            json.loads((folder / "results.json").read_text())
        print(json.dumps({"test_seeds_complete": result.get("test_seeds_complete")}))
        print(render_doc(result))
        return 0
    t_start = time.time()
    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    if args.eval_from:
        result = unbundle(args, work)
        result["eval_command"] = "bench/sim_heads.py " + " ".join(argv if argv is not None else sys.argv[1:])
        result["gl"] = check_gl(args)
        evaluate_all(args, work, result)
        result["total_s"] = time.time() - t_start
        return _finish(args, work, result)
    home = work / "home"
    result: dict = {"command": "bench/sim_heads.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "args": vars(args)}
    result["gl"] = check_gl(args)
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.workers) as pool:
        demos, result["record"] = record(args, pool)
    if any(result["record"]["demos"][t] == 0 for t in TASKS):
        raise SystemExit(f"the expert recorded no successful demo of a task: {result['record']['demos']}")
    ids = write_store(home, demos)
    frames, offsets = write_frames(work, demos, ids, args.cameras)
    del demos
    _log("frames_written", ticks=sum(b - a for a, b in offsets.values()))
    _save(args, work, result)
    if args.train_s:
        train_end = time.time() + args.train_s
    elif args.deadline_s:
        train_end = t_start + args.deadline_s - args.eval_reserve_s
    else:
        train_end = time.time() + 3600
    result["train"] = train_all(args, work, home, frames, offsets, train_end)
    _save(args, work, result)
    if args.stop_after == "train":
        if args.bundle:
            bundle(args, work, result)
        return 0
    evaluate_all(args, work, result)
    result["total_s"] = time.time() - t_start
    return _finish(args, work, result)


def _finish(args, work: Path, result: dict) -> int:
    text = render_doc(result)
    _save(args, work, result)
    for folder in [work] + ([Path(args.out)] if args.out else []):
        (folder / "table.md").write_text(text + "\n")
    print()
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
