"""`vla-studio record`: record demonstrations headless, with keys in the terminal or a scripted expert."""

from __future__ import annotations

import argparse
import os
import select
import sys
import threading

from recorder.errors import ConfigError

KEYS_HELP = """\
keys (when stdin is a terminal):
  space      start / stop an episode (stop waits for s, d or r)
  s          save the episode (also while recording)
  d          discard the episode
  r          re-record: discard and record it again
  f / g      label the episode success / failure (applied at save, or to the last saved one)
  Esc or q   emergency stop (no more actions are sent), keep what was recorded, quit

Without a terminal (or with --scripted) episodes start by themselves, end at --episode-time and are
saved; a reset phase of --reset-time seconds (arm still driven, nothing recorded) runs between them.
--scripted records with the sim task's scripted expert and no person; --rig sim is the built-in
simulated rig (sim:push for the push task). One line is printed per saved episode.
"""


def register(sub) -> None:
    p = sub.add_parser(
        "record",
        help="record demonstrations into a dataset (headless)",
        description="Record teleoperated (or scripted) demonstrations into the episode store.",
        epilog=KEYS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--rig", dest="record_rig", default=None,
                   help="rig file (rig.toml), or 'sim' / 'sim:push' for the built-in simulated rig (default: sim)")
    p.add_argument("--dataset", required=True, help="dataset name (created, or appended to if the rig matches)")
    p.add_argument("--task", default=None, help="task instruction stored with each episode "
                   "(default with a sim rig: the sim task's instruction)")
    p.add_argument("--episodes", type=int, default=1, help="number of episodes to save (default 1)")
    p.add_argument("--fps", type=float, default=None,
                   help="loop rate in Hz (default: the rig's camera rate, e.g. 80 for Meta-World, else 30)")
    p.add_argument("--episode-time", type=float, default=60.0, help="maximum episode length in s (default 60)")
    p.add_argument("--reset-time", type=float, default=None,
                   help="reset phase between episodes in s (default 10; 0 with --scripted)")
    p.add_argument("--scripted", action="store_true", help="record with the sim task's scripted expert, no person")
    p.add_argument("--seed", type=int, default=0, help="seed of the first sim reset (episode i uses seed+i)")
    p.add_argument("--size", default=None, help="sim camera size WxH (default 320x240)")
    p.add_argument("--codec", default="h264", choices=["h264", "av1"], help="video codec (default h264)")
    p.set_defaults(func=_run)


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size {text!r}: give WIDTHxHEIGHT, e.g. 320x240") from None
    return w, h


def build_rig(spec: str, scripted: bool, seed: int | None, size: str | None, fps: float, home=None):
    """The rig named on the command line (not connected)."""
    from recorder.devices.rig import SIM_TASKS, load_rig, read_rig_config, sim_rig_config

    if spec == "metaworld" or spec.startswith("metaworld:"):
        from recorder.devices.rig import metaworld_rig_config

        w, h = _parse_size(size) if size else (224, 224)
        cfg = metaworld_rig_config(spec.split(":", 1)[1] if ":" in spec else "mt10",
                                   teleop="scripted" if scripted else "none", width=w, height=h, seed=seed)
        return load_rig(cfg, home=home)
    if spec == "sim" or spec.startswith("sim:"):
        task = spec.split(":", 1)[1] if ":" in spec else "pick"
        if task not in SIM_TASKS:
            raise ConfigError(f"--rig {spec}: unknown sim task '{task}': use one of {', '.join(SIM_TASKS)}")
        w, h = _parse_size(size) if size else (320, 240)
        cfg = sim_rig_config(task=task, teleop="scripted" if scripted else "keyboard", width=w, height=h,
                             fps=fps or 30.0, seed=seed)
        return load_rig(cfg, home=home)
    cfg = read_rig_config(spec)
    if scripted and type(cfg.teleop).__name__ != "ScriptedTeleopConfig":
        raise ConfigError(f"rig file {spec}: --scripted needs teleop = \"scripted\" and a sim robot in the rig file")
    return load_rig(cfg, home=home)


class TerminalKeys:
    """Reads single keys from a terminal in cbreak mode on a thread; restores the terminal on stop()."""

    def __init__(self, on_key, fd: int | None = None) -> None:
        self.on_key = on_key
        self._stop = threading.Event()
        self._fd = sys.stdin.fileno() if fd is None else fd
        self._old = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        import termios
        import tty

        self._old = termios.tcgetattr(self._fd)
        tty.setcbreak(self._fd)
        self._thread = threading.Thread(target=self._run, name="terminal-keys", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        import termios

        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)
        if self._old is not None:
            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._old)
            self._old = None

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.1)
            if not ready:
                continue
            ch = os.read(self._fd, 1)
            if ch == b"\x1b":  # Esc alone, or the start of an escape sequence (arrow keys): swallow the rest
                more, _, _ = select.select([self._fd], [], [], 0.03)
                if more:
                    os.read(self._fd, 8)
                    continue
            self.on_key(ch.decode(errors="ignore"))


