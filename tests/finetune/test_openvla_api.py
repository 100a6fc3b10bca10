"""`vla-studio serve --api openvla`: OpenVLA's deploy.py REST endpoint, driven by a client written the way
OpenVLA's docs show (json_numpy encoding, a plain HTTP POST of JSON to /act)."""

from __future__ import annotations

import base64
import json
import socket
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from recorder.errors import ConfigError  # noqa: E402

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "openvla"
INSTRUCTION = "Pick up the Red block"


# --- the client side, as OpenVLA's deploy.py docstring does it (json_numpy.patch(); requests.post(json=...))
def np_default(o):  # json_numpy.default
    if isinstance(o, np.ndarray):
        return {"__numpy__": base64.b64encode(np.ascontiguousarray(o).tobytes()).decode(),
                "dtype": np.lib.format.dtype_to_descr(o.dtype), "shape": o.shape}
    raise TypeError(type(o).__name__)


def np_hook(d):  # json_numpy.object_hook
    if "__numpy__" in d:
        a = np.frombuffer(base64.b64decode(d["__numpy__"]), np.lib.format.descr_to_dtype(d["dtype"]))
        return a.reshape(d["shape"]) if d["shape"] else a[0]
    return d


def post(url: str, body: bytes, headers: dict | None = None) -> tuple[int, object]:
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read(), object_hook=np_hook)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def act(url: str, payload: dict, **kw):
    return post(url, json.dumps(payload, default=np_default).encode(), **kw)


@pytest.fixture(scope="module")
def policy():
    from finetune.runtime import load_policy

    return load_policy(FIX / "model", device="cpu", dtype=torch.float32)


@pytest.fixture(scope="module")
def server(policy):
    from finetune.openvla_api import OpenVLAServer

    with OpenVLAServer(policy, port=0, max_body=2_000_000) as srv:
        yield srv


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(FIX / "reference.npz"))


def _frame(name):
    return np.asarray(Image.open(FIX / "images" / f"{name}.png").convert("RGB"))


def test_a_request_made_with_json_numpy_gets_openvlas_action(server):
    """The body OpenVLA's own client code wrote (json_numpy 2.1.1) -> the reply deploy.py gave for it."""
    status, action = post(server.url, (FIX / "act_request.json").read_bytes())
    assert status == 200
    expected = json.loads((FIX / "act_reply.json").read_text(), object_hook=np_hook)
    assert isinstance(action, np.ndarray) and action.dtype == np.float64 and action.shape == (7,)
    np.testing.assert_array_equal(action, expected)


@pytest.mark.parametrize("name", ["224x224", "640x480"])
def test_act_matches_openvla_for_other_frames(server, ref, name):
    status, action = act(server.url, {"image": _frame(name), "instruction": INSTRUCTION, "unnorm_key": "fixture_ft"})
    assert status == 200
    np.testing.assert_array_equal(action, ref[f"resize-naive/{name}/actions"])


def test_double_encoded_request_gets_a_double_encoded_reply(server, ref):
    inner = json.dumps({"image": _frame("224x224"), "instruction": INSTRUCTION}, default=np_default)
    status, reply = post(server.url, json.dumps({"encoded": inner}).encode())
    assert status == 200 and isinstance(reply, str)
    np.testing.assert_array_equal(json.loads(reply, object_hook=np_hook), ref["resize-naive/224x224/actions"])


@pytest.mark.parametrize("body, fragment", [
    (b"{not json", "not JSON"),
    (b'{"instruction": "x"}', "needs 'image'"),
    (json.dumps({"image": np.zeros((4, 4), np.float32), "instruction": "x"}, default=np_default).encode(), "uint8"),
    (b'{"image": {"__numpy__": "AAAA", "dtype": "|O", "shape": [1]}, "instruction": "x"}', "not allowed"),
    (b'{"image": {"__numpy__": "AAAA", "dtype": "|u1", "shape": [9, 9, 3]}, "instruction": "x"}', "does not fit"),
    (json.dumps({"image": np.zeros((8, 8, 3), np.uint8), "instruction": "x", "unnorm_key": "nope"},
                default=np_default).encode(), "fixture_ft"),
    (json.dumps({"image": np.zeros((8, 8, 3), np.uint8), "instruction": 5}, default=np_default).encode(), "instruction"),
])
def test_malformed_requests_get_an_error_and_the_server_lives_on(server, body, fragment):
    status, reply = post(server.url, body)
    assert status == 400
    assert fragment in reply["error"] and "\n" not in reply["error"]
    status, action = act(server.url, {"image": np.zeros((32, 32, 3), np.uint8), "instruction": "go"})
    assert status == 200 and action.shape == (7,)


