"""The image path of published OpenVLA checkpoints: ``preprocessor_config.json`` -> the exact pixels.

OpenVLA's processor (``prismatic/extern/hf/processing_prismatic.py``) runs, per vision tower::

    PIL image -> [letterbox: pad to square with the mean colour] -> TVF.resize(PIL, bicubic, antialias)
              -> TVF.center_crop -> to_tensor (/255) -> TVF.normalize(tvf_normalize_params)

Everything up to the crop happens on uint8 PIL images, so :class:`PublishedImageTransform` returns the uint8
``S x S x 3`` image the towers see (the model normalizes it, see ``PrismaticVisionBackbone.normalize``, with the
file's ``tvf_normalize_params``: for openvla-7b the timm constants rounded to bf16, e.g. DINOv2 mean
0.484375 / 0.455078125 / 0.40625). Identical pixels to OpenVLA's for ``resize-naive`` (squash to S x S),
``letterbox`` (symmetric pad, fill ``int(255 * mean)``, then the short side to S and a centre crop) and
``resize-crop`` (short side to S, centre crop).

Our own models (the tiny ones, our random-init writers) have no preprocessor_config.json and keep the fast cv2
path of :func:`finetune.data.prepare_image`; the model's ``image_transform`` is then ``None``.

No torch here: the dataset workers import it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recorder.errors import ModelError

__all__ = ["PREPROCESSOR_FILE", "PublishedImageTransform", "read_preprocessor", "STRATEGIES"]

PREPROCESSOR_FILE = "preprocessor_config.json"
STRATEGIES = ("resize-naive", "letterbox", "resize-crop")
_PIL_FILTERS = {0: "NEAREST", 1: "LANCZOS", 2: "BILINEAR", 3: "BICUBIC", 4: "BOX", 5: "HAMMING"}
_NAMED_FILTERS = {"bicubic": 3, "bilinear": 2, "nearest": 0, "lanczos": 1, "box": 4, "hamming": 5}


@dataclass(frozen=True)
class PublishedImageTransform:
    """uint8 H x W x 3 RGB (any size) -> uint8 S x S x 3, as OpenVLA's PrismaticImageProcessor computes it."""

    strategy: str  # one of STRATEGIES
    resize: int | tuple[int, int]  # int: the short side; (h, w): both (resize-naive)
    crop: tuple[int, int]  # (h, w) centre crop
    interpolation: int = 3  # PIL filter code (TVF.pil_modes_mapping): 3 = bicubic
    letterbox_fill: tuple[int, int, int] | None = None  # set when the file says tvf_do_letterbox
    means: list[tuple[float, float, float]] = field(default_factory=list)  # per tower, tvf_normalize_params
    stds: list[tuple[float, float, float]] = field(default_factory=list)
    source: str = ""  # the file it came from (for messages)
    raw: dict = field(default_factory=dict, compare=False, repr=False)  # the file's content (re-written on export)

    @property
    def size(self) -> int:
        return int(self.crop[0])

    def __call__(self, img: np.ndarray) -> np.ndarray:
        from PIL import Image

        a = np.asarray(img)
        if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
            raise ModelError(f"images must be HxWx3 uint8 RGB, got shape {a.shape} dtype {a.dtype}")
        if self.letterbox_fill is not None:
            a = _letterbox(a, self.letterbox_fill)
        h, w = a.shape[:2]
        if isinstance(self.resize, int):  # torchvision's _compute_resized_output_size for one int
            short, long = (w, h) if w <= h else (h, w)
            new_short, new_long = self.resize, int(self.resize * long / short)
            new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
        else:
            new_h, new_w = self.resize
        if (new_h, new_w) != (h, w):
            a = np.asarray(Image.fromarray(np.ascontiguousarray(a)).resize((new_w, new_h), resample=self.interpolation))
        ch, cw = self.crop
        h, w = a.shape[:2]
        if ch > h or cw > w:
            raise ModelError(f"{self.source}: crop {self.crop} is larger than the resized image {(h, w)}; "
                             "fix the preprocessor config")
        top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
        return np.array(a[top:top + ch, left:left + cw], order="C")  # a writable copy

    def describe(self) -> str:
        return (f"{self.strategy}, PIL {_PIL_FILTERS.get(self.interpolation, self.interpolation).lower()} to "
                f"{self.size}x{self.size}, normalize mean {list(self.means[0])} std {list(self.stds[0])}"
                + (f" / {list(self.means[1])} {list(self.stds[1])}" if len(self.means) > 1 else ""))


def _letterbox(a: np.ndarray, fill: tuple[int, int, int]) -> np.ndarray:
    """Prismatic's letterbox_pad_transform: the same border on both sides, ``int((max - side) / 2)`` each."""
    h, w = a.shape[:2]
    m = max(h, w)
    ph, pv = int((m - w) / 2), int((m - h) / 2)
    if ph == 0 and pv == 0:
        return a
    out = np.empty((h + 2 * pv, w + 2 * ph, 3), dtype=np.uint8)
    out[...] = np.asarray(fill, dtype=np.uint8)
    out[pv:pv + h, ph:ph + w] = a
    return out


