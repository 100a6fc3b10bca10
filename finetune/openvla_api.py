"""OpenVLA's REST endpoint (``vla-scripts/deploy.py``) in front of a vla-studio policy.

Existing OpenVLA clients and evaluation scripts drive a vla-studio policy unchanged::

    import requests, json_numpy; json_numpy.patch(); import numpy as np
    action = requests.post("http://127.0.0.1:8000/act",
                           json={"image": np.zeros((256, 256, 3), dtype=np.uint8), "instruction": "do something"}).json()

``POST /act`` takes a JSON body ``{"image": uint8 HxWx3, "instruction": str, "unnorm_key": str (optional)}``
with the image in json_numpy's encoding (``{"__numpy__": base64, "dtype": "|u1", "shape": [H, W, 3]}``; a plain
nested list of 0..255 also works) or, as deploy.py allows, the whole payload "double-encoded" as
``{"encoded": "<that JSON as a string>"}``. The reply is the action as deploy.py sends it: the json_numpy encoding
of a float64 array (``(D,)`` for one step; ``(K, D)`` for a chunk-head policy), a JSON string of it when the
request was double-encoded. ``state`` (float list) is passed to policies trained with proprio.

Unlike deploy.py (which answers the string "error" with status 200): a bad request is an HTTP error status with
``{"error": "one line"}``, and the server lives on. It binds 127.0.0.1 unless told otherwise; any other address
needs a token, which clients send as ``Authorization: Bearer T`` or, so that a client stays unchanged but for its
URL, ``/act?token=T``. Bodies over ``max_body`` bytes are refused without being kept (HTTP 413). Only numeric arrays are
decoded (never Python objects). One inference at a time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np

from recorder.errors import ConfigError, KnownError

__all__ = ["OpenVLAServer", "DEFAULT_PORT", "decode_payload", "encode_array"]

DEFAULT_PORT = 8000  # deploy.py's
DEFAULT_MAX_BODY = 16 * 1024 * 1024
MAX_INSTRUCTION = 2000
_log = logging.getLogger(__name__)


class RequestError(ValueError):
    """A request we answer with an error status (the message is one line for the client)."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST):
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------------------------------------ codec
def _ndarray(d: dict) -> np.ndarray:
    try:
        data = base64.b64decode(d["__numpy__"], validate=True)
        dtype = np.dtype(d["dtype"]) if isinstance(d["dtype"], str) else None
        shape = tuple(int(n) for n in d["shape"])
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise RequestError(f"bad json_numpy array ({type(exc).__name__}: {exc})") from None
    if dtype is None or dtype.kind not in "biuf" or dtype.hasobject:
        raise RequestError(f"array dtype {d.get('dtype')!r} is not allowed (numeric arrays only)")
    if any(n < 0 for n in shape) or int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != len(data):
        raise RequestError(f"array data is {len(data)} bytes, which does not fit shape {list(shape)} of {dtype}")
    a = np.frombuffer(data, dtype=dtype)
    return a.reshape(shape) if shape else a[0]


def _hook(d: dict):
    return _ndarray(d) if "__numpy__" in d else d


