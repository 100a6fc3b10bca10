"""Policy runtime: a checkpoint (base + LoRA adapter, or a merged model folder) -> ``Policy.predict``.

    policy = load_policy("runs/<id>/checkpoints/0001000")      # or the run folder, or a merged export
    out = policy.predict({"front": rgb}, state, "pick up the red cube")
    out.actions  # (K, D) float32 in real units (degrees / gripper 0..100)

The adapter is merged into the base weights at load (one plain model, no LoRA overhead per call). On CUDA the
whole action step (vision towers, projector, prefill and the greedy decode of the K*D action tokens with a
pre-allocated static KV cache -- or the chunk head's single pass) is captured once per prompt length as one
CUDA graph and replayed on later calls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recorder.errors import ModelError

__all__ = ["Policy", "PolicyOutput", "load_policy"]


@dataclass
class PolicyOutput:
    actions: np.ndarray  # (K, D) float32, real units
    confidence: np.ndarray | None  # (K,) in [0, 1]: token/fast heads mean max-probability, flow 1 - spread; chunk None
    latency_s: float
    normalized: np.ndarray | None = None  # (K, D) in [-1, 1], as the model predicted them
    held: bool = False  # the head's output was not a valid chunk (FAST): this is a hold-still chunk instead


class Policy:
    """A local checkpoint as a rollout policy (satisfies :class:`recorder.policy.Policy`)."""

    def __init__(self, vla, norm_stats: dict, *, camera_names: list[str] | None = None, unnorm_key: str | None = None,
                 checkpoint_id: int | None = None, center_crop: bool = False, source: str = ""):
        from .norm import Normalizer, select_stats

        self.vla = vla
        self.norm_stats = norm_stats
        self.unnorm_key = unnorm_key
        self.action_normalizer = Normalizer(select_stats(norm_stats, unnorm_key, "action"))
        try:
            self.state_normalizer = Normalizer(select_stats(norm_stats, unnorm_key, "proprio"))
        except ModelError:
            self.state_normalizer = None
        if self.action_normalizer.dim != vla.action_dim:
            raise ModelError(f"{source}: norm_stats have {self.action_normalizer.dim} action dims, "
                             f"the model predicts {vla.action_dim}; the checkpoint is inconsistent")
        n = int(getattr(vla, "n_images", 1))
        self.camera_names = list(camera_names) if camera_names else ([f"cam{i}" for i in range(n)] if n > 1 else ["front"])
        if len(self.camera_names) != n:
            raise ModelError(f"{source}: the model takes {n} cameras but the checkpoint names {self.camera_names}")
        self.checkpoint_id = checkpoint_id
        # run/step and the folder, set by whoever knows them (studio.rollout.policy.load_local_policy)
        self.checkpoint_label: str | None = None
        self.checkpoint_dir: Path | None = None
        self.center_crop = bool(center_crop)
        self.source = source
        self.undecodable = 0  # predictions replaced by a hold-still chunk (shown by the rollout tab)
        self._last_actions: np.ndarray | None = None

    @property
    def action_dim(self) -> int:
        return int(self.vla.action_dim)

    @property
    def chunk_size(self) -> int:
        return int(self.vla.chunk_size)

    @property
    def action_head(self) -> str:
        return self.vla.action_head

    def _preprocess(self, img: np.ndarray) -> np.ndarray:
        """The evaluation twin of the training pipeline (finetune.data.prepare_image): a centred 0.9-area crop
        when the run trained with random crops, then the same cv2 resize to the model's input size, so the
        policy sees at rollout exactly what it saw in training (no resize-kernel skew). A published base model
        brings OpenVLA's own preprocessing (``vla.image_transform``), in training and here alike."""
        from finetune.data import prepare_image

        return prepare_image(img, int(self.vla.image_size), None, augment=False, crop=self.center_crop,
                             transform=getattr(self.vla, "image_transform", None))

    def predict(self, images: dict[str, np.ndarray], state: np.ndarray | None, instruction: str) -> PolicyOutput:
        import torch

        t0 = time.perf_counter()
        missing = [c for c in self.camera_names if c not in images]
        if missing:
            raise ModelError(f"policy {self.source}: no image for camera(s) {missing}; it needs {self.camera_names}")
        imgs = [self._preprocess(np.asarray(images[c])) for c in self.camera_names]
        st = None
        if state is not None and self.state_normalizer is not None:
            st = self.state_normalizer.normalize(np.asarray(state, dtype=np.float32))
        elif state is not None:
            st = np.asarray(state, dtype=np.float32)
        batch = self.vla.collate([self.vla.prepare(imgs, instruction, None, st)])
        with torch.inference_mode():
            pred = self.vla.predict_chunk(batch)
        norm_np = pred.actions[0].float().cpu().numpy()
        actions = self.action_normalizer.unnormalize(norm_np)
        conf_np = pred.confidence[0].float().cpu().numpy() if pred.confidence is not None else None
        held = pred.valid is not None and not bool(pred.valid[0])
        if held:
            self.undecodable += 1
            actions = self.hold_still(state)
        self._last_actions = actions
        return PolicyOutput(actions=actions.astype(np.float32), confidence=conf_np,
                            latency_s=time.perf_counter() - t0, normalized=norm_np, held=held)

    def hold_still(self, state: np.ndarray | None) -> np.ndarray:
        """A (K, D) chunk in real units that keeps the arm where it is: the measured state when it has the
        action's size (joint-position actions), else the last action sent, else the middle of the range."""
        K, D = self.chunk_size, self.action_dim
        if state is not None and np.asarray(state).reshape(-1).shape[0] == D:
            return np.tile(np.asarray(state, np.float32).reshape(1, D), (K, 1))
        if self._last_actions is not None:
            return np.tile(self._last_actions[-1:], (K, 1)).astype(np.float32)
        return self.action_normalizer.unnormalize(np.zeros((K, D), np.float32)).astype(np.float32)

    def unnormalize(self, normalized: np.ndarray, unnorm_key: str | None = None) -> np.ndarray:
        """``PolicyOutput.normalized`` -> real units in float64, OpenVLA's ``predict_action`` arithmetic exactly
        (token head: the exact bin centres), with the statistics of ``unnorm_key`` (default: the policy's)."""
        from .norm import Normalizer, select_stats

        x = np.asarray(normalized, dtype=np.float64)
        if self.action_head == "tokens":
            x = self.vla.action_tokenizer.snap(x)
        if unnorm_key is None or unnorm_key == self.unnorm_key:
            normalizer = self.action_normalizer
        else:
            normalizer = Normalizer(select_stats(self.norm_stats, unnorm_key, "action"))
        if normalizer.dim != x.shape[-1]:
            raise ModelError(f"policy {self.source}: statistics {unnorm_key!r} have {normalizer.dim} action dims, "
                             f"the model predicts {x.shape[-1]}")
        return normalizer.unnormalize(x, dtype=np.float64)

    def warmup(self, image_shape=(224, 224, 3), instruction: str = "do something") -> float:
        """One call on a blank frame (captures the CUDA graph for this prompt length); returns its latency."""
        imgs = {c: np.zeros(image_shape, np.uint8) for c in self.camera_names}
        return self.predict(imgs, None, instruction).latency_s


