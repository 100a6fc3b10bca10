"""A policy server for a GPU machine, and ``RemotePolicy``, its client with the local Policy interface.

Wire format: one websocket binary message per request and per reply, each a msgpack map. numpy
arrays travel as ``{"__nd__": 1, "dtype": "<f4", "shape": [..], "data": <bytes>}`` (C order);
only plain numeric dtypes are accepted, so a request can never make the server build Python
objects.

Requests::

    {"type": "info", "token": T}
    {"type": "predict", "token": T, "images": {camera: uint8 HxWx3}, "state": f32 (D,) | nil, "instruction": str}

Replies: ``{"ok": true, ...}`` or ``{"ok": false, "error": "one line"}``. An ``info`` reply carries
``camera_names, action_dim, chunk_size, checkpoint_id``; a ``predict`` reply ``actions (K, D),
confidence (K,) | nil, latency_s`` (the model's time on the server).

Safety: the server binds 127.0.0.1 unless told otherwise and refuses any other address without a
token; a message over ``max_message_size`` bytes, a malformed message or a wrong token gets an
error reply; the connection and the server live on.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import threading
import time
from dataclasses import dataclass

import msgpack
import numpy as np

from recorder.errors import ConfigError, ModelError

DEFAULT_PORT = 8765
DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024  # 16 MiB: four 640x480 RGB images are 3.7 MB
_ALLOWED_KINDS = "biuf"  # bool, int, unsigned, float


class ProtocolError(ValueError):
    """A request that does not follow the wire format (answered with an error reply)."""


# --------------------------------------------------------------------------------------------- codec
def _encode_default(obj):
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in _ALLOWED_KINDS:
            raise TypeError(f"cannot send an array of dtype {obj.dtype}")
        arr = np.ascontiguousarray(obj)
        return {"__nd__": 1, "dtype": arr.dtype.str, "shape": list(arr.shape), "data": arr.tobytes()}
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot send a {type(obj).__name__}")


def _decode_hook(obj):
    if obj.get("__nd__") == 1:
        try:
            dtype = np.dtype(obj["dtype"])
            shape = tuple(int(n) for n in obj["shape"])
            data = obj["data"]
        except (KeyError, TypeError, ValueError) as err:
            raise ProtocolError(f"bad array header: {err}") from None
        if dtype.kind not in _ALLOWED_KINDS or dtype.hasobject:
            raise ProtocolError(f"array dtype {dtype} is not allowed")
        if any(n < 0 for n in shape) or not isinstance(data, bytes | bytearray):
            raise ProtocolError("bad array shape or data")
        if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != len(data):
            raise ProtocolError(f"array data is {len(data)} bytes, shape {shape} of {dtype} needs another size")
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    return obj


def packb(obj) -> bytes:
    """msgpack with our ndarray encoding."""
    return msgpack.packb(obj, default=_encode_default, use_bin_type=True)


def unpackb(data: bytes, max_size: int = DEFAULT_MAX_MESSAGE):
    """Inverse of ``packb``; raises ``ProtocolError`` on anything malformed."""
    if not isinstance(data, bytes | bytearray):
        raise ProtocolError("expected a binary message")
    if len(data) > max_size:
        raise ProtocolError(f"message of {len(data)} bytes is over the limit of {max_size}")
    try:
        return msgpack.unpackb(data, object_hook=_decode_hook, raw=False, strict_map_key=True)
    except ProtocolError:
        raise
    except Exception as err:  # msgpack raises several exception types on garbage
        raise ProtocolError(f"not a msgpack message ({type(err).__name__})") from None


# --------------------------------------------------------------------------------------------- server
def is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to expose a policy on a non-loopback address without a token."""
    if not is_loopback(host) and not token:
        raise ConfigError(f"serve: binding {host} exposes the robot policy to the network; pass --token SECRET "
                          "(clients then need it) or bind 127.0.0.1")


