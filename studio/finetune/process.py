"""The Qt adapter for a ``vla-studio finetune`` child process (qutebrowser's guiprocess shape).

Training never runs in the GUI process. Two ways to follow a run:

- **local** (``start_local`` / ``attach``): the child is started *detached* with QProcess (stdout and
  stderr to files in the run folder), so it survives the studio being closed; the adapter tails
  ``runs/<id>/metrics.jsonl`` and ``stderr.log`` with a timer and watches the pid. The same code
  re-attaches to a run left running by an earlier studio session.
- **piped** (``start_piped``): an ordinary QProcess whose stdout carries the JSON lines (the remote
  host over SSH uses this).

Signals:
    event_received(dict): one JSON event of the run (start, train, eval, checkpoint, done, cancelled, error, ...).
    log_received(str): a line of the child's log (stderr, or non-JSON stdout).
    finished(str, str): (status, message): status is done | cancelled | failed; message says why on failure.
"""

from __future__ import annotations

import collections
import os
import signal
import sys
from pathlib import Path

from PyQt6.QtCore import QObject, QProcess, QTimer, pyqtSignal

from finetune.metrics import REWOUND_EVENT, parse_event
from finetune.run_config import METRICS_FILE, STDERR_FILE, STDOUT_FILE, pid_alive

FINAL_EVENTS = {"done": "done", "cancelled": "cancelled", "error": "failed"}


class _Tail:
    """Reads the lines appended to a file since the last call (keeps a partial last line).

    A file replaced under it (a resumed run rewrites metrics.jsonl without the steps it replays, see
    ``JsonlLogger.rewind``) is read again from the line holding the last ``resync`` marker: what came before
    it was already seen; without a marker, from its start."""

    def __init__(self, path: Path, from_start: bool, resync: bytes | None = None) -> None:
        self.path = path
        self.resync = resync
        try:
            st = path.stat()
            self.pos, self.inode = (0 if from_start else st.st_size), st.st_ino
        except OSError:
            self.pos, self.inode = 0, None
        self.buf = b""

    def read_lines(self) -> list[str]:
        try:
            with open(self.path, "rb") as fh:
                st = os.fstat(fh.fileno())
                replaced = self.inode is not None and (st.st_ino != self.inode or st.st_size < self.pos)
                if replaced:
                    self.pos, self.buf = 0, b""
                self.inode = st.st_ino
                fh.seek(self.pos)
                data = fh.read()
        except OSError:
            return []
        if not data:
            return []
        self.pos += len(data)
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        if replaced and self.resync is not None:
            marks = [i for i, ln in enumerate(lines) if self.resync in ln]
            lines = lines[marks[-1]:] if marks else lines
        return [ln.decode("utf-8", "replace") for ln in lines]


