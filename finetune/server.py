"""A policy server for a GPU machine, and ``RemotePolicy``, its client with the local Policy interface.

Wire format: one websocket binary message per request and per reply, each a msgpack map. numpy
arrays travel as ``{"__nd__": 1, "dtype": "<f4", "shape": [..], "data": <bytes>}`` (C order);
only plain numeric dtypes are accepted, so a request can never make the server build Python
objects.

Authentication happens in the websocket handshake, before anything a client sends is parsed: a
server started with a token answers HTTP 401 to a handshake without ``Authorization: Bearer <token>``.

Requests (after the handshake)::

    {"type": "info"}
    {"type": "predict", "images": {camera: uint8 HxWx3}, "state": f32 (D,) | nil, "instruction": str}

Replies: ``{"ok": true, ...}`` or ``{"ok": false, "error": "one line"}`` (plus ``"busy": true`` when the
request queue is full: retry shortly). An ``info`` reply carries ``camera_names, action_dim,
chunk_size, checkpoint_id``; a ``predict`` reply ``actions (K, D), confidence (K,) | nil, latency_s``
(the model's time on the server) and ``queued_s`` (its wait for the model).

Safety: the server binds 127.0.0.1 unless told otherwise and refuses any other address without a
token; with ``tls=(cert, key)`` it speaks wss://. Every message is bounded before any work
(``finetune.server_limits``: size, msgpack containers, instruction length, image count and size against
the checkpoint's, state length); a message outside them gets an error reply, and the connection and
the server live on. Inference runs on one model thread fed by a bounded FIFO queue (one request per
connection at a time, so clients take turns); a request that finds the queue full is answered "busy" at
once instead of waiting without bound, and its client keeps its place for the retry (freed slots go to
the clients turned away, oldest first), so no client starves under overload either.
"""

from __future__ import annotations

import asyncio
import http
import ipaddress
import os
import re
import ssl
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import msgpack
import numpy as np

from finetune.server_limits import (
    TLS_CA_ENV,
    TOKEN_ENV,
    RequestLimits,
    RequestRejected,
    authorized,
    bearer_token,
    check_observation,
)
from recorder.errors import ConfigError, ModelError, StudioWarning, one_line

DEFAULT_PORT = 8765
DEFAULT_MAX_MESSAGE = RequestLimits.max_message_bytes
DEFAULT_MAX_QUEUE = 64  # predicts waiting for (or on) the model; one more is answered "busy"
_ALLOWED_KINDS = "biuf"  # bool, int, unsigned, float
_UNAUTHORIZED = "unauthorized: missing or wrong token"


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


def unpackb(data: bytes, max_size: int = DEFAULT_MAX_MESSAGE, limits: RequestLimits | None = None):
    """Inverse of ``packb``; raises ``ProtocolError`` on anything malformed. With ``limits`` (the server's
    side) no string, byte string or container may exceed them and a message may hold at most
    ``limits.max_containers`` maps and arrays: decoding stops at the first one over, so a hostile message
    costs at most that much work."""
    if not isinstance(data, bytes | bytearray):
        raise ProtocolError("expected a binary message")
    if len(data) > max_size:
        raise ProtocolError(f"message of {len(data)} bytes is over the limit of {max_size}")
    options: dict = {}
    hook = _decode_hook
    if limits is not None:
        budget = [limits.max_containers]

        def spend(obj):
            budget[0] -= 1
            if budget[0] < 0:
                raise ProtocolError(f"more than {limits.max_containers} maps and arrays in one message")
            return obj

        def hook(obj):
            return _decode_hook(spend(obj))

        options = dict(limits.msgpack_options(), list_hook=spend)
    try:
        return msgpack.unpackb(data, object_hook=hook, raw=False, strict_map_key=True, **options)
    except ProtocolError:
        raise
    except Exception as err:  # msgpack raises several exception types on garbage (and on its own limits)
        over = re.fullmatch(r"(\d+) exceeds max_(str|bin|array|map)_len\((\d+)\)", str(err))
        if over is not None and limits is not None:
            n, kind, cap = over.groups()
            what = {"str": f"a text of {n} bytes", "bin": f"a byte string of {n} bytes",
                    "array": f"a list of {n} entries", "map": f"a map of {n} entries"}[kind]
            extra = f" (an instruction may have at most {limits.max_instruction_chars} characters)" if kind == "str" else ""
            raise ProtocolError(f"{what} is over the server's limit of {cap}{extra}") from None
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
        raise ConfigError(f"serve: binding {host} exposes the robot policy to the network; give a token "
                          f"(--token-file FILE or the {TOKEN_ENV} variable; clients then need it) or bind 127.0.0.1")


