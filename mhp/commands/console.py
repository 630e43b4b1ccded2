"""``mhp console``: the customer-success web console (docs/console.md)."""
from __future__ import annotations

import time

from core import workspace
from core.errors import UsageError
from core.times import parse_utc_time


def register(subparsers) -> None:
    p = subparsers.add_parser("console", help="web console for customer success: alerts, customer pages, overview")
    workspace.add_arguments(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8050, help="port (default: 8050; 0 picks a free one)")
    p.add_argument("--at", help="default time pages score at, ISO-8601 with offset (default: now); "
                                "a page's ?at= overrides it")
    p.add_argument("--endpoint-url", help="inference server URL (default: start one on the workspace's model)")
    p.add_argument("--config", help="serving config JSON (the same file `mhp score --config` takes)")
    p.set_defaults(func=cmd_console)


def cmd_console(args) -> int:
    from console.server import (  # lazy: loaded only when this command runs (keeps `mhp --help` light)
        build_console,
        start,
    )
    from serving.config import (  # lazy: loaded only when this command runs (keeps `mhp --help` light)
        ConfigError,
        ServingConfig,
    )

    ws = workspace.from_args(args)
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port: expected 0..65535, got {args.port}")
    at = parse_utc_time(args.at, "--at") if args.at else None
    try:
        config = ServingConfig.load(args.config) if args.config else ServingConfig()
    except ConfigError as exc:
        raise UsageError(f"--config: {exc}") from None
    try:
        console, inference = build_console(ws, config, args.endpoint_url, at)
    except FileNotFoundError as exc:
        raise UsageError(f"--workspace: {exc}") from None
    try:
        running = start(console, inference, args.host, args.port)
    except OSError as exc:
        if inference is not None:
            inference.stop()
        raise UsageError(f"--port: {exc}") from None
    print(f"console on {running.url}/alerts (workspace {ws.state}, profile {ws.profile}); Ctrl-C stops it", flush=True)
    try:
        while running._thread.is_alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
    return 0
