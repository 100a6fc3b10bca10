"""Fine-tune on another machine over SSH: the same ``vla-studio finetune`` command, run there.

``vla-studio finetune --remote user@host[:port] --remote-home PATH ...`` (what the Fine-tune tab runs
when a remote host is set) does, as one local process:

1. sync the dataset: ``rsync`` of its episode folders to ``<remote home>/episodes/`` plus an *index
   export* (the episodes' uuids and their current labels: task, success, tags, notes) that the remote
   side imports with ``vla-studio finetune import-index`` (folders it does not know are indexed from
   their ``meta.json``; labels edited after recording are applied);
2. run ``vla-studio --home <remote home> finetune ... --run-id ID`` over ``ssh`` and stream its JSON
   lines back: printed on stdout and appended to the local ``runs/<id>/metrics.jsonl``, so the tab
   follows a remote run exactly like a local one (and re-attaches to it after a restart);
3. on SIGINT/SIGTERM: ask the remote run to stop (``kill -INT`` of the pid in its run folder): it
   writes a checkpoint and ends with ``cancelled``;
4. at the end: ``rsync`` the run folder back (checkpoints included) and record the run and its
   checkpoints in the local index, so the Rollout tab can open them.

Only ``ssh`` and ``rsync`` are needed locally and on the host (with vla-studio installed there).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

from finetune.checkpoint_ref import checkpoint_folder
from recorder.errors import ConfigError, KnownError


class RemoteError(KnownError):
    """The remote host could not be reached or refused a step."""


def _quote_remote_path(path: str) -> str:
    """Quote for the remote shell, keeping a leading ``~/`` expandable."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


@dataclass
class RemoteHost:
    """Where and how to reach the GPU machine."""

    target: str  # user@host or host
    remote_home: str  # store root on the host
    port: int | None = None
    key: str | None = None  # identity file
    remote_cmd: str = "vla-studio"  # how to run the CLI there (shell words), e.g. "~/venv/bin/vla-studio"
    ssh_options: list[str] = field(default_factory=list)  # extra "-o Key=Value" options

    @classmethod
    def parse(cls, spec: str, remote_home: str, **kw) -> RemoteHost:
        spec = spec.strip()
        if not spec:
            raise ConfigError("--remote needs a host: user@host[:port]")
        port = None
        if ":" in spec.rsplit("@", 1)[-1]:
            spec, port_s = spec.rsplit(":", 1)
            try:
                port = int(port_s)
            except ValueError:
                raise ConfigError(f"--remote {spec}:{port_s}: the port must be a number") from None
        return cls(target=spec, remote_home=remote_home, port=port, **kw)

    def ssh_base(self) -> list[str]:
        cmd = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=30"]
        if self.port:
            cmd += ["-p", str(self.port)]
        if self.key:
            cmd += ["-i", str(self.key)]
        for opt in self.ssh_options:
            cmd += ["-o", opt]
        return cmd

    def rsync_rsh(self) -> str:
        return shlex.join(self.ssh_base())

    def cli(self, args: list[str]) -> str:
        """The remote shell command line running the CLI on the remote store."""
        return f"{self.remote_cmd} --home {_quote_remote_path(self.remote_home)} " + shlex.join(args)

    def ssh_argv(self, remote_command: str) -> list[str]:
        return [*self.ssh_base(), self.target, remote_command]

    def run(self, remote_command: str, *, what: str, timeout: float = 600) -> subprocess.CompletedProcess:
        try:
            proc = subprocess.run(self.ssh_argv(remote_command), capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            raise RemoteError("ssh is not installed here: install openssh-client") from None
        except subprocess.TimeoutExpired:
            raise RemoteError(f"{self.target}: {what} timed out after {timeout:.0f} s") from None
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise RemoteError(f"{self.target}: {what} failed ({last}); check the host, the key and --remote-cmd")
        return proc

    def rsync(self, sources: list[str], dest: str, *, what: str, extra: list[str] | None = None) -> None:
        cmd = ["rsync", "-a", "--partial", "-e", self.rsync_rsh(), *(extra or []), *sources, dest]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True)
        except FileNotFoundError:
            raise RemoteError("rsync is not installed here: install rsync") from None
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise RemoteError(f"{self.target}: {what} failed ({last}); is rsync installed on the host?")

    def remote_path(self, *parts: str) -> str:
        return "/".join([self.remote_home.rstrip("/"), *parts])