def server_tls_context(cert: str | os.PathLike, key: str | os.PathLike) -> ssl.SSLContext:
    """A TLS server context from a PEM certificate (chain) and its private key; ``ConfigError`` if unusable."""
    for what, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not Path(path).is_file():
            raise ConfigError(f"serve: {what} {path} does not exist; give a PEM file "
                              "(e.g. openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError, ValueError) as err:
        raise ConfigError(f"serve: cannot use --tls-cert {cert} with --tls-key {key} ({one_line(err, 160)}); "
                          "give a PEM certificate and the private key that matches it") from None
    return ctx


def security_notes(host: str, token: str | None, tls: bool) -> list[str]:
    """Plain warnings for what a serve configuration leaves in clear (printed by ``vla-studio serve``)."""
    if tls or is_loopback(host):
        return []
    what = "the token and every camera frame travel" if token else "every camera frame travels"
    return [f"warning: serving on {host} without TLS: {what} in clear over the network; "
            "pass --tls-cert/--tls-key (clients then use wss://)"]


class PolicyServer:
    """Serve ``policy.predict`` over a websocket.

    ``start()`` runs the server on its own thread and event loop (``port=0`` picks a free port:
    read ``self.port`` after start); ``serve_forever()`` runs it on the calling thread. Inference
    runs on one model thread behind a FIFO queue of at most ``max_queue`` requests, so the event loop
    keeps answering (errors, info, "busy") while the model works. A client answered "busy" keeps its
    place for ``busy_hold_s`` after each try: freed slots go to the waiting clients in the order they were
    turned away (``RemotePolicy`` retries within 50 ms). ``stats`` counts requests, errors, rejections and
    busy replies.
    """

    def __init__(self, policy, host: str = "127.0.0.1", port: int = DEFAULT_PORT, token: str | None = None,
                 max_message_size: int = DEFAULT_MAX_MESSAGE, *, limits: RequestLimits | None = None,
                 max_queue: int = DEFAULT_MAX_QUEUE, tls: tuple[str, str] | ssl.SSLContext | None = None,
                 busy_hold_s: float = 0.25) -> None:
        check_bind(host, token)
        if max_queue < 1:
            raise ConfigError("serve: the request queue must hold at least 1 request")
        self.policy = policy
        self.host = host
        self.port = port
        self.token = token or None
        if limits is None:
            limits = RequestLimits(max_message_bytes=int(max_message_size))
        self.limits = limits.for_policy(policy)
        self.max_message_size = self.limits.max_message_bytes
        self.max_queue = int(max_queue)
        if isinstance(tls, tuple):
            tls = server_tls_context(*tls)
        self.ssl_context: ssl.SSLContext | None = tls
        self.stats = {"requests": 0, "predictions": 0, "errors": 0, "unauthorized": 0, "oversized": 0,
                      "rejected": 0, "busy": 0}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._start_error: BaseException | None = None
        self._model = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy-model")
        self._pending = 0  # predicts queued or running; touched on the event loop thread only
        self._waiting: dict[int, float] = {}  # clients answered "busy", in that order -> time of their last try
        self.busy_hold_s = float(busy_hold_s)

    # ---------------------------------------------------------------- request handling (pure)
    def _info(self) -> dict:
        p = self.policy
        return {"ok": True, "camera_names": list(p.camera_names), "action_dim": int(p.action_dim),
                "chunk_size": int(p.chunk_size),
                "checkpoint_id": None if p.checkpoint_id is None else str(p.checkpoint_id),
                "checkpoint_label": p.checkpoint_label,
                "action_head": p.action_head,
                "limits": {"max_message_bytes": self.limits.max_message_bytes,
                           "max_instruction_chars": self.limits.max_instruction_chars,
                           "max_image_side": self.limits.max_image_side, "max_queue": self.max_queue}}

    def _parse(self, data) -> tuple[dict | None, dict | None]:
        """(request, None) or (None, error reply). The client has passed the handshake's token check."""
        self.stats["requests"] += 1
        size = len(data) if isinstance(data, bytes | bytearray) else len(str(data).encode())
        if size > self.max_message_size:
            self.stats["oversized"] += 1
            return None, {"ok": False, "error": f"request of {size} bytes is over the server's limit of "
                                                f"{self.max_message_size} bytes; send smaller images"}
        try:
            req = unpackb(data, self.max_message_size, self.limits)
        except ProtocolError as err:
            self.stats["errors"] += 1
            return None, {"ok": False, "error": f"malformed request: {err}"}
        if not isinstance(req, dict):
            self.stats["errors"] += 1
            return None, {"ok": False, "error": "malformed request: expected a map"}
        kind = req.get("type")
        if kind == "info":
            return req, None
        if kind != "predict":
            self.stats["errors"] += 1
            return None, {"ok": False, "error": f"malformed request: unknown type {str(kind)[:40]!r}"}
        try:
            check_observation(req.get("images"), req.get("state"), req.get("instruction"), self.limits,
                              self.policy.camera_names)
        except RequestRejected as err:
            self.stats["rejected"] += 1
            return None, {"ok": False, "error": f"malformed request: {err}"}
        return req, None

    def _predict(self, req: dict, queued_at: float) -> dict:
        t0 = time.monotonic()
        try:
            out = self.policy.predict(req["images"], req.get("state"), req["instruction"])
        except Exception as err:  # a model error is the client's answer, not the server's death
            self.stats["errors"] += 1
            return {"ok": False, "error": f"policy failed: {type(err).__name__}: {one_line(err)}"}
        self.stats["predictions"] += 1
        conf = getattr(out, "confidence", None)
        return {"ok": True, "actions": np.asarray(out.actions, np.float32),
                "confidence": None if conf is None else np.asarray(conf, np.float32),
                "latency_s": float(out.latency_s), "queued_s": t0 - queued_at, "held": bool(getattr(out, "held", False))}

    async def _submit(self, req: dict, client: int) -> dict:
        # A client told "busy" keeps its place: a slot that frees goes to the longest-waiting client's retry,
        # not to whoever asks first (a client just served would otherwise take it back at once, every time).
        now = time.monotonic()
        for other, last in list(self._waiting.items()):
            if now - last > self.busy_hold_s:  # stopped retrying: its place lapses
                del self._waiting[other]
        ahead = list(self._waiting).index(client) if client in self._waiting else len(self._waiting)
        if ahead >= self.max_queue - self._pending:
            self._waiting[client] = now  # a dict keeps the first-busy order
            self.stats["busy"] += 1
            return {"ok": False, "busy": True,
                    "error": f"busy: {self._pending} requests are waiting for the model (limit {self.max_queue}); "
                             "retry shortly"}
        self._waiting.pop(client, None)
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._model, self._predict, req, time.monotonic())
        finally:
            self._pending -= 1

    def _authorize(self, connection, request):
        """The handshake hook: no token, no websocket (nothing the client sends later is ever parsed)."""
        if self.token is None:
            return None
        if authorized(bearer_token(request.headers.get("Authorization")), self.token):
            return None
        self.stats["unauthorized"] += 1
        return connection.respond(http.HTTPStatus.UNAUTHORIZED, _UNAUTHORIZED + "\n")

    async def _handler(self, ws) -> None:
        import websockets

        try:
            async for data in ws:
                req, reply = self._parse(data)
                if reply is None:
                    reply = self._info() if req["type"] == "info" else await self._submit(req, id(ws))
                await ws.send(packb(reply))
        except websockets.ConnectionClosed:
            pass
        finally:
            self._waiting.pop(id(ws), None)

    async def _serve(self) -> None:
        import websockets

        self._stop = asyncio.Event()
        # the transport limit is above ours so an oversized request still gets a readable reply;
        # beyond twice the limit the connection is closed with code 1009 (message too big)
        async with websockets.serve(self._handler, self.host, self.port, max_size=2 * self.max_message_size + 1024,
                                    compression=None, process_request=self._authorize, ssl=self.ssl_context,
                                    open_timeout=10) as server:
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
        self._model.shutdown(wait=False, cancel_futures=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'wss' if self.ssl_context is not None else 'ws'}://{host}:{self.port}"

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
    queued_s: float = 0.0  # the request's wait for the model on the server
    busy_retries: int = 0  # "busy" replies before this one
    held: bool = False  # the server's head gave no valid chunk (FAST): a hold-still chunk


