"""FAST action tokenizer (pi0-FAST): DCT per action dimension over the chunk, scale + round, flatten
low frequencies first, then BPE (the ``tokenizers`` library) fitted on the dataset's chunks.

Arithmetic, as Physical Intelligence's ``processing_action_tokenizer.py`` (the FAST processor):

- ``coeff = dct(chunk, axis=0, norm="ortho")`` for a normalized chunk ``(K, D)`` (actions in [-1, 1]);
- ``levels = round(coeff * scale)`` (default scale 10), clipped to the range seen when fitting;
- ``levels.flatten()`` row-major: all D dimensions of frequency 0, then of frequency 1, ... (low first);
- each level becomes one character; BPE merges frequent runs into tokens (vocabulary fitted per run);
- decode: BPE ids -> characters -> levels -> ``(K, D)`` -> ``/ scale`` -> ``idct(.., norm="ortho")``.

A sequence that does not decode to exactly ``K * D`` levels (an unknown id, too few / too many symbols) is
*undecodable*: :meth:`FastTokenizer.decode` returns None and the caller substitutes a hold-still chunk.

Torch-free (numpy + tokenizers). Stored as one JSON file beside the checkpoint (``fast_tokenizer.json``), so
export, rollout and serve decode exactly as training encoded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from recorder.errors import ConfigError, ModelError

__all__ = ["FastTokenizer", "FAST_FILE", "MIN_FAST_CHUNKS", "dct_matrix"]

FAST_FILE = "fast_tokenizer.json"
MIN_FAST_CHUNKS = 50  # fewer chunks than this cannot give BPE merges that generalise
_BASE_CHAR = 0x4E00  # levels map to CJK code points: no whitespace, no normalisation surprises
_FORMAT = 1


def dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix (``C @ x == scipy.fft.dct(x, axis=0, norm="ortho")``; ``C.T`` inverts)."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    c = np.sqrt(2.0 / n) * np.cos(np.pi * (i + 0.5) * k / n)
    c[0] /= np.sqrt(2.0)
    return c


class FastTokenizer:
    def __init__(self, chunk_size: int, action_dim: int, *, scale: float, min_level: int, max_level: int,
                 bpe, max_tokens: int, mean_tokens: float, n_fit: int) -> None:
        self.chunk_size, self.action_dim = int(chunk_size), int(action_dim)
        self.scale = float(scale)
        self.min_level, self.max_level = int(min_level), int(max_level)
        self.bpe = bpe
        self.max_tokens = int(max_tokens)  # longest encoding among the fitted chunks
        self.mean_tokens = float(mean_tokens)  # typical tokens per chunk (the benchmark's decode length)
        self.n_fit = int(n_fit)
        self._dct = dct_matrix(self.chunk_size)

    @property
    def vocab_size(self) -> int:
        return int(self.bpe.get_vocab_size())

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, chunks: np.ndarray, *, vocab_size: int = 1024, scale: float = 10.0,
            min_chunks: int = MIN_FAST_CHUNKS, source: str = "the dataset") -> FastTokenizer:
        """BPE over the DCT levels of ``chunks`` (N, K, D), normalized. ``vocab_size`` is an upper bound (the
        tokens the model can give FAST); a ConfigError when there are too few chunks or too many levels."""
        from tokenizers import Tokenizer, models, trainers

        a = np.asarray(chunks, dtype=np.float64)
        if a.ndim != 3 or a.shape[0] < min_chunks:
            n = 0 if a.ndim != 3 else a.shape[0]
            raise ConfigError(f"--action-head fast: {source} gives {n} action chunks, the FAST tokenizer needs at "
                              f"least {min_chunks} to fit its BPE vocabulary; record more episodes or use "
                              "--action-head tokens")
        K, D = a.shape[1:]
        levels = np.rint(np.einsum("kt,ntd->nkd", dct_matrix(K), np.clip(a, -1, 1)) * scale).astype(np.int64)
        lo, hi = int(levels.min()), int(levels.max())
        n_symbols = hi - lo + 1
        if n_symbols > vocab_size:
            raise ConfigError(f"--action-head fast: the chunks span {n_symbols} DCT levels but this model has "
                              f"room for {vocab_size} FAST tokens; use a smaller --chunk or --action-head tokens")
        alphabet = [chr(_BASE_CHAR + i) for i in range(n_symbols)]
        bpe = Tokenizer(models.BPE())
        trainer = trainers.BpeTrainer(vocab_size=int(vocab_size), min_frequency=2, initial_alphabet=alphabet,
                                      special_tokens=[], show_progress=False, limit_alphabet=n_symbols)
        texts = ["".join(chr(_BASE_CHAR + int(v) - lo) for v in row.reshape(-1)) for row in levels]
        bpe.train_from_iterator(texts, trainer=trainer, length=len(texts))
        tok = cls(K, D, scale=scale, min_level=lo, max_level=hi, bpe=bpe, max_tokens=1, mean_tokens=1.0,
                  n_fit=a.shape[0])
        lens = [len(bpe.encode(t).ids) for t in texts]
        tok.max_tokens, tok.mean_tokens = int(max(lens)), float(np.mean(lens))
        return tok

    # ------------------------------------------------------------------ encode / decode
    def _text(self, chunk: np.ndarray) -> str:
        a = np.asarray(chunk, dtype=np.float64).reshape(self.chunk_size, self.action_dim)
        lv = np.rint(self._dct @ np.clip(a, -1, 1) * self.scale).astype(np.int64)
        lv = np.clip(lv, self.min_level, self.max_level)
        return "".join(chr(_BASE_CHAR + int(v) - self.min_level) for v in lv.reshape(-1))

    def encode(self, chunk: np.ndarray) -> list[int]:
        """Normalized ``(K, D)`` chunk -> BPE ids (0 .. vocab_size-1)."""
        return list(self.bpe.encode(self._text(chunk)).ids)

    def decode(self, ids) -> np.ndarray | None:
        """BPE ids -> normalized ``(K, D)`` float32, or None when they do not form a valid chunk."""
        pieces = []
        for i in ids:
            t = self.bpe.id_to_token(int(i)) if 0 <= int(i) < self.vocab_size else None
            if t is None:
                return None
            pieces.append(t)
        text = "".join(pieces)
        if len(text) != self.chunk_size * self.action_dim:
            return None
        lv = np.array([ord(ch) - _BASE_CHAR + self.min_level for ch in text], dtype=np.float64)
        if lv.min() < self.min_level or lv.max() > self.max_level:
            return None
        coeff = lv.reshape(self.chunk_size, self.action_dim) / self.scale
        return np.clip(self._dct.T @ coeff, -1.0, 1.0).astype(np.float32)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        return {"format": _FORMAT, "chunk_size": self.chunk_size, "action_dim": self.action_dim, "scale": self.scale,
                "min_level": self.min_level, "max_level": self.max_level, "max_tokens": self.max_tokens,
                "mean_tokens": self.mean_tokens, "n_fit": self.n_fit, "bpe": json.loads(self.bpe.to_str())}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict, source: str = "") -> FastTokenizer:
        from tokenizers import Tokenizer

        try:
            if int(d.get("format", 0)) != _FORMAT:
                raise ValueError(f"format {d.get('format')} (this version reads {_FORMAT})")
            bpe = Tokenizer.from_str(json.dumps(d["bpe"]))
            return cls(d["chunk_size"], d["action_dim"], scale=d["scale"], min_level=d["min_level"],
                       max_level=d["max_level"], bpe=bpe, max_tokens=d["max_tokens"], mean_tokens=d["mean_tokens"],
                       n_fit=d["n_fit"])
        except (KeyError, TypeError, ValueError, Exception) as exc:  # noqa: BLE001 - tokenizers raises plain Exception
            raise ModelError(f"{source or 'FAST tokenizer'}: unreadable FAST tokenizer ({type(exc).__name__}: "
                             f"{exc}); re-save the checkpoint") from None

    def save(self, folder: Path) -> Path:
        path = Path(folder) / FAST_FILE
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, folder: Path) -> FastTokenizer:
        path = Path(folder) / FAST_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelError(f"{path} is missing: this checkpoint has no FAST tokenizer, so its FAST tokens cannot "
                             "be decoded; pick the checkpoint folder the run wrote") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"{path}: unreadable ({exc}); re-save the checkpoint") from None
        return cls.from_dict(data, str(path))

    def __repr__(self) -> str:
        return (f"FastTokenizer(K={self.chunk_size}, D={self.action_dim}, scale={self.scale:g}, "
                f"vocab={self.vocab_size}, ~{self.mean_tokens:.1f} tokens/chunk)")
