"""Open a policy for a rollout: a local checkpoint (via finetune.runtime) or a remote policy server."""

from __future__ import annotations

from pathlib import Path

from recorder.errors import ModelError


def resolve_checkpoint_arg(spec: str | Path, home: Path | None = None) -> Path:
    """A path, or a run id / ``run-id/step`` under ``<home>/runs``, -> an existing folder."""
    p = Path(spec).expanduser()
    if p.exists():
        return p
    if home is not None:
        cand = Path(home) / "runs" / str(spec)
        if cand.exists():
            return cand
        parts = str(spec).split("/")
        if len(parts) == 2:
            cand = Path(home) / "runs" / parts[0] / "checkpoints" / parts[1]
            if cand.exists():
                return cand
    raise ModelError(f"checkpoint {spec}: no such folder or run in {home}/runs; "
                     "pass a checkpoint folder (runs/<id>/checkpoints/<step>) or a run id")


def checkpoint_label(path: Path) -> str:
    """``<run-id>/<step>`` for a run's checkpoint folder, else the folder name."""
    path = Path(path)
    if path.parent.name == "checkpoints":
        return f"{path.parent.parent.name}/{path.name}"
    if (path / "checkpoints").is_dir():
        last = path / "checkpoints" / "last"
        step = last.read_text().strip() if last.is_file() else "last"
        return f"{path.name}/{step}"
    return path.name


def load_local_policy(spec: str | Path, device: str | None = None, home: Path | None = None, store=None,
                      quantize: str | None = None, unnorm_key: str | None = None):
    """Load a checkpoint with ``finetune.runtime``; the store's checkpoint id and a label go with it.
    ``quantize``: None (as trained), "none", "4bit" or "8bit" (see ``finetune.runtime.load_policy``);
    ``unnorm_key``: which dataset's statistics put actions in real units when the model has several."""
    path = resolve_checkpoint_arg(spec, home)
    try:
        from finetune.runtime import load_policy
    except ImportError as err:
        raise ModelError(f"cannot load {path}: the policy runtime is not installed ({err}); "
                         "install vla-studio[train-cpu] or use --policy-url with a policy server") from None
    try:  # a run folder -> its last step folder (the store indexes step folders)
        from finetune.checkpoint import resolve_checkpoint

        path = resolve_checkpoint(path)
    except (ImportError, ModelError):
        pass  # a merged model folder: loaded as it is
    ck = None
    if store is not None:
        ck = store.find_checkpoint(path)
    policy = load_policy(path, device=device, checkpoint_id=None if ck is None else int(ck.id), quantize=quantize,
                         unnorm_key=unnorm_key)
    policy.checkpoint_label = f"{ck.run_id}/{ck.step}" if ck is not None else checkpoint_label(path)
    policy.checkpoint_dir = path
    return policy


def open_policy(checkpoint: str | Path | None = None, *, url: str | None = None, token: str | None = None,
                device: str | None = None, home: Path | None = None, store=None, ca_file: str | None = None,
                warn=None, quantize: str | None = None):
    """A local Policy from ``checkpoint``, or a ``RemotePolicy`` when ``url`` is given (``token`` None: from
    ``$VLA_STUDIO_TOKEN``; ``ca_file``: a CA to trust for wss://, None: ``$VLA_STUDIO_TLS_CA``; ``warn``: gets
    the line saying a token travels in clear, instead of a warning)."""
    if url:
        from finetune.server import RemotePolicy

        return RemotePolicy(url, token=token, ca_file=ca_file, warn=warn)
    if checkpoint is None:
        raise ModelError("rollout: pick a checkpoint (--checkpoint) or a policy server (--policy-url)")
    return load_local_policy(checkpoint, device=device, home=home, store=store, quantize=quantize)
