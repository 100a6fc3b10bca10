"""The ``vla-studio`` command line: no subcommand opens the GUI; each job has a subcommand."""

from __future__ import annotations

import argparse
import importlib
import sys

from recorder.errors import KnownError
from recorder.paths import resolve_home
from studio.commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vla-studio",
        description="Record robot demonstrations, LoRA fine-tune OpenVLA-class models, roll policies out.",
    )
    parser.add_argument("--home", help="store root (default: $VLA_STUDIO_HOME or the XDG data dir)")
    parser.add_argument("--rig", default="sim", help="rig file for the GUI (default: the built-in sim rig)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"studio.commands.{name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.home = resolve_home(args.home)
    try:
        if args.command is None:
            from studio.app import run_gui

            return run_gui(home=args.home, rig=args.rig)
        return int(args.func(args) or 0)
    except KnownError as err:
        print(f"vla-studio: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vla-studio: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """The `vla-studio` program: :func:`main`, then exit without the interpreter's last full garbage collection.

    A command that loaded torch and a model leaves millions of objects: walking them all at exit took 2 s
    (4-5 s on a busy 2-core machine) after `serve` had stopped on Ctrl-C, and finalizers run by that walk can
    wait on locks of threads already frozen by the shutdown. Everything a command writes is closed by the
    command itself (stores, files); the frozen objects are simply released with the process."""
    rc = main()
    import gc

    gc.freeze()
    sys.exit(rc)


if __name__ == "__main__":
    run()
