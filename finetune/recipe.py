"""The LoRA fine-tuning recipe: ``setup -> train -> save_checkpoint -> cleanup`` (torchtune's shape).

One process (or one rank under torchrun) runs one recipe. Metrics go out as JSON lines through a
``MetricLogger`` (stdout + ``runs/<id>/metrics.jsonl``). SIGINT/SIGTERM finish the current step,
write a checkpoint and end with a ``cancelled`` event (exit status 0). A NaN loss stops the run with
an ``error`` event and keeps the last good checkpoint. Resume restores the adapter, optimizer,
scheduler, step, RNG states and the position in the data stream, so the loss sequence continues
exactly as an uninterrupted run's would (bit-exact on the CPU).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finetune import distributed as dist_util
from finetune.checkpoint import (
    load_adapter_weights,
    load_training_state,
    read_checkpoint_config,
    save_checkpoint,
    set_rng_state,
)
from finetune.learning import LearningWatch
from finetune.metrics import JsonlLogger, MetricLogger
from finetune.presets import (
    GiB,
    check_fits,
    estimate_memory,
    head_shape,
    shape_from_folder,
    shape_from_module,
)
from finetune.run_config import (
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    METRICS_FILE,
    NORM_STATS_FILE,
    PID_FILE,
    FinetuneConfig,
    config_drift,
    last_checkpoint,
    make_run_id,
    process_start_time,
    run_dir,
    runs_root,
)
from recorder.errors import ConfigError, KnownError, ModelError
from recorder.store.faults import MIN_FREE_BYTES, disk_full_error, free_bytes, is_disk_full


class TrainingError(KnownError):
    """Training stopped on a condition a person can act on (NaN loss, ...)."""


@dataclass
class RunResult:
    run_id: str
    status: str  # done | cancelled | failed
    step: int
    checkpoint: Path | None
    best_val: float | None


def lr_lambda(step: int, warmup: int, total: int, floor: float) -> float:
    """Linear warm-up to 1, then cosine down to ``floor``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} asked for a CUDA GPU but torch sees none; use --device cpu")
    return dev


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"bf16": torch.bfloat16, "fp32": torch.float32}[name]


class _PairTransform:
    """Dataset transform: (model inputs of one sample, its normalized target actions)."""

    def __init__(self, prepare) -> None:
        self.prepare = prepare

    def __call__(self, sample: dict):
        prepared = self.prepare(sample["images"], sample["instruction"], sample["actions"], state=sample["state"])
        return prepared, sample["actions"]


class _PairCollate:
    def __init__(self, collate) -> None:
        self.collate = collate

    def __call__(self, items):
        return self.collate([p for p, _ in items]), np.stack([a for _, a in items])


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _enable_activation_checkpointing(model, layers: int = 0) -> bool:
    """Our VLA: non-reentrant checkpointing per decoder layer in its own loop (``VLA.checkpoint_layers``): all
    layers (``layers=0``) or the first ``layers``. Other models: transformers' own switch (all layers)."""
    if hasattr(model, "checkpoint_layers"):
        model.checkpoint_layers = "all" if layers <= 0 else int(layers)
        return True
    for name in ("activation_checkpointing_enable", "gradient_checkpointing_enable"):
        fn = getattr(model, name, None)
        if callable(fn):
            try:
                fn(gradient_checkpointing_kwargs={"use_reentrant": False})
            except TypeError:
                fn()
            return True
    done = False
    for module in model.modules():
        fn = getattr(module, "gradient_checkpointing_enable", None)
        if module is not model and callable(fn):
            try:
                fn(gradient_checkpointing_kwargs={"use_reentrant": False})
                done = True
            except (TypeError, ValueError):
                continue
    return done


