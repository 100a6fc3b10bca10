"""`vla-studio finetune`: LoRA fine-tunes of OpenVLA-class models on store datasets.

    vla-studio finetune --dataset NAME --model PATH_OR_ID|tiny [--preset auto] [--steps N] [--batch B] ...
    vla-studio finetune --resume RUN [--steps N]
    vla-studio finetune export RUN --out DIR [--step N]
    vla-studio finetune list [--json]

Training writes one JSON object per event to ``<home>/runs/<run-id>/metrics.jsonl`` (see
finetune/metrics.py). On a terminal it shows a progress bar (step, loss, samples/s, ETA) and a line per
eval and checkpoint; with ``--json``, or whenever stdout is not a terminal (the studio, a remote run, a
pipe), it prints those same JSON lines instead. ``--logger tensorboard`` also writes TensorBoard event
files to ``<home>/runs/<run-id>/tensorboard/``. ``--gpus N`` (N > 1) relaunches itself under
torchrun; rank 0 logs and saves.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess

from finetune.run_config import ACTION_HEADS
from recorder.errors import ConfigError

# CLI option -> FinetuneConfig field (options left out keep the preset's / config's value)
OPTION_FIELDS = {
    "dataset": "dataset", "model": "model", "steps": "steps", "batch": "batch_size", "lr": "lr",
    "lora_rank": "lora_rank", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout",
    "lora_targets": "lora_targets", "action_head": "action_head", "chunk": "chunk_size", "eval_every": "eval_every",
    "eval_batches": "eval_batches", "save_every": "save_every", "val_fraction": "val_fraction",
    "quantize_4bit": "quantize_4bit", "grad_accum": "grad_accum", "seed": "seed", "device": "device",
    "dtype": "dtype", "num_workers": "num_workers", "warmup": "warmup_steps", "weight_decay": "weight_decay",
    "activation_checkpointing": "activation_checkpointing", "augment": "augment", "use_state": "use_state",
    "log_every": "log_every", "gpus": "gpus", "max_grad_norm": "max_grad_norm", "decode_block": "decode_block",
    "checkpoint_layers": "checkpoint_layers", "lora_include_vision": "lora_include_vision", "sharding": "sharding",
}


def _add_train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", help="dataset name in the store")
    p.add_argument("--model", help="base model: a local folder, a hub id, or 'tiny'")
    from finetune.presets import PRESETS

    p.add_argument("--preset", default=None, help=f"auto (from the detected GPU's memory) or one of {', '.join(PRESETS)}")
    p.add_argument("--resume", metavar="RUN", help="continue a run (its id or folder) from its last checkpoint")
    p.add_argument("--steps", type=int, help="optimizer steps")
    p.add_argument("--batch", type=int, help="samples per micro-batch (per GPU)")
    p.add_argument("--grad-accum", type=int, help="micro-batches per optimizer step")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--warmup", type=int, help="linear warm-up steps")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--max-grad-norm", type=float)
    p.add_argument("--lora-rank", type=int, help="LoRA rank r (default 32)")
    p.add_argument("--lora-alpha", type=int, help="LoRA alpha (default 16)")
    p.add_argument("--lora-dropout", type=float)
    p.add_argument("--lora-targets", help="all-linear (default) or comma-separated module names")
    p.add_argument("--action-head", choices=list(ACTION_HEADS),
                   help="; ".join(f"{k}: {v}" for k, v in ACTION_HEADS.items()))
    p.add_argument("--chunk", type=int, help="action chunk size K")
    p.add_argument("--cameras", help="cameras fed to the model, comma-separated (default: the model's count)")
    p.add_argument("--eval-every", type=int, help="evaluate every N steps")
    p.add_argument("--eval-batches", type=int)
    p.add_argument("--save-every", type=int, help="checkpoint every N steps")
    p.add_argument("--log-every", type=int)
    p.add_argument("--val-fraction", type=float, help="fraction of episodes held out")
    p.add_argument("--4bit", dest="quantize_4bit", action="store_const", const=True, help="QLoRA (CUDA only)")
    p.add_argument("--activation-checkpointing", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--checkpoint-layers", type=int,
                   help="with activation checkpointing: checkpoint the first N LLM layers (0 = all)")
    p.add_argument("--lora-include-vision", action=argparse.BooleanOptionalAction, default=None,
                   help="also adapt the vision towers (OpenVLA's exact all-linear targets; slower, more memory)")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--use-state", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--dtype", choices=["auto", "bf16", "fp32"])
    p.add_argument("--num-workers", type=int, help="DataLoader worker processes")
    p.add_argument("--decode-block", type=int, help="shuffle blocks of K consecutive ticks (faster decoding; 1 = full shuffle)")
    p.add_argument("--gpus", type=int, help="GPUs on this host (N > 1 launches torchrun)")
    p.add_argument("--sharding", choices=["ddp", "fsdp"],
                   help="with --gpus N: ddp (default; a whole model per GPU) or fsdp (shard the LLM layers)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per event (the default whenever stdout is not a terminal)")
    p.add_argument("--logger", choices=["jsonl", "tensorboard"], default=None,  # None: not forwarded to a remote
                   help="jsonl (default: metrics.jsonl only) or tensorboard (also TensorBoard event files)")
    p.add_argument("--run-id", help=argparse.SUPPRESS)  # the studio picks the id to know the folder up front
    p.add_argument("--stop-at-step", type=int, help=argparse.SUPPRESS)  # tests: stop like a cancel
    p.add_argument("--config-file", help=argparse.SUPPRESS)  # torchrun ranks: the launcher's resolved config
    r = p.add_argument_group("remote GPU host (runs the same command there over ssh)")
    r.add_argument("--remote", metavar="USER@HOST[:PORT]", help="fine-tune on this host over ssh")
    r.add_argument("--remote-home", default="vla-studio", help="store root on the host (default ~/vla-studio)")
    r.add_argument("--remote-cmd", default="vla-studio", help="how to run vla-studio on the host")
    r.add_argument("--ssh-key", help="identity file for ssh")
    r.add_argument("--ssh-option", action="append", default=[], help="extra ssh -o option (repeatable)")


_PARSER: argparse.ArgumentParser | None = None
_NOT_FORWARDED = {"help", "json", "resume", "run_id", "config_file", "remote", "remote_home", "remote_cmd", "ssh_key",
                  "ssh_option", "finetune_action", "func", "home", "rig", "command"}


def forwarded_args(args) -> list[str]:
    """The training options given on this command line, as CLI words (to run the same command elsewhere)."""
    out: list[str] = []
    assert _PARSER is not None
    for action in _PARSER._actions:
        if action.dest in _NOT_FORWARDED or not action.option_strings:
            continue
        value = getattr(args, action.dest, None)
        if value is None or value is False and not isinstance(action, argparse.BooleanOptionalAction):
            continue
        flag = action.option_strings[0]
        if isinstance(action, argparse.BooleanOptionalAction):
            out.append(flag if value else "--no-" + flag[2:])
        elif isinstance(action, argparse._StoreConstAction):
            out.append(flag)
        else:
            out += [flag, str(value)]
    return out


def register(sub) -> None:
    global _PARSER
    p = sub.add_parser("finetune", help="LoRA fine-tune a VLA on a dataset (also: export, list)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_train_options(p)
    _PARSER = p
    p.set_defaults(func=_run_train)
    actions = p.add_subparsers(dest="finetune_action", metavar="{export,list}")
    e = actions.add_parser("export", help="merge a run's adapter into its base model and save a model folder")
    e.add_argument("run", help="run id or run/checkpoint folder")
    e.add_argument("--out", required=True, help="output folder (new or empty)")
    e.add_argument("--step", help="checkpoint step folder (default: the last)")
    e.set_defaults(func=_run_export)
    imp = actions.add_parser("import-index", help=argparse.SUPPRESS)  # remote side of --remote
    imp.add_argument("export", help="index export JSON written by the sending studio")
    imp.set_defaults(func=_run_import_index)
    ls = actions.add_parser("list", help="runs in the store with status, best val loss and checkpoints")
    ls.add_argument("--json", action="store_true", help="one JSON object per run")
    ls.set_defaults(func=_run_list)


def build_config(args, base=None):
    """FinetuneConfig from defaults < preset < explicit options (or < saved config on resume)."""
    from finetune.presets import resolve_preset
    from finetune.run_config import FinetuneConfig

    cfg = base if base is not None else FinetuneConfig()
    if base is None:
        preset = resolve_preset(args.preset or "auto")
        for key, value in preset.settings.items():
            setattr(cfg, key, value)
        cfg.preset = preset.name
        if args.model is None:
            cfg.model = preset.model_hint
    elif args.preset:
        raise ConfigError("--preset cannot change a run being resumed; start a new run instead")
    for opt, fieldname in OPTION_FIELDS.items():
        value = getattr(args, opt, None)
        if value is not None:
            setattr(cfg, fieldname, value)
    if getattr(args, "cameras", None):
        cfg.cameras = [c.strip() for c in args.cameras.split(",") if c.strip()]
    if args.chunk is not None and args.action_head is None and base is None and args.chunk > 1:
        pass  # a chunk with token bins predicts K x D tokens; allowed
    cfg.validate()
    return cfg


def _run_train(args) -> int:
    from finetune.run_config import make_run_id, read_config, run_dir

    if args.config_file:  # a rank started by _launch_torchrun: the config is already resolved
        cfg = read_config(args.config_file)
        run_id = args.run_id or make_run_id(cfg)
    elif args.resume:
        if args.dataset is not None:
            raise ConfigError("--resume continues a run on its own dataset: drop --dataset")
        from pathlib import Path

        path = Path(args.resume)
        run_id = path.name if path.is_dir() else args.resume
        folder = path if path.is_dir() else run_dir(args.home, run_id)
        if not (folder / "config.json").is_file():
            raise ConfigError(f"run {args.resume!r} not found ({folder}/config.json is missing): "
                              "see `vla-studio finetune list`")
        saved = read_config(folder / "config.json").to_dict()
        from finetune.run_config import last_checkpoint

        ckpt = last_checkpoint(folder)
        if ckpt is not None and (ckpt / "config.json").is_file():  # the config of the step resumed from
            saved = read_config(ckpt / "config.json").to_dict()
        cfg = build_config(args, base=read_config(folder / "config.json"))
        if args.batch is None and args.grad_accum is None:  # --gpus changed: keep the run's global batch
            from finetune.distributed import keep_global_batch

            keep_global_batch(cfg, saved)
    else:
        if not args.dataset:
            raise ConfigError("pass --dataset NAME (or --resume RUN); `vla-studio datasets list` shows the names")
        cfg = build_config(args)
        run_id = args.run_id or make_run_id(cfg)

    if args.remote:
        from studio.finetune.remote import RemoteHost, run_remote_finetune

        host = RemoteHost.parse(args.remote, args.remote_home, key=args.ssh_key, remote_cmd=args.remote_cmd,
                                ssh_options=list(args.ssh_option))
        return run_remote_finetune(args.home, host, cfg, run_id, forwarded_args(args), resume=bool(args.resume),
                                   show=_terminal_display(args))

    if cfg.gpus > 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return _launch_torchrun(args, cfg, run_id)

    from finetune.recipe import FinetuneRecipe

    recipe = FinetuneRecipe(cfg, args.home, run_id=run_id, resume=bool(args.resume), stop_at_step=args.stop_at_step,
                            logger_factory=_logger_factory(args))
    result = recipe.run()
    return 0 if result.status in ("done", "cancelled") else 1


def _terminal_display(args):
    """The progress display for a person at a terminal, or None for JSON lines (``--json``, no terminal)."""
    from studio.commands.progress import FinetuneProgress, json_mode

    return None if json_mode(getattr(args, "json", False)) else FinetuneProgress()


def _logger_factory(args):
    """Run folder -> the run's logger: metrics.jsonl, plus JSON lines on stdout or the terminal display,
    plus TensorBoard with ``--logger tensorboard``."""
    from finetune.metrics import build_logger

    def factory(run_path):
        show = _terminal_display(args)
        return build_logger(run_path, stdout=show is None, tensorboard=args.logger == "tensorboard",
                            extra=(show,) if show is not None else ())

    return factory


def _launch_torchrun(args, cfg, run_id: str) -> int:
    """Re-run this very command on cfg.gpus local processes (torchrun); they share the run id."""
    from finetune.distributed import torchrun_command
    from finetune.run_config import run_dir

    folder = run_dir(args.home, run_id)
    folder.mkdir(parents=True, exist_ok=True)
    launch = folder / "launch_config.json"
    launch.write_text(json.dumps({"config": cfg.to_dict()}, indent=2))
    argv = ["--home", str(args.home), "finetune", "--config-file", str(launch), "--run-id", run_id]
    if args.resume:
        argv += ["--resume", run_id]
    if args.stop_at_step is not None:
        argv += ["--stop-at-step", str(args.stop_at_step)]
    if args.json:
        argv.append("--json")
    if args.logger:
        argv += ["--logger", args.logger]
    cmd = torchrun_command(cfg.gpus, argv)
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)  # signals reach torchrun only through us

    forwarded = []

    def forward(sig, _frame):  # cancel: torchrun passes the signal on to every rank (they checkpoint, then exit)
        forwarded.append(sig)
        proc.send_signal(sig)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:  # timed waits, so a signal that lands on another thread still runs `forward` promptly
            try:
                rc = proc.wait(0.5)
                break
            except subprocess.TimeoutExpired:
                continue
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    if forwarded and rc != 0:  # torchrun exits non-zero on a signal even when the ranks ended cleanly
        from finetune.metrics import read_events

        events = read_events(folder / "metrics.jsonl")
        if events and events[-1].get("event") == "cancelled":
            return 0
    return rc


def _run_export(args) -> int:
    from finetune.recipe import export_merged

    out = export_merged(args.home, args.run, args.out, step=args.step)
    print(json.dumps({"event": "exported", "path": str(out)}))
    return 0


def _run_list(args) -> int:
    from finetune.run_config import effective_status
    from recorder.store import Store

    store = Store.open(args.home)
    try:
        runs = store.runs()
        rows = []
        for r in runs:
            cks = store.checkpoints(run_id=r.run_id)
            rows.append({"run_id": r.run_id, "status": effective_status(r.status, r.path), "dataset": r.dataset, "model": r.model,
                         "best_val": r.best_metric, "checkpoints": len(cks),
                         "last_step": max((c.step for c in cks), default=None),
                         "created": r.created_at.isoformat() if r.created_at else None, "path": str(r.path)})
    finally:
        store.close()
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    if not rows:
        print("no fine-tune runs yet: start one with `vla-studio finetune --dataset NAME --model tiny`")
        return 0
    print(f"{'run':58} {'status':10} {'dataset':14} {'best val':>9} {'ckpts':>5}")
    for row in rows:
        best = "-" if row["best_val"] is None else f"{row['best_val']:.4f}"
        print(f"{row['run_id'][:58]:58} {row['status']:10} {str(row['dataset'])[:14]:14} {best:>9} {row['checkpoints']:>5}")
    return 0


def _run_import_index(args) -> int:
    from studio.finetune.remote import import_index

    result = import_index(args.home, args.export)
    print(json.dumps({"event": "imported", **result}))
    return 0