def run_record(
    home,
    rig_spec: str,
    dataset: str,
    task: str | None,
    episodes: int,
    fps: float | None = 30.0,
    episode_time: float | None = 60.0,
    reset_time: float | None = None,
    scripted: bool = False,
    seed: int | None = 0,
    size: str | None = None,
    codec: str = "h264",
    interactive: bool | None = None,
    out=None,
    key_fd: int | None = None,
) -> int:
    """The body of `vla-studio record` (tests call it directly). Returns the exit status."""
    from recorder.session import Phase, SessionCallbacks, make_record_session, session_task, summary_line
    from recorder.store import Store

    out = out or sys.stdout
    if episodes < 1:
        raise ConfigError(f"--episodes {episodes}: record at least one episode")
    if interactive is None:
        interactive = (not scripted) and sys.stdin.isatty()
    rig = build_rig(rig_spec, scripted, seed, size, fps, home=home)
    if task is None and getattr(rig.robot, "task", None) is None:
        raise ConfigError("--task is required with a real rig: say what the demonstration does")
    task = session_task(rig, task)
    store = Store.open(home)
    done = threading.Event()
    exit_code = {"rc": 0}

    from studio.commands.progress import ItemProgress

    # long unattended recordings show a bar on a terminal; a person at the keys (or no terminal) gets lines
    bar = ItemProgress("episodes", episodes, stream=out, show=False if interactive else None)

    def on_state(st) -> None:
        bar.update(st.saved, note=f"{st.phase.value} episode {min(st.saved + 1, episodes)}")
        if st.phase is Phase.DONE:
            done.set()
        elif st.phase is Phase.RECORDING and interactive:
            print(f"recording episode {st.saved + 1}/{episodes} ...", file=out, flush=True)
        elif st.phase is Phase.REVIEW and interactive:
            print("stopped: s save, d discard, r re-record", file=out, flush=True)

    def on_saved(info) -> None:
        bar.print(summary_line(info))

    def on_fault(msg: str) -> None:
        print(f"vla-studio: fault: {msg}", file=sys.stderr, flush=True)
        if not interactive:  # a fault a person can fix (disk full, device lost) exits 2 like any KnownError
            exit_code["rc"] = 1 if session is None or session.fault_is_bug else 2
            done.set()

    try:
        rig.connect()
    except BaseException:
        store.close()
        raise
    keys = None
    session = None
    try:
        session = make_record_session(
            store, rig, dataset=dataset, task=task, fps=fps, episode_time_s=episode_time, reset_time_s=reset_time,
            auto_advance=True, num_episodes=episodes, codec=codec, seed=seed,
            callbacks=SessionCallbacks(on_state=on_state, on_saved=on_saved, on_fault=on_fault),
        )
        session.start_thread()
        if interactive:
            print(f"rig connected; dataset '{dataset}', task: {task}\n"
                  "space start/stop, s save, d discard, r re-record, f/g success/failure, Esc/q e-stop+quit",
                  file=out, flush=True)

            def on_key(ch: str) -> None:
                action = {" ": session.start_stop, "s": session.save, "d": session.discard, "r": session.rerecord,
                          "f": lambda: session.set_label(True), "g": lambda: session.set_label(False)}.get(ch.lower())
                if ch in ("\x1b", "q", "Q"):
                    session.estop()
                    exit_code["rc"] = 0
                    done.set()
                elif action is not None:
                    action()

            keys = TerminalKeys(on_key, key_fd)
            keys.start()
        else:
            session.start()
        while not done.wait(0.2):
            if session.phase is Phase.CLOSED:
                break
    finally:
        if keys is not None:
            keys.stop()
        if session is not None:
            session.close()
        bar.close()
        try:
            rig.disconnect()
        finally:
            store.close()
    if session is not None and session.saved < episodes and exit_code["rc"] == 0 and not interactive:
        exit_code["rc"] = 1
    return exit_code["rc"]


def _run(args) -> int:
    return run_record(
        args.home, args.record_rig or getattr(args, "rig", None) or "sim", args.dataset, args.task,
        args.episodes, fps=args.fps, episode_time=args.episode_time, reset_time=args.reset_time,
        scripted=args.scripted, seed=args.seed, size=args.size, codec=args.codec,
    )
