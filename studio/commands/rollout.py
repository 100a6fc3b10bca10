"""`vla-studio rollout` (placeholder: replaced by the issue that builds it)."""

from recorder.errors import KnownError


def register(sub) -> None:
    p = sub.add_parser("rollout", help="rollout (not built yet)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    raise KnownError("'vla-studio rollout' is not built yet")
