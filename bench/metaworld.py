"""Meta-World benchmark: expert demos per task -> one multi-task fine-tune -> 10 trials per task on new seeds.

Protocol (recorder/devices/metaworld/env.py, as LeRobot's Meta-World env): camera corner2 (moved and turned as
LeRobot does), 4-D state (end-effector xyz + gripper), 4-D action in [-1, 1], at most 500 steps, success if any
step succeeds; objects re-randomised from each reset's seed. Demo seeds (DEMO_SEED0 + j) and evaluation seeds
(EVAL_SEED0 + j) never meet.

    python3 bench/metaworld.py --tasks mt10 --demos 20 --trials 10 --workers 16 --train-s 200   # GPU machine
    .venv/bin/python bench/metaworld.py --tasks reach-v3,button-press-topdown-v3 --demos 2 --trials 1 \\
        --workers 2 --steps 4 --model-size tiny --image-size 56 --max-steps 60                     # CPU smoke test

Stages, in one process: (1) record: the scripted experts in ``--workers`` processes, each with its own envs and
renderer, frames rendered at the model's input size; only successful demos are kept (``--demos`` per task);
(2) the demos go into a store (dataset ``metaworld``: state, action, task instruction per episode; the frames stay
in memory for training, never encoded); (3) train: ``finetune.recipe.FinetuneRecipe`` on the bench's small
OpenVLA-layout model (random init), chunk head with proprio, LoRA on every linear layer, the frames served from
memory; (4) eval: ``--workers`` processes, each loading the checkpoint with ``finetune.runtime.load_policy``,
run ``--trials`` episodes per task with the policy and the same seeds with the expert. Prints per-task success,
the difficulty-group means (easy / medium / hard / very hard, LeRobot's groups) and their average, next to the
published MT50 rows, and writes ``results.json`` (and ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# this file is bench/metaworld.py: keep `import metaworld` from finding it instead of the package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("MUJOCO_GL", "egl")

DATASET = "metaworld"
DEMO_SEED0 = 10_000  # demo j of a task uses seed DEMO_SEED0 + j (more if the expert fails one)
SHADOWS_ENV = "VLA_BENCH_METAWORLD_SHADOWS"
EVAL_SEED0 = 900_000  # trial j of a task uses seed EVAL_SEED0 + j: never a demo seed
# published MT50 averages (mean of the four group means; 50 demos per task, 10 trials per task) as issue 16
# quotes them; all start from pretrained VLMs / backbones. Their group columns are not copied here.
PUBLISHED = {
    "Diffusion Policy": 10.5,
    "TinyVLA": 31.6,
    "pi0 (3.5B)": 50.5,
    "SmolVLA (0.45B)": 57.3,
    "SmolVLA (2.25B)": 68.2,
}

# ----------------------------------------------------------------------------- worker processes

_W: dict = {}


def _sim(image_size: int, max_steps: int):
    """This process's envs and renderer (built once per process, kept for all its jobs)."""
    if "sim" not in _W:
        from recorder.devices.metaworld.env import MetaWorldSim, SceneRenderer
        from recorder.devices.metaworld.tasks import MT50

        _W["sim"] = MetaWorldSim(list(MT50), max_steps=max_steps)
        shadows = os.environ.get(SHADOWS_ENV, "1") != "0"  # set by main(): spawned workers inherit it
        _W["renderer"] = SceneRenderer(image_size, image_size, shadows=shadows)
    return _W["sim"], _W["renderer"]


def _episode(task: str, seed: int, act, *, image_size: int, max_steps: int, keep: bool) -> dict:
    """One episode; ``act(frame, state, tick) -> action``. Ends at the first successful step (LeRobot)."""
    sim, renderer = _sim(image_size, max_steps)
    sim.reset(seed, task)
    frames, states, actions = [], [], []
    t = 0
    while not sim.done:
        frame = renderer.render(sim.model, sim.data, "corner2")
        state = sim.state
        a = np.asarray(act(frame, state, t), dtype=np.float32)
        if keep:
            frames.append(frame)
            states.append(state)
            actions.append(a)
        t += 1
        if sim.step(a):
            break
    out = {"task": task, "seed": seed, "success": bool(sim.succeeded), "steps": sim.steps}
    if keep:
        out.update(frames=np.stack(frames), state=np.stack(states), action=np.stack(actions))
    return out


