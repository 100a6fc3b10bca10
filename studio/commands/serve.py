"""`vla-studio serve --checkpoint CKPT`: serve a tuned policy over a websocket for a remote rollout, or with
``--api openvla`` over OpenVLA's REST endpoint (``POST /act``, as its vla-scripts/deploy.py) for OpenVLA clients."""

from __future__ import annotations

import sys

from recorder.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve a checkpoint's policy over a websocket (for a GPU machine)",
                       description="Serve a policy to `vla-studio rollout --policy-url`. Binds 127.0.0.1 unless "
                                   "--host says otherwise; any other address needs --token.")
    p.add_argument("--checkpoint", required=True, help="checkpoint folder (runs/<id>/checkpoints/<step>) or run folder")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--api", choices=["websocket", "openvla"], default="websocket",
                   help="websocket: for `vla-studio rollout --policy-url` (default); openvla: OpenVLA's POST /act "
                        "(deploy.py's JSON + json_numpy), for existing OpenVLA clients")
    p.add_argument("--port", type=int, default=None, help="port (default 8765; 8000 with --api openvla)")
    p.add_argument("--token", default=None, help="shared secret clients must send (required off loopback)")
    p.add_argument("--device", default=None, help="torch device for the model (default: cuda if present)")
    p.add_argument("--max-message-mb", type=float, default=16.0, help="largest request accepted, MiB")
    p.add_argument("--unnorm-key", default=None,
                   help="dataset statistics for real-unit actions when the model has several (e.g. bridge_orig for "
                        "openvla-7b); OpenVLA clients may also send unnorm_key per request")
    p.add_argument("--quantize", choices=("none", "4bit", "8bit"), default=None,
                   help="LLM weights in 4 or 8 bits for small GPUs (CUDA + bitsandbytes); default: as the run was trained (a --4bit run on its 4-bit base)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from finetune.server import DEFAULT_PORT, PolicyServer, check_bind

    check_bind(args.host, args.token)  # refuse before spending a minute loading the model
    if args.max_message_mb <= 0:
        raise ConfigError("serve: --max-message-mb must be positive")
    from studio.rollout_policy import load_local_policy

    policy = load_local_policy(args.checkpoint, device=args.device, home=args.home, quantize=args.quantize,
                               unnorm_key=args.unnorm_key)
    policy.checkpoint_id = None  # ids are per store; clients see the run/step label instead
    max_bytes = int(args.max_message_mb * 1024 * 1024)
    if args.api == "openvla":
        from finetune.openvla_api import DEFAULT_PORT as OPENVLA_PORT
        from finetune.openvla_api import OpenVLAServer

        server = OpenVLAServer(policy, host=args.host, port=args.port or OPENVLA_PORT, token=args.token,
                               max_body=max_bytes)
        what = "OpenVLA REST API, POST /act"
    else:
        server = PolicyServer(policy, host=args.host, port=args.port or DEFAULT_PORT, token=args.token,
                              max_message_size=max_bytes)
        what = f"chunk {policy.chunk_size} x {policy.action_dim}"
    server.start()
    print(f"serving {policy.checkpoint_label} on {server.url} ({what}); "
          "Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        server._thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