# ----------------------------------------------------------------------------- dataset sync


def index_export(store, dataset: str) -> dict:
    """The dataset's episodes as the remote side needs them (uuid + current labels)."""
    eps = store.episodes(dataset=dataset)
    return {"format": 1, "dataset": dataset, "episodes": [
        {"uuid": e.uuid, "task": e.task, "success": e.success, "tags": list(e.tags), "notes": e.notes,
         "status": e.status, "num_frames": e.num_frames} for e in eps]}


def sync_dataset(local_home: Path, host: RemoteHost, dataset: str, emit=None) -> int:
    """rsync the dataset's episode folders and its index export to the host, then import them there."""
    from recorder.store import Store

    with Store.open(local_home) as store:
        export = index_export(store, dataset)
        folders = [str(store.episode_dir(e["uuid"])) for e in export["episodes"]]
    if not folders:
        raise ConfigError(f"dataset {dataset!r} has no episodes in {local_home} to send to {host.target}")
    # open (create) the remote store first: it also proves that --remote-cmd works there
    host.run(host.cli(["store", "info", "--json"]), what=f"opening the store {host.remote_home} with {host.remote_cmd}")
    host.run(f"mkdir -p {_quote_remote_path(host.remote_path('imports'))}", what="creating the remote imports folder")
    host.rsync(folders, f"{host.target}:{host.remote_path('episodes')}/", what="copying the episodes")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{dataset}.json"
        path.write_text(json.dumps(export))
        host.rsync([str(path)], f"{host.target}:{host.remote_path('imports')}/", what="copying the index export")
    host.run(host.cli(["finetune", "import-index", host.remote_path("imports", f"{dataset}.json")]),
             what="importing the episodes into the remote index")
    if emit:
        emit({"event": "synced", "episodes": len(folders), "host": host.target})
    return len(folders)


