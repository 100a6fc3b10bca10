"""One module per CLI subcommand. Each exposes ``register(subparsers)`` which adds its parser and
sets ``func(args) -> int`` as the default. ``args.home`` is the resolved store root (a Path)."""

COMMANDS = ["record", "datasets", "finetune", "rollout", "serve", "devices", "store", "demo"]
