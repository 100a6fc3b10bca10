"""Open a policy for a rollout: a local checkpoint (via finetune.runtime) or a remote policy server."""

from __future__ import annotations

from pathlib import Path

from recorder.errors import ModelError


def resolve_checkpoint_arg(spec: str | Path, home: Path | None = None) -> Path:
    """A path, or a run id / ``run-id/step`` / ``run-id @ step`` under ``<home>/runs``, -> the folder to load
    (:func:`finetune.checkpoint_ref.resolve`)."""
    from finetune.checkpoint_ref import resolve

    return resolve(spec, home).folder


def checkpoint_label(path: Path) -> str:
    """``<run-id>/<step>`` for a run's checkpoint folder, else the folder name."""
    from finetune.checkpoint_ref import CheckpointRef

    return CheckpointRef.from_folder(path).label


def load_local_policy(spec: str | Path, device: str | None = None, home: Path | None = None, store=None,
                      quantize: str | None = None, unnorm_key: str | None = None):
    """Load a checkpoint with ``finetune.runtime``; the store's checkpoint id and a label go with it.
    ``quantize``: None (as trained), "none", "4bit" or "8bit" (see ``finetune.runtime.load_policy``);
    ``unnorm_key``: which dataset's statistics put actions in real units when the model has several."""
    from finetune.checkpoint_ref import resolve

    ref = resolve(spec, home)  # a run folder -> its last step folder (the store indexes step folders)
    try:
        from finetune.runtime import load_policy
    except ImportError as err:
        raise ModelError(f"cannot load {ref.folder}: the policy runtime is not installed ({err}); "
                         "install vla-studio[train-cpu] or use --policy-url with a policy server") from None
    ck = None
    if store is not None:
        ck = store.find_checkpoint(ref.folder)
    policy = load_policy(ref.folder, device=device, checkpoint_id=None if ck is None else int(ck.id),
                         quantize=quantize, unnorm_key=unnorm_key)
    policy.checkpoint_label = f"{ck.run_id}/{ck.step}" if ck is not None else ref.label
    policy.checkpoint_dir = ref.folder
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
