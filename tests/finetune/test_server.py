import numpy as np
import pytest

from finetune.server import PolicyServer, RemotePolicy, packb, unpackb
from recorder.errors import ConfigError, ModelError, StudioWarning
from recorder.policy import Policy as RolloutPolicy
from tests.rollout_doubles import FixedChunkPolicy

TOKEN = "s3cret"


@pytest.fixture
def server():
    srv = PolicyServer(FixedChunkPolicy(chunk_size=5), port=0, token=TOKEN, max_message_size=200_000).start()
    yield srv
    srv.stop()


def _raw(url, token=TOKEN):
    from websockets.sync.client import connect

    headers = {"Authorization": f"Bearer {token}"} if token else None
    return connect(url, max_size=None, additional_headers=headers).__enter__()


def test_round_trip_matches_local_policy(server):
    img = np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    state = np.arange(6, dtype=np.float32)
    with RemotePolicy(server.url, token=TOKEN) as remote:
        assert remote.chunk_size == 5 and remote.action_dim == 6 and remote.camera_names == ["front"]
        assert remote.checkpoint_id == "double/1"
        # what a rollout needs of a policy, the same on both sides of the wire
        assert isinstance(remote, RolloutPolicy) and isinstance(FixedChunkPolicy(), RolloutPolicy)
        assert remote.checkpoint_dir is None and remote.action_head is None
        out = remote.predict({"front": img}, state, "pick up the red cube")
    local = FixedChunkPolicy(chunk_size=5).predict({"front": img}, state, "x")
    np.testing.assert_array_equal(out.actions, local.actions)
    np.testing.assert_array_equal(out.confidence, local.confidence)
    assert out.actions.shape == (5, 6) and out.latency_s > 0
    assert server.policy.calls[0][1] == "pick up the red cube"


def test_malformed_requests_get_error_replies_and_server_survives(server):
    ws = _raw(server.url)
    for junk in [b"\xc1\xc1 not msgpack", packb([1, 2, 3]), packb({"type": "predict", "token": TOKEN}),
                 packb({"type": "predict", "token": TOKEN, "images": {"front": {"__nd__": 1, "dtype": "<f4",
                                                                                "shape": [9, 9], "data": b"x"}},
                        "instruction": "a"}),
                 packb({"type": "predict", "token": TOKEN, "images": {"front": {"__nd__": 1, "dtype": "|O",
                                                                                "shape": [1], "data": b"x" * 8}},
                        "instruction": "a"}),
                 packb({"type": "launch", "token": TOKEN}), "a text frame"]:
        ws.send(junk)
        reply = unpackb(ws.recv(timeout=5))
        assert reply["ok"] is False and "malformed" in reply["error"]
    ws.close()
    # still serving
    with RemotePolicy(server.url, token=TOKEN) as remote:
        assert remote.predict({"front": np.zeros((4, 4, 3), np.uint8)}, None, "go").actions.shape == (5, 6)


def test_missing_or_wrong_token_is_refused_in_the_handshake_before_any_message_is_read(server):
    from websockets.exceptions import InvalidStatus

    for token in (None, "wrong"):
        with pytest.raises(InvalidStatus) as err:
            _raw(server.url, token=token)
        assert err.value.response.status_code == 401 and b"unauthorized" in err.value.response.body
    with pytest.raises(ModelError, match="unauthorized: missing or wrong token; give the server's token"):
        RemotePolicy(server.url, token="wrong")
    assert server.stats["unauthorized"] == 3
    assert server.stats["requests"] == 0  # nothing an unauthenticated client sent was parsed
    assert server.policy.calls == []


def test_a_flood_of_empty_maps_from_a_stranger_is_never_parsed(server):
    """16 MB of msgpack empty maps cost the server 1.5 s and 1.2 GB before the token was checked."""
    import socket

    host, port = server.url.removeprefix("ws://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 401")
        flood = b"\xdd\x00\xff\xff\xff" + b"\x80" * (16 * 1024 * 1024)  # an array of 16M empty maps
        try:
            sock.sendall(b"\x82\x7f" + len(flood).to_bytes(8, "big") + flood)
        except OSError:
            pass  # the server closed the connection after its 401: what we want
    assert server.stats["requests"] == 0 and server.stats["unauthorized"] == 1
    with RemotePolicy(server.url, token=TOKEN) as remote:  # and it serves the next client at once
        assert remote.predict({"front": np.zeros((4, 4, 3), np.uint8)}, None, "go").actions.shape == (5, 6)


