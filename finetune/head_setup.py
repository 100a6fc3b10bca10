"""What a fine-tune run does for its action head before training (Qt-free; used by the recipe).

- :func:`preflight`: bad input found before anything is written (no run folder, no training step): a head
  that differs from the run being resumed, a FAST head on too few chunks, a flow head on an LLM the flow
  expert cannot read (a model folder whose config names another LLM), an action size that differs from the
  one a model folder's saved head predicts.
- :func:`prepare_head`: the FAST tokenizer fitted on the training chunks (a new run) or read back from the
  checkpoint (a resumed run), so a run encodes with one tokenizer from its first step to its export.
"""

from __future__ import annotations

import json
from pathlib import Path

from recorder.errors import ConfigError

__all__ = ["preflight", "prepare_head", "FAST_MAX_FIT_CHUNKS"]

FAST_MAX_FIT_CHUNKS = 20000


def preflight(cfg, home: Path, run_path: Path, resume: bool) -> None:
    from finetune.data import first_episode_lowdim, split_episodes
    from finetune.fast_tokenizer import MIN_FAST_CHUNKS

    if resume and (run_path / "config.json").is_file():
        try:
            saved = json.loads((run_path / "config.json").read_text()).get("config", {})
        except (OSError, json.JSONDecodeError):
            saved = {}
        was = saved.get("action_head", "tokens")
        if was != cfg.action_head:
            raise ConfigError(f"run {run_path.name} was trained with the {was} head, so its checkpoint has no "
                              f"{cfg.action_head} head to resume: drop --action-head or start a new run")
    infos, low = first_episode_lowdim(home, cfg.dataset)
    train_ids = set(split_episodes([e.id for e in infos], cfg.val_fraction, cfg.seed)[0])
    n_chunks = sum(int(e.num_frames) for e in infos if e.id in train_ids)
    if cfg.action_head == "fast" and not resume and n_chunks < MIN_FAST_CHUNKS:
        raise ConfigError(f"--action-head fast: dataset {cfg.dataset!r} gives {n_chunks} training chunks, the FAST "
                          f"tokenizer needs at least {MIN_FAST_CHUNKS} to fit its BPE vocabulary; record more "
                          "episodes or use --action-head tokens")
    folder = Path(cfg.model).expanduser()
    if cfg.action_head == "flow" and (folder / "config.json").is_file():
        from finetune.models.vla import OWN_LOOP_DECODERS, flow_llm_error

        try:
            text = json.loads((folder / "config.json").read_text()).get("text_config")
        except (OSError, json.JSONDecodeError, AttributeError):
            text = None
        llm = text.get("model_type") if isinstance(text, dict) else None
        if llm and llm not in OWN_LOOP_DECODERS:  # (a config that does not say is checked when the model loads)
            raise flow_llm_error(f"{folder}: ", llm)
    if "action" in low and (folder / "config.json").is_file():
        import numpy as np

        try:
            ours = json.loads((folder / "config.json").read_text()).get("vla_studio") or {}
        except (OSError, json.JSONDecodeError):
            ours = {}
        a = np.asarray(low["action"])
        dim = int(a.shape[1]) if a.ndim == 2 else 1
        if ours.get("action_head") == cfg.action_head and cfg.action_head != "tokens" and ours.get("action_dim") \
                and int(ours["action_dim"]) != dim:
            raise ConfigError(f"{folder}: its {cfg.action_head} head predicts {ours['action_dim']} action dims but "
                              f"dataset {cfg.dataset!r} has {dim}: fine-tune from the base model or use a "
                              "dataset of the same robot")


def prepare_head(vla, data, cfg, resume_ckpt: Path | None) -> dict | None:
    """-> a summary for the start event (FAST: tokens per chunk, vocabulary), or None."""
    if getattr(vla, "action_head", None) != "fast":
        return None
    from finetune.fast_tokenizer import FastTokenizer

    head = vla.head
    if resume_ckpt is not None:
        head.load_files(resume_ckpt)
    else:
        chunks = data.train.action_chunks(FAST_MAX_FIT_CHUNKS, cfg.seed)
        head.set_tokenizer(FastTokenizer.fit(chunks, vocab_size=head.max_vocab, source=f"dataset {cfg.dataset!r}"))
    tok = head.tokenizer
    return {"fast_vocab": tok.vocab_size, "fast_mean_tokens": tok.mean_tokens, "fast_max_tokens": tok.max_tokens,
            "fast_fit_chunks": tok.n_fit, "bin_tokens": int(vla.chunk_size) * int(vla.action_dim)}
