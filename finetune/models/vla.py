"""The VLA base class: sample preparation, batching, the action heads, training forward and fast decoding.

The action part of the sequence, the loss and the prediction belong to the action head (``self.head``, one of
``finetune/models/action_heads.py``: tokens, chunk, flow, fast); this class supplies what they share.

Speed switches (attributes): ``checkpoint_layers`` (training: None / "all" / first N LLM layers / a set of
indices, non-reentrant activation checkpointing per decoder layer); ``use_cuda_graphs`` (inference on CUDA:
each action step -- towers, prefill, greedy decode with a static KV cache, or the chunk pass -- is captured
once per prompt length and replayed); ``fuse_for_inference()`` (q/k/v and gate/up as one matrix each);
``compile_decode`` (torch.compile of pure per-layer functions: decode step, prefill layer, ViT block).

A subclass supplies the vision side (``embed_images``) and exposes its causal LM (``language_model``), whose
decoder is a Llama-family ``LlamaModel``-like module (``layers``, ``norm``, ``rotary_emb``) and ``lm_head``.

Sequence layout (as Prismatic): ``[BOS] [image patches (n_images * P)] prompt-tokens [▁] <action part> [pad...]``,
right-padded, causal attention (no mask needed: pads only follow real tokens). The prompt is OpenVLA's
``"In: What action should the robot take to {instruction}?\\nOut:"`` followed by the empty-space token
(29871 for Llama-2), as OpenVLA's ``predict_action`` inserts it.

- token head: ``<action part>`` = ``K*D`` action tokens then ``</s>``; the loss is the cross-entropy over
  those positions only (logits are computed only there).
- chunk head: ``<action part>`` = ``K*D`` placeholder positions whose embeddings are replaced by learned
  queries (optionally preceded by one proprio token); an MLP maps their last hidden states to ``(K, D)``.
- flow head: no action part; the action expert (``flow_head``) attends to the prefix's KV cache.
- fast head: ``<action part>`` = the chunk's FAST tokens (vocabulary tail) then ``</s>``, as the token head.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recorder.errors import ModelError

from ..tokenizer import ActionTokenizer
from .heads import ChunkHead

# the LLM decoders our own loops drive (prefix KV cache, flow expert, fused decode): config model_type -> class
OWN_LOOP_DECODERS = {"llama": "LlamaModel", "mistral": "MistralModel", "qwen2": "Qwen2Model"}


def flow_llm_error(where: str, llm: str) -> ModelError:
    """The one line for ``--action-head flow`` on an LLM the flow expert cannot read the KV cache of."""
    return ModelError(f"{where}--action-head flow needs a Llama, Mistral or Qwen2 LLM (OpenVLA, tiny); this model's "
                      f"LLM is {llm}: use --action-head chunk")

__all__ = ["VLA", "VLAOutput", "PROMPT_TEMPLATE", "IGNORE_INDEX"]

PROMPT_TEMPLATE = "In: What action should the robot take to {instruction}?\nOut:"
IGNORE_INDEX = -100


@dataclass
class VLAOutput:
    loss: torch.Tensor | None = None
    action_accuracy: torch.Tensor | None = None  # token head: teacher-forced argmax == target over action tokens
    l1: torch.Tensor | None = None  # mean |pred - target| in normalized units (token head: decoded bins)
    logits: torch.Tensor | None = None  # token head: (B, K*D+1, V) at the action/EOS positions only
    actions: torch.Tensor | None = None  # (B, K, D) normalized predictions (chunk head; token head: argmax)


def _layer_out(out):
    return out[0] if isinstance(out, tuple) else out


class VLA(nn.Module, metaclass=abc.ABCMeta):
    """Base class; see the module docstring. Attributes set by subclasses before ``_init_heads``."""

    image_size: int
    action_dim: int
    chunk_size: int
    action_head: str
    n_images: int
    norm_stats: dict | None
    # published checkpoints: finetune.models.preprocess.PublishedImageTransform (OpenVLA's exact pixels);
    # None: our fast path (cv2 in finetune.data.prepare_image, torch bicubic here)
    image_transform = None

    # ------------------------------------------------------------------ set-up helpers for subclasses
    def _init_common(self, tokenizer, *, vocab_size_for_actions: int, n_bins: int, action_head: str,
                     chunk_size: int, action_dim: int, n_images: int, image_size: int, norm_stats: dict | None,
                     state_dim: int | None = None, head_hidden: int = 1024, flow: dict | None = None,
                     fast_vocab: int | None = None) -> None:
        from .action_heads import ACTION_HEADS, make_head

        if action_head not in ACTION_HEADS:
            raise ModelError(f"action_head must be one of {', '.join(ACTION_HEADS)}, got {action_head!r}")
        self.tokenizer = tokenizer
        self.action_tokenizer = ActionTokenizer(n_bins=n_bins, vocab_size=vocab_size_for_actions)
        self.action_head = action_head
        self.chunk_size = int(chunk_size)
        self.action_dim = int(action_dim)
        self.n_images = int(n_images)
        self.image_size = int(image_size)
        self.norm_stats = norm_stats
        self.state_dim = state_dim
        self.bos_token_id = tokenizer.bos_token_id
        self.eos_token_id = tokenizer.eos_token_id
        pad = tokenizer.pad_token_id
        self.pad_token_id = int(pad if pad is not None else 0)
        space = tokenizer.convert_tokens_to_ids("\u2581")
        self.space_token_id = int(space) if space is not None and space != tokenizer.unk_token_id else None
        if action_head == "chunk":
            self.chunk_head = ChunkHead(self.hidden_size, self.chunk_size, self.action_dim, head_hidden, state_dim)
        else:
            self.chunk_head = None
        self.flow_head = self._build_flow(flow or {}) if action_head == "flow" else None
        self.head = make_head(action_head, self, fast_vocab=fast_vocab)
        self.use_cuda_graphs = False
        self._graphs: dict = {}
        self.checkpoint_layers: Any = None  # None / "all" / set of layer indices / int (first N layers)

    def _build_flow(self, kw: dict):
        from .flow import FlowExpert, default_layer_map

        if not self._own_loop():
            raise flow_llm_error("", type(self.decoder).__name__)
        cfg = self.llm_config
        n_kv = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        width = int(kw.get("flow_width") or (self.hidden_size // 4 if self.hidden_size >= 1024 else self.hidden_size))
        layer_map = kw.get("flow_layer_map") or default_layer_map(len(self.decoder.layers))
        expert = FlowExpert(chunk_size=self.chunk_size, action_dim=self.action_dim, width=width, n_heads=n_kv,
                            head_dim=hd, layer_map=list(layer_map), state_dim=self.state_dim,
                            mlp_ratio=int(kw.get("flow_mlp_ratio") or 4), steps=int(kw.get("flow_steps") or 10),
                            samples=int(kw.get("flow_samples") or 4))
        return expert

    # ------------------------------------------------------------------ to be provided by subclasses
    @property
    @abc.abstractmethod
    def hidden_size(self) -> int:
        ...

    @abc.abstractmethod
    def embed_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """uint8 (B, n_images, 3, S, S) -> (B, n_images * P, hidden)."""

    @property
    def llm(self) -> nn.Module:  # the causal LM (has .model and .lm_head)
        return self.language_model

    @property
    def decoder(self) -> nn.Module:
        return self.llm.model

    @property
    def lm_head_module(self) -> nn.Module:
        return self.llm.lm_head

    @property
    def llm_config(self):
        return self.llm.config

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.decoder.get_input_embeddings()(ids)

    def vision_modules(self) -> list[str]:
        return []

    def lora_target_modules(self, include_vision: bool = False) -> list[str]:
        """Names of every nn.Linear in the LLM and projector (``all-linear`` semantics: no lm_head, no action
        head), plus the vision towers when ``include_vision``. A list of full module names (peft matches them
        exactly), which works on any nn.Module, unlike peft's ``"all-linear"`` shortcut."""
        skip = tuple(self.vision_modules()) if not include_vision else ()
        names = []
        for name, mod in self.named_modules():
            if not isinstance(mod, nn.Linear):
                continue
            if name.endswith("lm_head") or name.startswith(("chunk_head", "flow_head")) or (skip and name.startswith(skip)):
                continue
            names.append(name)
        return names

    def trainable_modules(self) -> list[str]:
        """Modules trained in full next to LoRA (peft ``modules_to_save``): the chunk head / flow expert."""
        return list(self.head.modules)

    def head_config(self) -> dict:
        cfg = {"action_head": self.action_head, "chunk_size": self.chunk_size, "action_dim": self.action_dim,
               "n_images": self.n_images, "image_size": self.image_size}
        if self.chunk_head is not None:
            cfg.update(self.chunk_head.config())
        if self.flow_head is not None:
            cfg.update(self.flow_head.config())
        cfg.update(self.head.config())
        return cfg

    # ------------------------------------------------------------------ data side
    def prompt_ids(self, instruction: str) -> list[int]:
        """The prompt's token ids (a fresh list). Cached per instruction: a dataset has a few instructions and
        the tokenizer call was ~40% of a training sample's preparation."""
        cache = self.__dict__.setdefault("_prompt_cache", {})
        hit = cache.get(instruction)
        if hit is None:
            if len(cache) >= 4096:
                cache.clear()
            hit = cache[instruction] = tuple(self._prompt_ids(instruction))
        return list(hit)

    def _prompt_ids(self, instruction: str) -> list[int]:
        text = PROMPT_TEMPLATE.format(instruction=instruction.strip().lower())
        ids = list(self.tokenizer(text, add_special_tokens=True)["input_ids"])
        if self.bos_token_id is not None and (not ids or ids[0] != self.bos_token_id):
            ids = [self.bos_token_id] + ids
        if self.space_token_id is not None and ids[-1] != self.space_token_id:
            ids.append(self.space_token_id)
        return ids

    def _resize(self, img: np.ndarray) -> torch.Tensor:
        a = np.asarray(img)
        if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
            raise ModelError(f"images must be HxWx3 uint8 RGB, got shape {a.shape} dtype {a.dtype}")
        if self.image_transform is not None:
            a = self.image_transform(a)  # a no-op on the S x S frames finetune.data / the runtime already made
        t = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)
        s = self.image_size
        if t.shape[1] == s and t.shape[2] == s:
            return t.contiguous()
        x = F.interpolate(t[None].float(), size=(s, s), mode="bicubic", antialias=True, align_corners=False)
        return x[0].round_().clamp_(0, 255).to(torch.uint8)

    def prepare(self, images: list[np.ndarray], instruction: str, actions: np.ndarray | None = None,
                state: np.ndarray | None = None) -> dict[str, torch.Tensor]:
        """One sample. ``actions`` (K, D) already normalized to [-1, 1] (None at inference)."""
        if len(images) != self.n_images:
            raise ModelError(f"this model takes {self.n_images} camera image(s) per step, got {len(images)}")
        pv = torch.stack([self._resize(im) for im in images])
        ids = self.prompt_ids(instruction)
        prompt_len = len(ids)
        out: dict[str, torch.Tensor] = {"pixel_values": pv}
        if actions is not None:
            a = np.asarray(actions, dtype=np.float32).reshape(-1, self.action_dim) if np.ndim(actions) else None
            if a is None or a.shape != (self.chunk_size, self.action_dim):
                raise ModelError(f"actions must be ({self.chunk_size}, {self.action_dim}), got {np.shape(actions)}")
            out["actions"] = torch.from_numpy(a)
        ids = self.head.prepare(self, ids, out, state)
        out["input_ids"] = torch.tensor(ids, dtype=torch.long)
        out["prompt_len"] = torch.tensor(prompt_len, dtype=torch.long)
        return out

    def collate(self, samples: list[dict]) -> dict[str, torch.Tensor]:
        if not samples:
            raise ValueError("collate needs at least one sample")
        L = max(int(s["input_ids"].shape[0]) for s in samples)
        B = len(samples)
        ids = torch.full((B, L), self.pad_token_id, dtype=torch.long)
        att = torch.zeros((B, L), dtype=torch.long)
        for i, s in enumerate(samples):
            n = s["input_ids"].shape[0]
            ids[i, :n] = s["input_ids"]
            att[i, :n] = 1
        batch = {"pixel_values": torch.stack([s["pixel_values"] for s in samples]), "input_ids": ids,
                 "attention_mask": att, "prompt_len": torch.stack([s["prompt_len"] for s in samples])}
        for key, fill in (("labels", IGNORE_INDEX), ("query_mask", False), ("state_mask", False)):
            if key in samples[0]:
                t = torch.full((B, L), fill, dtype=samples[0][key].dtype)
                for i, s in enumerate(samples):
                    t[i, : s[key].shape[0]] = s[key]
                batch[key] = t
        for key in ("actions", "state"):
            if key in samples[0] and all(key in s for s in samples):
                batch[key] = torch.stack([s[key] for s in samples])
        if "query_mask" in batch:
            batch["query_pos"] = batch["query_mask"].nonzero()[:, 1].view(B, -1)
        if "state_mask" in batch:
            batch["state_pos"] = batch["state_mask"].nonzero()[:, 1].view(B, -1)
        return batch

    # ------------------------------------------------------------------ model side
    @property
    def device(self) -> torch.device:
        return self.decoder.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder.get_input_embeddings().weight.dtype

    def _own_loop(self) -> bool:
        d = self.decoder
        return all(hasattr(d, a) for a in ("layers", "norm", "rotary_emb")) and \
            type(d).__name__ in OWN_LOOP_DECODERS.values()

    def _assemble(self, pixel_values, input_ids, query_pos=None, state_pos=None, state=None):
        """-> inputs_embeds (B, P+L, H) and the number of image positions P inserted after BOS.
        ``query_pos`` (B, K*D) / ``state_pos`` (B, 1): text positions whose embeddings are replaced by the chunk
        head's queries / the projected proprio state (index scatter: no host sync, CUDA-graph safe)."""
        dev = self.device
        text = self.embed_tokens(input_ids.to(dev))
        B, _, H = text.shape
        if query_pos is not None and self.chunk_head is not None:
            q = self.chunk_head.queries.to(text.dtype).unsqueeze(0).expand(B, -1, -1)
            text = text.scatter(1, query_pos.to(dev)[..., None].expand(-1, -1, H), q)
            if state_pos is not None and self.chunk_head.proprio is not None:
                st = self.chunk_head.proprio(state.to(dev, self.chunk_head.proprio[0].weight.dtype)).to(text.dtype)
                text = text.scatter(1, state_pos.to(dev)[..., None].expand(-1, -1, H), st[:, None, :])
        img = self.embed_images(pixel_values.to(dev)).to(text.dtype)
        return torch.cat([text[:, :1], img, text[:, 1:]], dim=1), img.shape[1]

    def _ckpt(self, i: int) -> bool:
        c = self.checkpoint_layers
        if c is None or not (self.training and torch.is_grad_enabled()):
            return False
        if c == "all":
            return True
        if isinstance(c, int):
            return i < c
        return i in c

    def run_llm(self, embeds: torch.Tensor) -> torch.Tensor:
        """Full-sequence causal pass (training / one-pass heads) -> final-normed hidden states."""
        if not self._own_loop():
            out = self.decoder(inputs_embeds=embeds, use_cache=False)
            return out.last_hidden_state
        dec = self.decoder
        pos = torch.arange(embeds.shape[1], device=embeds.device)[None]
        cos, sin = dec.rotary_emb(embeds, pos)
        h = embeds
        for i, layer in enumerate(dec.layers):
            if self._ckpt(i):
                h = torch.utils.checkpoint.checkpoint(_call_layer, layer, h, cos, sin, pos, use_reentrant=False)
            else:
                h = _call_layer(layer, h, cos, sin, pos)
        return dec.norm(h)

    def forward(self, pixel_values=None, input_ids=None, attention_mask=None, labels=None, actions=None,
                query_pos=None, state_pos=None, state=None, prompt_len=None, **_: Any) -> VLAOutput:
        """Training / evaluation forward: the action head's loss (``finetune/models/action_heads.py``)."""
        return self.head.loss(self, pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask,
                              labels=labels, actions=actions, query_pos=query_pos, state_pos=state_pos, state=state,
                              prompt_len=prompt_len)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor], *, reference: bool = False):
        """-> normalized actions (B, K, D) float32 and confidence (B, K) (token head: mean max-probability of
        the K*D greedy tokens per step; chunk head: None; flow: 1 - spread of a few draws; fast: mean
        max-probability of the chunk's tokens). ``reference=True`` decodes with transformers' own cached
        forward (the plain baseline) instead of our static-cache loop."""
        pred = self.head.predict(self, batch, reference=reference)
        return pred.actions, pred.confidence

    @torch.no_grad()
    def predict_chunk(self, batch: dict[str, torch.Tensor], *, reference: bool = False):
        """The head's full :class:`~finetune.models.action_heads.HeadPrediction` (with ``valid`` per row)."""
        return self.head.predict(self, batch, reference=reference)

    def _fast_decode(self, p, ids, n_new: int, L: int):
        if self._graphable():
            key = ("tok", L, tuple(p.shape), n_new, self.compile_decode, self.decode_mv, self.compile_mode)
            return self._graph_call(key, self._decode_fn, p, ids, n_new)
        return self._decode_fn(p, ids, n_new)

    def _chunk_fn(self, pv, ids, qpos, spos=None, st=None):
        embeds, P = self._assemble(pv, ids, qpos, spos, st)
        hidden = self.run_llm(embeds)
        idx = (qpos.to(hidden.device) + P)[..., None].expand(-1, -1, hidden.shape[-1])
        return self.chunk_head(torch.gather(hidden, 1, idx))

    def _decode_fn(self, pv, ids, n_new: int):
        """Greedy decode of ``n_new`` tokens with a pre-allocated static KV cache (our own loop)."""
        embeds, _ = self._assemble(pv, ids)
        if not self._own_loop():
            return self._decode_reference(pv, ids, n_new)
        dec, head = self.decoder, self.lm_head_module
        cfg = self.llm_config
        B, T, _ = embeds.shape
        n_kv = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        Lmax = T + n_new
        caches = [(embeds.new_zeros(B, n_kv, Lmax, hd), embeds.new_zeros(B, n_kv, Lmax, hd)) for _ in dec.layers]
        pos = torch.arange(T, device=embeds.device)[None]
        step_fn = self._decode_step_fn()
        if step_fn is not None:
            h = _fused_prefill(dec, embeds, pos, caches, self._prefill_fn())
        else:
            h = _cached_pass(dec, embeds, pos, caches, 0)
        logits = head(h[:, -1]).float()
        probs_l, toks_l = [], []
        p, t = logits.softmax(-1).max(-1)
        probs_l.append(p), toks_l.append(t)
        for i in range(1, n_new):
            e = self.embed_tokens(t[:, None])
            pos = torch.full((1, 1), T + i - 1, device=embeds.device, dtype=torch.long)
            if step_fn is not None:
                h = _fused_decode_step(dec, e, pos, caches, step_fn, mv=self.decode_mv and self.compile_decode)
            else:
                h = _cached_pass(dec, e, pos, caches, T + i - 1)
            logits = head(h[:, -1]).float()
            p, t = logits.softmax(-1).max(-1)
            probs_l.append(p), toks_l.append(t)
        return torch.stack(toks_l, 1), torch.stack(probs_l, 1)

    def _decode_reference(self, pv, ids, n_new: int):
        """Plain transformers decoding: the LM's own forward with its default (dynamic) KV cache."""
        embeds, _ = self._assemble(pv, ids)
        out = self.decoder(inputs_embeds=embeds, use_cache=True)
        past = out.past_key_values
        probs_l, toks_l = [], []
        p, t = self.lm_head_module(out.last_hidden_state[:, -1]).float().softmax(-1).max(-1)
        probs_l.append(p), toks_l.append(t)
        for _ in range(1, n_new):
            out = self.decoder(inputs_embeds=self.embed_tokens(t[:, None]), past_key_values=past, use_cache=True)
            past = out.past_key_values
            p, t = self.lm_head_module(out.last_hidden_state[:, -1]).float().softmax(-1).max(-1)
            probs_l.append(p), toks_l.append(t)
        return torch.stack(toks_l, 1), torch.stack(probs_l, 1)

    # ------------------------------------------------------------------ inference-only weight fusion
    @torch.no_grad()
    def fuse_for_inference(self) -> int:
        """Concatenate each decoder layer's q/k/v and gate/up weights into one matrix (the modules' weights
        become views into it: no extra memory), so a decode step runs 4 matrix-vector products per layer
        instead of 7. Only plain nn.Linear layers are fused (not LoRA-wrapped or quantized ones). Returns the
        number of layers fused. Inference only: call after merging adapters."""
        if not self._own_loop():
            return 0
        n = 0
        for layer in self.decoder.layers:
            attn, mlp = layer.self_attn, layer.mlp
            groups = [(attn, ("q_proj", "k_proj", "v_proj"), "_fused_qkv"), (mlp, ("gate_proj", "up_proj"), "_fused_gu")]
            ok = all(type(getattr(m, a)) is nn.Linear for m, names, _ in groups for a in names)
            if not ok:
                continue
            for mod, names, attr in groups:
                lins = [getattr(mod, a) for a in names]
                w = torch.cat([lin.weight for lin in lins], 0)
                has_b = [lin.bias is not None for lin in lins]
                b = torch.cat([lin.bias for lin in lins], 0) if all(has_b) else None
                if any(has_b) and b is None:
                    break
                off = 0
                sizes = []
                for lin in lins:
                    r = lin.weight.shape[0]
                    lin.weight = nn.Parameter(w[off : off + r], requires_grad=False)
                    if b is not None:
                        lin.bias = nn.Parameter(b[off : off + r], requires_grad=False)
                    sizes.append(r)
                    off += r
                object.__setattr__(mod, attr, (w, b, sizes))  # not a registered parameter: no state-dict change
            n += 1
        self._graphs.clear()
        return n

    compile_decode = False  # torch.compile the per-layer decode step (fuses the small element-wise kernels)
    decode_mv = False  # with compile_decode: matrix-vector products as compiled reductions instead of cuBLAS
    compile_mode: str | None = None  # torch.compile mode of the decode step (e.g. "max-autotune-no-cudagraphs")

    def _decode_step_fn(self):
        """The per-layer single-token function when every layer is fused (``fuse_for_inference``) and uses
        RMSNorm + SiLU (Llama/Mistral); compiled when ``compile_decode``. None -> the generic path."""
        layers = self.decoder.layers
        if not all(hasattr(ly.self_attn, "_fused_qkv") and hasattr(ly.mlp, "_fused_gu") for ly in layers):
            return None
        if getattr(self.llm_config, "hidden_act", "silu") != "silu":
            return None
        if not self.compile_decode:
            return _decode_layer
        fn = getattr(self, "_compiled_step", None)
        if fn is None:
            fn = torch.compile(_decode_layer, dynamic=False, fullgraph=True, mode=self.compile_mode)
            object.__setattr__(self, "_compiled_step", fn)
        return fn

    def _prefill_fn(self):
        if not self.compile_decode:
            return _prefill_layer
        fn = getattr(self, "_compiled_prefill", None)
        if fn is None:
            fn = torch.compile(_prefill_layer, dynamic=False, fullgraph=True)
            object.__setattr__(self, "_compiled_prefill", fn)
        return fn

    # ------------------------------------------------------------------ CUDA graphs
    def _graphable(self) -> bool:
        return self.use_cuda_graphs and self.device.type == "cuda" and not self.training

    def _graph_call(self, key, fn, *args):
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._capture(key, fn, args)
            if len(self._graphs) >= 8:
                self._graphs.pop(next(iter(self._graphs)))
            self._graphs[key] = entry
        graph, static_in, static_out = entry
        for dst, src in zip(static_in, args):
            if isinstance(dst, torch.Tensor):
                dst.copy_(src, non_blocking=True)
        graph.replay()
        return tuple(o.clone() for o in static_out) if isinstance(static_out, tuple) else static_out.clone()

    def _capture(self, key, fn, args):
        dev = self.device
        static_in = tuple(a.to(dev).clone() if isinstance(a, torch.Tensor) else a for a in args)
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(2):
                fn(*static_in)
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            out = fn(*static_in)
        return g, static_in, out