def test_oversized_request_gets_an_error_reply(server):
    with RemotePolicy(server.url, token=TOKEN) as remote:
        big = np.zeros((200, 400, 3), np.uint8)  # 240 kB > 200 kB limit
        with pytest.raises(ModelError, match="over the server's limit"):
            remote.predict({"front": big}, None, "go")
        # the same connection keeps working
        assert remote.predict({"front": np.zeros((8, 8, 3), np.uint8)}, None, "go").actions.shape == (5, 6)
    assert server.stats["oversized"] == 1


def test_refuses_public_bind_without_token():
    with pytest.raises(ConfigError, match="--token"):
        PolicyServer(FixedChunkPolicy(), host="0.0.0.0", port=0)
    PolicyServer(FixedChunkPolicy(), host="127.0.0.1", port=0)  # loopback needs no token


def test_unreachable_server_is_a_known_error():
    with pytest.raises(ModelError, match="cannot connect"):
        RemotePolicy("ws://127.0.0.1:1", timeout=2)


def test_a_busy_port_is_a_known_error(server):
    with pytest.raises(ConfigError, match="pick another --port"):
        PolicyServer(FixedChunkPolicy(), port=server.port).start()


def _predict_reply(ws, **fields):
    req = {"type": "predict", "images": {"front": np.zeros((8, 8, 3), np.uint8)}, "state": None,
           "instruction": "go", **fields}
    ws.send(packb(req))
    return unpackb(ws.recv(timeout=10))


@pytest.mark.parametrize("fields, message", [
    ({"instruction": "x" * 100_000}, "a text of 100000 bytes is over the server's limit of 4000 (an instruction "
                                     "may have at most 1000 characters)"),
    ({"instruction": "x" * 2000}, "instruction of 2000 characters is over the limit of 1000"),
    ({"images": {"front": np.zeros((8, 2100, 3), np.uint8)}}, "image 'front' is 2100x8; this checkpoint takes images "
                                                              "of 1 to 2048 pixels a side"),
    ({"images": {"front": np.zeros((0, 8, 3), np.uint8)}}, "image 'front' is 8x0"),
    ({"images": {f"c{i}": np.zeros((2, 2, 3), np.uint8) for i in range(17)}}, "17 images is over the limit of 16"),
    ({"state": np.zeros(5000, np.float32)}, "state of 5000 values is over the limit of 256"),
    ({"state": np.array([0.0, np.nan], np.float32)}, "state holds NaN"),
])
def test_every_field_is_bounded_before_the_model_sees_it(server, fields, message):
    ws = _raw(server.url)
    reply = _predict_reply(ws, **fields)
    assert reply["ok"] is False and message in reply["error"], reply
    assert server.policy.calls == []  # refused before any work
    assert _predict_reply(ws)["ok"] is True  # the same connection goes on
    ws.close()


def test_a_huge_message_of_tiny_containers_is_refused_after_a_bounded_amount_of_decoding(server):
    ws = _raw(server.url)
    # 190 kB (under the 200 kB limit) of nested arrays of empty maps: ~190k containers
    payload = b"\x81\xa4type\xdc\x00\x40" + (b"\xdc\x00\x40" + b"\x80" * 64) * 2800
    ws.send(payload)
    reply = unpackb(ws.recv(timeout=10))
    assert reply["ok"] is False and "more than 256 maps and arrays" in reply["error"]
    ws.send(packb({"type": "info", "pad": "y" * 5000}))  # a string over msgpack's bound for this server
    assert "malformed" in unpackb(ws.recv(timeout=10))["error"]
    ws.close()


