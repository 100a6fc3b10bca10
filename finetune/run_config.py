"""The one flat config of a fine-tune run, its run id, and the run folder layout.

Torch-free on purpose: the CLI parser and the Fine-tune tab import it without paying for torch.

Run folder (``<store root>/runs/<run-id>/``)::

    config.json          the FinetuneConfig as JSON (the one the run started with)
    metrics.jsonl        one JSON event per line (the same lines the CLI prints on stdout)
    norm_stats.json      OpenVLA-form statistics of the training episodes
    pid                  "<pid> <start-time>" while a process trains this run
    stdout.log / stderr.log   what the process printed (when the studio launched it detached)
    checkpoints/<step>/{adapter/, training_state.{json,safetensors}, norm_stats.json, config.json}
    checkpoints/last     a text file naming the newest complete step folder
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune.checkpoint_ref import (  # noqa: F401 - the run's file names, owned by checkpoint_ref
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    LAST_FILE,
    METRICS_FILE,
    NORM_STATS_FILE,
    PID_FILE,
    STDERR_FILE,
    STDOUT_FILE,
    last_checkpoint,
    run_dir,
    runs_root,
)
from recorder.errors import ConfigError
from recorder.fsutil import JsonObjectError, load_json_object

# The action heads a run can train (finetune/models/action_heads.py), with the one line the Fine-tune tab shows.
ACTION_HEADS = {
    "tokens": "OpenVLA: 256 bins per action dimension as LLM tokens, decoded one token at a time",
    "chunk": "OpenVLA-OFT: a K x D chunk in one pass from learned queries, trained with L1",
    "flow": "pi0: a small action expert on the prefix denoises the chunk in 10 flow-matching steps",
    "fast": "pi0-FAST: DCT + BPE tokens fitted on your chunks; few tokens per smooth chunk",
}


@dataclass
class FinetuneConfig:
    """Every knob of a LoRA fine-tune. One flat dataclass; a comment per field."""

    # -- data
    dataset: str = ""  # dataset name in the store
    cameras: list[str] = field(default_factory=list)  # cameras fed to the model, in order ([] = the first n_images)
    val_fraction: float = 0.1  # fraction of episodes held out for validation (split by episode, seeded)
    augment: bool = True  # OpenVLA augmentation: random resized crop (0.9 area) + color jitter
    use_state: bool = False  # feed observation.state (normalized) to the model as proprio
    num_workers: int = 0  # DataLoader worker processes decoding frames (0 = in the training process)
    decode_block: int = 1  # shuffle blocks of K consecutive ticks (decode locality, see StreamSampler); 1 = full shuffle
    # -- model
    model: str = "tiny"  # base model: a local folder, a hub id, or "tiny" (the built-in tiny model)
    action_head: str = "tokens"  # one of ACTION_HEADS: tokens (bins), chunk (L1 chunk), flow (pi0), fast (FAST tokens)
    chunk_size: int = 1  # K: action steps predicted per sample
    quantize_4bit: bool = False  # QLoRA: base weights in 4-bit NF4 (bitsandbytes, CUDA only)
    dtype: str = "auto"  # "auto" (bf16 on GPU, fp32 on CPU), "bf16", "fp32"
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:N"
    activation_checkpointing: bool = False  # recompute activations in backward (less memory, ~30% slower)
    checkpoint_layers: int = 0  # with activation_checkpointing: checkpoint the first N LLM layers (0 = all of them)
    # -- LoRA
    lora_rank: int = 32  # r
    lora_alpha: int = 16  # scaling numerator (OpenVLA: min(r, 16))
    lora_dropout: float = 0.0  # dropout on the LoRA input
    lora_targets: str = "all-linear"  # peft target_modules ("all-linear" or comma-separated names)
    lora_include_vision: bool = False  # all-linear also adapts the vision towers (OpenVLA's exact targets; slower,
    #                                    more memory); False: LLM + projector, towers frozen and run under no_grad
    # -- optimisation
    steps: int = 1000  # optimizer steps in total
    batch_size: int = 8  # samples per micro-batch (per process)
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 5e-4  # peak learning rate (AdamW)
    weight_decay: float = 0.0  # AdamW weight decay
    warmup_steps: int = 0  # linear warm-up steps, then cosine decay to lr_min_ratio * lr
    lr_min_ratio: float = 0.1  # cosine floor as a fraction of lr
    max_grad_norm: float = 1.0  # gradient clipping (0 = off)
    seed: int = 7  # seeds the split, the data order, augmentation and LoRA init
    # -- evaluation and checkpoints
    eval_every: int = 100  # evaluate on the validation episodes every N steps (0 = only at the end)
    eval_batches: int = 8  # validation micro-batches per evaluation
    save_every: int = 200  # write a checkpoint every N steps (a final one is always written)
    log_every: int = 1  # print a train event every N steps
    # -- distribution
    gpus: int = 1  # processes launched by torchrun (1 = plain single process)
    sharding: str = "ddp"  # with gpus > 1: ddp (a full model per GPU) or fsdp (decoder layers sharded across GPUs)
    preset: str = ""  # name of the preset this config came from (informational)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def validate(self) -> None:
        if not self.dataset:
            raise ConfigError("no dataset given: pass --dataset NAME (see `vla-studio datasets list`)")
        if self.action_head not in ACTION_HEADS:
            raise ConfigError(f"--action-head {self.action_head!r} is not known: use {', '.join(ACTION_HEADS)}")
        for name in ("steps", "batch_size", "grad_accum", "chunk_size", "lora_rank", "gpus"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction must be in [0, 1) (got {self.val_fraction})")
        if self.checkpoint_layers < 0:
            raise ConfigError(f"checkpoint_layers must be 0 (all) or a positive layer count (got {self.checkpoint_layers})")
        if self.sharding not in ("ddp", "fsdp"):
            raise ConfigError(f"--sharding {self.sharding!r} is not known: use ddp or fsdp")
        if self.dtype not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"dtype {self.dtype!r} is not known: use auto, bf16 or fp32")
        if self.quantize_4bit and self.sharding == "fsdp" and self.gpus > 1:
            raise ConfigError("--4bit and --sharding fsdp do not go together (FSDP cannot shard 4-bit weights): "
                              "drop --4bit or use --sharding ddp")


# Fields whose change on resume changes what is trained: they produce a drift notice.
RESUME_NEUTRAL = {"eval_every", "save_every", "log_every", "eval_batches", "gpus", "preset", "checkpoint_layers",
                  "sharding"}


def check_model_spec(path_or_id: str | Path) -> Path | None:
    """Check a base-model spelling without loading anything (no torch): ``"tiny"`` and a hub id give None,
    an existing local folder gives its path; a missing folder or a file is a ModelError naming it."""
    from recorder.errors import ModelError

    s = str(path_or_id).strip()
    if s == "tiny":
        return None
    if not s:
        raise ModelError("no base model given: pass a model folder, 'tiny', or a hub id like openvla/openvla-7b")
    p = Path(s).expanduser()
    if p.exists():
        if not p.is_dir():
            raise ModelError(f"{p}: not a folder; pass an OpenVLA model folder, a checkpoint folder or a hub id")
        return p
    if s.count("/") != 1 or s.startswith((".", "/", "~")):
        raise ModelError(f"{s}: no such folder; pass an existing model folder, 'tiny', or a hub id like openvla/openvla-7b")
    return None


def config_drift(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Fields that differ between a checkpoint's config and the one resuming it (ignoring neutral ones)."""
    out = {}
    for key in sorted(set(saved) | set(current)):
        if key in RESUME_NEUTRAL:
            continue
        if key == "num_workers" and current.get("decode_block", 1) == 1:
            continue  # the order of a full shuffle does not depend on the workers
        if saved.get(key) != current.get(key):
            out[key] = (saved.get(key), current.get(key))
    return out


