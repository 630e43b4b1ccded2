"""``mhp serve``, ``mhp score``, ``mhp deploy``."""
from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

from core import workspace
from core.errors import UsageError
from core.times import parse_utc_time
from mhp.commands.prerequisites import require_applied, require_backfill


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="run the SageMaker-contract inference server (GET /ping, POST /invocations)")
    p.add_argument("--model", required=True, help="model.tar.gz or an extracted model directory")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--max-body-bytes", type=int, default=16 * 1024 * 1024)
    p.set_defaults(func=cmd_serve)

    s = subparsers.add_parser("score", help="score customers from online features; apply alert rules and publish")
    who = s.add_mutually_exclusive_group(required=True)
    who.add_argument("--customer", action="append", help="customer id (repeatable)")
    who.add_argument("--all", action="store_true", help="daily batch: every active customer at --at")
    who.add_argument("--recover", action="store_true",
                     help="retry pending scoring requests and redeliver undelivered alerts")
    s.add_argument("--at", help="request (event) time, ISO-8601 with offset; required with --all "
                                "(default for --customer: now)")
    s.add_argument("--config", help="serving config JSON (thresholds, cooldown, endpoint, sinks)")
    s.add_argument("--endpoint-url", help="inference server URL (local / aws-local profiles)")
    s.add_argument("--endpoint-name", help="SageMaker endpoint name (aws profile)")
    s.add_argument("--no-alerts", action="store_true", help="only print the predictions")
    workspace.add_arguments(s)
    s.set_defaults(func=cmd_score)

    d = subparsers.add_parser("deploy", help="upload model.tar.gz and create/roll a SageMaker endpoint with autoscaling")
    d.add_argument("--model", required=True, help="model.tar.gz")
    d.add_argument("--endpoint", required=True, help="endpoint name")
    d.add_argument("--bucket", default="mhp-models", help="S3 bucket for the artifact (default: mhp-models)")
    d.add_argument("--role", default="arn:aws:iam::123456789012:role/mhp-sagemaker",
                   help="SageMaker execution role ARN")
    d.add_argument("--instance-type", default="ml.m5.large")
    d.add_argument("--min-instances", type=int, default=1)
    d.add_argument("--max-instances", type=int, default=4)
    d.add_argument("--target-invocations", type=float, default=200.0,
                   help="target SageMakerVariantInvocationsPerInstance (per minute)")
    d.add_argument("--steps", default="0.1,0.5,1.0", help="rollout weights for the new variant")
    d.set_defaults(func=cmd_deploy)


