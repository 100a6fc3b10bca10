"""A checkpoint written by OpenVLA's own code gives, through vla-studio, OpenVLA's pixels, logits and actions.

The fixture (tests/fixtures/openvla/, made by make_reference.py with OpenVLA's HF code, transformers 4.40.1,
timm 0.9.10) holds a random small OpenVLA in the published layout, its processor configs for ``resize-naive``
and ``letterbox`` (bf16-rounded normalization, as openvla-7b's), frames of several sizes and what OpenVLA's
processor and ``predict_action`` made of them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from recorder.errors import ModelError  # noqa: E402

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "openvla"
IMAGES = ["224x224", "320x240", "640x480", "100x300", "301x200"]
STRATEGIES = ["resize-naive", "letterbox"]
INSTRUCTION = "Pick up the Red block"  # the reference lower-cases it, as deploy.py's prompt does


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(FIX / "reference.npz"))


def _frame(name: str) -> np.ndarray:
    return np.asarray(Image.open(FIX / "images" / f"{name}.png").convert("RGB"))


def checkpoint_for(strategy: str, dest: Path) -> Path:
    """The fixture model as a user has it: resize-naive as written; letterbox = the same weights with the
    letterbox preprocessor_config.json (and config.json saying so)."""
    if strategy == "resize-naive":
        return FIX / "model"
    d = dest / "openvla-letterbox"
    if not d.exists():
        shutil.copytree(FIX / "model", d)
        shutil.copy(FIX / "letterbox" / "preprocessor_config.json", d / "preprocessor_config.json")
        cfg = json.loads((d / "config.json").read_text())
        cfg["image_resize_strategy"] = "letterbox"
        (d / "config.json").write_text(json.dumps(cfg, indent=2))
    return d


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
    from finetune.runtime import load_policy

    tmp = tmp_path_factory.mktemp("openvla")
    return {s: load_policy(checkpoint_for(s, tmp), device="cpu", dtype=torch.float32) for s in STRATEGIES}


def _pixel_values(policy, img: np.ndarray) -> torch.Tensor:
    """What the towers receive: the policy's preprocessing, the model's sample preparation, its normalization."""
    vla = policy.vla
    batch = vla.collate([vla.prepare([policy._preprocess(img)], INSTRUCTION)])
    u8 = batch["pixel_values"][:, 0]
    vb = vla.vision_backbone
    return torch.cat([vb.normalize(u8, i, torch.float32) for i in range(len(vb.cfgs))], dim=1)


@pytest.mark.parametrize("name", IMAGES)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_pixel_values_match_openvla_processor(policies, ref, strategy, name):
    key = f"{strategy}/{name}"
    pv = _pixel_values(policies[strategy], _frame(name))
    assert tuple(pv.shape) == (1, 6, 224, 224)
    flat = pv.reshape(-1)
    samples = flat[torch.from_numpy(ref[f"{key}/pv_index"])].numpy()
    assert np.abs(samples - ref[f"{key}/pv_samples"]).max() <= 1e-5
    assert abs(float(pv.double().sum()) - float(ref[f"{key}/pv_sum"])) <= 1e-5 * flat.numel()
    # the whole tensor: the reference processor's uint8 image, normalized with the file's constants
    img = torch.from_numpy(ref[f"{key}/image_u8"]).to(torch.float32).div(255)
    pp = json.loads((policies[strategy].vla.model_dir / "preprocessor_config.json").read_text())
    full = torch.cat([(img - torch.tensor(p["mean"]).view(3, 1, 1)) / torch.tensor(p["std"]).view(3, 1, 1)
                      for p in pp["tvf_normalize_params"]])
    assert (pv[0] - full).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", IMAGES)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_actions_and_logits_match_openvla(policies, ref, strategy, name):
    key = f"{strategy}/{name}"
    policy = policies[strategy]
    vla = policy.vla
    img = _frame(name)
    assert vla.prompt_ids(INSTRUCTION) == ref[f"{key}/input_ids"].tolist()

    out = policy.predict({"front": img}, None, INSTRUCTION)
    tokens = vla.action_tokenizer.encode(out.normalized).reshape(-1)
    np.testing.assert_array_equal(tokens, ref[f"{key}/tokens"])
    np.testing.assert_array_equal(policy.unnormalize(out.normalized)[0], ref[f"{key}/actions"])  # float64, exact
    np.testing.assert_allclose(out.actions[0], ref[f"{key}/actions"], rtol=1e-6, atol=1e-7)

    # logits at each generated position, teacher-forced with OpenVLA's greedy tokens (f32, CPU)
    acts = vla.action_tokenizer.decode(ref[f"{key}/tokens"]).reshape(1, 7)
    batch = vla.collate([vla.prepare([policy._preprocess(img)], INSTRUCTION, acts)])
    with torch.no_grad():
        logits = vla(**batch).logits[0, :7].float()
    np.testing.assert_allclose(logits[:, -320:].numpy(), ref[f"{key}/logits_tail"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(torch.logsumexp(logits, -1).numpy(), ref[f"{key}/logsumexp"], rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", IMAGES)
def test_resize_crop_pixels_match_openvla_processor(ref, name):
    import hashlib

    from finetune.models.preprocess import read_preprocessor

    transform = read_preprocessor(FIX / "resize-crop", 2)
    out = transform(_frame(name)).transpose(2, 0, 1)
    assert out.shape == (3, 224, 224)
    assert hashlib.sha256(np.ascontiguousarray(out).tobytes()).hexdigest() == str(ref[f"resize-crop/{name}/image_sha256"])


def test_the_fixture_discriminates(ref):
    """The fixture's greedy tokens depend on the frame and on the strategy (so the tests above pin them down)."""
    seqs = {tuple(ref[f"{s}/{n}/tokens"].tolist()) for s in STRATEGIES for n in IMAGES}
    assert len(seqs) >= 8


