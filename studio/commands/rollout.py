"""`vla-studio rollout`: a tuned policy drives the rig; rollouts are stored as episodes.

    vla-studio rollout --checkpoint CKPT --rig sim --task "pick up the red cube" --episodes 5
    vla-studio rollout --policy-url wss://gpu-box:8765 --token-file ~/.vla-token --tls-ca cert.pem --rig rig.toml --episodes 3 --ensemble

The episodes go into the store (dataset ``rollouts`` unless --dataset says otherwise) with the
checkpoint id, the predicted chunks per tick and, in the sim, the task detector's success label.
"""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("rollout", help="roll a tuned policy out on a rig and store the episodes",
                       description="Run a checkpoint (local or via a policy server) closed-loop on a rig.")
    p.add_argument("--checkpoint", help="checkpoint folder, run folder or run id (under <home>/runs)")
    p.add_argument("--rig", dest="rollout_rig", default=None, help="rig file or 'sim' / 'sim:push' (default: sim)")
    p.add_argument("--task", default=None, help="instruction given to the policy (default: the sim task's)")
    p.add_argument("--episodes", type=int, default=1, help="number of episodes (default 1)")
    p.add_argument("--policy-url", default=None, help="ws://HOST:PORT of `vla-studio serve` (instead of a local model)")
    p.add_argument("--token-file", default=None, help="file whose first line is the policy server's token "
                                                       "(or set VLA_STUDIO_TOKEN)")
    p.add_argument("--token", default=None, help="token of the policy server (visible to local users in ps: "
                                                  "prefer --token-file or VLA_STUDIO_TOKEN)")
    p.add_argument("--tls-ca", default=None, help="wss://: trust this CA or the server's self-signed certificate "
                                                   "(PEM; or set VLA_STUDIO_TLS_CA)")
    p.add_argument("--execute", type=int, default=None, help="actions of each chunk executed before the next (default: all)")
    p.add_argument("--ensemble", action="store_true", help="temporal ensembling (ACT) instead of n-of-K")
    p.add_argument("--sync", action="store_true", help="run inference on the loop thread (the loop waits for it)")
    p.add_argument("--fps", type=float, default=None, help="control rate in Hz (default: the rig's camera rate or 30)")
    p.add_argument("--max-seconds", type=float, default=20.0, help="longest episode (default 20)")
    p.add_argument("--dataset", default=None,
                   help="store dataset for the episodes (default: rollouts, or rollouts-<WxH>-<fps>fps when "
                        "'rollouts' holds episodes of another rig shape)")
    p.add_argument("--seed", type=int, default=None,
                   help="sim: first reset seed (episode i uses seed+i; default: the Rollout tab's first seed)")
    p.add_argument("--device", default=None, help="torch device for a local model")
    p.add_argument("--quantize", choices=("none", "4bit", "8bit"), default=None,
                   help="LLM weights in 4 or 8 bits for small GPUs (CUDA + bitsandbytes); default: as the run was trained (a --4bit run on its 4-bit base)")
    p.add_argument("--max-delta", type=float, default=10.0, help="safety: largest joint change per tick (degrees)")
    p.add_argument("--open-loop", metavar="DATASET", default=None,
                   help="no rollout: run the policy over DATASET's recorded episodes and print the error per joint")
    p.add_argument("--open-loop-episodes", type=int, default=5, help="episodes for --open-loop (default 5)")
    p.add_argument("--calibration", default=None,
                   help="JSON or TOML {camera: {intrinsics: 3x3, world_to_camera: 4x4}} to draw the predicted path on "
                        "real cameras (the sim needs none)")
    p.set_defaults(func=_run)


def _calibrations(path: str | None) -> dict:
    """--calibration: the same parser as the Rollout tab's calibration field (JSON or TOML)."""
    from studio.rollout.calibration import load_calibrations

    return load_calibrations(path)