def _record_job(job) -> list[dict]:
    """``demos`` successful expert demos of one task (trying seeds in turn, at most ``demos * 3``)."""
    task, demos, image_size, max_steps = job
    sim, _r = _sim(image_size, max_steps)
    out, tried = [], 0
    while len(out) < demos and tried < demos * 3:
        seed = DEMO_SEED0 + tried
        tried += 1
        ep = _episode(task, seed, lambda f, s, t: sim.expert_action(), image_size=image_size, max_steps=max_steps,
                      keep=True)
        if ep["success"]:
            out.append(ep)
    return [{"task": task, "tried": tried}] + out


def _eval_init(ckpt: str, device: str, threads: int) -> None:
    import torch

    from finetune.runtime import load_policy

    torch.set_num_threads(threads)
    # CUDA graphs, but no torch.compile: each of the many eval processes would autotune its own kernels
    _W["policy"] = load_policy(ckpt, device=device, compile_decode=False)


def _eval_job(job) -> dict:
    task, seed, who, image_size, max_steps, execute = job
    from recorder.devices.metaworld.tasks import instruction

    sim, _r = _sim(image_size, max_steps)
    if who == "expert":
        return _episode(task, seed, lambda f, s, t: sim.expert_action(), image_size=image_size,
                        max_steps=max_steps, keep=False) | {"who": who}
    from bench.sim_learning import chunk_policy_source
    from recorder.rollout import ChunkConfig

    policy = _W["policy"]
    cam = policy.camera_names[0]
    box: dict = {"lat": []}
    source = chunk_policy_source(policy, instruction(task), ChunkConfig(execute=execute), box["lat"],
                                 idle=np.zeros(4, np.float32))

    def act(frame, state, t):
        return source(t, state, lambda: {cam: frame})

    ep = _episode(task, seed, act, image_size=image_size, max_steps=max_steps, keep=False)
    return ep | {"who": who, "latency_ms": 1000 * float(np.median(box["lat"])) if box["lat"] else None}


# ----------------------------------------------------------------------------- stages


def record(args, tasks: list[str]) -> tuple[list[dict], dict]:
    import multiprocessing as mp

    t0 = time.perf_counter()
    jobs = [(task, args.demos, args.image_size, args.max_steps) for task in tasks]
    with mp.get_context("spawn").Pool(min(args.workers, len(jobs))) as pool:
        results = pool.map(_record_job, jobs, chunksize=1)
    demos, tried = [], {}
    for res in results:
        tried[res[0]["task"]] = res[0]["tried"]
        demos.extend(res[1:])
    info = {"seconds": time.perf_counter() - t0, "demos": len(demos), "ticks": int(sum(d["steps"] for d in demos)),
            "seeds_tried": tried, "short": {t: args.demos - sum(d["task"] == t for d in demos) for t in tasks
                                            if sum(d["task"] == t for d in demos) < args.demos}}
    print(json.dumps({"event": "recorded", **info}), flush=True)
    return demos, info


def write_store(home: Path, demos: list[dict]) -> list[int]:
    """The demos' low-dim streams and instructions as store episodes (frames stay in memory)."""
    from recorder.devices.metaworld.env import FPS
    from recorder.devices.metaworld.tasks import instruction
    from recorder.store import Store

    ids = []
    with Store.open(home) as store:
        for d in demos:
            w = store.begin_episode(dataset=DATASET, task=instruction(d["task"]), fps=FPS, source="scripted",
                                    rig={"name": "metaworld", "robot": {"type": "metaworld", "tasks": d["task"]},
                                         "bench": "metaworld", "seed": d["seed"]},
                                    lowdim={"observation.state": (4,), "action": (4,)},
                                    tags=["bench:metaworld", f"task={d['task']}", f"seed={d['seed']}"])
            for t in range(len(d["action"])):
                w.add_tick(t=t / FPS, values={"observation.state": d["state"][t], "action": d["action"][t]})
            ids.append(w.finish(success=True, notes=f"Meta-World expert, seed {d['seed']}").id)
    return ids


def _install_memory_frames(frames_by_id: dict[int, np.ndarray], image_size: int, camera: str) -> None:
    """The recipe's datasets serve frames from memory (``finetune.data.build_datasets`` wrapped, no package edit)."""
    from bench.sim_learning import install_memory_frames

    install_memory_frames(lambda episode_id: {camera: frames_by_id[episode_id]}, [camera])