def _triple(v, what: str, path: Path) -> tuple[float, float, float]:
    try:
        t = tuple(float(x) for x in v)
    except (TypeError, ValueError):
        t = ()
    if len(t) != 3:
        raise ModelError(f"{path}: {what} must be three numbers, got {v!r}; fix or re-download the file")
    return t  # type: ignore[return-value]


def read_preprocessor(folder: Path, n_towers: int) -> PublishedImageTransform | None:
    """The folder's OpenVLA preprocessor_config.json as a transform, or None when the folder has none (our own
    models: the fast path). Anything it cannot reproduce exactly is a one-line ModelError naming the file."""
    path = Path(folder) / PREPROCESSOR_FILE
    if not path.exists():
        return None
    try:
        cfg = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: unreadable ({exc}); re-download the model's preprocessor_config.json") from None
    if not isinstance(cfg, dict):
        raise ModelError(f"{path}: not an image processor config; re-download it")
    strategy = cfg.get("image_resize_strategy")
    if strategy not in STRATEGIES:
        raise ModelError(f"{path}: image_resize_strategy {strategy!r} is not one OpenVLA defines "
                         f"({', '.join(STRATEGIES)}); fix the file or re-export the model")
    sizes = cfg.get("input_sizes") or [[3, 224, 224]] * n_towers
    resize_params = cfg.get("tvf_resize_params")
    crop_params = cfg.get("tvf_crop_params")
    norm_params = cfg.get("tvf_normalize_params")
    means_raw, stds_raw = cfg.get("means"), cfg.get("stds")
    interps = cfg.get("interpolations") or ["bicubic"] * n_towers
    if len(sizes) != n_towers:
        raise ModelError(f"{path}: {len(sizes)} input size(s) for a model with {n_towers} vision tower(s); "
                         "the file belongs to another model")
    resizes, crops, interp_codes, means, stds = [], [], [], [], []
    for i in range(n_towers):
        side = int(sizes[i][-1])
        if resize_params:
            rp = resize_params[i]
            size = rp.get("size")
            resize = (int(size[0]), int(size[1])) if isinstance(size, list | tuple) and len(size) == 2 else \
                int(size[0] if isinstance(size, list | tuple) else size)
            if rp.get("max_size") is not None:
                raise ModelError(f"{path}: tvf_resize_params max_size is not supported; remove it or re-export")
            code = int(rp.get("interpolation", 3))
        else:  # only the timm data config: rebuild what the processor derives from it
            resize = (side, side) if strategy == "resize-naive" else side
            code = _NAMED_FILTERS.get(str(interps[i]).lower(), -1)
        if code not in _PIL_FILTERS:
            raise ModelError(f"{path}: unknown interpolation {code!r}; fix the file or re-download it")
        crop = tuple(int(x) for x in crop_params[i]["output_size"]) if crop_params else (side, side)
        if norm_params:
            mean, std = norm_params[i].get("mean"), norm_params[i].get("std")
        else:
            mean, std = (means_raw or [[0.5] * 3] * n_towers)[i], (stds_raw or [[0.5] * 3] * n_towers)[i]
        resizes.append(resize)
        crops.append(crop)
        interp_codes.append(code)
        means.append(_triple(mean, "tvf_normalize_params mean", path))
        stds.append(_triple(std, "tvf_normalize_params std", path))
    if len(set(map(str, resizes))) != 1 or len(set(crops)) != 1 or len(set(interp_codes)) != 1:
        raise ModelError(f"{path}: the vision towers are resized differently; vla-studio feeds both towers "
                         "one image, so only identical resize/crop settings are supported")
    if crops[0][0] != crops[0][1]:
        raise ModelError(f"{path}: crop {crops[0]} is not square; the vision towers take square images")
    fill = None
    do_letterbox = cfg.get("tvf_do_letterbox")
    if do_letterbox is None:
        do_letterbox = strategy == "letterbox"
    if do_letterbox:
        fill_raw = cfg.get("tvf_letterbox_fill")
        if fill_raw is None:  # what the processor derives: the last tower's mean (its loop overwrites it)
            fill_raw = [int(x * 255) for x in (means_raw or [[0.5] * 3])[-1]]
        fill = tuple(int(x) for x in fill_raw)
        if len(fill) != 3 or not all(0 <= x <= 255 for x in fill):
            raise ModelError(f"{path}: tvf_letterbox_fill must be three values 0..255, got {fill_raw!r}")
    return PublishedImageTransform(strategy=strategy, resize=resizes[0], crop=crops[0], interpolation=interp_codes[0],
                                   letterbox_fill=fill, means=means, stds=stds, source=str(path), raw=cfg)