class FinetuneProcess(QObject):
    """Runs or follows one fine-tune child. See the module docstring for the signals."""

    event_received = pyqtSignal(dict)
    log_received = pyqtSignal(str)
    finished = pyqtSignal(str, str)

    POLL_MS = 150

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pid: int | None = None
        self.run_path: Path | None = None
        self.mode: str | None = None  # "local" | "piped"
        self.final_event: dict | None = None
        self.last_lines: collections.deque[str] = collections.deque(maxlen=30)
        self._proc: QProcess | None = None
        self._tails: list[tuple[_Tail, bool]] = []
        self._timer = QTimer(self)
        self._timer.setInterval(self.POLL_MS)
        self._timer.timeout.connect(self._on_poll)
        self._done = False
        self._cancel_sent = False
        self._stdout_buf = b""
        self.cancel_command: list[str] | None = None  # piped mode: how to deliver a cancel (e.g. over ssh)

    # ------------------------------------------------------------------ starting / following

    @property
    def is_running(self) -> bool:
        return self.mode is not None and not self._done

    def start_local(self, cli_args: list[str], run_path: Path, *, program: list[str] | None = None,
                    env: dict[str, str] | None = None) -> bool:
        """Start ``python -m studio.cli <cli_args>`` detached, logging into ``run_path``; then follow it.

        ``program`` replaces ``[python, -m, studio.cli]`` (tests use a stand-in child)."""
        run_path = Path(run_path)
        run_path.mkdir(parents=True, exist_ok=True)
        argv = (program or [sys.executable, "-m", "studio.cli"]) + list(cli_args)
        proc = QProcess()
        proc.setProgram(argv[0])
        proc.setArguments(argv[1:])
        proc.setWorkingDirectory(str(Path.cwd()))
        proc.setStandardOutputFile(str(run_path / STDOUT_FILE), QProcess.OpenModeFlag.Append)
        proc.setStandardErrorFile(str(run_path / STDERR_FILE), QProcess.OpenModeFlag.Append)
        if env:
            from PyQt6.QtCore import QProcessEnvironment

            qenv = QProcessEnvironment.systemEnvironment()
            for key, value in env.items():
                qenv.insert(key, value)
            proc.setProcessEnvironment(qenv)
        ok, pid = proc.startDetached()
        if not ok:
            self._finish("failed", f"could not start {argv[0]}: {proc.errorString()}")
            return False
        self.attach(run_path, pid=int(pid), from_start=False)
        return True

    def attach(self, run_path: Path, *, pid: int | None = None, from_start: bool = True) -> bool:
        """Follow a local run: tail its metrics.jsonl and stderr.log and watch its pid.

        With ``from_start`` the events already in the file are replayed (re-attach rebuilds the curves)."""
        self.run_path = Path(run_path)
        self.pid = pid if pid is not None else pid_alive(self.run_path)
        self.mode = "local"
        self._done = False
        self.final_event = None
        self._tails = [(_Tail(self.run_path / METRICS_FILE, from_start, resync=b'"event":"%s"' % REWOUND_EVENT.encode()),
                        True),
                       (_Tail(self.run_path / STDERR_FILE, from_start and False), False)]
        self._on_poll()
        if not self._done:
            self._timer.start()
        return self.pid is not None

    def start_piped(self, argv: list[str], *, run_path: Path | None = None) -> None:
        """Run ``argv`` as an attached QProcess whose stdout carries JSON events (remote runs)."""
        self.mode = "piped"
        self._done = False
        self.final_event = None
        self.run_path = run_path
        proc = QProcess(self)
        proc.setProgram(argv[0])
        proc.setArguments(argv[1:])
        proc.readyReadStandardOutput.connect(self._on_stdout)
        proc.readyReadStandardError.connect(self._on_stderr)
        proc.finished.connect(self._on_piped_finished)
        proc.errorOccurred.connect(self._on_piped_error)
        self._proc = proc
        proc.start()

    # ------------------------------------------------------------------ control

    def cancel(self) -> bool:
        """Ask the run to stop gracefully (SIGINT: it writes a checkpoint, then exits)."""
        if not self.is_running:
            return False
        self._cancel_sent = True
        if self.mode == "piped":
            if self.cancel_command:
                QProcess.startDetached(self.cancel_command[0], self.cancel_command[1:])
                return True
            if self._proc is not None:
                self._proc.terminate()
            return True
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGINT)
                return True
            except ProcessLookupError:
                return False
        return False

    def kill(self) -> None:
        if self.mode == "piped" and self._proc is not None:
            self._proc.kill()
        elif self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def detach(self) -> None:
        """Stop following (the child keeps running; a later ``attach`` picks it up again)."""
        self._timer.stop()
        self.mode = None

    def wait_finished(self, timeout_s: float) -> bool:
        """Block (processing nothing else) until the child is gone; used when the studio closes."""
        import time

        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.mode == "piped" and self._proc is not None:
                if self._proc.waitForFinished(100):
                    return True
                continue
            if self.pid is None or not _alive(self.pid):
                self._on_poll()
                return True
            time.sleep(0.05)
        return False

    # ------------------------------------------------------------------ internals

    def _handle_line(self, line: str, is_event_source: bool) -> None:
        event = parse_event(line) if is_event_source else None
        if event is None:
            text = line.rstrip()
            if text:
                self.last_lines.append(text)
                self.log_received.emit(text)
            return
        if event.get("event") == "error" and event.get("message"):
            self.last_lines.append(f"error: {event['message']}")
        if event.get("event") in FINAL_EVENTS:
            self.final_event = event
        elif event.get("event") == "start":
            self.final_event = None  # a resumed session: an earlier session's end is not this one's
        self.event_received.emit(event)

    def _on_poll(self) -> None:
        for tail, is_events in self._tails:
            for line in tail.read_lines():
                self._handle_line(line, is_events)
        if self.mode != "local" or self._done:
            return
        if self.pid is None or not _alive(self.pid):
            for tail, is_events in self._tails:  # what was written just before the exit
                for line in tail.read_lines():
                    self._handle_line(line, is_events)
            self._timer.stop()
            self._conclude()

    def _conclude(self, exit_code: int | None = None) -> None:
        if self.final_event is not None:
            status = FINAL_EVENTS[self.final_event["event"]]
            message = self.final_event.get("message", "") if status == "failed" else ""
        else:
            status = "failed"
            tail = " | ".join(list(self.last_lines)[-3:]) or "no output"
            code = f" with status {exit_code}" if exit_code is not None else ""
            message = f"the training process ended{code} without finishing: {tail}"
            if exit_code == 0 and self._cancel_sent:
                status, message = "cancelled", ""
        self._finish(status, message)

    def _finish(self, status: str, message: str) -> None:
        if self._done:
            return
        self._done = True
        self._timer.stop()
        self.finished.emit(status, message)

    def _on_stdout(self) -> None:
        assert self._proc is not None
        self._stdout_buf += bytes(self._proc.readAllStandardOutput())
        *lines, self._stdout_buf = self._stdout_buf.split(b"\n")
        for line in lines:
            self._handle_line(line.decode("utf-8", "replace"), True)

    def _on_stderr(self) -> None:
        assert self._proc is not None
        for line in bytes(self._proc.readAllStandardError()).decode("utf-8", "replace").splitlines():
            self._handle_line(line, False)

    def _on_piped_finished(self, exit_code: int, _status) -> None:
        self._on_stdout()
        if self._stdout_buf:
            self._handle_line(self._stdout_buf.decode("utf-8", "replace"), True)
            self._stdout_buf = b""
        self._on_stderr()
        self._conclude(exit_code)

    def _on_piped_error(self, error) -> None:
        if error == QProcess.ProcessError.FailedToStart and self._proc is not None:
            self._finish("failed", f"could not start {self._proc.program()}: {self._proc.errorString()}")


def _alive(pid: int) -> bool:
    try:
        import psutil

        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE
    except Exception:  # noqa: BLE001 - gone or not ours
        return False