class FinetuneRecipe:
    """LoRA fine-tune of a VLA on store episodes.

    ``FinetuneRecipe(cfg, home).run()`` does it all; the pieces are public for tests and tools.
    ``stop_at_step`` stops the run as a cancel would once that step is done (used to test resume).
    """

    def __init__(self, cfg: FinetuneConfig, home: Path, *, run_id: str | None = None, resume: bool = False,
                 logger: MetricLogger | None = None, stop_at_step: int | None = None,
                 install_signal_handlers: bool = True,
                 logger_factory: Callable[[Path], MetricLogger] | None = None) -> None:
        cfg.validate()
        self.cfg = cfg
        self.home = Path(home)
        self.resume = resume
        self.run_id = run_id or make_run_id(cfg)
        self.path = run_dir(self.home, self.run_id)
        self.stop_at_step = stop_at_step
        self.install_signal_handlers = install_signal_handlers
        self._external_logger = logger
        self._logger_factory = logger_factory  # run folder -> the logger this run owns (built on rank 0 only)
        self.logger: MetricLogger | None = None
        self.step = 0
        self.samples_seen = 0  # position in the data stream (global samples)
        self.best_val: float | None = None
        self.last_checkpoint: Path | None = None
        self._stop_signal: int | None = None
        self._old_handlers: dict[int, Any] = {}
        self._store = None
        self._t0 = time.time()

    # ------------------------------------------------------------------ setup

    def setup(self) -> None:
        cfg = self.cfg
        self.device = resolve_device(cfg.device)
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        self.dist = dist_util.init_from_env(self.device.type)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        self.fsdp = cfg.sharding == "fsdp" and self.dist.enabled
        if cfg.quantize_4bit and self.fsdp:
            raise ConfigError("--4bit and --sharding fsdp do not go together: drop --4bit or use --sharding ddp")
        if cfg.quantize_4bit:  # CPU, no bitsandbytes, an old GPU: one line before the run folder exists
            from finetune.models.quant import check_quantize_supported

            check_quantize_supported("4bit", self.device, option="--4bit (QLoRA)")
            self.dtype = torch.bfloat16  # 4-bit layers compute in bf16; the rest of the model matches them
        from finetune.head_setup import preflight, prepare_head

        preflight(cfg, self.home, self.path, self.resume)  # the head's bad input, before the run folder exists

        if self.dist.is_main:
            self.path.mkdir(parents=True, exist_ok=True)
            if self._external_logger is not None:
                self.logger = self._external_logger
            elif self._logger_factory is not None:
                self.logger = self._logger_factory(self.path)
            else:
                self.logger = JsonlLogger(self.path / METRICS_FILE)
            self._write_pid()
        self._install_signals()

        resume_ckpt = None
        state = None
        if self.resume:
            resume_ckpt = last_checkpoint(self.path)
            if resume_ckpt is None:
                raise ConfigError(f"{self.path} has no checkpoint to resume from (checkpoints/last is missing); "
                                  "start a new run instead")
            saved = read_checkpoint_config(resume_ckpt).get("config", {})
            drift = config_drift(saved, cfg.to_dict())
            # a change of rank count: the per-rank batch / accumulation may change with it (the CLI rescales them);
            # what changes training is the global batch, so report that instead of its factors
            saved_global, now_global = dist_util.global_batch(saved), dist_util.global_batch(cfg.to_dict())
            if int(saved.get("gpus", 1)) != cfg.gpus:
                if saved_global == now_global:
                    drift.pop("batch_size", None)
                    drift.pop("grad_accum", None)
                else:
                    drift["global_batch"] = (saved_global, now_global)
            self.resumed_world = int(saved.get("gpus", 1))
            state = load_training_state(resume_ckpt)
            # the steps after the checkpoint will run again: their old lines go, so each step is logged once
            rewind = getattr(self.logger, "rewind", None)
            if callable(rewind):
                rewind(int(state["step"]))
            if drift:
                self.emit({"event": "config_drift", "checkpoint": str(resume_ckpt),
                           "fields": {k: {"saved": a, "now": b} for k, (a, b) in drift.items()}})

        # -- data first (the action size decides the model's head)
        from finetune.data import build_datasets
        from finetune.models import load_vla

        action_dim, state_dim = self._peek_dims()
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        quantize = "4bit" if cfg.quantize_4bit else None
        try:
            # FSDP: load on the CPU; sharding moves one decoder layer at a time to the GPU (the model need not fit one)
            load_device = torch.device("cpu") if self.fsdp else self.device
            vla = load_vla(cfg.model, dtype=self.dtype, device=load_device, quantize=quantize,
                           action_head=cfg.action_head, chunk_size=cfg.chunk_size, action_dim=action_dim,
                           n_images=len(cfg.cameras) or None,
                           state_dim=state_dim if (cfg.use_state and cfg.action_head in ("chunk", "flow")) else None)
        except KnownError:
            raise
        except (OSError, ValueError) as err:
            raise ModelError(f"{cfg.model}: cannot load the base model ({err}); give a model folder, a hub id or tiny") from None
        self.vla = vla
        norm_stats = None
        if resume_ckpt is not None:
            from finetune.norm import load_norm_stats

            norm_stats = load_norm_stats(resume_ckpt / NORM_STATS_FILE)
        data = build_datasets(self.home, cfg.dataset, cameras=cfg.cameras, n_images=int(getattr(vla, "n_images", 1)),
                              image_size=int(vla.image_size), chunk_size=int(getattr(vla, "chunk_size", cfg.chunk_size)),
                              val_fraction=cfg.val_fraction, seed=cfg.seed, augment=cfg.augment,
                              use_state=cfg.use_state, transform=_PairTransform(vla.prepare), norm_stats=norm_stats,
                              image_transform=getattr(vla, "image_transform", None))
        self.data = data
        self.norm_stats = data.norm_stats
        self.action_stats = data.norm_stats[cfg.dataset]["action"]
        self.head_summary = prepare_head(vla, data, cfg, resume_ckpt)  # FAST: fit (or reload) the tokenizer

        # -- memory estimate, before anything big happens
        self.estimate = self._estimate_memory(vla)

        # -- LoRA
        if cfg.activation_checkpointing:
            _enable_activation_checkpointing(vla, cfg.checkpoint_layers)
        self.model = self._wrap_lora(vla)
        if resume_ckpt is not None:
            load_adapter_weights(self.model, resume_ckpt)
        self.train_model = self.model
        self.sharding = cfg.sharding
        if self.fsdp:
            self.fsdp_units = dist_util.shard_fsdp(self.model, self.device)  # in place: self.model's params become shards
        elif self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DDP(self.model, device_ids=ids)

        params = [p for p in self.model.parameters() if p.requires_grad]
        self.n_trainable = sum(p.numel() for p in params)
        # fused AdamW on CUDA (one kernel for all adapters, as measured in bench/finetune_gpu.py); the CPU keeps
        # the default implementation, so CPU runs (and their bit-exact resume) are unchanged
        fused = {"fused": True} if self.device.type == "cuda" else {}
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_lambda(s, cfg.warmup_steps, cfg.steps, cfg.lr_min_ratio))
        if state is not None:
            try:
                if self._sharded():
                    dist_util.load_optimizer_state(self.model, self.optimizer, state["optimizer"])
                else:
                    self.optimizer.load_state_dict(state["optimizer"])
                if state.get("scheduler") is not None:
                    self.scheduler.load_state_dict(state["scheduler"])
                self.best_val = (state.get("extra") or {}).get("best_val")
                set_rng_state(state["rng"])
            except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as err:
                raise ModelError(f"{resume_ckpt}: its training state does not fit this run "
                                 f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else err!r}); "
                                 "resume from an older checkpoint or start a new run") from None
            self.step = int(state["step"])
            self.samples_seen = int(state["samples_seen"])
            self.last_checkpoint = resume_ckpt

        self._build_loaders()
        if self.dist.is_main:
            self._record_run_start()
            (self.path / NORM_STATS_FILE).write_text(json.dumps(self.norm_stats, indent=2))
            if not self.resume:
                (self.path / CONFIG_FILE).write_text(json.dumps(
                    {"config": cfg.to_dict(), "run_id": self.run_id, "model": self.model_info()}, indent=2))
        self.emit({"event": "start", "run_id": self.run_id, "path": str(self.path), "dataset": cfg.dataset,
                   "model": cfg.model, "device": str(self.device), "dtype": str(self.dtype).replace("torch.", ""),
                   "world": self.dist.world, "sharding": self.sharding if self.dist.enabled else None,
                   "fsdp_units": getattr(self, "fsdp_units", None),
                   "global_batch": cfg.batch_size * self.dist.world * cfg.grad_accum,
                   "resumed_world": getattr(self, "resumed_world", None), "steps": cfg.steps, "resumed_from": str(resume_ckpt) if resume_ckpt else None,
                   "train_episodes": len(data.train_episode_ids), "val_episodes": len(data.val_episode_ids),
                   "train_samples": len(data.train), "cameras": data.cameras, "trainable_params": self.n_trainable,
                   "memory": self.estimate.to_dict(), "memory_summary": self.estimate.summary(),
                   "action_head": cfg.action_head, "head": self.head_summary}, step=self.step)

    def _peek_dims(self) -> tuple[int, int | None]:
        from finetune.data import first_episode_lowdim

        infos, low = first_episode_lowdim(self.home, self.cfg.dataset)
        if "action" not in low:
            raise ModelError(f"episode {infos[0].id} of {self.cfg.dataset!r} has no action stream")
        actions = np.asarray(low["action"])
        state = low.get("observation.state")
        state_dim = None if state is None else int(np.asarray(state).reshape(len(state), -1).shape[1])
        return (int(actions.shape[1]) if actions.ndim == 2 else 1), state_dim

    def _estimate_memory(self, vla):
        cfg = self.cfg
        n_images = len(self.data.cameras)
        tokens = getattr(vla, "tokens_per_sample", None)
        shape = None
        if Path(cfg.model).is_dir():
            shape = shape_from_folder(Path(cfg.model), n_images=n_images)
        if shape is None:
            if tokens is None:
                patches = (int(vla.image_size) // 14) ** 2 * n_images
                tokens = patches + 30 + int(vla.action_dim) * int(getattr(vla, "chunk_size", 1))
            shape = shape_from_module(vla, tokens=int(tokens))
            base_tokens = int(vla.action_dim) * int(getattr(vla, "chunk_size", 1))
        else:
            base_tokens = 7  # shape_from_folder counts 7 action tokens
        shape = head_shape(shape, cfg.action_head, int(getattr(vla, "chunk_size", 1)), int(vla.action_dim),
                           base_action_tokens=base_tokens)
        lean = not cfg.lora_include_vision
        if cfg.lora_targets == "all-linear" and hasattr(vla, "lora_target_modules"):
            # the exact LoRA size of the targets this run will adapt (the towers only with lora_include_vision)
            mods = dict(vla.named_modules())
            per_rank = sum(int(getattr(mods[n], "in_features", 0)) + int(getattr(mods[n], "out_features", 0))
                           for n in vla.lora_target_modules(include_vision=cfg.lora_include_vision) if n in mods)
            if per_rank:
                shape = dataclasses.replace(shape, lora_params_per_rank=per_rank)
        fraction = 1.0
        n_layers = int(getattr(shape, "layers", 0) or 0)
        if cfg.checkpoint_layers > 0 and n_layers:
            fraction = min(1.0, cfg.checkpoint_layers / n_layers)
        dtype = "bf16" if self.dtype == torch.bfloat16 else "fp32"
        est = estimate_memory(shape, batch_size=cfg.batch_size, lora_rank=cfg.lora_rank, dtype=dtype,
                              quantize_4bit=cfg.quantize_4bit, activation_checkpointing=cfg.activation_checkpointing,
                              on_gpu=self.device.type == "cuda", lean=lean, checkpointed_fraction=fraction)
        if self.fsdp:  # each GPU keeps 1/N of the weights and LoRA state plus ~2 gathered layers
            w = est.weights_gib
            est = dataclasses.replace(est, weights_gib=w / self.dist.world + (2 * w / n_layers if n_layers else 0.0),
                                      trainable_gib=est.trainable_gib / self.dist.world)
        if self.device.type == "cuda":
            total = torch.cuda.get_device_properties(self.device).total_memory / GiB
            check_fits(est, total, f"GPU {torch.cuda.get_device_name(self.device)}")
        else:
            try:
                import psutil

                avail = psutil.virtual_memory().available / GiB
                check_fits(est, avail, "this machine's free memory")
            except ImportError:
                pass
        return est

    def _wrap_lora(self, vla):
        from peft import LoraConfig, get_peft_model

        cfg = self.cfg
        if cfg.lora_targets == "all-linear":
            # default: LLM + projector (the towers stay frozen and run under no_grad: VLA.embed_images checks that
            # no tower parameter needs a gradient); lora_include_vision: OpenVLA's exact all-linear targets
            targets = vla.lora_target_modules(include_vision=cfg.lora_include_vision)
        else:
            targets = [t.strip() for t in cfg.lora_targets.split(",") if t.strip()]
        extra = getattr(vla, "trainable_modules", None)
        modules_to_save = list(extra()) if callable(extra) else None
        lcfg = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=targets, modules_to_save=modules_to_save or None)
        # adapters in the base weights' dtype (bf16 on GPU), not peft's default fp32 upcast: with no autocast in the
        # training step, an fp32 adapter on a bf16 layer costs an fp32 copy of every adapted activation (the
        # H100 benchmark's "ours" vs "plain"). fp32 bases (the CPU) are unaffected. QLoRA the same: its 4-bit
        # layers compute in bf16 (peft's prepare_model_for_kbit_training is not used: it would upcast the towers,
        # embeddings and lm_head to fp32, +4 GiB on the 7B, and switch on transformers' checkpointing, not ours)
        model = get_peft_model(vla, lcfg, autocast_adapter_dtype=False)
        base_dtype = self.dtype
        for p in model.parameters():
            if p.requires_grad and p.is_floating_point() and p.dtype != base_dtype:
                p.data = p.data.to(base_dtype)  # e.g. a chunk head built in fp32 next to a bf16 base
        return model

    def _build_loaders(self) -> None:
        from torch.utils.data import DataLoader

        from finetune.data import StreamBatchSampler, StreamSampler

        cfg = self.cfg
        collate = _PairCollate(self.vla.collate)
        sampler = StreamSampler(len(self.data.train), cfg.seed, start=self.samples_seen, block=cfg.decode_block,
                                interleave=cfg.batch_size * self.dist.world, lanes=max(1, cfg.num_workers))
        batch_sampler = StreamBatchSampler(sampler, cfg.batch_size, rank=self.dist.rank, world=self.dist.world)
        kw: dict[str, Any] = {"num_workers": cfg.num_workers, "collate_fn": collate,
                              "pin_memory": self.device.type == "cuda"}
        if cfg.num_workers > 0:
            kw.update(persistent_workers=False, prefetch_factor=4)
        self.train_loader = DataLoader(self.data.train, batch_sampler=batch_sampler, **kw)
        self.val_items: list[int] = []
        if self.data.val is not None:
            n = len(self.data.val)
            want = min(n, cfg.eval_batches * cfg.batch_size)
            self.val_items = sorted({int(i) for i in np.linspace(0, n - 1, want)})

    def model_info(self) -> dict:
        vla = self.vla
        return {"base_model": self.cfg.model, "action_head": getattr(vla, "action_head", self.cfg.action_head),
                "chunk_size": int(getattr(vla, "chunk_size", self.cfg.chunk_size)), "action_dim": int(vla.action_dim),
                "image_size": int(vla.image_size), "cameras": list(self.data.cameras), "dataset": self.cfg.dataset,
                "unnorm_key": self.cfg.dataset, "center_crop": bool(self.cfg.augment), "use_state": self.cfg.use_state,
                "lora_rank": self.cfg.lora_rank, "lora_alpha": self.cfg.lora_alpha,
                "head_config": {k: v for k, v in vla.head_config().items() if k.startswith(("flow_", "fast_"))}}

    # ------------------------------------------------------------------ store index

    def _open_store(self):
        if self._store is None:
            from recorder.store import Store

            self._store = Store.open(self.home)
        return self._store

    def _record_run_start(self) -> None:
        store = self._open_store()
        existing = None
        try:
            existing = store.run(self.run_id)
        except KnownError:
            existing = None
        if existing is None:
            store.add_run(self.run_id, self.cfg.dataset, self.cfg.model, self.cfg.to_dict(), self.path)
        store.update_run(self.run_id, status="running")
        self._run_recorded = True

    def _finish_run(self, status: str) -> None:
        if not getattr(self, "_run_recorded", False):
            return
        try:
            from datetime import datetime

            self._open_store().update_run(self.run_id, status=status, best_metric=self.best_val,
                                          finished_at=datetime.now(UTC))
        except KnownError as err:
            self.emit({"event": "warning", "message": f"could not record the run's end in the index: {err}"})

    # ------------------------------------------------------------------ logging / signals

    def emit(self, payload: dict, step: int | None = None) -> None:
        if self.logger is not None:
            try:
                self.logger.log_dict(payload, self.step if step is None else step)
            except OSError as err:
                if not is_disk_full(err, self.path):
                    raise
                if getattr(self, "_disk_full", False):
                    return  # reported once already; the events that follow (error, warning) cannot be written
                self._disk_full = True
                raise self._disk_full_error(err) from None

    def _disk_full_error(self, _err: BaseException | None = None):
        need = sum(p.stat().st_size for p in (self.last_checkpoint or self.path).rglob("*") if p.is_file())
        return disk_full_error(self.path, need, f"'vla-studio --home {self.home} finetune --resume {self.run_id}'")

    def _write_pid(self) -> None:
        start = process_start_time(os.getpid()) or time.time()
        (self.path / PID_FILE).write_text(f"{os.getpid()} {start}\n")

    def _install_signals(self) -> None:
        if not self.install_signal_handlers:
            return
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, _frame) -> None:
        if self._stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self._stop_signal = signum

    def request_stop(self) -> None:
        self._stop_signal = signal.SIGTERM

    # ------------------------------------------------------------------ train / eval

    def train(self) -> RunResult:
        cfg = self.cfg
        model = self.train_model
        model.train()
        it = iter(self.train_loader)
        global_batch = cfg.batch_size * self.dist.world
        t_last, samples_since, step_times = time.perf_counter(), 0, []
        status = "done"
        self.learning = LearningWatch(lr=cfg.lr)  # flags a run whose loss / val L1 stays flat
        while self.step < cfg.steps:
            if dist_util.broadcast_flag(self._stop_signal is not None, self.dist, self.device):
                status = "cancelled"
                break
            t_step = time.perf_counter()
            loss_sum = torch.zeros((), device=self.device, dtype=torch.float32)
            for micro in range(cfg.grad_accum):
                batch, _targets = next(it)
                batch = _to_device(batch, self.device)
                sync = (micro == cfg.grad_accum - 1) or not self.dist.enabled
                ctx = dist_util.no_sync(model, self.dist) if (self.dist.enabled and not sync) else _nullctx()
                with ctx:
                    out = model(**batch)
                    loss = out.loss
                    if not torch.isfinite(loss.detach()).all():
                        return self._on_nan(loss)
                    (loss / cfg.grad_accum).backward()
                loss_sum += loss.detach().float()
                self.samples_seen += global_batch
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad],
                                               cfg.max_grad_norm)
            lr = self.scheduler.get_last_lr()[0]
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            loss_mean = dist_util.all_reduce_mean(loss_sum / cfg.grad_accum, self.dist).item()
            if not math.isfinite(loss_mean):
                return self._on_nan(torch.tensor(loss_mean))
            step_times.append(time.perf_counter() - t_step)
            samples_since += global_batch * cfg.grad_accum
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                now = time.perf_counter()
                sps = samples_since / max(now - t_last, 1e-9)
                recent = step_times[-20:]
                eta = (cfg.steps - self.step) * (sum(recent) / len(recent))
                self.emit({"event": "train", "loss": loss_mean, "lr": lr, "samples_per_s": sps,
                           "gpu_mem_gb": self._gpu_mem(), "eta_s": eta, "samples_seen": self.samples_seen,
                           "epoch": self.samples_seen / max(1, len(self.data.train))})
                self._watch(self.learning.on_train(self.step, loss_mean))
                t_last, samples_since = now, 0
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step != cfg.steps:
                self.evaluate()
            if self.stop_at_step is not None and self.step >= self.stop_at_step and self.step < cfg.steps:
                status = "cancelled"
                break
            if cfg.save_every and self.step % cfg.save_every == 0 and self.step != cfg.steps:
                self.save_checkpoint()
        if self.dist.enabled:
            self._check_ranks_in_sync()
        if status == "done":
            if self.data.val is not None:
                self.evaluate()
            ckpt = self.save_checkpoint()
            self.emit({"event": "done", "checkpoint": str(ckpt) if ckpt else None, "best_val": self.best_val,
                       "duration_s": time.time() - self._t0})
        else:
            ckpt = self.save_checkpoint()
            sig = signal.Signals(self._stop_signal).name if self._stop_signal else "stop_at_step"
            self.emit({"event": "cancelled", "checkpoint": str(ckpt) if ckpt else None, "reason": sig})
        self._finish_run(status)
        return RunResult(self.run_id, status, self.step, self.last_checkpoint, self.best_val)

    def _check_ranks_in_sync(self) -> None:
        """Every rank must hold the same trainable weights; emit the largest difference seen."""
        import torch.distributed as dist

        params = [p for p in self.model.parameters() if p.requires_grad]
        if self._sharded():  # each rank holds a shard: compare the gathered weights
            params = [p.full_tensor() for p in params]
        flat = torch.cat([p.detach().float().reshape(-1) for p in params])
        hi, lo = flat.clone(), flat.clone()
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        diff = float((hi - lo).abs().max())
        self.emit({"event": "ranks_in_sync", "world": self.dist.world, "max_param_diff": diff})
        if diff > 0:
            raise TrainingError(f"the {self.dist.world} ranks of run {self.run_id} drifted apart (max weight "
                                f"difference {diff:g}); report this with the run folder")

    def _on_nan(self, loss) -> RunResult:
        keep = str(self.last_checkpoint) if self.last_checkpoint else "none (no checkpoint was written yet)"
        msg = (f"loss became {float(loss.detach().float().mean())} at step {self.step + 1} of run {self.run_id}: "
               f"lower --lr (now {self.cfg.lr:g}) or check the dataset; last good checkpoint: {keep}")
        self.emit({"event": "error", "message": msg, "kind": "nan_loss",
                   "checkpoint": str(self.last_checkpoint) if self.last_checkpoint else None})
        self._finish_run("failed")
        raise TrainingError(msg)

    def _gpu_mem(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / GiB
        return 0.0

    @torch.no_grad()
    def evaluate(self) -> dict | None:
        if self.data.val is None or not self.val_items:
            return None
        from finetune import norm

        self.model.eval()
        losses, accs, l1s, l1_real = [], [], [], []
        collate = _PairCollate(self.vla.collate)
        bs = self.cfg.batch_size
        for i in range(0, len(self.val_items), bs):
            items = [self.data.val[j] for j in self.val_items[i:i + bs]]
            batch, targets = collate(items)
            batch = _to_device(batch, self.device)
            out = self.model(**batch)
            losses.append(float(out.loss))
            if getattr(out, "action_accuracy", None) is not None:
                accs.append(float(out.action_accuracy))
            if getattr(out, "l1", None) is not None:
                l1s.append(float(out.l1))
            pred = getattr(out, "actions", None)  # teacher-forced argmax (token head) / the chunk (chunk head)
            if pred is None:
                pred, _conf = self.vla.predict(batch)
            pred = pred.float().cpu().numpy() if isinstance(pred, torch.Tensor) else np.asarray(pred)
            tgt = targets[:, : pred.shape[1]]
            real_pred = norm.unnormalize(pred.reshape(-1, pred.shape[-1]), self.action_stats)
            real_tgt = norm.unnormalize(tgt.reshape(-1, tgt.shape[-1]), self.action_stats)
            l1_real.append(float(np.abs(real_pred - real_tgt).mean()))
        self.model.train()
        result = {"val_loss": float(np.mean(losses)), "action_accuracy": float(np.mean(accs)) if accs else None,
                  "l1": float(np.mean(l1s)) if l1s else None, "l1_real": float(np.mean(l1_real))}
        if self.best_val is None or result["val_loss"] < self.best_val:
            self.best_val = result["val_loss"]
        self.last_eval = result
        self.emit({"event": "eval", **result, "best_val": self.best_val})
        watch = getattr(self, "learning", None)
        if watch is not None:
            self._watch(watch.on_eval(self.step, result))
        return result

    def _watch(self, warning: dict | None) -> None:
        if warning is not None and self.dist.is_main:
            self.emit(warning)

    # ------------------------------------------------------------------ checkpoints

    def _sharded(self) -> bool:
        return bool(getattr(self, "fsdp", False))

    def save_checkpoint(self) -> Path | None:
        gathered = {}
        if self._sharded():  # collective: every rank sends its shards, rank 0 writes the usual layout
            gathered = {"adapter_state": dist_util.full_trainable_state(self.model),
                        "optimizer_state": dist_util.full_optimizer_state(self.model, self.optimizer)}
        if not self.dist.is_main:
            dist_util.barrier(self.dist)
            return None
        metrics = {"step": self.step, "best_val": self.best_val}
        metrics.update({k: v for k, v in (getattr(self, "last_eval", None) or {}).items() if v is not None})
        try:
            path = save_checkpoint(self.path, self.step, model=self.model, optimizer=self.optimizer,
                                   scheduler=self.scheduler, samples_seen=self.samples_seen,
                                   norm_stats=self.norm_stats, config=self.cfg.to_dict(),
                                   model_info=self.model_info(), extra={"best_val": self.best_val},
                                   extra_files=self.vla.head.files(), **gathered)
        except BaseException as err:
            for partial in (self.path / CHECKPOINTS_DIR).glob(".*.partial"):  # a half-written step folder
                shutil.rmtree(partial, ignore_errors=True)
            if is_disk_full(err, self.path) or free_bytes(self.path) < MIN_FREE_BYTES:
                self._disk_full = True
                raise self._disk_full_error(err) from None
            raise
        self.last_checkpoint = path
        try:
            self._open_store().add_checkpoint(self.run_id, self.step, path, metrics)
        except KnownError as err:
            self.emit({"event": "warning", "message": f"checkpoint not recorded in the index: {err}"})
        self.emit({"event": "checkpoint", "path": str(path), **metrics})
        dist_util.barrier(self.dist)
        return path

    def cleanup(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()
        for ds in (getattr(getattr(self, "data", None), "train", None), getattr(getattr(self, "data", None), "val", None)):
            if ds is not None:
                ds.close()
        if self.dist.is_main if hasattr(self, "dist") else True:
            try:
                (self.path / PID_FILE).unlink()
            except OSError:
                pass
        if self._store is not None:
            self._store.close()
            self._store = None
        if self.logger is not None and self._external_logger is None:
            try:
                self.logger.close()
            except OSError:  # a full disk: the lines that could be written are in the file
                pass
        if hasattr(self, "dist"):
            dist_util.destroy(self.dist)

    def run(self) -> RunResult:
        try:
            self.setup()
            return self.train()
        except KnownError as err:
            if not isinstance(err, TrainingError):
                self.emit({"event": "error", "message": str(err)})
                if self.logger is not None:
                    self._finish_run("failed")
            raise
        except BaseException as err:
            self.emit({"event": "error", "message": f"{type(err).__name__}: {err}"})
            if self.logger is not None:
                self._finish_run("failed")
            raise
        finally:
            self.cleanup()


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ------------------------------------------------------------------ export


def export_merged(home: Path, run_id_or_path: str, out: Path, *, step: str | None = None) -> Path:
    """Merge a run's LoRA adapter into its base model and save a standalone model folder."""

    from finetune.checkpoint import load_trained_model
    from finetune.checkpoint_ref import in_run

    src = Path(run_id_or_path)
    if not src.exists():
        src = run_dir(home, run_id_or_path)
    if not src.exists():
        raise ConfigError(f"run {run_id_or_path!r} not found under {runs_root(home)}: see `vla-studio finetune list`")
    ckpt = in_run(src, step).folder
    meta = read_checkpoint_config(ckpt)
    cfg = FinetuneConfig.from_dict(meta["config"])
    info = meta.get("model", {})
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not empty: choose a new --out folder")

    # the head is rebuilt exactly as finetune.runtime.load_policy rebuilds it (one loader): camera count and
    # proprio size decide the model's shape (a 2-camera chunk head with state must not come back as 1 camera).
    # A QLoRA run was trained on the 4-bit base: merge into the dequantized values it saw (quantized the same
    # way, on the GPU: bitsandbytes), saved in bf16, so the export predicts what the 4-bit run did
    qlora = bool(cfg.quantize_4bit)
    if qlora:
        from finetune.models.quant import check_quantize_supported

        check_quantize_supported("4bit", "cuda", option="exporting a --4bit (QLoRA) run")
    trained = load_trained_model(ckpt, dtype=torch.bfloat16 if qlora else torch.float32,
                                 device="cuda" if qlora else "cpu", quantize="none", seed=cfg.seed)
    merged, norm_stats, info = trained.vla, trained.norm_stats, trained.info
    if hasattr(merged, "norm_stats"):
        try:
            merged.norm_stats = norm_stats
        except AttributeError:
            pass
    out.mkdir(parents=True, exist_ok=True)
    saver = getattr(merged, "save_pretrained", None)
    if not callable(saver):
        raise ModelError(f"the model {cfg.model} cannot save a merged folder (no save_pretrained)")
    saver(str(out))
    cfg_path = out / "config.json"
    if cfg_path.is_file():
        data = json.loads(cfg_path.read_text())
        data["norm_stats"] = norm_stats
        cfg_path.write_text(json.dumps(data, indent=2))
    (out / NORM_STATS_FILE).write_text(json.dumps(norm_stats, indent=2))
    (out / "vla_studio.json").write_text(json.dumps({"exported_from": str(ckpt), "model": info,
                                                     "config": cfg.to_dict()}, indent=2))
    return out


def main_entry(cfg: FinetuneConfig, home: Path, **kw) -> RunResult:
    recipe = FinetuneRecipe(cfg, home, **kw)
    return recipe.run()


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `vla-studio finetune`")