def load_policy(checkpoint_dir: str | Path, device=None, *, dtype=None, fast: bool = True, compile_decode: bool = True,
                unnorm_key: str | None = None, checkpoint_id: int | None = None, quantize: str | None = None,
                action_head: str | None = None) -> Policy:
    """A training checkpoint (``runs/<id>/checkpoints/<step>/`` or the run folder: base model named in its
    config.json + ``adapter/`` + ``norm_stats.json``) or a merged model folder (config.json with norm_stats,
    model.safetensors) -> a ready Policy. ``fast`` (GPU only) fuses q/k/v and gate/up weights and captures each
    action step as a CUDA graph; ``compile_decode`` also torch.compiles the per-layer decode step (one-time
    compile + autotune on the first call, ~20-60 s; falls back to eager if compiling fails). ``action_head``:
    the head the caller expects (a ModelError naming the checkpoint's head when it has another).

    ``quantize`` (CUDA + bitsandbytes): "4bit" / "8bit" load the LLM quantized (small cards), "none" in the model
    dtype; None (default) runs a checkpoint as it was trained: a QLoRA (--4bit) run on its 4-bit base with the
    adapter kept beside it (the same function as in training), any other in the model dtype. A QLoRA run with
    "none" gets its dequantized base (the values it was trained on) with the adapter merged."""

    from .models import load_vla
    from .norm import load_norm_stats

    path = Path(checkpoint_dir).expanduser()
    if str(checkpoint_dir) != "tiny" and not path.exists():
        raise ModelError(f"{path}: no such checkpoint folder; pick a run's checkpoint or a merged model folder")
    from .checkpoint_ref import ADAPTER_DIR, EXPORT_INFO_FILE, NORM_STATS_FILE, CheckpointRef

    # a run / checkpoints folder -> its last step folder; a merged export folder stays as it is
    ckpt = CheckpointRef.from_folder(path).folder if path.is_dir() else path
    if (ckpt / ADAPTER_DIR).is_dir():
        from .checkpoint import load_trained_model

        trained = load_trained_model(ckpt, dtype=dtype, device=device, quantize=quantize, action_head=action_head)
        vla, info, norm_stats = trained.vla, trained.info, trained.norm_stats
        cams = info.get("cameras") or trained.run_config.get("cameras") or None
        unnorm_key = unnorm_key or info.get("unnorm_key")
        center_crop = bool(info.get("center_crop", False))
        source = str(ckpt)
    else:
        vla = load_vla(ckpt, dtype=dtype, device=device, quantize=None if quantize in (None, "none") else quantize,
                       action_head=action_head, require_trained_head=True)
        norm_stats = vla.norm_stats
        sidecar = ckpt / NORM_STATS_FILE if ckpt.is_dir() else None
        if not norm_stats and sidecar is not None and sidecar.exists():
            norm_stats = load_norm_stats(sidecar)
        cams, center_crop = None, False
        extra = ckpt / EXPORT_INFO_FILE if ckpt.is_dir() else None
        if extra is not None and extra.exists():
            from .run_config import read_json_object

            info = read_json_object(extra, error=ModelError, fix="re-export the model").get("model") or {}
            if not isinstance(info, dict):
                raise ModelError(f"{extra}: \"model\" is not a JSON object; re-export the model")
            cams, center_crop = info.get("cameras"), bool(info.get("center_crop", False))
            unnorm_key = unnorm_key or info.get("unnorm_key")
        if not norm_stats:
            raise ModelError(f"{ckpt}: the model has no norm_stats, so its actions cannot be put in real units; "
                             "use a fine-tuned checkpoint")
        source = str(ckpt)
    vla.eval()
    # LLM.int8's outlier split has data-dependent shapes, so 8-bit layers cannot be captured in a CUDA graph
    vla.use_cuda_graphs = bool(fast) and vla.device.type == "cuda" and getattr(vla, "quantized", None) != "8bit"
    if vla.use_cuda_graphs:
        vla.fuse_for_inference()
        vla.compile_decode = bool(compile_decode)
        # autotuned kernels for the batch-1 decode step: 44 ms vs 47.5 ms per 7-token action on an H100
        vla.compile_mode = "max-autotune-no-cudagraphs"
    if norm_stats and unnorm_key and unnorm_key not in norm_stats:
        unnorm_key = None if len(norm_stats) == 1 else unnorm_key
    return Policy(vla, norm_stats, camera_names=cams, unnorm_key=unnorm_key, checkpoint_id=checkpoint_id,
                  center_crop=center_crop, source=source)