def test_the_server_instruction_limit_follows_the_checkpoint_input_size():
    from finetune.server_limits import RequestLimits

    class Vla:
        image_size = 448

    class Pol(FixedChunkPolicy):
        vla = Vla()

    assert RequestLimits().for_policy(Pol()).max_image_side == 4480
    assert RequestLimits().for_policy(FixedChunkPolicy()).max_image_side == 2048  # unknown input size
    assert RequestLimits(max_image_side=300).for_policy(Pol()).max_image_side == 300


class GatedPolicy(FixedChunkPolicy):
    """Holds every call until ``gate`` is set (so a test can fill the server's queue)."""

    def __init__(self, **kw):
        import threading

        super().__init__(**kw)
        self.gate = threading.Event()

    def predict(self, images, state, instruction):
        self.gate.wait(10)
        return super().predict(images, state, instruction)


def test_a_full_queue_answers_busy_at_once_and_the_client_retries():
    import threading

    policy = GatedPolicy(chunk_size=5)
    gate = policy.gate
    srv = PolicyServer(policy, port=0, max_queue=1).start()
    try:
        first = {}
        t = threading.Thread(target=lambda: first.setdefault(
            "out", RemotePolicy(srv.url).predict({"front": np.zeros((4, 4, 3), np.uint8)}, None, "first")))
        t.start()
        ws = _raw(srv.url, token=None)
        for _ in range(200):  # the first request holds the model
            if srv._pending == 1:
                break
            threading.Event().wait(0.01)
        reply = _predict_reply(ws, instruction="second")
        assert reply["ok"] is False and reply["busy"] is True and reply["error"].startswith("busy: 1 requests")
        assert srv.stats["busy"] == 1
        with RemotePolicy(srv.url, timeout=10) as patient:
            threading.Timer(0.3, gate.set).start()
            out = patient.predict({"front": np.zeros((4, 4, 3), np.uint8)}, None, "third")
        assert out.busy_retries >= 1 and out.actions.shape == (5, 6)
        t.join(10)
        assert first["out"].actions.shape == (5, 6)
        assert [c[1] for c in srv.policy.calls] == ["first", "third"]
        ws.close()
    finally:
        gate.set()
        srv.stop()


