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


if __name__ == "__main__":
    sys.exit(main())