def _slug(text: str) -> str:
    text = text.rstrip("/").split("/")[-1] or text
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")[:24] or "x"


def make_run_id(cfg: FinetuneConfig, now: float | None = None) -> str:
    """A readable id from the hyper-parameters and the start time, e.g.
    ``pick-tiny-tokens-r32-lr5e-04-b8x1-20261124-054412``."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now if now is not None else time.time()))
    lr = f"{cfg.lr:.0e}".replace("+", "")
    parts = [_slug(cfg.dataset), _slug(cfg.model), cfg.action_head, f"r{cfg.lora_rank}", f"lr{lr}",
             f"b{cfg.batch_size}x{cfg.grad_accum}"]
    if cfg.quantize_4bit:
        parts.append("4bit")
    return "-".join(parts) + "-" + stamp


def read_json_object(path: Path, *, fix: str, error: type[Exception] = ConfigError) -> dict:
    """A JSON file that must hold an object -> the dict; anything else (missing, unreadable, not UTF-8, not
    JSON, not an object) -> one ``error`` line naming the file, what is wrong with it and ``fix``."""
    try:
        return load_json_object(path)
    except JsonObjectError as err:
        raise error(f"{err.path}: {err.reason}; {fix}") from None


def read_config(path: Path) -> FinetuneConfig:
    data = read_json_object(path, fix="is this a run folder?")
    cfg = data.get("config", data)
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: \"config\" is not a JSON object; is this a run folder?")
    return FinetuneConfig.from_dict(cfg)


def read_pid(run_path: Path) -> tuple[int, float] | None:
    """(pid, process start time) of the process training this run, if a pid file is there."""
    try:
        pid_s, start_s = (Path(run_path) / PID_FILE).read_text().split()[:2]
        return int(pid_s), float(start_s)
    except (OSError, ValueError):
        return None


def process_start_time(pid: int) -> float | None:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:  # noqa: BLE001 - any failure means "not that process"
        return None


def pid_alive(run_path: Path) -> int | None:
    """The pid of the live process training this run (guarded against pid reuse), else None."""
    info = read_pid(run_path)
    if info is None:
        return None
    pid, start = info
    actual = process_start_time(pid)
    if actual is None or abs(actual - start) > 2.0:
        return None
    try:
        import psutil

        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return None
    except Exception:  # noqa: BLE001
        return None
    return pid


# ----------------------------------------------------------------------------- status and re-indexing

#: the last event of metrics.jsonl -> the run's status once its process is gone
_END_STATUS = {"done": "done", "cancelled": "cancelled", "error": "failed"}


def effective_status(status: str, run_path: Path) -> str:
    """The status to show: a run the index says is ``running`` but whose process is gone (killed, power
    loss, a full disk that stopped it before it could say so) is ``interrupted``."""
    if status == "running" and pid_alive(run_path) is None:
        return "interrupted"
    return status


def folder_status(run_path: Path) -> tuple[str, dict]:
    """(status, last end event) of a run folder, from its pid file and metrics.jsonl."""
    from finetune.metrics import read_events

    if pid_alive(run_path) is not None:
        return "running", {}
    events = read_events(Path(run_path) / METRICS_FILE)
    ends = [e for e in events if e.get("event") in _END_STATUS]
    if ends and ends[-1] is events[-1]:
        return _END_STATUS[ends[-1]["event"]], ends[-1]
    return "interrupted", {}


def step_folders(run_path: Path) -> list[tuple[int, Path]]:
    """Complete checkpoint folders of a run, (step, folder) in step order (``.partial`` ones left out)."""
    ckpts = Path(run_path) / CHECKPOINTS_DIR
    if not ckpts.is_dir():
        return []
    out = []
    for p in ckpts.iterdir():
        if p.is_dir() and p.name.isdigit() and (p / CONFIG_FILE).is_file():
            out.append((int(p.name), p))
    return sorted(out)


def reindex_runs(store) -> list[str]:
    """Register in ``store``'s index every run folder under ``runs/`` it does not know (after the index was
    rebuilt), with its checkpoints and status. Returns the run ids added."""
    from datetime import UTC, datetime

    from finetune.metrics import read_events

    root = runs_root(store.root)
    if not root.is_dir():
        return []
    known = {r.run_id for r in store.runs()}
    added = []
    for folder in sorted(root.iterdir()):
        if not folder.is_dir() or folder.name in known or not (folder / CONFIG_FILE).is_file():
            continue
        try:
            cfg = read_config(folder / CONFIG_FILE)
        except ConfigError:
            continue
        status, end = folder_status(folder)
        store.add_run(folder.name, cfg.dataset or None, cfg.model, cfg.to_dict(), folder)
        saved = {}
        for e in read_events(folder / METRICS_FILE):
            if e.get("event") == "checkpoint" and e.get("path"):
                saved[Path(e["path"]).name] = {k: v for k, v in e.items() if k not in ("event", "path", "time")}
        for step, ck in step_folders(folder):
            store.add_checkpoint(folder.name, step, ck, saved.get(ck.name) or {"step": step})
        finished = None
        if status != "running":
            finished = datetime.fromtimestamp((folder / METRICS_FILE).stat().st_mtime, UTC) \
                if (folder / METRICS_FILE).is_file() else None
        store.update_run(folder.name, status=status, best_metric=end.get("best_val"), finished_at=finished)
        added.append(folder.name)
    return added
