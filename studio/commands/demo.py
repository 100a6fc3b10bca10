"""`vla-studio demo`: the whole mission with no hardware, in the simulated rig.

Records a few scripted demonstrations, fine-tunes the tiny model on them on the CPU (the finetune
CLI as a child process) and rolls the tuned policy out with overlays, showing each step in a
window; ``--headless`` does the same and prints each step.
"""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("demo", help="record sim demos, fine-tune the tiny model on the CPU, roll it out",
                       description="The whole record -> fine-tune -> rollout mission in the sim, no hardware.")
    p.add_argument("--headless", action="store_true", help="no window: print each step")
    p.add_argument("--task", default="pick", choices=["pick", "push"], help="sim task (default pick)")
    p.add_argument("--demos", type=int, default=3, help="scripted demonstrations (default 3)")
    p.add_argument("--steps", type=int, default=60, help="fine-tuning steps (default 60)")
    p.add_argument("--rollouts", type=int, default=2, help="rollout episodes (default 2)")
    p.add_argument("--size", default="160x120", help="sim camera size WxH (default 160x120)")
    p.add_argument("--fps", type=float, default=15.0, help="control rate (default 15)")
    p.add_argument("--episode-time", type=float, default=15.0, help="longest demonstration, s (default 15)")
    p.add_argument("--rollout-time", type=float, default=10.0, help="longest rollout, s (default 10)")
    p.add_argument("--dataset", default="demo", help="dataset for the demonstrations (default demo)")
    p.add_argument("--seed", type=int, default=0, help="first sim seed")
    p.set_defaults(func=_run)


def _config(args):
    from recorder.errors import ConfigError
    from studio.demo.pipeline import DemoConfig

    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size {args.size}: use WxH, e.g. 160x120") from None
    if min(args.demos, args.steps, args.rollouts) < 1 or w < 16 or h < 16:
        raise ConfigError("demo: --demos, --steps and --rollouts must be >= 1 and --size at least 16x16")
    return DemoConfig(home=args.home, task=args.task, demos=args.demos, steps=args.steps, rollouts=args.rollouts,
                      width=w, height=h, fps=args.fps, episode_time=args.episode_time,
                      rollout_time=args.rollout_time, dataset=args.dataset, seed=args.seed)


def _run(args) -> int:
    cfg = _config(args)
    if args.headless:
        return _run_headless(cfg)
    from studio.demo.window import DemoWindow
    from widgets.gui_gc import gui_app

    app = gui_app()
    win = DemoWindow(cfg)
    win.show()
    win.start()
    rc = app.exec()
    return 1 if win.error else rc


def _run_headless(cfg) -> int:
    from studio.demo.pipeline import DemoCallbacks, DemoPipeline

    last = {"stage": None}

    def on_stage(stage: str, text: str) -> None:
        if stage != last["stage"]:
            print(f"== {stage}", flush=True)
            last["stage"] = stage
        print(f"   {text}", flush=True)

    pipe = DemoPipeline(cfg, DemoCallbacks(on_stage=on_stage))
    try:
        res = pipe.run()
    except KeyboardInterrupt:
        pipe.estop.set()
        pipe.cancel()
        raise
    ro = res.rollout
    if ro is None:
        print("demo: stopped before the rollout", flush=True)
        return 1
    print(f"demo done: {len(res.demos)} demonstrations, run {res.run_id} (final loss {res.final_loss}), "
          f"{sum(bool(s) for s in ro.successes)}/{len(ro.successes)} rollouts succeeded, "
          f"held ticks {ro.held_ticks}, safety {ro.safety_counts}", flush=True)
    return 0