def client_tls_context(ca_file: str | os.PathLike | None) -> ssl.SSLContext:
    """Verify the server against ``ca_file`` (a CA or the server's own self-signed cert), else the system's CAs."""
    try:
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as err:
        raise ModelError(f"TLS CA file {ca_file}: cannot use it ({one_line(err, 160)}); give the server's "
                         f"certificate (PEM) with --tls-ca or {TLS_CA_ENV}") from None


class RemotePolicy:
    """A policy served by ``vla-studio serve``, used exactly like a local Policy.

    The token travels in the handshake (``Authorization: Bearer``); ``None`` takes ``$VLA_STUDIO_TOKEN``.
    ``wss://`` URLs are verified against ``ca_file`` (default ``$VLA_STUDIO_TLS_CA``, else the system's
    CAs); a token sent in clear off loopback is a ``StudioWarning`` (or a line given to ``warn``). A "busy"
    reply is retried with a short backoff until ``timeout``. ``latency_s`` of each output is the whole round
    trip (encode, network, queue, model, decode).
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0,
                 max_message_size: int = DEFAULT_MAX_MESSAGE, ca_file: str | os.PathLike | None = None,
                 warn=None) -> None:
        from urllib.parse import urlsplit

        from websockets.exceptions import InvalidStatus
        from websockets.sync.client import connect

        self.url = url
        self.token = token if token is not None else (os.environ.get(TOKEN_ENV, "").strip() or None)
        self.timeout = timeout
        self._lock = threading.Lock()
        parts = urlsplit(url)
        kw: dict = {}
        if parts.scheme == "wss":
            kw["ssl"] = client_tls_context(ca_file or os.environ.get(TLS_CA_ENV) or None)
        elif self.token and parts.hostname and not is_loopback(parts.hostname):
            line = (f"warning: policy server {url}: the token travels in clear (ws://); serve with "
                    "--tls-cert/--tls-key and connect with wss://")
            if warn is not None:
                warn(line)
            else:
                warnings.warn(line, StudioWarning, stacklevel=2)
        if self.token:
            kw["additional_headers"] = {"Authorization": f"Bearer {self.token}"}
        try:
            # entered as a context manager (websockets >= 17.1 warns on a bare connect()); close() leaves it
            self._ws = connect(url, open_timeout=timeout, max_size=2 * max_message_size + 1024,
                               compression=None, **kw).__enter__()
        except InvalidStatus as err:
            if err.response.status_code == http.HTTPStatus.UNAUTHORIZED:
                raise ModelError(f"policy server {url}: {_UNAUTHORIZED}; give the server's token (--token-file "
                                 f"FILE or {TOKEN_ENV})") from None
            raise ModelError(f"policy server {url}: refused the connection (HTTP {err.response.status_code}); "
                             "is it a `vla-studio serve`?") from None
        except ssl.SSLCertVerificationError as err:
            raise ModelError(f"policy server {url}: its TLS certificate is not trusted ({one_line(err.verify_message or err, 120)}); "
                             f"give its certificate with --tls-ca FILE or {TLS_CA_ENV}") from None
        except Exception as err:
            hint = (" (a wss:// server? use wss://)" if parts.scheme == "ws" and "invalid" in str(err).lower() else "")
            raise ModelError(f"policy server {url}: cannot connect ({type(err).__name__}: {one_line(err, 160)}){hint}; "
                             "is `vla-studio serve` running there?") from None
        info, _ = self._call({"type": "info"})
        self.camera_names = list(info["camera_names"])
        self.action_dim = int(info["action_dim"])
        self.chunk_size = int(info["chunk_size"])
        self.checkpoint_id = info.get("checkpoint_id")
        self.action_head = info.get("action_head")  # the served checkpoint's head (None: not said)
        label = info.get("checkpoint_label") or self.checkpoint_id
        self.checkpoint_label = f"{label}@{url}" if label else url
        self.checkpoint_dir = None  # the checkpoint lives on the server (satisfies recorder.policy.Policy)

    def _call(self, request: dict) -> tuple[dict, int]:
        deadline = time.monotonic() + self.timeout
        delay, retries = 0.005, 0
        data = packb(request)
        while True:
            with self._lock:
                try:
                    self._ws.send(data)
                    reply = unpackb(self._ws.recv(timeout=max(0.001, deadline - time.monotonic())), 1 << 40)
                except ProtocolError as err:
                    raise ModelError(f"policy server {self.url}: bad reply ({err})") from None
                except TimeoutError:
                    raise ModelError(f"policy server {self.url}: no reply in {self.timeout:.0f} s") from None
                except Exception as err:
                    raise ModelError(f"policy server {self.url}: connection lost ({type(err).__name__}: "
                                     f"{one_line(err, 160)})") from None
            if isinstance(reply, dict) and reply.get("busy") and time.monotonic() + delay < deadline:
                retries += 1
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
                continue
            break
        if not isinstance(reply, dict) or not reply.get("ok"):
            msg = reply.get("error", "unknown error") if isinstance(reply, dict) else "bad reply"
            raise ModelError(f"policy server {self.url}: {msg}")
        return reply, retries

    def predict(self, images: dict[str, np.ndarray], state: np.ndarray | None, instruction: str) -> RemoteOutput:
        t0 = time.monotonic()
        req = {"type": "predict", "images": {k: np.ascontiguousarray(v, dtype=np.uint8) for k, v in images.items()},
               "state": None if state is None else np.asarray(state, np.float32), "instruction": instruction}
        reply, retries = self._call(req)
        conf = reply.get("confidence")
        return RemoteOutput(actions=np.array(reply["actions"], np.float32),
                            confidence=None if conf is None else np.array(conf, np.float32),
                            latency_s=time.monotonic() - t0, server_latency_s=float(reply.get("latency_s", 0.0)),
                            queued_s=float(reply.get("queued_s", 0.0)), busy_retries=retries,
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
