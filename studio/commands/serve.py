"""`vla-studio serve --checkpoint CKPT`: serve a tuned policy over a websocket for a remote rollout, or with
``--api openvla`` over OpenVLA's REST endpoint (``POST /act``, as its vla-scripts/deploy.py) for OpenVLA clients.

The token (required off loopback) comes from ``--token-file FILE`` (its first line; chmod 600), else the
``VLA_STUDIO_TOKEN`` environment variable; ``--token SECRET`` also works but any local user can read it
with ``ps``, so it warns. ``--tls-cert/--tls-key`` (PEM) make the websocket server a wss:// server; off loopback
without them it warns that the token and the frames travel in clear.
"""

from __future__ import annotations

import sys

from recorder.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve a checkpoint's policy over a websocket (for a GPU machine)",
                       description="Serve a policy to `vla-studio rollout --policy-url`. Binds 127.0.0.1 unless "
                                   "--host says otherwise; any other address needs a token (--token-file FILE or "
                                   "VLA_STUDIO_TOKEN) and should use TLS (--tls-cert/--tls-key).")
    p.add_argument("--checkpoint", required=True, help="checkpoint folder (runs/<id>/checkpoints/<step>) or run folder")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--api", choices=["websocket", "openvla"], default="websocket",
                   help="websocket: for `vla-studio rollout --policy-url` (default); openvla: OpenVLA's POST /act "
                        "(deploy.py's JSON + json_numpy), for existing OpenVLA clients")
    p.add_argument("--port", type=int, default=None, help="port (default 8765; 8000 with --api openvla)")
    p.add_argument("--token-file", default=None, help="file whose first line is the shared secret clients must send "
                                                       "(required off loopback; or set VLA_STUDIO_TOKEN)")
    p.add_argument("--token", default=None, help="the shared secret itself (visible to local users in ps: "
                                                  "prefer --token-file or VLA_STUDIO_TOKEN)")
    p.add_argument("--tls-cert", default=None, help="PEM certificate (chain): serve wss:// (with --tls-key)")
    p.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    p.add_argument("--device", default=None, help="torch device for the model (default: cuda if present)")
    p.add_argument("--max-message-mb", type=float, default=16.0, help="largest request accepted, MiB")
    p.add_argument("--max-instruction", type=int, default=1000, help="longest instruction accepted, characters")
    p.add_argument("--max-queue", type=int, default=64,
                   help="requests that may wait for the model; one more is answered 'busy' (default 64)")
    p.add_argument("--unnorm-key", default=None,
                   help="dataset statistics for real-unit actions when the model has several (e.g. bridge_orig for "
                        "openvla-7b); OpenVLA clients may also send unnorm_key per request")
    p.add_argument("--quantize", choices=("none", "4bit", "8bit"), default=None,
                   help="LLM weights in 4 or 8 bits for small GPUs (CUDA + bitsandbytes); default: as the run was trained (a --4bit run on its 4-bit base)")
    p.set_defaults(func=_run)


def _warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _run(args) -> int:
    from finetune.server import DEFAULT_PORT, PolicyServer, check_bind, security_notes, server_tls_context
    from finetune.server_limits import RequestLimits, resolve_token

    token = resolve_token(args.token, args.token_file, warn=_warn)
    check_bind(args.host, token)  # refuse before spending a minute loading the model
    if args.max_message_mb <= 0:
        raise ConfigError("serve: --max-message-mb must be positive")
    if args.max_instruction < 1 or args.max_queue < 1:
        raise ConfigError("serve: --max-instruction and --max-queue must be at least 1")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigError("serve: TLS needs both --tls-cert and --tls-key")
    if args.tls_cert and args.api == "openvla":
        raise ConfigError("serve: --api openvla speaks plain HTTP (as OpenVLA's deploy.py): drop --tls-cert/--tls-key "
                          "or put it behind a TLS proxy")
    tls = server_tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    for line in security_notes(args.host, token, tls is not None):
        _warn(line)
    from studio.rollout.policy import load_local_policy

    policy = load_local_policy(args.checkpoint, device=args.device, home=args.home, quantize=args.quantize,
                               unnorm_key=args.unnorm_key)
    policy.checkpoint_id = None  # ids are per store; clients see the run/step label instead
    max_bytes = int(args.max_message_mb * 1024 * 1024)
    if args.api == "openvla":
        from finetune.openvla_api import DEFAULT_PORT as OPENVLA_PORT
        from finetune.openvla_api import OpenVLAServer

        server = OpenVLAServer(policy, host=args.host, port=args.port or OPENVLA_PORT, token=token,
                               max_body=max_bytes)
        what = "OpenVLA REST API, POST /act"
    else:
        limits = RequestLimits(max_message_bytes=max_bytes, max_instruction_chars=args.max_instruction)
        server = PolicyServer(policy, host=args.host, port=args.port or DEFAULT_PORT, token=token, limits=limits,
                              max_queue=args.max_queue, tls=tls)
        what = f"chunk {policy.chunk_size} x {policy.action_dim}; at most {args.max_queue} queued"
    server.start()
    print(f"serving {policy.checkpoint_label} on {server.url} ({what}; "
          f"{'token required' if token else 'no token'}); Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        while server._thread.is_alive():  # timed waits: Ctrl-C is seen even when the kernel hands the signal to
            server._thread.join(0.5)      # another thread (a bare join() then never woke: a hang seen in CI)
    except KeyboardInterrupt:
        print("stopping…", file=sys.stderr, flush=True)
    finally:
        server.stop()
    print("stopped", file=sys.stderr, flush=True)
    return 0