class PolicyServer:
    """Serve ``policy.predict`` over a websocket.

    ``start()`` runs the server on its own thread and event loop (``port=0`` picks a free port:
    read ``self.port`` after start); ``serve_forever()`` runs it on the calling thread. Inference
    runs in a worker thread, one request at a time, so the event loop keeps answering (errors,
    info) while the model works. ``stats`` counts requests, errors and rejections.
    """

    def __init__(self, policy, host: str = "127.0.0.1", port: int = DEFAULT_PORT, token: str | None = None,
                 max_message_size: int = DEFAULT_MAX_MESSAGE) -> None:
        check_bind(host, token)
        self.policy = policy
        self.host = host
        self.port = port
        self.token = token
        self.max_message_size = int(max_message_size)
        self.stats = {"requests": 0, "predictions": 0, "errors": 0, "unauthorized": 0, "oversized": 0}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._start_error: BaseException | None = None
        self._model_lock = threading.Lock()

    # ---------------------------------------------------------------- request handling (pure)
    def _info(self) -> dict:
        p = self.policy
        return {"ok": True, "camera_names": list(p.camera_names), "action_dim": int(p.action_dim),
                "chunk_size": int(p.chunk_size),
                "checkpoint_id": None if p.checkpoint_id is None else str(p.checkpoint_id),
                "checkpoint_label": getattr(p, "checkpoint_label", None),
                "action_head": getattr(p, "action_head", None)}

    def _parse(self, data) -> tuple[dict | None, dict | None]:
        """(request, None) or (None, error reply)."""
        self.stats["requests"] += 1
        size = len(data) if isinstance(data, bytes | bytearray) else len(str(data).encode())
        if size > self.max_message_size:
            self.stats["oversized"] += 1
            return None, {"ok": False, "error": f"request of {size} bytes is over the server's limit of "
                                                f"{self.max_message_size} bytes; send smaller images"}
        try:
            req = unpackb(data, self.max_message_size)
        except ProtocolError as err:
            self.stats["errors"] += 1
            return None, {"ok": False, "error": f"malformed request: {err}"}
        if not isinstance(req, dict):
            self.stats["errors"] += 1
            return None, {"ok": False, "error": "malformed request: expected a map"}
        if self.token is not None:
            given = req.get("token")
            if not isinstance(given, str) or not hmac.compare_digest(given.encode(), self.token.encode()):
                self.stats["unauthorized"] += 1
                return None, {"ok": False, "error": "unauthorized: missing or wrong token"}
        kind = req.get("type")
        if kind == "info":
            return req, None
        if kind != "predict":
            self.stats["errors"] += 1
            return None, {"ok": False, "error": f"malformed request: unknown type {kind!r}"}
        images, state, instruction = req.get("images"), req.get("state"), req.get("instruction")
        if not isinstance(images, dict) or not all(
                isinstance(k, str) and isinstance(v, np.ndarray) and v.dtype == np.uint8 and v.ndim == 3
                and v.shape[2] == 3 for k, v in images.items()):
            self.stats["errors"] += 1
            return None, {"ok": False, "error": "malformed request: images must map camera names to HxWx3 uint8"}
        if state is not None and not (isinstance(state, np.ndarray) and state.ndim == 1 and state.dtype.kind == "f"):
            self.stats["errors"] += 1
            return None, {"ok": False, "error": "malformed request: state must be a 1-D float array or nil"}
        if not isinstance(instruction, str):
            self.stats["errors"] += 1
            return None, {"ok": False, "error": "malformed request: instruction must be a string"}
        missing = [c for c in self.policy.camera_names if c not in images]
        if missing:
            self.stats["errors"] += 1
            return None, {"ok": False, "error": f"request lacks camera(s) {missing}; the policy needs "
                                                f"{list(self.policy.camera_names)}"}
        return req, None

    def _predict(self, req: dict) -> dict:
        with self._model_lock:
            try:
                out = self.policy.predict(req["images"], req.get("state"), req["instruction"])
            except Exception as err:  # a model error is the client's answer, not the server's death
                self.stats["errors"] += 1
                return {"ok": False, "error": f"policy failed: {type(err).__name__}: {err}".splitlines()[0]}
        self.stats["predictions"] += 1
        conf = getattr(out, "confidence", None)
        return {"ok": True, "actions": np.asarray(out.actions, np.float32),
                "confidence": None if conf is None else np.asarray(conf, np.float32),
                "latency_s": float(out.latency_s), "held": bool(getattr(out, "held", False))}

    async def _handler(self, ws) -> None:
        import websockets

        loop = asyncio.get_running_loop()
        try:
            async for data in ws:
                req, reply = self._parse(data)
                if reply is None:
                    if req["type"] == "info":
                        reply = self._info()
                    else:
                        reply = await loop.run_in_executor(None, self._predict, req)
                await ws.send(packb(reply))
        except websockets.ConnectionClosed:
            pass

    async def _serve(self) -> None:
        import websockets

        self._stop = asyncio.Event()
        # the transport limit is above ours so an oversized request still gets a readable reply;
        # beyond twice the limit the connection is closed with code 1009 (message too big)
        async with websockets.serve(self._handler, self.host, self.port, max_size=2 * self.max_message_size + 1024,
                                    compression=None) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._started.set()
            await self._stop.wait()

    def serve_forever(self) -> None:
        asyncio.run(self._serve())

    def start(self, timeout: float = 10.0) -> PolicyServer:
        def run():
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(self._serve())
            except BaseException as err:  # noqa: BLE001 (reported to start())
                self._start_error = err
                self._started.set()
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=run, name="policy-server", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout) or self._start_error is not None:
            raise ConfigError(f"serve: cannot listen on {self.host}:{self.port} ({self._start_error}); "
                              "pick another --port")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(5)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# --------------------------------------------------------------------------------------------- client