def train(args, home: Path, frames_by_id: dict) -> dict:
    import threading

    import torch

    from bench.sim_learning_model import count_params, prepare_small_model
    from finetune.recipe import FinetuneRecipe
    from finetune.run_config import FinetuneConfig

    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model_dir, targets = prepare_small_model(args.work, args.model_size, chunk=args.chunk, action_dim=4, n_images=1,
                                             state_dim=4)
    _install_memory_frames(frames_by_id, args.image_size, "corner2")
    cfg = FinetuneConfig(
        dataset=DATASET, cameras=["corner2"], val_fraction=args.val_fraction, augment=False, use_state=True,
        num_workers=args.loader_workers, model=str(model_dir), action_head="chunk", chunk_size=args.chunk, lora_rank=args.rank,
        lora_alpha=args.rank, lora_targets=targets, steps=args.steps, batch_size=args.batch, lr=args.lr,
        warmup_steps=min(100, args.steps // 10), lr_min_ratio=0.05, eval_every=0, eval_batches=4,
        save_every=10**9, log_every=max(1, args.steps // 20), seed=7, dtype=args.dtype)
    recipe = FinetuneRecipe(cfg, home, run_id=None)
    timer = None
    if args.train_s:  # wall-clock guard: stop as a cancel would (the final checkpoint is still written)
        timer = threading.Timer(args.train_s, recipe.request_stop)
        timer.daemon = True
        timer.start()
    t0 = time.perf_counter()
    try:
        result = recipe.run()
    finally:
        if timer is not None:
            timer.cancel()
    out = {"run_id": result.run_id, "status": result.status, "steps": result.step, "checkpoint": str(result.checkpoint),
           "seconds": time.perf_counter() - t0, "base_params": count_params(model_dir),
           "trainable_params": int(recipe.n_trainable), "batch": args.batch, "lr": args.lr, "rank": args.rank,
           "chunk": args.chunk, "model_size": args.model_size,
           "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}
    print(json.dumps({"event": "trained", **out}), flush=True)
    return out


def evaluate(args, tasks: list[str], ckpt: str) -> list[dict]:
    import multiprocessing as mp

    import torch

    device = "cuda" if torch.cuda.is_available() and not args.eval_cpu else "cpu"
    jobs = [(task, EVAL_SEED0 + j, who, args.image_size, args.max_steps, args.execute)
            for who in ("policy", "expert") for task in tasks for j in range(args.trials)]
    t0 = time.perf_counter()
    ctx = mp.get_context("spawn")
    with ctx.Pool(min(args.workers, len(jobs)), initializer=_eval_init, initargs=(ckpt, device, 1)) as pool:
        rows = pool.map(_eval_job, jobs, chunksize=1)
    print(json.dumps({"event": "evaluated", "episodes": len(rows), "seconds": time.perf_counter() - t0}), flush=True)
    return rows


# ----------------------------------------------------------------------------- the table


def summarize(tasks: list[str], rows: list[dict]) -> dict:
    from recorder.devices.metaworld.tasks import DIFFICULTY_GROUPS

    per_task = {}
    for task in tasks:
        entry = {}
        for who in ("policy", "expert"):
            mine = [r for r in rows if r["task"] == task and r["who"] == who]
            entry[who] = 100.0 * sum(r["success"] for r in mine) / max(1, len(mine))
            entry[f"{who}_n"] = len(mine)
        per_task[task] = entry
    groups = {}
    for g, names in DIFFICULTY_GROUPS.items():
        mine = [t for t in tasks if t in names]
        if mine:
            groups[g] = {who: float(np.mean([per_task[t][who] for t in mine])) for who in ("policy", "expert")}
            groups[g]["tasks"] = len(mine)
    avg = {who: float(np.mean([groups[g][who] for g in groups])) for who in ("policy", "expert")} if groups else {}
    task_mean = {who: float(np.mean([per_task[t][who] for t in tasks])) for who in ("policy", "expert")}
    return {"per_task": per_task, "groups": groups, "average": avg, "task_mean": task_mean}


def table(summary: dict) -> str:
    names = {"easy": "Easy", "medium": "Medium", "hard": "Hard", "very_hard": "Very Hard"}
    g = summary["groups"]
    head = "| method | " + " | ".join(f"{names[k]} ({g[k]['tasks']})" if k in g else names[k] for k in names) + \
           " | Average | Task mean |"
    lines = [head, "|---|" + "---|" * 6]
    for who, label in (("policy", "ours: small VLA, random init (this run)"),
                       ("expert", "Meta-World scripted expert (same seeds)")):
        cells = [f"{g[k][who]:.1f}" if k in g else "-" for k in names]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {summary['average'][who]:.1f} | "
                     f"{summary['task_mean'][who]:.1f} |")
    for name, avg in PUBLISHED.items():
        lines.append(f"| {name} (published MT50, pretrained) | - | - | - | - | {avg:.1f} | - |")
    lines.append("")
    lines.append("| task | group | policy | expert |")
    lines.append("|---|---|---|---|")
    from recorder.devices.metaworld.tasks import task_group

    for task, e in summary["per_task"].items():
        lines.append(f"| {task} | {task_group(task)} | {e['policy']:.0f}% ({e['policy_n']}) | {e['expert']:.0f}% |")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", default="mt10", help="task names / lists (mt10, mt50, easy, ...), comma-separated")
    p.add_argument("--work", default="/tmp/metaworld_bench", help="folder for the store, model and results")
    p.add_argument("--out", default=None, help="also copy results.json (and the table) here")
    p.add_argument("--demos", type=int, default=20, help="successful expert demos per task")
    p.add_argument("--trials", type=int, default=10, help="evaluation episodes per task")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1), help="processes")
    p.add_argument("--image-size", type=int, default=112, help="render size = the model's input size")
    p.add_argument("--max-steps", type=int, default=500, help="episode limit (the benchmark's 500)")
    p.add_argument("--model-size", default="small", choices=["tiny", "small", "base"])
    p.add_argument("--steps", type=int, default=3000, help="optimizer steps (the --train-s guard may stop earlier)")
    p.add_argument("--train-s", type=float, default=0, help="stop training (with a checkpoint) after this many s")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--rank", type=int, default=32)
    p.add_argument("--chunk", type=int, default=8)
    p.add_argument("--execute", type=int, default=4, help="actions of each predicted chunk run before re-planning")
    p.add_argument("--val-fraction", type=float, default=0.02)
    p.add_argument("--loader-workers", type=int, default=0, help="train: DataLoader worker processes")
    p.add_argument("--no-shadows", action="store_true",
                   help="render without shadows (~4x faster on a CPU; the images then differ from LeRobot's)")
    p.add_argument("--dtype", default="fp32", choices=["auto", "fp32", "bf16"])
    p.add_argument("--deadline-s", type=float, default=0, help="whole run's wall-clock budget (sizes --train-s)")
    p.add_argument("--samples-per-s", type=float, default=0,
                   help="with --deadline-s: expected training throughput, to size --steps to the budget")
    p.add_argument("--eval-reserve-s", type=float, default=90, help="with --deadline-s: seconds kept for eval")
    p.add_argument("--eval-cpu", action="store_true", help="evaluate on the CPU even where CUDA is present")
    return p.parse_args(argv)


def main(argv=None) -> int:
    import shutil

    from recorder.devices.metaworld.tasks import resolve_tasks

    args = parse_args(argv)
    tasks = resolve_tasks(args.tasks)
    os.environ[SHADOWS_ENV] = "0" if args.no_shadows else "1"
    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    home = work / "home"
    t_start = time.perf_counter()
    demos, rec = record(args, tasks)
    if not demos:
        raise SystemExit("the experts recorded no successful demo: nothing to train on")
    ids = write_store(home, demos)
    frames_by_id = {i: d.pop("frames") for i, d in zip(ids, demos)}
    if args.deadline_s:  # fit the run in a wall-clock budget: train until the evaluation's reserve is left
        left = args.deadline_s - (time.perf_counter() - t_start) - args.eval_reserve_s
        args.train_s = max(20.0, min(args.train_s or left, left))
        if args.samples_per_s:  # size the cosine schedule to end with the budget (the time guard stays)
            args.steps = max(50, int(0.85 * (args.train_s - 15) * args.samples_per_s / args.batch))
        print(json.dumps({"event": "train_budget", "train_s": args.train_s, "steps": args.steps}), flush=True)
    tr = train(args, home, frames_by_id)
    del frames_by_id
    rows = evaluate(args, tasks, tr["checkpoint"])
    raw = {"tasks": tasks, "record": rec, "train": tr, "rows": rows}
    for folder in [work] + ([Path(args.out)] if args.out else []):  # kept even if the summary below failed
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "rows.json").write_text(json.dumps(raw))
    summary = summarize(tasks, rows)
    lat = [r["latency_ms"] for r in rows if r.get("latency_ms") is not None]
    result = {"command": "bench/metaworld.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "tasks": tasks, "record": rec,
              "train": tr, "summary": summary, "policy_latency_ms_median": float(np.median(lat)) if lat else None,
              "total_s": time.perf_counter() - t_start, "args": vars(args)}
    text = table(summary)
    (work / "results.json").write_text(json.dumps(result, indent=2))
    (work / "table.md").write_text(text + "\n")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "results.json").write_text(json.dumps(result, indent=2))
        (Path(args.out) / "table.md").write_text(text + "\n")
    print()
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