def _call_layer(layer, h, cos, sin, pos):
    return _layer_out(layer(h, attention_mask=None, position_ids=pos, position_embeddings=(cos, sin)))


def _rms(x, w, eps: float):
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return w * xf.to(x.dtype)


def _mv(x, w, b=None):
    """x (B, 1, K) @ w.T as a broadcast multiply + fp32 reduction: under torch.compile this becomes one
    bandwidth-bound reduction kernel, which beats cuBLAS's batch-1 GEMV on narrow matrices."""
    y = (x.float().unsqueeze(-2) * w.float()).sum(-1).to(x.dtype)
    return y if b is None else y + b


def _decode_layer(h, cos, sin, pos, kc, vc, ln1, eps1: float, wqkv, bqkv, sizes: list[int], wo, ln2, eps2: float,
                  wgu, bgu, gu_sizes: list[int], wd, hd: int, mv: bool = False):
    """One Llama-family decoder layer for one new token, static shapes: K/V written at ``pos`` (a tensor) and
    attention over the whole cache with a position mask, so one compiled graph serves every layer and step."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    B = h.shape[0]
    lin = _mv if mv else F.linear
    x = _rms(h, ln1, eps1)
    q, k, v = lin(x, wqkv, bqkv).split(sizes, dim=-1)
    q = q.view(B, 1, -1, hd).transpose(1, 2)
    k = k.view(B, 1, -1, hd).transpose(1, 2)
    v = v.view(B, 1, -1, hd).transpose(1, 2)
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    kc.index_copy_(2, pos, k)
    vc.index_copy_(2, pos, v)
    K, V = kc, vc
    rep = q.shape[1] // K.shape[1]
    if rep > 1:
        K, V = K.repeat_interleave(rep, dim=1), V.repeat_interleave(rep, dim=1)
    mask = (torch.arange(kc.shape[2], device=h.device) <= pos)[None, None, None, :]
    o = F.scaled_dot_product_attention(q, K, V, attn_mask=mask)
    h = h + lin(o.transpose(1, 2).reshape(B, 1, -1), wo)
    x = _rms(h, ln2, eps2)
    g, u = lin(x, wgu, bgu).split(gu_sizes, dim=-1)
    return h + lin(F.silu(g) * u, wd)


def _prefill_layer(h, cos, sin, kc, vc, ln1, eps1: float, wqkv, bqkv, sizes: list[int], wo, ln2, eps2: float,
                   wgu, bgu, gu_sizes: list[int], wd, hd: int):
    """One decoder layer over the whole prompt (positions 0..T-1), filling the first T cache slots."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    B, T, _ = h.shape
    x = _rms(h, ln1, eps1)
    q, k, v = F.linear(x, wqkv, bqkv).split(sizes, dim=-1)
    q = q.view(B, T, -1, hd).transpose(1, 2)
    k = k.view(B, T, -1, hd).transpose(1, 2)
    v = v.view(B, T, -1, hd).transpose(1, 2)
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    kc[:, :, :T].copy_(k)
    vc[:, :, :T].copy_(v)
    rep = q.shape[1] // k.shape[1]
    if rep > 1:
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    h = h + F.linear(o.transpose(1, 2).reshape(B, T, -1), wo)
    x = _rms(h, ln2, eps2)
    g, u = F.linear(x, wgu, bgu).split(gu_sizes, dim=-1)
    return h + F.linear(F.silu(g) * u, wd)


