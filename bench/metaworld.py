"""Meta-World benchmark: expert demos per task -> one multi-task fine-tune -> 10 trials per task on new seeds.

Protocol (recorder/devices/metaworld/env.py, as LeRobot's Meta-World env): camera corner2 (moved and turned as
LeRobot does), 4-D state (end-effector xyz + gripper), 4-D action in [-1, 1], at most 500 steps, success if any
step succeeds; objects re-randomised from each reset's seed. Demo seeds (DEMO_SEED0 + j) and evaluation seeds
(EVAL_SEED0 + j) never meet.

    python3 bench/metaworld.py --tasks mt10 --demos 20 --trials 10 --workers 16 --train-s 200   # GPU machine
    python3 bench/metaworld.py --tasks mt50 --demos 25 --trials 10 --workers 16 --loader-workers 12 \
        --samples-per-s 1050 --shadow-size 1024 --deadline-s 540 --record-s 120 --eval-reserve-s 190 \
        --require-hardware-gl --out $OUT          # MT50 in one 10-minute H200 call (docs/benchmarks.md; not yet run)
    .venv/bin/python bench/metaworld.py --tasks reach-v3,button-press-topdown-v3 --demos 2 --trials 1 \\
        --workers 2 --steps 4 --model-size tiny --image-size 56 --max-steps 60                     # CPU smoke test

Stages, in one process: (1) record: the scripted experts in ``--workers`` processes, each with its own envs and
renderer, frames rendered at the model's input size; only successful demos are kept (``--demos`` per task);
(2) the demos go into a store (dataset ``metaworld``: state, action, task instruction per episode; the frames stay
in memory for training, never encoded); (3) train: ``finetune.recipe.FinetuneRecipe`` on the bench's small
OpenVLA-layout model (random init), chunk head with proprio, LoRA on every linear layer, the frames served from
memory; (4) eval: ``--workers`` processes, each loading the checkpoint with ``finetune.runtime.load_policy``,
run ``--trials`` episodes per task with the policy and the same seeds with the expert (one job per task; no episode
starts after the deadline, and what finished is reported). The renderer is named first (``--require-hardware-gl``
stops on a CPU rasteriser); progress.json / rows.json are written as the run goes. Prints per-task success,
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
SHADOW_SIZE_ENV = "VLA_BENCH_METAWORLD_SHADOW_SIZE"
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
        _W["renderer"] = SceneRenderer(image_size, image_size, shadows=shadows,
                                       shadow_size=int(os.environ.get(SHADOW_SIZE_ENV, "0")))
    return _W["sim"], _W["renderer"]


def _episode(task: str, seed: int, act, *, image_size: int, max_steps: int, keep: bool, render: bool = True) -> dict:
    """One episode; ``act(frame, state, tick) -> action``. Ends at the first successful step (LeRobot).
    ``render=False``: the action source never looks at the frame (the expert's evaluation), none is drawn."""
    sim, renderer = _sim(image_size, max_steps)
    sim.reset(seed, task)
    frames, states, actions = [], [], []
    t = 0
    render = render or keep
    while not sim.done:
        frame = renderer.render(sim.model, sim.data, "corner2") if render else None
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


def _gl_report(task: str, image_size: int, max_steps: int) -> dict:
    """Who renders in this process, and what a frame and an expert step cost (shadows as the run renders)."""
    sim, renderer = _sim(image_size, max_steps)
    info = renderer.gl_info()
    sim.reset(DEMO_SEED0, task)
    renderer.render(sim.model, sim.data, "corner2")
    t0, n = time.perf_counter(), 0
    while n < 20 or time.perf_counter() - t0 < 0.3:
        renderer.render(sim.model, sim.data, "corner2")
        n += 1
    render_ms = 1000 * (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    for _ in range(50):
        sim.step(sim.expert_action())
    step_ms = 1000 * (time.perf_counter() - t0) / 50
    return {"gl": info.describe(), "gl_renderer": info.renderer, "gl_vendor": info.vendor, "software": info.software,
            "render_ms": round(render_ms, 3), "step_ms": round(step_ms, 3), "pid": os.getpid()}


def _record_job(job) -> dict:
    """``demos`` successful expert demos of each of this worker's tasks, the tasks in turn (one seed each) so
    that a deadline leaves every task with about as many demos; at most ``demos * 3`` seeds a task."""
    tasks, demos, image_size, max_steps, deadline = job
    sim, _r = _sim(image_size, max_steps)
    gl = _gl_report(tasks[0], image_size, max_steps)
    kept = {t: [] for t in tasks}
    tried = dict.fromkeys(tasks, 0)
    while time.time() < deadline:
        open_tasks = [t for t in tasks if len(kept[t]) < demos and tried[t] < demos * 3]
        if not open_tasks:
            break
        for task in open_tasks:
            if time.time() >= deadline:
                break
            seed = DEMO_SEED0 + tried[task]
            tried[task] += 1
            ep = _episode(task, seed, lambda f, s, t: sim.expert_action(), image_size=image_size,
                          max_steps=max_steps, keep=True)
            if ep["success"]:
                kept[task].append(ep)
    return {"tried": tried, "demos": [ep for t in tasks for ep in kept[t]], "gl": gl,
            "cut": time.time() >= deadline}


def _eval_init(ckpt: str, device: str, threads: int) -> None:
    import torch

    from finetune.runtime import load_policy

    torch.set_num_threads(threads)
    # CUDA graphs, but no torch.compile: each of the many eval processes would autotune its own kernels
    _W["policy"] = load_policy(ckpt, device=device, compile_decode=False)


def _policy_episode(task: str, seed: int, image_size: int, max_steps: int, execute: int) -> dict:
    from bench.sim_learning import chunk_policy_source
    from recorder.devices.metaworld.tasks import instruction
    from recorder.rollout import ChunkConfig

    policy = _W["policy"]
    cam = policy.camera_names[0]
    box: dict = {"lat": []}
    source = chunk_policy_source(policy, instruction(task), ChunkConfig(execute=execute), box["lat"],
                                 idle=np.zeros(4, np.float32))

    def act(frame, state, t):
        return source(t, state, lambda: {cam: frame})

    ep = _episode(task, seed, act, image_size=image_size, max_steps=max_steps, keep=False)
    return ep | {"who": "policy", "latency_ms": 1000 * float(np.median(box["lat"])) if box["lat"] else None}


def _eval_job(job) -> list[dict]:
    """One task's trials: the policy on seeds EVAL_SEED0.., then the expert on the same seeds (not rendered:
    the expert reads the state). Stops starting episodes at the deadline."""
    task, trials, image_size, max_steps, execute, deadline = job
    sim, _r = _sim(image_size, max_steps)
    rows = []
    for who in ("policy", "expert"):
        for j in range(trials):
            if time.time() >= deadline:
                return rows
            seed = EVAL_SEED0 + j
            if who == "policy":
                rows.append(_policy_episode(task, seed, image_size, max_steps, execute))
            else:
                rows.append(_episode(task, seed, lambda f, s, t: sim.expert_action(), image_size=image_size,
                                     max_steps=max_steps, keep=False, render=False) | {"who": who})
    return rows


# ----------------------------------------------------------------------------- stages


def _save(args, name: str, obj) -> None:
    """A JSON file in the work folder and ``--out`` (written as the run goes: a cut run still reports)."""
    for folder in [Path(args.work)] + ([Path(args.out)] if args.out else []):
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / (name + ".tmp")
        tmp.write_text(json.dumps(obj, indent=1))
        tmp.replace(folder / name)


def check_renderer(args, task: str) -> dict:
    """Who renders here and what a frame costs; with ``--require-hardware-gl`` a CPU rasteriser stops the run."""
    gl = _gl_report(task, args.image_size, args.max_steps)
    print(json.dumps({"event": "renderer", **gl}), flush=True)
    if gl["software"] and args.require_hardware_gl:
        raise SystemExit(f"bench/metaworld.py: frames would be drawn by a software renderer ({gl['gl']}; "
                         f"{gl['render_ms']:.1f} ms a frame): give EGL the GPU's vendor library "
                         "(__EGL_VENDOR_LIBRARY_FILENAMES=.../10_nvidia.json) or drop --require-hardware-gl")
    return gl


def record(args, tasks: list[str]) -> tuple[list[dict], dict]:
    import multiprocessing as mp

    t0 = time.perf_counter()
    n = min(args.workers, len(tasks))
    deadline = time.time() + (args.record_s or 10**9)
    # one job per worker: envs are built once per task and process (~0.5-1 s each), so a worker keeps its tasks
    jobs = [(tasks[i::n], args.demos, args.image_size, args.max_steps, deadline) for i in range(n)]
    with mp.get_context("spawn").Pool(n) as pool:
        results = pool.map(_record_job, jobs, chunksize=1)
    demos, tried = [], {}
    for res in results:
        tried.update(res["tried"])
        demos.extend(res["demos"])
    gls = [r["gl"] for r in results]
    count = {t: sum(d["task"] == t for d in demos) for t in tasks}
    info = {"seconds": time.perf_counter() - t0, "demos": len(demos), "ticks": int(sum(d["steps"] for d in demos)),
            "seeds_tried": tried, "short": {t: args.demos - c for t, c in count.items() if c < args.demos},
            "cut_by_deadline": any(r["cut"] for r in results), "demos_per_task_min": min(count.values()),
            "workers": n, "worker_renderers": sorted({g["gl"] for g in gls}),
            "worker_render_ms_median": float(np.median([g["render_ms"] for g in gls])),
            "worker_step_ms_median": float(np.median([g["step_ms"] for g in gls]))}
    print(json.dumps({"event": "recorded", **info}), flush=True)
    if args.require_hardware_gl and any(g["software"] for g in gls):
        raise SystemExit(f"bench/metaworld.py: a recording worker rendered in software: {info['worker_renderers']}")
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


def evaluate(args, tasks: list[str], ckpt: str, deadline: float, progress: dict) -> list[dict]:
    """``--trials`` policy episodes per task and the expert on the same seeds: one job per task (its env built once
    per process), results saved after each task; no episode starts after ``deadline`` (time.time())."""
    import multiprocessing as mp

    import torch

    device = "cuda" if torch.cuda.is_available() and not args.eval_cpu else "cpu"
    jobs = [(task, args.trials, args.image_size, args.max_steps, args.execute, deadline) for task in tasks]
    t0 = time.perf_counter()
    ctx = mp.get_context("spawn")
    rows: list[dict] = []
    with ctx.Pool(min(args.workers, len(jobs)), initializer=_eval_init, initargs=(ckpt, device, 1)) as pool:
        for got in pool.imap_unordered(_eval_job, jobs, chunksize=1):
            rows.extend(got)
            done = len({r["task"] for r in rows})
            print(json.dumps({"event": "eval_task", "task": got[0]["task"] if got else None, "tasks_done": done,
                              "episodes": len(rows), "s": round(time.perf_counter() - t0, 1)}), flush=True)
            _save(args, "rows.json", progress | {"rows": rows})
    print(json.dumps({"event": "evaluated", "episodes": len(rows), "seconds": time.perf_counter() - t0,
                      "cut_by_deadline": time.time() >= deadline}), flush=True)
    return rows


# ----------------------------------------------------------------------------- the table


def summarize(tasks: list[str], rows: list[dict]) -> dict:
    """Per-task success, the group means and their average. A task without a finished episode (a run cut by its
    deadline) has no rate: it is listed under ``missing`` and left out of the means, never counted as 0%."""
    from recorder.devices.metaworld.tasks import DIFFICULTY_GROUPS

    per_task = {}
    for task in tasks:
        entry = {}
        for who in ("policy", "expert"):
            mine = [r for r in rows if r["task"] == task and r["who"] == who]
            entry[who] = 100.0 * sum(r["success"] for r in mine) / len(mine) if mine else None
            entry[f"{who}_n"] = len(mine)
        per_task[task] = entry
    whos = ("policy", "expert")
    rated = {who: [t for t in tasks if per_task[t][who] is not None] for who in whos}
    groups = {}
    for g, names in DIFFICULTY_GROUPS.items():
        mine = [t for t in tasks if t in names]
        if mine:
            groups[g] = {who: float(np.mean([per_task[t][who] for t in mine if t in rated[who]]))
                         if any(t in rated[who] for t in mine) else None for who in whos}
            groups[g]["tasks"] = len(mine)
            groups[g]["rated"] = {who: sum(t in rated[who] for t in mine) for who in whos}
    # the average of groups only when every task has a rate: a partial one is kept apart, never shown as the average
    complete = {who: all(v["rated"][who] == v["tasks"] for v in groups.values()) for who in whos}
    partial = {who: float(np.mean([v[who] for v in groups.values() if v[who] is not None]))
               if any(v[who] is not None for v in groups.values()) else None for who in whos}
    avg = {who: partial[who] if complete[who] else None for who in whos}
    task_mean = {who: float(np.mean([per_task[t][who] for t in rated[who]])) if rated[who] else None for who in whos}
    missing = {who: [t for t in tasks if t not in rated[who]] for who in whos}
    return {"per_task": per_task, "groups": groups, "average": avg, "average_of_rated_groups": partial,
            "task_mean": task_mean, "missing": missing}


def _pct(v, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def table(summary: dict) -> str:
    names = {"easy": "Easy", "medium": "Medium", "hard": "Hard", "very_hard": "Very Hard"}
    g = summary["groups"]
    head = "| method | " + " | ".join(f"{names[k]} ({g[k]['tasks']})" if k in g else names[k] for k in names) + \
           " | Average of groups | Task mean |"
    lines = [head, "|---|" + "---|" * 6]
    for who, label in (("policy", "ours: small VLA, random init (this run)"),
                       ("expert", "Meta-World scripted expert (same seeds)")):
        cells = [("-" if k not in g else _pct(g[k][who]) if g[k]["rated"][who] == g[k]["tasks"] else
                  f"{_pct(g[k][who])} ({g[k]['rated'][who]} of {g[k]['tasks']} tasks)") for k in names]
        average = (_pct(summary["average"][who]) if summary["average"][who] is not None else
                   f"- (rated groups only: {_pct(summary['average_of_rated_groups'][who])})")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {average} | {_pct(summary['task_mean'][who])} |")
    for name, avg in PUBLISHED.items():
        lines.append(f"| {name} (published MT50, pretrained) | - | - | - | - | {avg:.1f} | - |")
    lines.append("")
    lines.append("| task | group | policy (trials) | expert (trials) |")
    lines.append("|---|---|---|---|")
    from recorder.devices.metaworld.tasks import task_group

    for task, e in summary["per_task"].items():
        lines.append(f"| {task} | {task_group(task)} | {_pct(e['policy'], 0)}% ({e['policy_n']}) | "
                     f"{_pct(e['expert'], 0)}% ({e['expert_n']}) |")
    for who, missing in summary.get("missing", {}).items():
        if missing:
            lines.append(f"\nnot evaluated ({who}, the run's deadline came first): {', '.join(missing)}")
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
    p.add_argument("--shadow-size", type=int, default=0,
                   help="shadow map px (0: the scene's 4096, as LeRobot); 1024: nearly the same frames, "
                        "~4.6x the frame rate of 16 processes on an H200")
    p.add_argument("--dtype", default="fp32", choices=["auto", "fp32", "bf16"])
    p.add_argument("--deadline-s", type=float, default=0, help="whole run's wall-clock budget (sizes --train-s)")
    p.add_argument("--samples-per-s", type=float, default=0,
                   help="with --deadline-s: expected training throughput, to size --steps to the budget")
    p.add_argument("--eval-reserve-s", type=float, default=90, help="with --deadline-s: seconds kept for eval")
    p.add_argument("--eval-cpu", action="store_true", help="evaluate on the CPU even where CUDA is present")
    p.add_argument("--record-s", type=float, default=0,
                   help="stop recording after this many s (each worker's tasks take turns, so all get demos)")
    p.add_argument("--require-hardware-gl", action="store_true",
                   help="stop at once if frames would be drawn by a software (CPU) renderer")
    return p.parse_args(argv)


def main(argv=None) -> int:
    import shutil

    from recorder.devices.metaworld.tasks import resolve_tasks

    args = parse_args(argv)
    tasks = resolve_tasks(args.tasks)
    os.environ[SHADOWS_ENV] = "0" if args.no_shadows else "1"
    os.environ[SHADOW_SIZE_ENV] = str(args.shadow_size)
    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    home = work / "home"
    t_start = time.perf_counter()
    wall_end = time.time() + args.deadline_s if args.deadline_s else float("inf")
    command = "bench/metaworld.py " + " ".join(argv if argv is not None else sys.argv[1:])
    progress = {"command": command, "tasks": tasks, "renderer": check_renderer(args, tasks[0])}
    _save(args, "progress.json", progress)
    demos, rec = record(args, tasks)
    progress["record"] = rec
    _save(args, "progress.json", progress)
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
    progress["train"] = tr
    _save(args, "progress.json", progress)
    rows = evaluate(args, tasks, tr["checkpoint"], wall_end - 10, progress)
    summary = summarize(tasks, rows)
    lat = [r["latency_ms"] for r in rows if r.get("latency_ms") is not None]
    result = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "tasks": tasks,
              "renderer": progress["renderer"], "record": rec, "train": tr, "summary": summary,
              "policy_latency_ms_median": float(np.median(lat)) if lat else None,
              "total_s": time.perf_counter() - t_start, "args": vars(args)}
    text = table(summary)
    _save(args, "results.json", result)
    for folder in [work] + ([Path(args.out)] if args.out else []):
        (folder / "table.md").write_text(text + "\n")
    print()
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
