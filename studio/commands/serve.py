"""`vla-studio serve --checkpoint CKPT`: serve a tuned policy over a websocket for a remote rollout."""

from __future__ import annotations

import sys

from recorder.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve a checkpoint's policy over a websocket (for a GPU machine)",
                       description="Serve a policy to `vla-studio rollout --policy-url`. Binds 127.0.0.1 unless "
                                   "--host says otherwise; any other address needs --token.")
    p.add_argument("--checkpoint", required=True, help="checkpoint folder (runs/<id>/checkpoints/<step>) or run folder")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8765)")
    p.add_argument("--token", default=None, help="shared secret clients must send (required off loopback)")
    p.add_argument("--device", default=None, help="torch device for the model (default: cuda if present)")
    p.add_argument("--max-message-mb", type=float, default=16.0, help="largest request accepted, MiB")
    p.add_argument("--quantize", choices=("none", "4bit", "8bit"), default=None,
                   help="LLM weights in 4 or 8 bits for small GPUs (CUDA + bitsandbytes); default: as the run was trained (a --4bit run on its 4-bit base)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from finetune.server import DEFAULT_PORT, PolicyServer, check_bind

    check_bind(args.host, args.token)  # refuse before spending a minute loading the model
    if args.max_message_mb <= 0:
        raise ConfigError("serve: --max-message-mb must be positive")
    from studio.rollout_policy import load_local_policy

    policy = load_local_policy(args.checkpoint, device=args.device, home=args.home, quantize=args.quantize)
    policy.checkpoint_id = None  # ids are per store; clients see the run/step label instead
    server = PolicyServer(policy, host=args.host, port=args.port or DEFAULT_PORT, token=args.token,
                          max_message_size=int(args.max_message_mb * 1024 * 1024))
    server.start()
    print(f"serving {policy.checkpoint_label} on {server.url} (chunk {policy.chunk_size} x {policy.action_dim}); "
          "Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        server._thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
