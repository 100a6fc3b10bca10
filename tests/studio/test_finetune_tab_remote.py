"""Fine-tuning on a "remote" host for real: an sshd started here on 127.0.0.1 with keys made in tmp."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from finetune.metrics import read_events
from tests.finetune.synth_store import CHILD_ENV, one_torch_thread, write_dataset  # noqa: F401

SSHD = "/usr/sbin/sshd"
VLA_STUDIO = str(Path(sys.executable).with_name("vla-studio"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    if not os.path.exists(SSHD) or not shutil.which("ssh") or not shutil.which("rsync"):
        pytest.skip("needs openssh-server (/usr/sbin/sshd), ssh and rsync")
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    port = _free_port()
    user = getpass.getuser()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
        f"PidFile {d / 'sshd.pid'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        f"StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\nAllowUsers {user}\nLogLevel ERROR\n"
        "PermitUserEnvironment no\nX11Forwarding no\n")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)  # privilege separation directory sshd insists on
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"sshd did not start: {proc.stderr.read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    opts = [f"UserKnownHostsFile={d / 'known_hosts'}", "StrictHostKeyChecking=no", "LogLevel=ERROR"]
    yield {"target": f"{user}@127.0.0.1:{port}", "key": str(d / "user_key"), "options": opts}
    proc.terminate()
    proc.wait(timeout=10)


@pytest.mark.gui
@pytest.mark.slow
def test_the_tab_runs_on_a_remote_host_and_streams_its_curves(sshd, tmp_path, qtbot, monkeypatch):
    from studio.context import AppContext
    from studio.finetune.tab import FinetuneTab

    local, remote = tmp_path / "laptop", tmp_path / "workstation"
    monkeypatch.setenv("VLA_STUDIO_HOME", str(local))
    ids = write_dataset(local, "toy", episodes=2, frames=6)
    ctx = AppContext(home=local)
    ctx.store.update_episode(ids[0], task="push the red cube onto the green square")  # edited after recording
    tab = FinetuneTab(ctx)
    tab.child_env = dict(CHILD_ENV)  # the ssh client passes no environment: the remote side uses --remote-cmd
    qtbot.addWidget(tab)
    tab.dataset_combo.setCurrentText("toy")
    tab.preset_combo.setCurrentIndex(tab.preset_combo.findData("cpu"))
    tab.steps_spin.setValue(3)
    tab.batch_spin.setValue(2)
    tab.eval_spin.setValue(0)
    tab.val_spin.setValue(0.0)
    tab.remote_check.setChecked(True)
    tab.remote_host_edit.setText(sshd["target"])
    tab.remote_home_edit.setText(str(remote))
    tab.remote_cmd_edit.setText(f"OMP_NUM_THREADS=1 {VLA_STUDIO}")
    tab.remote_key_edit.setText(sshd["key"])
    tab.remote_opts_edit.setText(",".join(sshd["options"]))
    args = tab.build_args(tab.build_config(), "x")
    assert "--remote" in args and sshd["target"] in args
    with qtbot.waitSignal(tab.run_finished, timeout=240_000) as finished:
        run_id = tab.start_run()
    assert finished.args == [run_id, "done"], tab.log_view.toPlainText()
    assert tab.curves.train_steps == [1, 2, 3]
    row = next(r for r in tab.history_rows() if r[0] == run_id)
    assert row[1] == "done" and row[6] == "1"
    # it trained over there, on the dataset synced there with its current labels
    start = next(e for e in read_events(local / "runs" / run_id / "metrics.jsonl") if e["event"] == "start")
    assert start["path"].startswith(str(remote))
    assert (remote / "runs" / run_id / "checkpoints" / "last").is_file()
    from recorder.store import Store

    with Store.open(remote) as rstore:
        reps = {e.uuid: e.task for e in rstore.episodes(dataset="toy")}
    leps = {e.uuid: e.task for e in ctx.store.episodes(dataset="toy")}
    assert reps == leps
    # the run came back: its checkpoint is on this disk and in this index (the Rollout tab can open it)
    cks = ctx.store.checkpoints(run_id=run_id)
    assert [c.step for c in cks] == [3] and (cks[0].path / "adapter").is_dir()
    assert str(cks[0].path).startswith(str(local))
    ctx.close()


@pytest.mark.slow
def test_cancelling_a_remote_run_checkpoints_there_and_brings_it_back(sshd, tmp_path):
    import json
    import signal

    local, remote = tmp_path / "laptop", tmp_path / "workstation"
    write_dataset(local, "toy", episodes=2, frames=6)
    cmd = [VLA_STUDIO, "--home", str(local), "finetune", "--dataset", "toy", "--model", "tiny", "--steps", "100000",
           "--batch", "2", "--eval-every", "0", "--save-every", "0", "--val-fraction", "0", "--run-id", "far",
           "--remote", sshd["target"], "--remote-home", str(remote), "--remote-cmd", f"OMP_NUM_THREADS=1 {VLA_STUDIO}",
           "--ssh-key", sshd["key"]]
    for opt in sshd["options"]:
        cmd += ["--ssh-option", opt]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, **CHILD_ENV))
    try:
        for line in proc.stdout:
            if '"event":"train"' in line:
                break
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    last = json.loads(rest.strip().splitlines()[-1])
    assert last["event"] == "cancelled" and last["checkpoint"].startswith(str(remote))
    step = int(last["step"])
    from recorder.store import Store

    with Store.open(local) as store:
        assert store.run("far").status == "cancelled"
        cks = store.checkpoints(run_id="far")
        assert [c.step for c in cks] == [step] and (cks[0].path / "training_state.json").is_file()
