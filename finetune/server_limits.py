"""What a policy server accepts from the network, checked before any work: shared by every server front end.

Torch-free and transport-free, so the websocket server (``finetune.server``) and any other front end (an
HTTP ``/act`` endpoint) apply the same rules:

- ``authorized(given, expected)``: constant-time token check (``Authorization: Bearer <token>`` in the
  websocket handshake: nothing a client sends is parsed before it passes);
- ``RequestLimits``: bounds on every field (message bytes, msgpack containers, instruction length, image
  count and size against the checkpoint's input size, state length); ``limits.for_policy(policy)`` fills the
  checkpoint-dependent ones;
- ``check_observation(images, state, instruction, limits, camera_names)``: raises ``RequestRejected`` with
  a one-line reason for the client;
- ``resolve_token(token, token_file)``: the server's or client's token from ``--token-file``, the
  ``VLA_STUDIO_TOKEN`` environment variable or (with a warning: ``ps`` shows it to every local user)
  ``--token``.
"""

from __future__ import annotations

import dataclasses
import hmac
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recorder.errors import ConfigError

TOKEN_ENV = "VLA_STUDIO_TOKEN"
TLS_CA_ENV = "VLA_STUDIO_TLS_CA"  # client side: a CA file (or the server's self-signed cert) to trust for wss://


class RequestRejected(ValueError):
    """A request outside the limits; ``str()`` is the one-line reason sent back to the client."""


@dataclass(frozen=True)
class RequestLimits:
    """Bounds on one request. Zero in a checkpoint-dependent field means "derive it from the policy"."""

    max_message_bytes: int = 16 * 1024 * 1024  # four 640x480 RGB frames are 3.7 MB
    max_containers: int = 256  # msgpack maps + arrays in one message (a request has about 10)
    max_container_len: int = 64  # entries of one map / array
    max_instruction_chars: int = 1000  # OpenVLA prompts are a sentence; 100k characters held the model 20 s
    max_cameras: int = 16  # images in one request (the policy uses its own cameras among them)
    max_image_side: int = 0  # pixels per side; 0: 10x the checkpoint's input size, at least 640
    max_state_dim: int = 256  # 0 would mean "no state accepted"

    def for_policy(self, policy) -> RequestLimits:
        """These limits with the checkpoint-dependent ones filled from ``policy`` (a Policy or alike)."""
        side = self.max_image_side
        if side <= 0:
            size = getattr(getattr(policy, "vla", None), "image_size", None) or getattr(policy, "image_size", None)
            side = max(640, 10 * int(size)) if size else 2048
        return dataclasses.replace(self, max_image_side=int(side))

    def msgpack_options(self) -> dict:
        """Keyword arguments for ``msgpack.unpackb``: no string, byte string or container beyond the limits."""
        return {"max_str_len": max(256, 4 * self.max_instruction_chars), "max_bin_len": self.max_message_bytes,
                "max_array_len": self.max_container_len, "max_map_len": self.max_container_len, "max_ext_len": 0}


def authorized(given: str | bytes | None, expected: str | None) -> bool:
    """True when no token is required or ``given`` equals it (constant time)."""
    if expected is None:
        return True
    if isinstance(given, str):
        given = given.encode()
    return isinstance(given, bytes) and hmac.compare_digest(given, expected.encode())


def bearer_token(header: str | None) -> str | None:
    """``"Bearer T"`` -> ``T`` (None for anything else)."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def check_observation(images, state, instruction, limits: RequestLimits, camera_names) -> None:
    """Raise ``RequestRejected`` unless the request fits ``limits`` (which ``for_policy`` has filled)."""
    if not isinstance(instruction, str):
        raise RequestRejected("instruction must be a string")
    if len(instruction) > limits.max_instruction_chars:
        raise RequestRejected(f"instruction of {len(instruction)} characters is over the limit of "
                              f"{limits.max_instruction_chars}; send the task in a sentence")
    if not isinstance(images, dict) or not images:
        raise RequestRejected("images must map camera names to HxWx3 uint8 arrays")
    if len(images) > limits.max_cameras:
        raise RequestRejected(f"{len(images)} images is over the limit of {limits.max_cameras}; "
                              f"send the policy's cameras {list(camera_names)}")
    for name, img in images.items():
        if not (isinstance(name, str) and isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3
                and img.shape[2] == 3):
            raise RequestRejected("images must map camera names to HxWx3 uint8 arrays")
        h, w = img.shape[:2]
        if h < 1 or w < 1 or max(h, w) > limits.max_image_side:
            raise RequestRejected(f"image {name!r} is {w}x{h}; this checkpoint takes images of 1 to "
                                  f"{limits.max_image_side} pixels a side (it resizes them to its input)")
    missing = [c for c in camera_names if c not in images]
    if missing:
        raise RequestRejected(f"request lacks camera(s) {missing}; the policy needs {list(camera_names)}")
    if state is not None:
        if not (isinstance(state, np.ndarray) and state.ndim == 1 and state.dtype.kind == "f"):
            raise RequestRejected("state must be a 1-D float array or nil")
        if state.shape[0] > limits.max_state_dim:
            raise RequestRejected(f"state of {state.shape[0]} values is over the limit of {limits.max_state_dim}")
        if not np.isfinite(state).all():
            raise RequestRejected("state holds NaN or infinite values")


def resolve_token(token: str | None, token_file: str | os.PathLike | None, *, warn=None) -> str | None:
    """The token from ``token_file`` (its first line), else ``token`` (the command line: ``warn`` is called
    with a line saying why that is weak), else ``$VLA_STUDIO_TOKEN``. ``ConfigError`` on an unusable file."""
    if token_file is not None and token:
        raise ConfigError("give the token once: --token-file FILE (or the VLA_STUDIO_TOKEN variable), not --token too")
    if token_file is not None:
        path = Path(token_file).expanduser()
        try:
            raw = path.read_bytes()
            mode = path.stat().st_mode
        except OSError as err:
            raise ConfigError(f"--token-file {path}: cannot read it ({err.strerror or err}); "
                              "write the token in it (chmod 600)") from None
        try:
            value = (raw.decode("utf-8").strip().splitlines() or [""])[0].strip()
        except UnicodeDecodeError:
            raise ConfigError(f"--token-file {path}: not a text file; write the token on its first line") from None
        if not value:
            raise ConfigError(f"--token-file {path} is empty: write the token on its first line")
        if warn is not None and mode & (stat.S_IRGRP | stat.S_IROTH):
            warn(f"warning: --token-file {path} is readable by other users: chmod 600 {path}")
        return value
    if token:
        if warn is not None:
            warn(f"warning: a token given with --token is visible to every user of this machine (ps); "
                 f"use --token-file FILE or the {TOKEN_ENV} environment variable")
        return token
    return os.environ.get(TOKEN_ENV, "").strip() or None
