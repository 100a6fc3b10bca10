"""One action-head interface: how a VLA turns its prefix (images + instruction [+ state]) into a chunk.

The recipe, the runtime, the server and the overlays use a head only through :class:`ActionHead`:

- ``prepare(vla, ids, out, state)``: the action part of one sample's sequence (ids after the prompt, labels,
  masks) -> the full ids;
- ``loss(vla, **batch)`` -> :class:`~finetune.models.vla.VLAOutput` (``loss`` plus what evaluation reports);
- ``predict(vla, batch)`` -> :class:`HeadPrediction`: a normalized ``(B, K, D)`` chunk (``finetune.runtime``
  puts it in real units with the checkpoint's norm stats), a per-step confidence in [0, 1] that the overlays
  draw, and which rows decoded to a valid chunk (an invalid row becomes a hold-still chunk in the runtime);
- ``config()``: what it stores in the checkpoint's ``config.json`` (``model`` section) / a merged export's
  ``vla_studio`` config; ``files()`` / ``load_files(folder)``: side files stored beside it (FAST's tokenizer);
- ``modules``: the VLA attributes trained in full next to LoRA (peft ``modules_to_save``).

Four heads:

======  ==========================================================================================
tokens  OpenVLA's 256 bins per dimension on the vocabulary tail, cross-entropy, greedy decode
chunk   OpenVLA-OFT's L1 chunk: K*D learned queries in one pass, an MLP to (K, D)
flow    pi0's flow matching: an action expert on the prefix KV cache, 10 Euler steps (``flow.py``)
fast    pi0-FAST: DCT + BPE tokens on the vocabulary tail, cross-entropy, greedy decode
======  ==========================================================================================
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from recorder.errors import ModelError

from ..run_config import ACTION_HEADS

__all__ = ["ActionHead", "HeadPrediction", "make_head", "ACTION_HEADS", "TokenHead", "ChunkActionHead", "FlowHead",
           "FastHead", "HOLD_CONFIDENCE"]

IGNORE_INDEX = -100
HOLD_CONFIDENCE = 0.0  # the confidence shown for a hold-still chunk (an undecodable FAST sequence)
FLOW_SPREAD_ZERO = 0.5  # flow confidence: 1 - spread / this (normalized units), clipped to [0, 1]


@dataclass
class HeadPrediction:
    actions: torch.Tensor  # (B, K, D) float32, normalized
    confidence: torch.Tensor | None  # (B, K) in [0, 1], or None when the head has none
    valid: torch.Tensor | None = None  # (B,) bool: False where the output was not a valid chunk (FAST)


class ActionHead(abc.ABC):
    """Base class; see the module docstring."""

    name = ""
    modules: tuple[str, ...] = ()
    uses_state = False  # trained with proprio (--use-state) when the run asks for it

    @abc.abstractmethod
    def prepare(self, vla, ids: list[int], out: dict, state) -> list[int]:
        ...

    @abc.abstractmethod
    def loss(self, vla, **batch):
        ...

    @abc.abstractmethod
    def predict(self, vla, batch: dict, *, reference: bool = False) -> HeadPrediction:
        ...

    def config(self) -> dict:
        return {}

    def files(self) -> dict[str, str]:
        """File name -> text, written into every checkpoint folder and merged export."""
        return {}

    def load_files(self, folder) -> None:  # noqa: B027 - optional hook, most heads have no files
        """Read what :meth:`files` wrote (a checkpoint folder or a merged export)."""

    @property
    def description(self) -> str:
        return ACTION_HEADS[self.name]


# ---------------------------------------------------------------------------------------------- tokens / fast


def lm_loss(vla, pixel_values, input_ids, labels):
    """Cross-entropy over the labelled positions (the action tokens and EOS) -> (loss, logits, pred, gt, sel)."""
    embeds, P = vla._assemble(pixel_values, input_ids)
    hidden = vla.run_llm(embeds)
    labels = labels.to(hidden.device)
    tgt = labels[:, 1:]
    sel = tgt != IGNORE_INDEX
    h = hidden[:, P:-1][sel]  # text positions t (after the image) predict label t+1
    logits = vla.lm_head_module(h).float()
    gt = tgt[sel]
    return F.cross_entropy(logits, gt), logits, logits.argmax(-1).detach(), gt, sel


def last_logits(vla, pixel_values, input_ids):
    embeds, _ = vla._assemble(pixel_values, input_ids)
    hidden = vla.run_llm(embeds)
    return vla.lm_head_module(hidden[:, -1:]).float()


def greedy_decode(vla, batch: dict, n_new: int, reference: bool):
    """Per row, in row order: the greedy decode of ``n_new`` tokens (tokens, max-probabilities), each (1, n_new).
    Rows whose prompts have the same length decode together in one batched pass (a validation batch holds a few
    instructions, so a few passes instead of one per row); a lone row takes the static-cache CUDA-graph path."""
    pv = batch["pixel_values"]
    plen = batch.get("prompt_len")
    groups: dict[int, list[int]] = {}
    for i in range(pv.shape[0]):
        L = int(plen[i]) if plen is not None else int(batch["attention_mask"][i].sum())
        groups.setdefault(L, []).append(i)
    out: list = [None] * pv.shape[0]
    for L, rows in groups.items():
        sel = torch.tensor(rows, device=pv.device)
        ids = batch["input_ids"].index_select(0, sel.to(batch["input_ids"].device))[:, :L]
        toks, probs = _decode_rows(vla, pv.index_select(0, sel), ids, n_new, L, reference)
        for j, i in enumerate(rows):
            out[i] = (toks[j : j + 1], probs[j : j + 1])
    yield from out


def _decode_rows(vla, p, ids, n_new: int, L: int, reference: bool):
    if reference:
        return vla._decode_reference(p, ids, n_new)
    one = p.shape[0] == 1  # one row: the CUDA graph keyed by its shape; several: eager (no graph per group size)
    try:
        return vla._fast_decode(p, ids, n_new, L) if one else vla._decode_fn(p, ids, n_new)
    except Exception as exc:  # a torch.compile failure: fall back to the uncompiled step
        if not vla.compile_decode or not type(exc).__module__.startswith(("torch._dynamo", "torch._inductor")):
            raise
        import warnings

        from recorder.errors import StudioWarning

        warnings.warn(f"torch.compile of the decode step failed ({type(exc).__name__}); using eager",
                      StudioWarning, stacklevel=2)
        vla.compile_decode = False
        vla._graphs.clear()
        return vla._fast_decode(p, ids, n_new, L) if one else vla._decode_fn(p, ids, n_new)


class TokenHead(ActionHead):
    name = "tokens"

    def action_ids(self, vla, actions: np.ndarray) -> list[int]:
        """A normalized (K, D) chunk -> its LLM token ids (the labels after the prompt, before EOS)."""
        return vla.action_tokenizer.encode(actions).reshape(-1).tolist()

    def prepare(self, vla, ids, out, state):
        labels = [IGNORE_INDEX] * len(ids)
        if "actions" in out:
            toks = self.action_ids(vla, out["actions"].numpy())
            ids = ids + toks + [vla.eos_token_id]
            labels = labels + toks + [vla.eos_token_id]
        out["labels"] = torch.tensor(labels, dtype=torch.long)
        return ids

    def loss(self, vla, pixel_values=None, input_ids=None, labels=None, **_):
        from .vla import VLAOutput

        if labels is None:
            return VLAOutput(logits=last_logits(vla, pixel_values, input_ids))
        B = input_ids.shape[0]
        loss, logits, pred, gt, sel = lm_loss(vla, pixel_values, input_ids, labels)
        tok = vla.action_tokenizer
        with torch.no_grad():
            m = tok.is_action_token(gt)
            acc = ((pred == gt) & m).sum().float() / m.sum().clamp(min=1).float()
            l1 = (tok.decode_torch(pred[m]) - tok.decode_torch(gt[m])).abs().mean()
        n = sel.sum(1)
        if bool((n == n[0]).all()):
            logits = logits.view(B, int(n[0]), -1)
            pa = pred.view(B, -1)[:, : vla.chunk_size * vla.action_dim]
            acts = tok.decode_torch(pa).view(B, vla.chunk_size, vla.action_dim)
        else:
            acts = None
        return VLAOutput(loss=loss, action_accuracy=acc, l1=l1, logits=logits, actions=acts)

    def predict(self, vla, batch, *, reference=False):
        n_new = vla.chunk_size * vla.action_dim
        acts, confs = [], []
        for toks, probs in greedy_decode(vla, batch, n_new, reference):
            acts.append(vla.action_tokenizer.decode_torch(toks).view(1, vla.chunk_size, vla.action_dim))
            confs.append(probs.float().view(1, vla.chunk_size, vla.action_dim).mean(-1))
        return HeadPrediction(torch.cat(acts), torch.cat(confs))


class FastHead(TokenHead):
    """FAST tokens on the vocabulary tail: BPE id ``b`` is LLM token ``vocab_size - 1 - b`` (like the bins)."""

    name = "fast"
    DEFAULT_VOCAB = 1024

    def __init__(self, vla, vocab_size: int | None = None):
        tail = int(vla.action_tokenizer.vocab_size)
        self.tail = tail
        cap = min(self.DEFAULT_VOCAB, max(int(vla.action_tokenizer.n_bins), tail // 32))
        self.max_vocab = int(vocab_size or cap)
        self.tokenizer = None  # a FastTokenizer, fitted at the start of a run or read from the checkpoint
        self.undecodable = 0  # predictions that did not decode to a chunk (held still instead)

    def _need(self):
        if self.tokenizer is None:
            raise ModelError("the FAST head has no tokenizer: fit it on the dataset (fine-tune) or load the "
                             "checkpoint's fast_tokenizer.json")
        return self.tokenizer

    def set_tokenizer(self, tok) -> None:
        self.tokenizer = tok

    def to_llm(self, bpe_ids):
        return [self.tail - 1 - int(b) for b in bpe_ids]

    def action_ids(self, vla, actions):
        return self.to_llm(self._need().encode(actions))

    def loss(self, vla, pixel_values=None, input_ids=None, labels=None, **_):
        from .vla import VLAOutput

        if labels is None:
            return VLAOutput(logits=last_logits(vla, pixel_values, input_ids))
        loss, logits, pred, gt, _sel = lm_loss(vla, pixel_values, input_ids, labels)
        with torch.no_grad():
            acc = (pred == gt).float().mean()
        return VLAOutput(loss=loss, action_accuracy=acc)

    def decode_row(self, toks, probs):
        """LLM tokens of one row (up to EOS) -> (chunk (K, D) or None, confidence)."""
        tok = self._need()
        ids = [int(t) for t in toks]
        end = ids.index(self.eos) if self.eos in ids else len(ids)
        conf = float(np.mean(probs[: max(1, end)]))
        bpe = [self.tail - 1 - t for t in ids[:end]]
        if any(b < 0 or b >= tok.vocab_size for b in bpe):
            return None, conf
        return tok.decode(bpe), conf

    def predict(self, vla, batch, *, reference=False):
        tok = self._need()
        self.eos = int(vla.eos_token_id)
        K, D = vla.chunk_size, vla.action_dim
        n_new = tok.max_tokens + 1  # the longest fitted chunk + EOS: one static shape (one CUDA graph)
        acts, confs, valid = [], [], []
        for toks, probs in greedy_decode(vla, batch, n_new, reference):
            chunk, conf = self.decode_row(toks[0].tolist(), probs[0].float().cpu().numpy())
            ok = chunk is not None
            if not ok:
                self.undecodable += 1
                chunk, conf = np.zeros((K, D), np.float32), HOLD_CONFIDENCE
            acts.append(torch.from_numpy(chunk)[None])
            confs.append(torch.full((1, K), conf))
            valid.append(ok)
        return HeadPrediction(torch.cat(acts), torch.cat(confs), torch.tensor(valid))

    def config(self):
        out = {"fast_max_vocab": self.max_vocab}
        if self.tokenizer is not None:
            out.update(fast_vocab=self.tokenizer.vocab_size, fast_scale=self.tokenizer.scale,
                       fast_mean_tokens=self.tokenizer.mean_tokens, fast_max_tokens=self.tokenizer.max_tokens)
        return out

    def files(self):
        from ..fast_tokenizer import FAST_FILE

        return {FAST_FILE: self._need().to_json()}

    def load_files(self, folder):
        from ..fast_tokenizer import FastTokenizer

        tok = FastTokenizer.load(folder)
        self.tokenizer = tok


# ---------------------------------------------------------------------------------------------- chunk (L1)


class ChunkActionHead(ActionHead):
    name = "chunk"
    modules = ("chunk_head",)
    uses_state = True

    def prepare(self, vla, ids, out, state):
        n_act = vla.chunk_size * vla.action_dim
        if vla.state_dim is not None:
            if state is None:
                raise ModelError("this chunk head was trained with proprio state: pass state")
            out["state"] = torch.as_tensor(np.asarray(state, dtype=np.float32).reshape(vla.state_dim))
            out["state_mask"] = torch.tensor([False] * len(ids) + [True] + [False] * n_act)
            ids = ids + [vla.pad_token_id]
        qm = [False] * len(ids) + [True] * n_act
        ids = ids + [vla.pad_token_id] * n_act
        out["query_mask"] = torch.tensor(qm)
        return ids

    def loss(self, vla, pixel_values=None, input_ids=None, actions=None, query_pos=None, state_pos=None,
             state=None, **_):
        from .vla import VLAOutput

        if query_pos is None:
            raise ModelError("a chunk-head batch needs query_pos: build it with VLA.collate")
        pred = vla._chunk_fn(pixel_values, input_ids, query_pos, state_pos, state)
        out = VLAOutput(actions=pred)
        if actions is not None:
            tgt = actions.to(pred.device, torch.float32)
            out.loss = F.l1_loss(pred, tgt)
            out.l1 = out.loss.detach()
        return out

    def predict(self, vla, batch, *, reference=False):
        args = (batch["pixel_values"], batch["input_ids"], batch["query_pos"], batch.get("state_pos"),
                batch.get("state"))
        if vla._graphable() and not reference:
            key = ("chunk",) + tuple(tuple(a.shape) if a is not None else None for a in args)
            pred = vla._graph_call(key, vla._chunk_fn, *args)
        else:
            pred = vla._chunk_fn(*args)
        return HeadPrediction(pred.float(), None)


# ---------------------------------------------------------------------------------------------- flow


class FlowHead(ActionHead):
    name = "flow"
    modules = ("flow_head",)
    uses_state = True

    def prepare(self, vla, ids, out, state):
        if vla.state_dim is not None:
            if state is None:
                raise ModelError("this flow head was trained with proprio state: pass state")
            out["state"] = torch.as_tensor(np.asarray(state, dtype=np.float32).reshape(vla.state_dim))
        return ids

    # -- the prefix, once per chunk
    @staticmethod
    def prefix_kv(vla, pixel_values, input_ids, attention_mask):
        """The LLM over the prefix -> (per-LLM-layer (K, V) caches, key mask of the prefix (B, T), prefix
        lengths (B,)). Inference on a fused model uses the same fused prefill as the token decode."""
        from .vla import _fused_prefill, _prefix_layer

        embeds, P = vla._assemble(pixel_values, input_ids)
        dec, cfg = vla.decoder, vla.llm_config
        B, T, _ = embeds.shape
        n_kv = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        pos = torch.arange(T, device=embeds.device)[None]
        step_fn = None if torch.is_grad_enabled() else vla._decode_step_fn()
        if step_fn is not None:  # inference on a fused model: the token decode's fused prefill into static caches
            caches = [(embeds.new_zeros(B, n_kv, T, hd), embeds.new_zeros(B, n_kv, T, hd)) for _ in dec.layers]
            _fused_prefill(dec, embeds, pos, caches, vla._prefill_fn())
        else:  # training (LoRA gradients, activation checkpointing per layer as the recipe asks) and eager use
            cos, sin = dec.rotary_emb(embeds, pos)
            last = max(vla.flow_head.layer_map)  # deeper layers feed no expert layer: not computed
            h, caches = embeds, []
            for i, layer in enumerate(dec.layers):
                if i > last:
                    break
                if vla._ckpt(i):
                    h, k, v = torch.utils.checkpoint.checkpoint(_prefix_layer, layer, h, cos, sin, hd,
                                                                use_reentrant=False)
                else:
                    h, k, v = _prefix_layer(layer, h, cos, sin, hd)
                caches.append((k, v))
        att = attention_mask.to(embeds.device).bool() if attention_mask is not None else \
            torch.ones(B, input_ids.shape[1], dtype=torch.bool, device=embeds.device)
        key = torch.cat([att[:, :1], torch.ones(B, P, dtype=torch.bool, device=att.device), att[:, 1:]], dim=1)
        return caches, key, key.sum(1)

    @staticmethod
    def _expert_inputs(vla, caches, key, plen, n_rep: int = 1):
        expert = vla.flow_head
        kv = [caches[i] for i in expert.layer_map]
        if n_rep > 1:
            kv = [(k.repeat_interleave(n_rep, 0), v.repeat_interleave(n_rep, 0)) for k, v in kv]
            key, plen = key.repeat_interleave(n_rep, 0), plen.repeat_interleave(n_rep, 0)
        B = key.shape[0]
        S = expert.n_tokens
        mask = torch.cat([key, torch.ones(B, S, dtype=torch.bool, device=key.device)], dim=1)[:, None, None, :]
        pos = plen[:, None] + torch.arange(S, device=key.device)[None]
        dtype = kv[0][0].dtype
        cos, sin = vla.decoder.rotary_emb(torch.empty(1, device=key.device, dtype=dtype), pos)
        return kv, mask, cos, sin

    def loss(self, vla, pixel_values=None, input_ids=None, attention_mask=None, actions=None, state=None, **_):
        from .flow import sample_time
        from .vla import VLAOutput

        if actions is None:
            raise ModelError("the flow head trains on (observation, action chunk) pairs: the batch has no actions")
        caches, key, plen = self.prefix_kv(vla, pixel_values, input_ids, attention_mask)
        kv, mask, cos, sin = self._expert_inputs(vla, caches, key, plen)
        a = actions.to(key.device, torch.float32)
        # training: the seeded CPU RNG (same draws on any device / on resume); evaluation: fixed draws, so the
        # validation loss of one run is comparable from one evaluation to the next
        gen = None if vla.training else torch.Generator().manual_seed(0)
        noise = torch.randn(a.shape, generator=gen).to(a.device)
        t = sample_time(a.shape[0], a.device, gen)
        x_t = t[:, None, None] * noise + (1 - t[:, None, None]) * a
        u_t = noise - a
        st = state.to(a.device) if state is not None else None
        v_t = vla.flow_head(x_t, t, kv, mask, cos, sin, st)
        loss = F.mse_loss(v_t, u_t)
        with torch.no_grad():  # the one-step estimate of the clean chunk: x_0 = x_t - t * v
            est = (x_t - t[:, None, None] * v_t).clamp(-1, 1)
            l1 = (est - a).abs().mean()
        return VLAOutput(loss=loss, l1=l1)

    def _sample_fn(self, vla, pv, ids, att, noise, state):
        """Towers + prefix once, then ``steps`` Euler steps of the expert for ``S`` noise draws per row.
        ``noise`` (B * S, K, D). Pure tensor function: captured as one CUDA graph on the GPU."""
        expert = vla.flow_head
        B = pv.shape[0]
        n_rep = noise.shape[0] // B
        caches, key, plen = self.prefix_kv(vla, pv, ids, att)
        kv, mask, cos, sin = self._expert_inputs(vla, caches, key, plen, n_rep)
        st = state.repeat_interleave(n_rep, 0) if state is not None else None
        x = noise
        dt = -1.0 / expert.steps
        times = 1.0 + dt * torch.arange(expert.steps, device=x.device, dtype=torch.float32)
        tprojs = expert.time_projection(times)  # (steps, 1, width): every step's time term at once
        layer_fn = self._layer_fn(vla)
        for i in range(expert.steps):
            t = times[i].expand(x.shape[0])
            x = x + dt * expert(x, t, kv, mask, cos, sin, st, tproj=tprojs[i : i + 1], layer_fn=layer_fn)
        return x

    @staticmethod
    def _layer_fn(vla):
        """The expert layer function: torch.compiled (once, every layer and step share it) with compile_decode."""
        from .flow import expert_layer_fn

        if not vla.compile_decode:
            return expert_layer_fn
        fn = getattr(vla, "_compiled_expert", None)
        if fn is None:
            fn = torch.compile(expert_layer_fn, dynamic=False, fullgraph=True)
            object.__setattr__(vla, "_compiled_expert", fn)
        return fn

    def predict(self, vla, batch, *, reference=False, samples: int | None = None):
        expert = vla.flow_head
        pv, ids = batch["pixel_values"], batch["input_ids"]
        att = batch.get("attention_mask")
        if att is None:
            att = torch.ones_like(ids)
        st = batch.get("state")
        B = pv.shape[0]
        S = max(1, int(samples or expert.samples))
        noise = torch.randn(B * S, expert.chunk_size, expert.action_dim).to(vla.device)
        args = (pv, ids, att, noise, st)
        if vla._graphable() and not reference:
            key = ("flow",) + tuple(tuple(a.shape) if a is not None else None for a in args)
            x = vla._graph_call(key, lambda *a: self._sample_fn(vla, *a), *args)
        else:
            x = self._sample_fn(vla, *args)
        x = x.float().clamp(-1, 1).view(B, S, expert.chunk_size, expert.action_dim)
        if S > 1:  # confidence: 1 - (spread across the draws) / FLOW_SPREAD_ZERO, per step
            spread = x.std(dim=1).mean(-1)
            conf = (1.0 - spread / FLOW_SPREAD_ZERO).clamp(0.0, 1.0)
        else:
            conf = None
        return HeadPrediction(x[:, 0].contiguous(), conf)


# ---------------------------------------------------------------------------------------------- factory


def make_head(name: str, vla, **kw) -> ActionHead:
    if name not in ACTION_HEADS:
        raise ModelError(f"action_head must be one of {', '.join(ACTION_HEADS)}, got {name!r}")
    if name == "tokens":
        return TokenHead()
    if name == "chunk":
        return ChunkActionHead()
    if name == "flow":
        return FlowHead()
    return FastHead(vla, kw.get("fast_vocab"))