def cmd_serve(args) -> int:
    import tarfile

    from serving.server import InferenceServer  # lazy: loaded only when this command runs (keeps `mhp --help` light)

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port: expected 0-65535 (0: any free port), got {args.port}")
    if args.max_body_bytes < 1:
        raise UsageError(f"--max-body-bytes: expected a positive number of bytes, got {args.max_body_bytes}")
    try:
        server = InferenceServer(args.model, host=args.host, port=args.port, max_body_bytes=args.max_body_bytes)
    except FileNotFoundError as exc:
        raise UsageError(f"--model: {exc}") from None
    except (tarfile.TarError, EOFError, ValueError, KeyError) as exc:
        raise UsageError(f"--model: {args.model!r} is not a model.tar.gz or model directory from `mhp train` "
                         f"({type(exc).__name__}: {exc})") from None
    except OSError as exc:
        raise UsageError(f"--port: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    print(f"serving {server.model_version} on {server.url} (GET /ping, POST /invocations)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def cmd_score(args) -> int:
    require_backfill(workspace.from_args(args))  # before the imports below (seconds): an empty workspace fails fast
    from features.store import open_store  # lazy: loaded only when this command runs (keeps `mhp --help` light)
    from serving.batch import (  # lazy: loaded only when this command runs (keeps `mhp --help` light)
        active_customers,
        score_all,
    )
    from serving.config import (  # lazy: loaded only when this command runs (keeps `mhp --help` light)
        ConfigError,
        ServingConfig,
    )
    from serving.runtime import build_service  # lazy: loaded only when this command runs (keeps `mhp --help` light)

    ws = workspace.from_args(args)
    try:
        config = ServingConfig.load(args.config) if args.config else ServingConfig()
    except ConfigError as exc:
        raise UsageError(f"--config: {exc}") from None
    config = config.with_(profile=ws.profile)
    if args.endpoint_url:
        config = config.with_(endpoint_url=args.endpoint_url)
    if args.endpoint_name:
        config = config.with_(endpoint_name=args.endpoint_name)
    if args.all and not args.at:
        raise UsageError("--at: required with --all (the batch's event time, e.g. 2025-03-01T00:00:00Z)")
    at = parse_utc_time(args.at, "--at") if args.at else datetime.now(timezone.utc)
    store = open_store(ws.profile, ws.feast_state, None if ws.profile == "local" else ws.root)
    require_applied(store, ws)
    # the run's errors are in its one-line summary; the service's per-request warnings stay out of the terminal
    logging.getLogger("mhp.serving").addHandler(logging.NullHandler())
    service = build_service(config, store, ws.state)
    if args.recover:
        out = service.recover()
    elif args.all:
        ids = active_customers(ws.events, at)
        print(f"batch at {at.isoformat()}: {len(ids)} active customer(s)")
        out = score_all(service, ids, at)
    elif args.no_alerts:
        for s in service.scorer.score(args.customer, at):
            print(json.dumps({"customer_id": s.customer_id, **s.prediction}))
        return 0
    else:
        out = service.score_and_alert(args.customer, at)
    if not args.all:
        for s in out.scored:
            print(json.dumps({"customer_id": s.customer_id, "as_of": s.request_time.isoformat(), **s.prediction}))
    for a in out.alerts:
        print(f"ALERT {a['severity']:8s} {a['type']:22s} {a['customer_id']}  top: "
              + ", ".join(f"{f['feature']}={f['value']}" for f in a["top_features"][:3]))
    if out.errors:  # the failure line: what was kept pending and why
        print(f"mhp score: error: {out.summary()}", file=sys.stderr)
    else:
        print(out.summary())
    return 1 if (out.pending or out.rejected or out.publish.failed) else 0


def cmd_deploy(args) -> int:
    from serving.deploy import (  # lazy: loaded only when this command runs (keeps `mhp --help` light)
        Deployer,
        DeploySpec,
    )

    try:
        steps = [float(x) for x in args.steps.split(",")]
    except ValueError:
        raise UsageError(f"--steps: expected comma-separated weights in [0, 1], got {args.steps!r}") from None
    if not steps or any(not 0 <= w <= 1 for w in steps) or steps[-1] != 1.0:
        raise UsageError(f"--steps: weights in [0, 1] ending at 1.0, got {args.steps!r}")
    if args.min_instances < 1 or args.max_instances < args.min_instances:
        raise UsageError("--min-instances/--max-instances: expected 1 <= min <= max")
    spec = DeploySpec(endpoint=args.endpoint, bucket=args.bucket, role_arn=args.role, instance_type=args.instance_type,
                      min_instances=args.min_instances, max_instances=args.max_instances,
                      target_invocations_per_instance=args.target_invocations)
    try:
        res = Deployer(spec, on_step=lambda step, _d: print(f"  {step}", flush=True)).deploy(args.model, steps)
    except FileNotFoundError as exc:
        raise UsageError(f"--model: {exc}") from None
    except (ValueError, KeyError) as exc:
        raise UsageError(f"--model: {exc}") from None
    for step in res.steps:
        print(step)
    print(f"endpoint {res.endpoint}: variant {res.variant} ({res.model_name}), config {res.endpoint_config}")
    return 0