def _open_loop(policy, store, args) -> int:
    from recorder.evaluation import evaluate_open_loop

    res = evaluate_open_loop(policy, store, dataset=args.open_loop, max_episodes=args.open_loop_episodes,
                             instruction=args.task, on_progress=lambda i, n: print(f"episode {i}/{n}", flush=True))
    print(res.table())
    if res.mae_by_horizon is not None:
        print("MAE by chunk row: " + " ".join(f"{v:.3f}" for v in res.mae_by_horizon))
    print(f"policy latency: mean {res.mean_latency_s * 1000:.1f} ms", flush=True)
    return 0


def _run(args) -> int:
    from recorder.devices.rig import load_rig
    from recorder.errors import ConfigError
    from recorder.rollout import ROLLOUT_SEED, ChunkConfig, RolloutCallbacks, make_rollout_session
    from recorder.store import Store
    from studio.rollout.policy import open_policy

    if args.episodes < 1:  # before the model is loaded (make_rollout_session says it again)
        raise ConfigError("rollout: --episodes must be at least 1")
    rig_spec = args.rollout_rig or getattr(args, "rig", None) or "sim"
    store = Store.open(args.home)
    try:
        token = None

        def warn(line):
            print(line, file=sys.stderr, flush=True)

        if args.policy_url:
            from finetune.server_limits import resolve_token

            token = resolve_token(args.token, args.token_file, warn=warn)
        policy = open_policy(args.checkpoint, url=args.policy_url, token=token, device=args.device,
                             home=args.home, store=store, ca_file=args.tls_ca, warn=warn,
                             quantize=args.quantize)
        rig = None if args.open_loop else load_rig(rig_spec, home=args.home)
    except BaseException:
        store.close()
        raise
    if args.open_loop:
        try:
            return _open_loop(policy, store, args)
        finally:
            store.close()
            close = getattr(policy, "close", None)
            if close is not None:
                close()
    try:
        rig.connect()
        from studio.commands.progress import ItemProgress

        bar = ItemProgress("rollout episodes", args.episodes)  # a bar on a terminal; the same lines without one
        wins = []

        def on_episode(i, info):
            label = {True: "success", False: "failure", None: "unlabelled"}[info.success]
            wins.append(bool(info.success))
            bar.update(i + 1, note=f"{sum(wins)}/{len(wins)} successes")
            bar.print(f"episode {i + 1}/{args.episodes}: {label}, {info.num_frames} ticks, {info.notes}")

        # a named dataset that does not fit, a calibration of a camera the rig lacks: refused now
        session = make_rollout_session(
            store, rig, policy, instruction=args.task, episodes=args.episodes, fps=args.fps,
            max_seconds=args.max_seconds, dataset=args.dataset, seed=ROLLOUT_SEED if args.seed is None else args.seed,
            calibrations=_calibrations(args.calibration), max_delta=args.max_delta,
            chunk=ChunkConfig(execute=args.execute, ensemble=args.ensemble, asynchronous=not args.sync),
            callbacks=RolloutCallbacks(on_episode=on_episode))
        print(f"rollout of {session.checkpoint} on {rig_spec}: {session.instruction!r}, chunk {policy.chunk_size}, "
              f"{'ensembling' if args.ensemble else f'execute {args.execute or policy.chunk_size}'}; "
              f"into dataset '{session.dataset}'", flush=True)
        try:
            with bar:
                result = session.run()
        except KeyboardInterrupt:
            print("rollout: interrupted; the episode under way was discarded", file=sys.stderr)
            return 130
        per_task = result.per_task()
        if len(per_task) > 1:  # a multi-task rig (Meta-World): success per task
            for text, (k, n) in per_task.items():
                print(f"  {k}/{n} {text}", flush=True)
        rate = result.success_rate
        print(f"done: {sum(bool(s) for s in result.successes)}/{len(result.successes)} successes"
              + (f" ({rate:.0%})" if rate is not None else "")
              + f"; held ticks {result.held_ticks}; safety {result.safety_counts}"
              + ("; E-STOPPED" if result.estopped else ""), flush=True)
        return 0
    finally:
        rig.disconnect()
        store.close()
        close = getattr(policy, "close", None)
        if close is not None:
            close()