def test_requests_are_served_first_come_first_served():
    """The model thread takes requests in arrival order: a client that waits is never overtaken."""
    import threading

    policy = GatedPolicy()
    gate = policy.gate
    srv = PolicyServer(policy, port=0).start()
    clients = [_raw(srv.url, token=None) for _ in range(6)]
    try:
        req = {"type": "predict", "images": {"front": np.zeros((4, 4, 3), np.uint8)}, "state": None}
        for i, ws in enumerate(clients):
            ws.send(packb({**req, "instruction": f"c{i}"}))
            for _ in range(300):
                if srv._pending == i + 1:
                    break
                threading.Event().wait(0.01)
        gate.set()
        assert all(unpackb(ws.recv(timeout=10))["ok"] for ws in clients)
        assert [c[1] for c in srv.policy.calls] == [f"c{i}" for i in range(6)]
    finally:
        gate.set()
        for ws in clients:
            ws.close()
        srv.stop()


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    """A certificate for 127.0.0.1 made here with openssl (key, cert)."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"), "-days", "1", "-subj", "/CN=vla-test",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], check=True, capture_output=True)
    return d / "key.pem", d / "cert.pem"


def test_tls_server_speaks_wss_to_a_client_that_trusts_its_certificate(self_signed, tmp_path):
    key, cert = self_signed
    srv = PolicyServer(FixedChunkPolicy(chunk_size=5), port=0, token=TOKEN, tls=(str(cert), str(key))).start()
    try:
        assert srv.url.startswith("wss://127.0.0.1:")
        with RemotePolicy(srv.url, token=TOKEN, ca_file=cert) as remote:
            assert remote.predict({"front": np.zeros((4, 4, 3), np.uint8)}, None, "go").actions.shape == (5, 6)
        with pytest.raises(ModelError, match="TLS certificate is not trusted.*--tls-ca"):
            RemotePolicy(srv.url, token=TOKEN, timeout=5)  # the system CAs do not know a self-signed cert
        with pytest.raises(ModelError, match="cannot connect"):
            RemotePolicy(srv.url.replace("wss://", "ws://"), token=TOKEN, timeout=5)  # plain text to a TLS port
    finally:
        srv.stop()
    from finetune.server import server_tls_context

    with pytest.raises(ConfigError, match="--tls-key .* does not exist"):
        server_tls_context(cert, tmp_path / "none.pem")
    (tmp_path / "bad.pem").write_text("not a key")
    with pytest.raises(ConfigError, match="give a PEM certificate and the private key that matches it"):
        server_tls_context(cert, tmp_path / "bad.pem")


def test_the_token_comes_from_a_file_or_the_environment_and_the_command_line_warns(tmp_path, monkeypatch):
    from finetune.server_limits import TOKEN_ENV, resolve_token

    said = []
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    secret.chmod(0o600)
    assert resolve_token(None, secret, warn=said.append) == "from-file" and said == []
    secret.chmod(0o644)
    assert resolve_token(None, secret, warn=said.append) == "from-file"
    assert said and "readable by other users: chmod 600" in said[-1]
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    assert resolve_token(None, None, warn=said.append) == "from-env"
    said.clear()
    assert resolve_token("on-the-line", None, warn=said.append) == "on-the-line"
    assert said == ["warning: a token given with --token is visible to every user of this machine (ps); use "
                    "--token-file FILE or the VLA_STUDIO_TOKEN environment variable"]
    with pytest.raises(ConfigError, match="empty"):
        (tmp_path / "empty").write_text("\n")
        resolve_token(None, tmp_path / "empty")
    with pytest.raises(ConfigError, match="cannot read"):
        resolve_token(None, tmp_path / "missing")
    # the client takes the environment's token too
    srv = PolicyServer(FixedChunkPolicy(), port=0, token="from-env").start()
    try:
        with RemotePolicy(srv.url) as remote:
            assert remote.action_dim == 6
    finally:
        srv.stop()


def test_a_token_in_clear_off_loopback_is_said_plainly():
    from finetune.server import security_notes

    assert security_notes("127.0.0.1", TOKEN, tls=False) == []
    assert security_notes("0.0.0.0", TOKEN, tls=True) == []
    (note,) = security_notes("0.0.0.0", TOKEN, tls=False)
    assert "without TLS: the token and every camera frame travel in clear" in note and "--tls-cert" in note
    with pytest.warns(StudioWarning, match="the token travels in clear"), pytest.raises(ModelError):
        RemotePolicy("ws://192.0.2.1:9", token=TOKEN, timeout=0.5)  # TEST-NET: nothing answers


def _own_address() -> str | None:
    """This machine's address on its default route (no packet is sent), or None."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))
            addr = s.getsockname()[0]
    except OSError:
        return None
    from finetune.server import is_loopback

    return None if is_loopback(addr) else addr


def test_a_client_off_loopback_without_tls_says_its_token_travels_in_clear():
    addr = _own_address()
    if addr is None:
        pytest.skip("no non-loopback address on this machine")
    said = []
    with PolicyServer(FixedChunkPolicy(), host="0.0.0.0", port=0, token=TOKEN) as srv:
        with RemotePolicy(f"ws://{addr}:{srv.port}", token=TOKEN, timeout=5, warn=said.append) as remote:
            assert remote.predict({"front": np.zeros((4, 4, 3), np.uint8)}, None, "go").actions.shape == (4, 6)
    assert said == [f"warning: policy server ws://{addr}:{srv.port}: the token travels in clear (ws://); serve "
                    "with --tls-cert/--tls-key and connect with wss://"]