def test_oversized_body_is_refused(server):
    big = {"image": np.zeros((1000, 1000, 3), np.uint8), "instruction": "x"}  # 4 MB of base64, > max_body
    status, reply = act(server.url, big)
    assert status == 413 and "at most 2000000" in reply["error"]
    assert act(server.url, {"image": np.zeros((16, 16, 3), np.uint8), "instruction": "go"})[0] == 200


def test_body_that_stops_early_does_not_hang_the_server(server):
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall(b"POST /act HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{\"image\"")
        s.shutdown(socket.SHUT_WR)
        s.recv(1024)
    status, _ = act(server.url, {"image": np.zeros((16, 16, 3), np.uint8), "instruction": "go"})
    assert status == 200


def test_wrong_path_and_method(server):
    status, reply = post(server.url.replace("/act", "/predict"), b"{}")
    assert status == 404 and "/act" in reply["error"]
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(server.url, timeout=10)
    assert err.value.code == 405


def test_off_loopback_needs_a_token(policy):
    from finetune.openvla_api import OpenVLAServer

    with pytest.raises(ConfigError, match="--token"):
        OpenVLAServer(policy, host="0.0.0.0", port=0)


def test_token_in_header_or_url(policy):
    from finetune.openvla_api import OpenVLAServer

    payload = {"image": np.zeros((16, 16, 3), np.uint8), "instruction": "go"}
    with OpenVLAServer(policy, port=0, token="s3cret") as srv:
        assert act(srv.url, payload)[0] == 401
        assert act(srv.url + "?token=wrong", payload)[0] == 401
        assert act(srv.url + "?token=s3cret", payload)[0] == 200
        assert act(srv.url, payload, headers={"Authorization": "Bearer s3cret"})[0] == 200
        assert srv.stats["rejected"] == 2


def test_serve_command_offers_the_openvla_api(capsys):
    from studio.cli import main

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "--api" in capsys.readouterr().out
    assert main(["serve", "--api", "openvla", "--checkpoint", str(FIX / "model"), "--host", "0.0.0.0"]) == 2
    assert "--token" in capsys.readouterr().err


def _openvla_decode(tokens: np.ndarray, stats: dict) -> np.ndarray:
    """OpenVLA's predict_action after generate, line for line (modeling_prismatic.py), for a 32064-row model."""
    bins = np.linspace(-1, 1, 256)
    bin_centers = (bins[:-1] + bins[1:]) / 2.0
    discretized = (32064 - 64) - tokens
    discretized = np.clip(discretized - 1, a_min=0, a_max=bin_centers.shape[0] - 1)
    normalized = bin_centers[discretized]
    mask = stats.get("mask", np.ones_like(stats["q01"], dtype=bool))
    high, low = np.array(stats["q99"]), np.array(stats["q01"])
    return np.where(mask, 0.5 * (normalized + 1) * (high - low) + low, normalized)


def test_a_model_of_several_datasets_serves_the_default_key_and_per_request_keys(tmp_path, ref, capsys):
    """openvla-7b's case: config.json norm_stats of several datasets, no dataset_statistics.json."""
    import shutil

    from finetune.openvla_api import OpenVLAServer
    from finetune.runtime import load_policy
    from studio.cli import main

    d = tmp_path / "base"
    shutil.copytree(FIX / "model", d)
    (d / "dataset_statistics.json").unlink()
    stats = json.loads((d / "config.json").read_text())["norm_stats"]
    assert sorted(stats) == ["bridge_orig", "fractal"]

    assert main(["serve", "--api", "openvla", "--checkpoint", str(d), "--device", "cpu"]) == 2
    assert "several datasets" in capsys.readouterr().err

    tokens = ref["resize-naive/224x224/tokens"]
    policy = load_policy(d, device="cpu", dtype=torch.float32, unnorm_key="bridge_orig")
    with OpenVLAServer(policy, port=0) as srv:
        status, default = act(srv.url, {"image": _frame("224x224"), "instruction": INSTRUCTION})
        assert status == 200
        np.testing.assert_array_equal(default, _openvla_decode(tokens, stats["bridge_orig"]["action"]))
        status, other = act(srv.url, {"image": _frame("224x224"), "instruction": INSTRUCTION, "unnorm_key": "fractal"})
        assert status == 200
        np.testing.assert_array_equal(other, _openvla_decode(tokens, stats["fractal"]["action"]))