def _fused_prefill(dec, h, pos, caches, fn):
    return _fused_decode_step(dec, h, pos, caches, fn, prefill=True)


def _fused_decode_step(dec, h, pos, caches, fn, prefill: bool = False, mv: bool = False):
    cos, sin = dec.rotary_emb(h, pos)
    p = pos.view(-1)
    for layer, (kc, vc) in zip(dec.layers, caches):
        attn, mlp = layer.self_attn, layer.mlp
        wqkv, bqkv, sizes = attn._fused_qkv
        wgu, bgu, gu_sizes = mlp._fused_gu
        if attn.o_proj.bias is not None or mlp.down_proj.bias is not None:
            raise ModelError("fused decode does not support o_proj/down_proj biases")
        head = (h, cos, sin) + (() if prefill else (p,)) + (kc, vc)
        h = fn(*head, layer.input_layernorm.weight, float(layer.input_layernorm.variance_epsilon),
               wqkv, bqkv, sizes, attn.o_proj.weight, layer.post_attention_layernorm.weight,
               float(layer.post_attention_layernorm.variance_epsilon), wgu, bgu, gu_sizes, mlp.down_proj.weight,
               kc.shape[-1], *(() if prefill else (mv,)))
    return dec.norm(h)


def _layer_qkv(layer, h, cos, sin, hd: int):
    """A decoder layer's input norm, q/k/v projections (fused or not) and RoPE -> q, k, v (B, heads, T, hd)."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    attn = layer.self_attn
    B, T, _ = h.shape
    x = layer.input_layernorm(h)
    fused = getattr(attn, "_fused_qkv", None)
    if fused is not None:
        w, b, sizes = fused
        q, k, v = F.linear(x, w, b).split(sizes, dim=-1)
    else:
        q, k, v = attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)
    q = q.view(B, T, -1, hd).transpose(1, 2)
    k = k.view(B, T, -1, hd).transpose(1, 2)
    v = v.view(B, T, -1, hd).transpose(1, 2)
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    return q, k, v


def _layer_rest(layer, h, q, K, V, causal: bool):
    """Attention of ``q`` over ``K``/``V`` (grouped heads repeated), o_proj, residual, MLP (fused or not)."""
    attn = layer.self_attn
    B, T, _ = h.shape
    rep = q.shape[1] // K.shape[1]
    if rep > 1:
        K, V = K.repeat_interleave(rep, dim=1), V.repeat_interleave(rep, dim=1)
    o = F.scaled_dot_product_attention(q, K, V, is_causal=causal)
    h = h + attn.o_proj(o.transpose(1, 2).reshape(B, T, -1))
    mlp = layer.mlp
    fused = getattr(mlp, "_fused_gu", None)
    x = layer.post_attention_layernorm(h)
    if fused is not None:
        w, b, sizes = fused
        g, u = F.linear(x, w, b).split(sizes, dim=-1)
        return h + mlp.down_proj(mlp.act_fn(g) * u)
    return h + mlp(x)


def _prefix_layer(layer, h, cos, sin, hd: int):
    """One decoder layer over a whole prefix (causal) -> (hidden, k, v): the flow head's prefix K/V,
    with gradients (LoRA) and under activation checkpointing when training."""
    q, k, v = _layer_qkv(layer, h, cos, sin, hd)
    return _layer_rest(layer, h, q, k, v, causal=h.shape[1] > 1), k, v


def _cached_pass(dec, h, pos, caches, start: int):
    """Run every decoder layer over ``h`` (positions ``start..start+T-1``), writing K/V into ``caches``."""
    cos, sin = dec.rotary_emb(h, pos)
    T = h.shape[1]
    for layer, (kc, vc) in zip(dec.layers, caches):
        q, k, v = _layer_qkv(layer, h, cos, sin, kc.shape[-1])
        kc[:, :, start : start + T] = k
        vc[:, :, start : start + T] = v
        h = _layer_rest(layer, h, q, kc[:, :, : start + T], vc[:, :, : start + T], causal=(T > 1 and start == 0))
    return dec.norm(h)