def test_fast_resize_would_not_match(policies, ref):
    """Our own models' cv2 path, applied to this checkpoint, gives other pixels than OpenVLA's processor: the
    published path is what makes the tests above pass."""
    from finetune.data import prepare_image

    img = _frame("320x240")
    ours = prepare_image(img, 224, None, False, crop=False).transpose(2, 0, 1)
    assert np.abs(ours.astype(int) - ref["resize-naive/320x240/image_u8"].astype(int)).max() >= 2


def test_published_preprocessing_travels_with_an_export(policies, tmp_path):
    vla = policies["letterbox"].vla
    out = vla.save_pretrained(tmp_path / "export")
    saved = json.loads((out / "preprocessor_config.json").read_text())
    assert saved["image_resize_strategy"] == "letterbox"
    assert saved["tvf_normalize_params"][0]["mean"] == [0.484375, 0.455078125, 0.40625]
    assert json.loads((out / "config.json").read_text())["vla_studio"]["image_pipeline"] == "published"


# ------------------------------------------------------------------------------------------- bad input


def _copy(tmp_path: Path) -> Path:
    d = tmp_path / "ckpt"
    shutil.copytree(FIX / "model", d)
    return d


def _load_with_edited_weights(tmp_path: Path, edit) -> ModelError:
    """Copy the fixture, change its state dict with ``edit``, load it: the ModelError it raises."""
    from safetensors.torch import load_file, save_file

    from finetune.models import load_vla

    d = _copy(tmp_path)
    sd = edit(load_file(str(d / "model.safetensors")))
    save_file(sd, str(d / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelError) as err:
        load_vla(d, device="cpu", dtype=torch.float32)
    assert "\n" not in str(err.value) and "model.safetensors" in str(err.value)
    return err.value


def test_unknown_resize_strategy_is_one_line_naming_the_file(tmp_path):
    from finetune.models import load_vla

    d = _copy(tmp_path)
    pp = json.loads((d / "preprocessor_config.json").read_text())
    pp["image_resize_strategy"] = "resize-fancy"
    (d / "preprocessor_config.json").write_text(json.dumps(pp))
    with pytest.raises(ModelError) as err:
        load_vla(d, device="cpu", dtype=torch.float32)
    msg = str(err.value)
    assert "\n" not in msg and "preprocessor_config.json" in msg and "resize-fancy" in msg


def test_folder_without_tokenizer_fails_naming_it_never_prompts(tmp_path, monkeypatch):
    """The fixture's config.json has OpenVLA's auto_map (remote code): nothing may ask trust-remote-code."""
    from finetune.models import load_vla

    prompts = []

    def no_prompt(*a, **k):
        prompts.append(a)
        raise EOFError

    monkeypatch.setattr("builtins.input", no_prompt)
    d = _copy(tmp_path)
    assert "auto_map" in json.loads((d / "config.json").read_text())
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (d / f).unlink()
    with pytest.raises(ModelError) as err:
        load_vla(d, device="cpu", dtype=torch.float32)
    msg = str(err.value)
    assert "\n" not in msg and str(d) in msg and "tokenizer" in msg
    assert prompts == []


def test_unreadable_sentencepiece_tokenizer_is_one_line_naming_it(tmp_path):
    from finetune.models.loader import load_tokenizer

    (tmp_path / "tokenizer.model").write_bytes(b"not a sentencepiece model")
    with pytest.raises(ModelError) as err:
        load_tokenizer(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "tokenizer.model") in msg


def test_tower_sizes_come_from_the_weights(tmp_path):
    """A checkpoint whose towers are not the timm table's sizes loads (the fixture's are 64/96 wide, 3 deep),
    and weights that fit no tower are one line naming the weights file."""
    from finetune.models import load_vla

    vla = load_vla(FIX / "model", device="cpu", dtype=torch.float32)
    c0, c1 = vla.vision_backbone.cfgs
    assert (c0.embed_dim, c0.depth, c0.num_heads, c0.reg_tokens) == (64, 3, 16, 4)
    assert (c1.embed_dim, c1.depth, c1.num_heads, c1.mlp_hidden) == (96, 3, 16, 358)

    err = _load_with_edited_weights(tmp_path, lambda sd: {
        k: v for k, v in sd.items() if not k.startswith("vision_backbone.fused_featurizer.patch_embed")})
    assert "fused_featurizer.patch_embed" in str(err)


def test_width_that_splits_into_no_heads_is_refused(tmp_path):
    def narrow(sd):
        k = "vision_backbone.featurizer.patch_embed.proj.weight"
        sd[k] = torch.zeros((60, 3, 14, 14), dtype=sd[k].dtype)  # 60 is no multiple of DINOv2's 16 heads
        return sd

    assert "16 heads" in str(_load_with_edited_weights(tmp_path, narrow))


# ------------------------------------------------------------------------------------------- fine-tuning


def _write_frames_dataset(home: Path, name: str, w: int = 160, h: int = 120) -> list[np.ndarray]:
    """Two short episodes of w x h frames (a camera's native size, not the model's) with 7-dim actions."""
    from recorder.store import CameraSpec, Store

    rng = np.random.default_rng(5)
    frames = []
    store = Store.open(home)
    try:
        for _ in range(2):
            wr = store.begin_episode(dataset=name, task="pick up the red block", fps=10.0, source="scripted",
                                     cameras={"front": CameraSpec(width=w, height=h, queue_size=64)},
                                     lowdim={"observation.state": (7,), "action": (7,)})
            for t in range(4):
                img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                frames.append(img)
                a = rng.uniform(-1, 1, 7).astype(np.float32)
                wr.add_tick(t=t / 10.0, frames={"front": img}, timestamps={"front": t / 10.0},
                            values={"observation.state": a, "action": a})
            wr.finish(success=True)
    finally:
        store.close()
    return frames


@pytest.mark.slow  # ~10 s of CPU: a 2-step LoRA run from the 224 px fixture checkpoint
def test_finetuning_a_published_base_trains_and_rolls_out_on_openvlas_pixels(tmp_path):
    """Fine-tuning from the published checkpoint: the training samples are OpenVLA's processor pixels of the
    stored frames (any size), and the tuned checkpoint's policy preprocesses a frame to the same pixels."""
    from finetune.recipe import FinetuneRecipe
    from finetune.run_config import FinetuneConfig
    from finetune.runtime import load_policy
    from tests.finetune.test_recipe import ListLogger

    home = tmp_path / "home"
    _write_frames_dataset(home, "cam160")
    cfg = FinetuneConfig(dataset="cam160", model=str(FIX / "model"), steps=2, batch_size=2, lr=1e-3, lora_rank=4,
                         eval_every=0, save_every=0, val_fraction=0.0, augment=False, seed=0)
    recipe = FinetuneRecipe(cfg, home, logger=ListLogger(), install_signal_handlers=False)
    result = recipe.run()
    assert result.status == "done" and result.checkpoint is not None

    sample = recipe.data.train.raw_sample(3)
    from recorder.store import Store

    store = Store.open(home)
    try:
        with store.open_episode(sample["episode_id"]) as reader:
            reader_frame = reader.frame("front", sample["tick"])  # the stored 160x120 frame
    finally:
        store.close()
    assert reader_frame.shape == (120, 160, 3)
    transform = recipe.vla.image_transform
    assert transform is not None and transform.strategy == "resize-naive"
    np.testing.assert_array_equal(sample["images"][0], transform(reader_frame))

    policy = load_policy(result.checkpoint, device="cpu", dtype=torch.float32)
    assert policy.vla.image_transform == transform
    np.testing.assert_array_equal(policy._preprocess(reader_frame), sample["images"][0])
