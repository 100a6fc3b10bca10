"""QLoRA as a user runs it, on a CUDA GPU with bitsandbytes: a store dataset -> `vla-studio finetune --4bit` ->
SIGTERM -> `--resume` -> merged export -> rollout policy and the policy server. Skipped without a GPU (CI)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.finetune.synth_store import CHILD_ENV, write_dataset

pytestmark = pytest.mark.gpu
ROOT = Path(__file__).resolve().parents[2]
INSTR = "pick up the red cube"


@pytest.fixture(scope="module")
def qhome(tmp_path_factory):
    pytest.importorskip("bitsandbytes")
    home = tmp_path_factory.mktemp("qlora") / "home"
    write_dataset(home, "toy", episodes=3, frames=10)
    return home


def _events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _cli(home, *args, **kw):
    env = dict(os.environ, PYTHONUNBUFFERED="1", **CHILD_ENV)
    return subprocess.Popen([sys.executable, "-m", "studio.cli", "--home", str(home), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _image():
    return np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)


def test_qlora_run_sigterm_resume_export_rollout_and_serve(qhome, tmp_path):
    from finetune.recipe import export_merged
    from finetune.runtime import load_policy
    from recorder.store import Store

    common = ["finetune", "--dataset", "toy", "--model", "tiny", "--device", "cuda", "--4bit", "--batch", "4",
              "--eval-every", "0", "--action-head", "chunk", "--lr", "3e-3"]
    # 1. a run killed by SIGTERM after its first logged step checkpoints and says so
    proc = _cli(qhome, *common, "--steps", "100000", "--save-every", "0", "--run-id", "q")
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if '"event":"train"' in line and json.loads(line)["step"] >= 3:
                break
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    events = _events("".join(lines) + rest)
    assert proc.returncode == 0, err
    last = events[-1]
    assert last["event"] == "cancelled" and last["reason"] == "SIGTERM", events[-3:]
    stopped_at = int(Path(last["checkpoint"]).name)
    assert stopped_at >= 3
    # 2. resume continues from exactly that step to the end
    proc = _cli(qhome, "finetune", "--resume", "q", "--steps", str(stopped_at + 4))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    ev = _events(out)
    st = next(e for e in ev if e["event"] == "start")
    assert st["resumed_from"].endswith(f"{stopped_at:07d}")
    steps = [e["step"] for e in ev if e["event"] == "train"]
    assert steps[0] == stopped_at + 1 and steps[-1] == stopped_at + 4
    assert all(np.isfinite(e["loss"]) for e in ev if e["event"] == "train")
    with Store.open(qhome) as store:
        assert store.run("q").status == "done"

    # 3. the run as trained (4-bit base + adapter) vs its merged export (dequantized base + adapter, bf16)
    run = qhome / "runs" / "q"
    trained = load_policy(run, device="cuda")
    assert trained.vla.quantized == "4bit"
    out_dir = export_merged(qhome, "q", tmp_path / "merged")
    merged = load_policy(out_dir, device="cuda")
    assert getattr(merged.vla, "quantized", None) is None
    img = {trained.camera_names[0]: _image()}
    a = trained.predict(img, None, INSTR).actions
    b = merged.predict(img, None, INSTR).actions
    scale = np.abs(a).max() + 1e-6
    assert np.abs(a - b).max() <= 0.02 * scale + 0.05, (a, b)

    # 4. served: a client gets the same chunk as the local 4-bit policy
    from finetune.server import PolicyServer, RemotePolicy

    server = PolicyServer(trained, host="127.0.0.1", port=0).start()
    try:
        with RemotePolicy(server.url) as remote:
            c = remote.predict(img, None, INSTR).actions
    finally:
        server.stop()
    np.testing.assert_allclose(c, a, rtol=1e-5, atol=1e-5)


def test_quantized_inference_of_a_bf16_run_stays_close(qhome):
    """A plain bf16 run rolled out with --quantize 4bit / 8bit on a small card: actions near the bf16 ones."""
    proc = _cli(qhome, "finetune", "--dataset", "toy", "--model", "tiny", "--device", "cuda", "--batch", "4",
                "--steps", "4", "--eval-every", "0", "--action-head", "chunk", "--run-id", "plain")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    from finetune.runtime import load_policy

    run = qhome / "runs" / "plain"
    ref = load_policy(run, device="cuda")
    img = {ref.camera_names[0]: _image()}
    a = ref.predict(img, None, INSTR).actions
    for mode in ("4bit", "8bit"):
        pol = load_policy(run, device="cuda", quantize=mode)
        assert pol.vla.quantized == mode
        b = pol.predict(img, None, INSTR).actions
        assert np.isfinite(b).all() and b.shape == a.shape
        assert np.abs(a - b).max() <= 0.25 * (np.abs(a).max() + 1e-6) + 0.5, (mode, a, b)


def test_quantized_load_never_holds_the_bf16_llm_on_the_gpu():
    """Quantizing while loading: peak GPU memory stays near the 4-bit model, far below the bf16 one."""
    pytest.importorskip("bitsandbytes")
    from finetune.models import load_vla

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    m = load_vla("tiny", device="cuda", dtype=torch.bfloat16)
    bf16_peak = torch.cuda.max_memory_allocated() - base
    llm_bf16 = sum(p.numel() * 2 for p in m.decoder.layers.parameters())
    del m
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    q = load_vla("tiny", device="cuda", dtype=torch.bfloat16, quantize="4bit")
    q_peak = torch.cuda.max_memory_allocated() - base
    assert q.quantized == "4bit"
    assert type(q.decoder.layers[0].mlp.down_proj).__name__ == "Linear4bit"
    assert q_peak < bf16_peak - 0.5 * llm_bf16, (q_peak, bf16_peak, llm_bf16)