@dataclass
class RemoteOutput:
    """Same fields as ``finetune.runtime.PolicyOutput``; ``latency_s`` is the round trip seen by the client."""

    actions: np.ndarray
    confidence: np.ndarray | None
    latency_s: float
    server_latency_s: float = 0.0
    held: bool = False  # the server's head gave no valid chunk (FAST): a hold-still chunk


class RemotePolicy:
    """A policy served by ``vla-studio serve``, used exactly like a local Policy.

    ``latency_s`` of each output is the whole round trip (encode, network, model, decode).
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0,
                 max_message_size: int = DEFAULT_MAX_MESSAGE) -> None:
        from websockets.sync.client import connect

        self.url = url
        self.token = token
        self.timeout = timeout
        self._lock = threading.Lock()
        try:
            # entered as a context manager (websockets >= 17.1 warns on a bare connect()); close() leaves it
            self._ws = connect(url, open_timeout=timeout, max_size=2 * max_message_size + 1024,
                               compression=None).__enter__()
        except Exception as err:
            raise ModelError(f"policy server {url}: cannot connect ({type(err).__name__}: {err}); "
                             "is `vla-studio serve` running there?") from None
        info = self._call({"type": "info"})
        self.camera_names = list(info["camera_names"])
        self.action_dim = int(info["action_dim"])
        self.chunk_size = int(info["chunk_size"])
        self.checkpoint_id = info.get("checkpoint_id")
        self.action_head = info.get("action_head")  # the served checkpoint's head (None: not said)
        label = info.get("checkpoint_label") or self.checkpoint_id
        self.checkpoint_label = f"{label}@{url}" if label else url

    def _call(self, request: dict) -> dict:
        request = dict(request, token=self.token)
        with self._lock:
            try:
                self._ws.send(packb(request))
                reply = unpackb(self._ws.recv(timeout=self.timeout), 1 << 40)
            except ProtocolError as err:
                raise ModelError(f"policy server {self.url}: bad reply ({err})") from None
            except TimeoutError:
                raise ModelError(f"policy server {self.url}: no reply in {self.timeout:.0f} s") from None
            except Exception as err:
                raise ModelError(f"policy server {self.url}: connection lost ({type(err).__name__}: {err})") from None
        if not isinstance(reply, dict) or not reply.get("ok"):
            msg = reply.get("error", "unknown error") if isinstance(reply, dict) else "bad reply"
            raise ModelError(f"policy server {self.url}: {msg}")
        return reply

    def predict(self, images: dict[str, np.ndarray], state: np.ndarray | None, instruction: str) -> RemoteOutput:
        t0 = time.monotonic()
        req = {"type": "predict", "images": {k: np.ascontiguousarray(v, dtype=np.uint8) for k, v in images.items()},
               "state": None if state is None else np.asarray(state, np.float32), "instruction": instruction}
        reply = self._call(req)
        conf = reply.get("confidence")
        return RemoteOutput(actions=np.array(reply["actions"], np.float32),
                            confidence=None if conf is None else np.array(conf, np.float32),
                            latency_s=time.monotonic() - t0, server_latency_s=float(reply.get("latency_s", 0.0)),
                            held=bool(reply.get("held", False)))

    def close(self) -> None:
        try:
            self._ws.close()
        except Exception:  # noqa: BLE001 (closing a dead socket)
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
