"""Write the pre-issue-15 checkpoints this folder holds, with the code from before the action-head interface.

    git -C /work/wt/w15 archive a41f4e2 | tar -x -C /tmp/pre_heads      # the commit before issue 15
    PYTHONPATH=/tmp/pre_heads /work/main/.venv/bin/python tests/finetune/pre_heads_fixture/make_fixture.py OUT

For the tokens head (K=1) and the chunk head (K=4, proprio state): a LoRA adapter (r=4, random B so it changes
the output) on the tiny base, laid out as that code's recipe writes a step folder, and ``expected.npz``: what that
code's ``load_policy(...).predict`` returned on a fixed image and state (tests/finetune/test_action_heads.py loads
them with today's code and must get the same actions).
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

from finetune.models import load_vla
from finetune.norm import make_norm_stats
from finetune.runtime import load_policy


def main(out: Path) -> None:
    from peft import LoraConfig, get_peft_model

    rng = np.random.default_rng(0)
    acts = np.concatenate([rng.uniform(-120, 120, (200, 5)), rng.uniform(0, 100, (200, 1))], 1)
    stats = make_norm_stats("pick", acts, proprio=acts)
    img = np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    state = np.linspace(-50, 50, 6).astype(np.float32)
    expected = {}
    for head, K, use_state in (("tokens", 1, False), ("chunk", 4, True)):
        torch.manual_seed(0)
        vla = load_vla("tiny", device="cpu", action_head=head, chunk_size=K, action_dim=6,
                       state_dim=6 if use_state else None)
        model = get_peft_model(vla, LoraConfig(r=4, lora_alpha=8, target_modules=vla.lora_target_modules(),
                                               modules_to_save=vla.trainable_modules() or None,
                                               init_lora_weights=False))
        ckpt = out / head / "checkpoints" / "0000010"
        ckpt.mkdir(parents=True)
        model.save_pretrained(str(ckpt / "adapter"))
        (ckpt / "norm_stats.json").write_text(json.dumps(stats))
        info = {"base_model": "tiny", "action_head": head, "chunk_size": K, "action_dim": 6, "image_size": 56,
                "cameras": ["front"], "unnorm_key": "pick", "center_crop": False, "use_state": use_state}
        (ckpt / "config.json").write_text(json.dumps({"config": {"model": "tiny", "action_head": head,
                                                                  "chunk_size": K, "use_state": use_state},
                                                       "model": info}, indent=2))
        (ckpt.parent / "last").write_text("0000010\n")
        out_ = load_policy(ckpt).predict({"front": img}, state, "pick up the red cube")
        expected[f"{head}_actions"] = out_.actions
        expected[f"{head}_confidence"] = out_.confidence if out_.confidence is not None else np.zeros(0)
    np.savez(out / "expected.npz", image=img, state=state, **expected)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