def test_serve_cli_reads_the_token_file_and_warns_before_loading_the_model(tmp_path, capsys, monkeypatch):
    from studio.cli import main

    monkeypatch.delenv("VLA_STUDIO_TOKEN", raising=False)
    rc = main(["--home", str(tmp_path / "home"), "serve", "--checkpoint", str(tmp_path / "none"), "--host", "0.0.0.0",
               "--token", "abc"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 3, err
    assert "--token is visible to every user" in err[0] and "without TLS" in err[1] and "none" in err[2]
    rc = main(["--home", str(tmp_path / "home"), "serve", "--checkpoint", str(tmp_path / "none"), "--host", "0.0.0.0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--token-file FILE or the VLA_STUDIO_TOKEN variable" in err[0]


def test_serve_cli_with_a_token_file_and_tls_serves_wss_with_its_limits(self_signed, tmp_path, capsys, monkeypatch):
    import threading

    import finetune.server as server_mod
    import studio.rollout.policy
    from studio.cli import main

    key, cert = self_signed
    secret = tmp_path / "token"
    secret.write_text("file-secret\n")
    secret.chmod(0o600)
    monkeypatch.delenv("VLA_STUDIO_TOKEN", raising=False)
    policy = FixedChunkPolicy(chunk_size=3)
    policy.checkpoint_label = "run/0000003"  # what load_local_policy sets on a real checkpoint
    monkeypatch.setattr(studio.rollout.policy, "load_local_policy", lambda *a, **k: policy)
    started = []
    real_start = server_mod.PolicyServer.start
    monkeypatch.setattr(server_mod.PolicyServer, "start", lambda self, *a: started.append(real_start(self, *a)) or self)
    result = {}
    cli = threading.Thread(target=lambda: result.setdefault("rc", main(
        ["--home", str(tmp_path / "home"), "serve", "--checkpoint", "x", "--port", "0", "--host", "127.0.0.1",
         "--token-file", str(secret), "--tls-cert", str(cert), "--tls-key", str(key), "--max-instruction", "20",
         "--max-queue", "2"])))
    cli.start()
    for _ in range(500):
        if started:
            break
        threading.Event().wait(0.01)
    srv = started[0]
    try:
        assert srv.url.startswith("wss://") and srv.max_queue == 2
        with RemotePolicy(srv.url, token="file-secret", ca_file=cert, timeout=10) as remote:
            assert remote.predict({"front": np.zeros((4, 4, 3), np.uint8)}, None, "go").actions.shape == (3, 6)
            with pytest.raises(ModelError, match="instruction of 21 characters is over the limit of 20"):
                remote.predict({"front": np.zeros((4, 4, 3), np.uint8)}, None, "x" * 21)
        with pytest.raises(ModelError, match="unauthorized"):
            RemotePolicy(srv.url, token="guess", ca_file=cert, timeout=10)
    finally:
        srv.stop()
        cli.join(10)
    assert result["rc"] == 0
    err = capsys.readouterr().err
    assert "serving" in err and "wss://127.0.0.1:" in err and "token required" in err and "warning" not in err


def test_a_client_told_busy_keeps_its_place_and_a_newcomer_cannot_jump_ahead():
    import threading

    policy = GatedPolicy()
    srv = PolicyServer(policy, port=0, max_queue=1, busy_hold_s=30).start()
    a, b, c = (_raw(srv.url, token=None) for _ in range(3))
    try:
        req = {"type": "predict", "images": {"front": np.zeros((4, 4, 3), np.uint8)}, "state": None}
        a.send(packb({**req, "instruction": "a"}))  # holds the model
        for _ in range(300):
            if srv._pending == 1:
                break
            threading.Event().wait(0.01)
        assert _predict_reply(b, instruction="b")["busy"] is True  # b waits first
        policy.gate.set()
        assert unpackb(a.recv(timeout=10))["ok"] is True  # the slot is free again ...
        assert _predict_reply(c, instruction="c")["busy"] is True  # ... but kept for b, not for newcomer c
        assert _predict_reply(a, instruction="a again")["busy"] is True  # nor for a, who was just served
        assert _predict_reply(b, instruction="b")["ok"] is True  # b's retry gets it
        assert _predict_reply(c, instruction="c")["ok"] is True  # then c (turned away before a)
        assert _predict_reply(a, instruction="a again")["ok"] is True
        assert [call[1] for call in policy.calls] == ["a", "b", "c", "a again"]
    finally:
        policy.gate.set()
        for ws in (a, b, c):
            ws.close()
        srv.stop()
