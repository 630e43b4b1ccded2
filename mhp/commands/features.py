"""`mhp backfill`, `mhp apply`, `mhp materialize`, `mhp feature-server`, `mhp features-doc`."""
from __future__ import annotations

import argparse
import time
from datetime import datetime, timezone

from core import storage, workspace
from core.errors import UsageError
from core.times import parse_utc_time
from mhp.commands.prerequisites import require_applied, require_backfill


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backfill", help="compute feature snapshot tables from the event log")
    workspace.add_arguments(p)
    p.add_argument("--until", help="ignore events after this UTC time (default: the midnight after the last event)")
    p.add_argument("--no-validate", action="store_true",
                   help="skip the data-quality gates on the event log and the snapshot tables")
    p.add_argument("--engine", choices=("duckdb", "spark"), default="duckdb",
                   help="where the backfill's SQL runs: duckdb (default, this process) or spark (Apache Spark: "
                        "local mode here, the cluster's with MHP_SPARK_MASTER; the same tables bit for bit)")
    p.set_defaults(func=cmd_backfill)

    p = sub.add_parser("apply", help="register the Feast definitions (feast apply, for the workspace)")
    workspace.add_arguments(p)
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("materialize", help="load feature snapshots into the online store")
    workspace.add_arguments(p)
    p.add_argument("--until", help="materialize rows up to this UTC time (default: the end of the backfill)")
    p.add_argument("--views", default="all", help="comma-separated views, or 'all' (default), or 'batch' "
                                                  "(tutor, subject and marketplace only: customer rows then come from the stream)")
    p.set_defaults(func=cmd_materialize)

    p = sub.add_parser("feature-server", help="one call for one customer: GET /features/{customer_id}?at=... "
                                              "returns the whole churn_model_v1 vector (docs/features.md)")
    workspace.add_arguments(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=6567, help="port (default 6567; 0 picks a free one)")
    p.set_defaults(func=cmd_feature_server)

    p = sub.add_parser("features-doc", help="regenerate docs/features.md from the catalog")
    p.add_argument("--out", default="docs/features.md")
    p.set_defaults(func=cmd_doc)


def cmd_backfill(args) -> int:
    from features.backfill import run_backfill  # lazy: loaded only when this command runs (keeps `mhp --help` light)

    ws = workspace.from_args(args)
    if not storage.exists(ws.events):
        raise UsageError(f"--workspace: no event log at {ws.events}; run `mhp simulate --out {ws.root}` first")
    until = parse_utc_time(args.until, "--until") if args.until else None
    reports = ws.state / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.engine == "spark":
        from core.spark import spark_session  # lazy: pyspark and its JVM only for this engine

        spark = spark_session()  # no Java or pyspark: one line, before any work
        print(f"backfill on Spark {spark.version} ({spark.sparkContext.master}, "
              f"{spark.conf.get('spark.sql.shuffle.partitions')} shuffle partitions)", flush=True)
    if not args.no_validate:
        from features.quality import (
            check_event_log,  # lazy: loaded only when this command runs (keeps `mhp --help` light)
        )

        gate = check_event_log(ws.events, until or datetime.max.replace(tzinfo=timezone.utc), reports)
        print(f"event log gate: {gate.row_count:,} rows pass {len(gate.outcomes)} checks ({gate.report_path})")
    res = run_backfill(ws.events, ws.features, until=until, engine=args.engine)
    if not args.no_validate:
        from features.quality import (
            check_snapshots,  # lazy: loaded only when this command runs (keeps `mhp --help` light)
        )

        for gate in check_snapshots(res.outputs, reports):
            print(f"{gate.suite_name} gate: {gate.row_count:,} rows pass {len(gate.outcomes)} checks")
    print(f"backfill: {res.customer_rows:,} customer rows, {res.tutor_rows:,} tutor rows, "
          f"{res.marketplace_rows:,} marketplace rows, events {res.first_event:%Y-%m-%d} .. {res.until:%Y-%m-%d %H:%M}Z "
          f"in {time.perf_counter() - t0:.1f}s ({args.engine})")
    for view, uri in res.outputs.items():
        print(f"  {view:22s} {uri}")
    return 0


def _store(ws):
    from features.store import open_store  # lazy: loaded only when this command runs (keeps `mhp --help` light)

    return open_store(ws.profile, ws.feast_state, None if ws.profile == "local" else ws.root)


def cmd_apply(args) -> int:
    ws = workspace.from_args(args)
    require_backfill(ws)
    from features.store import apply  # lazy: loaded only when this command runs (keeps `mhp --help` light)

    names = apply(_store(ws), ws.features)
    print(f"apply: registered {len(names)} objects ({ws.profile}): {', '.join(names)}")
    return 0


def cmd_materialize(args) -> int:
    from features import catalog as C  # lazy: loaded only when this command runs (keeps `mhp --help` light)

    ws = workspace.from_args(args)
    require_backfill(ws)
    store = _store(ws)
    require_applied(store, ws)
    known = [C.CUSTOMER_VIEW, *C.BATCH_VIEWS]
    views = {"all": known, "batch": known[1:]}.get(args.views) or [v.strip() for v in args.views.split(",")]
    unknown = sorted(set(views) - set(known))
    if unknown:
        raise UsageError(f"--views: unknown view(s) {unknown}; expected 'all', 'batch' or some of {known}")
    if args.until:
        end = parse_utc_time(args.until, "--until")
    else:
        # the end of the backfill: its latest daily snapshot
        table = storage.read_parquet(storage.join(ws.features, f"{C.MARKETPLACE_VIEW}.parquet"), columns=["event_timestamp"])
        end = max(table.column("event_timestamp").to_pylist())
    t0 = time.perf_counter()
    store.materialize(start_date=datetime(1970, 1, 2, tzinfo=timezone.utc), end_date=end, feature_views=views)
    print(f"materialize: {', '.join(views)} up to {end:%Y-%m-%d %H:%M}Z in {time.perf_counter() - t0:.1f}s")
    return 0


def cmd_feature_server(args) -> int:
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port: expected 0-65535, got {args.port}")
    ws = workspace.from_args(args)
    require_backfill(ws)
    store = _store(ws)
    require_applied(store, ws)
    import uvicorn  # lazy: the server only when this command runs (keeps `mhp --help` light)

    from features.online_http import create_app  # lazy: loaded only when this command runs (keeps `mhp --help` light)

    print(f"feature server on http://{args.host}:{args.port}/features/{{customer_id}}?at=... (Ctrl-C stops)", flush=True)
    uvicorn.run(create_app(store), host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_doc(args) -> int:
    from features.docs import render  # lazy: loaded only when this command runs (keeps `mhp --help` light)

    text = render()
    try:
        with open(args.out, "w") as f:
            f.write(text)
    except OSError as exc:
        raise UsageError(f"--out: cannot write {args.out!r}: {exc.strerror or exc}") from None
    print(f"wrote {args.out}")
    return 0
