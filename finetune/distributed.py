"""Process-group helpers: the recipe runs as one process, or as N ranks under torchrun (DDP).

Rank 0 alone logs metrics, writes checkpoints and touches the store index; every rank trains on its
slice of each global batch (see ``finetune.data.StreamBatchSampler``), so N ranks with batch B see
the same samples per step as one process with batch N x B.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_from_env(device_type: str) -> DistInfo:
    """Join the process group torchrun set up (RANK/WORLD_SIZE in the environment); a no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local)


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if not info.enabled:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / info.world


def broadcast_flag(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when any rank says True (used for stop requests)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def destroy(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def torchrun_command(nproc: int, cli_args: list[str], *, master_port: int | None = None) -> list[str]:
    """The command that runs ``vla-studio <cli_args>`` on ``nproc`` local processes with torchrun."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    if master_port is not None:  # --standalone picks a free port itself; only set one when asked
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc-per-node={nproc}",
               "--master-addr=127.0.0.1", f"--master-port={master_port}"]
    return cmd + ["-m", "studio.cli", *cli_args]


# ------------------------------------------------------------------ a change of N on resume


def global_batch(cfg: dict) -> int:
    """Samples per optimizer step: per-rank batch x ranks x accumulation."""
    return int(cfg.get("batch_size", 1)) * int(cfg.get("gpus", 1)) * int(cfg.get("grad_accum", 1))


def keep_global_batch(cfg, saved: dict) -> bool:
    """Resuming on a different rank count: change ``cfg.batch_size`` (else ``cfg.grad_accum``) so the global
    batch stays the saved run's. Returns False (cfg untouched) when no whole split exists; the recipe then
    reports the change as a ``config_drift`` of ``global_batch``."""
    want, world = global_batch(saved), int(cfg.gpus)
    if world == int(saved.get("gpus", 1)):
        return True
    accum = int(saved.get("grad_accum", 1))
    if want % (world * accum) == 0:
        cfg.batch_size, cfg.grad_accum = want // (world * accum), accum
        return True
    batch = int(saved.get("batch_size", 1))
    if want % (world * batch) == 0:
        cfg.batch_size, cfg.grad_accum = batch, want // (world * batch)
        return True
    return False


# ------------------------------------------------------------------ sharding (FSDP2)

SHARDINGS = ("ddp", "fsdp")


def decoder_layers(model) -> list:
    """The LLM decoder layers of a (peft-wrapped) VLA: each becomes one FSDP unit."""
    from torch import nn

    found = [m for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and n.endswith("decoder.layers")]
    if not found:  # other layouts (transformers' model.layers, ...): any layer list with attention blocks
        found = [m for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and n.endswith("layers")
                 and len(m) and hasattr(m[0], "self_attn")]
    return [layer for layers in found for layer in layers]


def shard_fsdp(model, device: torch.device) -> int:
    """FSDP2 (``fully_shard``) over every decoder layer, then the rest as the root unit. The module is changed
    in place (its parameters become sharded DTensors). A model loaded on the CPU moves to ``device`` one unit
    at a time as it is sharded, so no GPU ever holds it whole. Returns the number of layer units."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    layers = decoder_layers(model)
    for layer in layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    if any(p.device.type != device.type for p in model.parameters()):
        model.to(device)
    return len(layers)


def is_sharded(model) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def no_sync(model, info: DistInfo):
    """Context that skips the gradient reduction of a non-final micro-batch (DDP's no_sync, FSDP2's switch)."""
    import contextlib

    if not info.enabled:
        return contextlib.nullcontext()
    if hasattr(model, "no_sync"):
        return model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):
        @contextlib.contextmanager
        def _off():
            model.set_requires_gradient_sync(False)
            try:
                yield
            finally:
                model.set_requires_gradient_sync(True)
        return _off()
    return contextlib.nullcontext()


def _opts():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)


def full_trainable_state(model) -> dict:
    """The trainable weights of a sharded model, gathered whole on rank 0 (empty on the others). Collective:
    every rank must call it."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_opts())


def _trainable_names(model) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


def full_optimizer_state(model, optimizer) -> dict:
    """The optimizer state of a sharded model gathered on rank 0, in plain ``optimizer.state_dict()`` form
    (parameters numbered in ``model.parameters()`` order), so a checkpoint looks the same as a DDP one.
    Collective; empty on ranks other than 0."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    osd = get_optimizer_state_dict(model, optimizer, options=_opts())
    if not osd:
        return {}
    index = {n: i for i, n in enumerate(_trainable_names(model))}
    groups = []
    for g in osd["param_groups"]:
        groups.append({**g, "params": [index[n] for n in g["params"]]})
    return {"state": {index[n]: s for n, s in osd["state"].items()}, "param_groups": groups}


def load_optimizer_state(model, optimizer, state: dict) -> None:
    """Load a plain (numbered) optimizer state into the optimizer of a sharded model; every rank passes the
    whole state (read from the checkpoint) and keeps its shard."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    names = _trainable_names(model)
    groups = [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]]
    fqn = {"state": {names[int(i)]: s for i, s in state["state"].items()}, "param_groups": groups}
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    set_optimizer_state_dict(model, optimizer, optim_state_dict=fqn,
                             options=StateDictOptions(full_state_dict=True, ignore_frozen_params=True))