def import_index(home: Path, export_path: Path) -> dict:
    """Remote side: index episode folders named by an export and apply its labels."""
    from recorder.store import Store
    from recorder.store.check import import_folder

    try:
        export = json.loads(Path(export_path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"{export_path}: cannot read the index export ({err})") from None
    imported = updated = missing = 0
    with Store.open(home) as store:
        for ep in export.get("episodes", []):
            try:
                info = store.episode(ep["uuid"])
            except KnownError:
                folder = store.episode_dir(ep["uuid"])
                info = import_folder(store, folder) if folder.is_dir() else None
                if info is None:
                    missing += 1
                    continue
                imported += 1
            store.update_episode(info.id, task=ep.get("task", info.task), success=ep.get("success"),
                                 tags=list(ep.get("tags") or []), notes=ep.get("notes") or "")
            updated += 1
    if missing:
        raise ConfigError(f"{missing} episode folder(s) of {export_path} are missing under {home}/episodes: sync again")
    return {"imported": imported, "updated": updated}


# ----------------------------------------------------------------------------- the remote run


def run_remote_finetune(local_home: Path, host: RemoteHost, cfg, run_id: str, train_args: list[str],
                        resume: bool = False, show=None) -> int:
    """Sync, run the fine-tune over ssh streaming its events, fetch the run back. Returns the exit status.

    The events go to the local ``metrics.jsonl`` and, as JSON lines, to stdout; ``show`` (a terminal display,
    a MetricLogger) replaces the stdout lines for a person at a terminal."""
    from finetune.metrics import JsonlLogger, MultiLogger
    from finetune.run_config import METRICS_FILE, PID_FILE, process_start_time, run_dir

    local_run = run_dir(local_home, run_id)
    local_run.mkdir(parents=True, exist_ok=True)
    (local_run / PID_FILE).write_text(f"{os.getpid()} {process_start_time(os.getpid()) or 0}\n")
    log = JsonlLogger(local_run / METRICS_FILE) if show is None else MultiLogger(
        JsonlLogger(local_run / METRICS_FILE, stream=None), show)
    try:
        return _run_remote(local_home, host, cfg, run_id, train_args, resume, local_run, log)
    except KnownError as err:
        log.log_dict({"event": "error", "message": str(err)})
        raise
    finally:
        log.close()
        try:
            (local_run / PID_FILE).unlink()
        except OSError:
            pass


def _run_remote(local_home, host, cfg, run_id, train_args, resume, local_run, log) -> int:
    from finetune.metrics import parse_event
    from finetune.run_config import METRICS_FILE, PID_FILE
    from recorder.store import Store

    if not resume:
        sync_dataset(local_home, host, cfg.dataset, emit=lambda e: log.log_dict(e))
    with Store.open(local_home) as store:
        store.add_run(run_id, cfg.dataset, cfg.model, {**cfg.to_dict(), "remote": host.target}, local_run)
    remote_args = ["finetune", *train_args, "--run-id", run_id] if not resume else ["finetune", "--resume", run_id]
    # its own session: a Ctrl-C in the terminal reaches only us, and we cancel the remote run properly
    proc = subprocess.Popen(host.ssh_argv(host.cli(remote_args)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, bufsize=1, start_new_session=True)
    cancel_cmd = host.ssh_argv(
        f"kill -INT $(cut -d' ' -f1 {_quote_remote_path(host.remote_path('runs', run_id, PID_FILE))})")
    state = {"cancelled": False}

    def on_signal(_sig, _frame):
        if not state["cancelled"]:
            state["cancelled"] = True
            subprocess.Popen(cancel_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    err_tail: list[str] = []

    def pump_stderr():  # drain stderr alongside stdout so neither pipe can fill up and stall the remote run
        assert proc.stderr is not None
        for line in proc.stderr:
            err_tail.append(line.rstrip())
            del err_tail[:-20]
            print(line.rstrip(), file=sys.stderr, flush=True)

    import threading

    pump = threading.Thread(target=pump_stderr, daemon=True)
    pump.start()
    final = None
    checkpoints: list[dict] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            event = parse_event(line)
            if event is None:
                print(line.rstrip(), file=sys.stderr)
                continue
            if event["event"] == "rewound":  # the remote run dropped its replayed steps: so does our copy
                log.rewind(int(event.get("step") or 0))
                continue
            if event["event"] == "checkpoint":
                checkpoints.append(event)
            if event["event"] in ("done", "cancelled", "error"):
                final = event
            log.log_dict(event, event.get("step"))
        rc = proc.wait()
        pump.join(timeout=10)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    # fetch the run folder back (our metrics.jsonl and pid stay ours)
    try:
        host.rsync([f"{host.target}:{host.remote_path('runs', run_id)}/"], f"{local_run}/", what="fetching the run",
                   extra=["--exclude", METRICS_FILE, "--exclude", PID_FILE, "--exclude", "*.log"])
    except RemoteError as e:
        log.log_dict({"event": "warning", "message": str(e)})
    status = {"done": "done", "cancelled": "cancelled"}.get(final["event"] if final else "", "failed")
    with Store.open(local_home) as store:
        for ck in checkpoints:
            step = int(ck.get("step", 0))
            local_ck = checkpoint_folder(local_run, step)
            if local_ck.is_dir():
                metrics = {k: v for k, v in ck.items() if k not in ("event", "path", "time")}
                store.add_checkpoint(run_id, step, local_ck, metrics)
        from datetime import datetime

        best = final.get("best_val") if final else None
        store.update_run(run_id, status=status, best_metric=best, finished_at=datetime.now(UTC))
    if final is None:
        message = (err_tail or [f"ssh exited with status {rc}"])[-1]
        log.log_dict({"event": "error", "message": f"{host.target}: the remote run ended without finishing: {message}"})
        return rc or 1
    return 0 if status in ("done", "cancelled") else (rc or 1)