def decode_payload(body: bytes) -> tuple[dict, bool]:
    """The request body -> (payload, double_encoded)."""
    try:
        payload = json.loads(body, object_hook=_hook)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(f"the body is not JSON ({exc})") from None
    double = isinstance(payload, dict) and "encoded" in payload
    if double:
        if len(payload) != 1 or not isinstance(payload["encoded"], str):
            raise RequestError("a double-encoded request holds only 'encoded' (a JSON string)")
        try:
            payload = json.loads(payload["encoded"], object_hook=_hook)
        except json.JSONDecodeError as exc:
            raise RequestError(f"'encoded' is not JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise RequestError("the body must be a JSON object with 'image' and 'instruction'")
    return payload, double


def encode_array(a: np.ndarray) -> dict:
    """json_numpy's encoding of an array (what deploy.py's patched JSONResponse writes)."""
    a = np.ascontiguousarray(a)
    return {"__numpy__": base64.b64encode(a.tobytes()).decode(), "dtype": np.lib.format.dtype_to_descr(a.dtype),
            "shape": list(a.shape)}


def _image(v) -> np.ndarray:
    if isinstance(v, list):
        try:
            a = np.asarray(v)
        except ValueError:
            raise RequestError("'image' is a ragged list; send a uint8 HxWx3 array") from None
        if a.dtype.kind not in "iu" or (a.size and (a.min() < 0 or a.max() > 255)):
            raise RequestError("'image' as a list must hold integers 0..255")
        v = a.astype(np.uint8)
    if not isinstance(v, np.ndarray):
        raise RequestError("'image' must be a uint8 HxWx3 array (json_numpy encoding)")
    if v.dtype != np.uint8:
        raise RequestError(f"'image' must be uint8, got {v.dtype}")
    if v.ndim == 2:  # PIL's convert("RGB") of a grey image, as deploy.py does
        v = np.repeat(v[..., None], 3, axis=2)
    elif v.ndim == 3 and v.shape[2] == 4:
        v = v[..., :3]
    if v.ndim != 3 or v.shape[2] != 3 or v.shape[0] < 1 or v.shape[1] < 1:
        raise RequestError(f"'image' must be HxWx3, got shape {list(v.shape)}")
    return np.ascontiguousarray(v)


# ------------------------------------------------------------------------------------------------ server
class OpenVLAServer:
    """``POST /act`` over HTTP for one ``finetune.runtime.Policy`` (single camera).

    ``start()`` serves on a thread (``port=0`` picks a free port; read ``self.port``), ``stop()`` ends it.
    ``stats`` counts requests, errors and rejections."""

    def __init__(self, policy, host: str = "127.0.0.1", port: int = DEFAULT_PORT, token: str | None = None,
                 max_body: int = DEFAULT_MAX_BODY) -> None:
        from .server import check_bind

        check_bind(host, token)
        cams = list(getattr(policy, "camera_names", ["front"]))
        if len(cams) != 1:
            raise ConfigError(f"serve --api openvla: OpenVLA's /act sends one image; this policy takes {len(cams)} "
                              f"cameras {cams}; serve it with the websocket API")
        self.policy, self.camera = policy, cams[0]
        self.host, self.port, self.token, self.max_body = host, int(port), token, int(max_body)
        self.stats = {"requests": 0, "errors": 0, "rejected": 0}
        self._lock = threading.Lock()  # one inference at a time
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/act"

    # -- the work
    def _authorized(self, headers, query: str) -> bool:
        if not self.token:
            return True
        sent = ""
        auth = headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            sent = auth[len("Bearer "):].strip()
        else:
            sent = (parse_qs(query).get("token") or [""])[0]
        return hmac.compare_digest(sent.encode(), self.token.encode())

    def act(self, body: bytes) -> bytes:
        """One request body -> the reply body (raises RequestError)."""
        payload, double = decode_payload(body)
        if "image" not in payload or "instruction" not in payload:
            raise RequestError("the request needs 'image' (uint8 HxWx3) and 'instruction' (str)")
        image = _image(payload["image"])
        instruction = payload["instruction"]
        if not isinstance(instruction, str) or not instruction.strip() or len(instruction) > MAX_INSTRUCTION:
            raise RequestError(f"'instruction' must be a non-empty string of at most {MAX_INSTRUCTION} characters")
        unnorm_key = payload.get("unnorm_key")
        if unnorm_key is not None and not isinstance(unnorm_key, str):
            raise RequestError("'unnorm_key' must be a string")
        state = payload.get("state", payload.get("proprio"))
        if state is not None:
            try:
                state = np.asarray(state, dtype=np.float32).reshape(-1)
            except (TypeError, ValueError):
                raise RequestError("'state' must be a list of numbers") from None
        norm_stats = getattr(self.policy, "norm_stats", None) or {}
        if unnorm_key is not None and unnorm_key not in norm_stats:
            raise RequestError(f"unnorm_key {unnorm_key!r} is not one of {sorted(norm_stats)}")
        with self._lock:
            try:
                out = self.policy.predict({self.camera: image}, state, instruction)
                action = self.policy.unnormalize(out.normalized, unnorm_key)
            except KnownError as exc:
                raise RequestError(str(exc).splitlines()[0]) from None
        action = np.asarray(action, dtype=np.float64)
        if action.ndim == 2 and action.shape[0] == 1:
            action = action[0]
        encoded = json.dumps(encode_array(action))
        return json.dumps(encoded).encode() if double else encoded.encode()

    # -- HTTP plumbing
    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 30  # a client that stops sending mid-request frees its thread
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):  # keep stderr for our own one-liners
                _log.debug("%s " + fmt, self.address_string(), *args)

            def _reply(self, status: HTTPStatus, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _error(self, status: HTTPStatus, message: str, *, close: bool = False) -> None:
                server.stats["rejected" if status in (401, 411, 413) else "errors"] += 1
                if close:
                    self.close_connection = True
                self._reply(status, json.dumps({"error": message}).encode())

            def _drain(self, length: int) -> None:
                """Read and drop a refused body (up to a cap, never kept) so the client gets the error reply
                rather than a broken pipe; past the cap the connection just closes."""
                left = length if 0 < length <= min(4 * server.max_body, 64 * 1024 * 1024) else 0
                try:
                    while left > 0:
                        chunk = self.rfile.read(min(left, 1 << 16))
                        if not chunk:
                            break
                        left -= len(chunk)
                except OSError:
                    pass

            def do_GET(self):  # noqa: N802
                self._error(HTTPStatus.METHOD_NOT_ALLOWED, "POST a JSON body to /act")

            def do_POST(self):  # noqa: N802
                server.stats["requests"] += 1
                parts = urlsplit(self.path)
                if parts.path.rstrip("/") != "/act":
                    return self._error(HTTPStatus.NOT_FOUND, f"no endpoint {parts.path}; POST to /act", close=True)
                if not server._authorized(self.headers, parts.query):
                    return self._error(HTTPStatus.UNAUTHORIZED, "wrong or missing token "
                                       "(send Authorization: Bearer TOKEN or /act?token=TOKEN)", close=True)
                try:
                    length = int(self.headers.get("Content-Length", ""))
                except ValueError:
                    return self._error(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length", close=True)
                if length < 0 or length > server.max_body:
                    self._drain(length)
                    return self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                       f"body of {length} bytes; the server takes at most {server.max_body}",
                                       close=True)
                try:
                    body = self.rfile.read(length)
                except OSError:
                    self.close_connection = True
                    return
                if len(body) != length:
                    return self._error(HTTPStatus.BAD_REQUEST, "the body ended early", close=True)
                try:
                    reply = server.act(body)
                except RequestError as exc:
                    return self._error(exc.status, str(exc))
                except Exception as exc:  # noqa: BLE001 - a bug must not take the server down
                    _log.exception("openvla api: request failed")
                    return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}")
                self._reply(HTTPStatus.OK, reply)

        return Handler

    def start(self) -> OpenVLAServer:
        try:
            self._httpd = ThreadingHTTPServer((self.host, self.port), self._handler())
        except OSError as exc:
            raise ConfigError(f"serve: cannot listen on {self.host}:{self.port} ({exc.strerror or exc}); "
                              "pick another --port") from None
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="openvla-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
