import numpy as np
import pytest

from finetune.server import PolicyServer, RemotePolicy, packb, unpackb
from recorder.errors import ConfigError, ModelError
from tests.rollout_doubles import FixedChunkPolicy

TOKEN = "s3cret"


@pytest.fixture
def server():
    srv = PolicyServer(FixedChunkPolicy(chunk_size=5), port=0, token=TOKEN, max_message_size=200_000).start()
    yield srv
    srv.stop()


def _raw(url):
    from websockets.sync.client import connect

    return connect(url, max_size=None).__enter__()


def test_round_trip_matches_local_policy(server):
    img = np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    state = np.arange(6, dtype=np.float32)
    with RemotePolicy(server.url, token=TOKEN) as remote:
        assert remote.chunk_size == 5 and remote.action_dim == 6 and remote.camera_names == ["front"]
        assert remote.checkpoint_id == "double/1"
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


def test_missing_or_wrong_token_is_refused(server):
    ws = _raw(server.url)
    ws.send(packb({"type": "info"}))
    assert unpackb(ws.recv(timeout=5)) == {"ok": False, "error": "unauthorized: missing or wrong token"}
    ws.close()
    with pytest.raises(ModelError, match="unauthorized"):
        RemotePolicy(server.url, token="wrong")
    assert server.stats["unauthorized"] == 2
    assert server.policy.calls == []


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
