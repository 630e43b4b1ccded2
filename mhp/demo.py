"""`mhp demo`: the whole pipeline end to end, on the embedded profile (or aws-local on moto).

    simulate -> backfill (gated) -> apply -> materialize -> dataset -> train -> serve
    -> replay the last days as a live stream, scoring on high-signal events and daily
    -> alerts -> summary

The simulated timeline is split at ``history_end``: everything before it is history
(features backfilled, online store bootstrapped, training labels observed); the last
``--live-days`` days are replayed through the stream ingester as if they were
happening now. The ingester's bounded state is first rebuilt from the history
stream (no pushes, no scoring), then the live part pushes online and triggers
scoring; at each UTC midnight the daily batch job materializes the tutor and
marketplace views and scores every active customer (silence triggers no event).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

from core import aws, local_aws, storage, workspace
from core.errors import UsageError
from core.times import to_us

DAY = timedelta(days=1)
#: (customers, live days) by profile: every AWS call of aws-local goes through the moto server
#: (~5-25 ms each), so its default is smaller to finish within 10 minutes on 2 cores (README)
DEFAULTS = {"local": (2000, 7), "aws-local": (1000, 3)}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline end to end and summarise it",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workspace", default="out/demo", help="output folder (default: out/demo; replaced)")
    p.add_argument("--profile", default="local", choices=["local", "aws-local"],
                   help="local (embedded, default) or aws-local (DynamoDB, S3, SNS on a moto server it starts)")
    p.add_argument("--customers", type=int, default=None,
                   help=f"customers to simulate (default {DEFAULTS['local'][0]}; aws-local {DEFAULTS['aws-local'][0]})")
    p.add_argument("--days", type=int, default=120, help="days to simulate (default 120)")
    p.add_argument("--live-days", type=int, default=None,
                   help=f"last days replayed as a live stream (default {DEFAULTS['local'][1]}; "
                        f"aws-local {DEFAULTS['aws-local'][1]})")
    p.add_argument("--seed", type=int, default=7, help="simulation seed (default 7)")
    p.add_argument("--epochs", type=int, default=40, help="maximum training epochs (default 40)")
    p.set_defaults(func=cmd_demo, starts_moto=True)  # aws-local: the demo starts its own moto server


class _Steps:
    """Prints each step with its wall time; the summary lists them."""

    def __init__(self):
        self.times: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def step(self, name: str):
        print(f"\n== {name}", flush=True)
        t0 = time.perf_counter()
        yield
        self.times.append((name, time.perf_counter() - t0))


def cmd_demo(args) -> int:
    customers, live_days = DEFAULTS[args.profile]
    args.customers = customers if args.customers is None else args.customers
    args.live_days = live_days if args.live_days is None else args.live_days
    if args.customers <= 0 or args.days <= 0:
        raise UsageError("--customers and --days: expected positive integers")
    if not 1 <= args.live_days <= args.days - 75:
        raise UsageError(f"--live-days: expected 1..{max(args.days - 75, 1)} (the history needs >= 75 days for "
                         f"training windows and 30-day labels), got {args.live_days}")
    if args.profile == "aws-local":

        with local_aws.moto_server() as endpoint:
            print(f"moto server on {endpoint} (DynamoDB, S3, SNS, SQS)")
            return _run(args)
    return _run(args)


def _run(args) -> int:
    import shutil

    from features.backfill import run_backfill  # lazy: loaded only when this command runs (keeps `mhp --help` light)
    from features.quality import (  # lazy: loaded only when this command runs (keeps `mhp --help` light)
        check_event_log,
        check_snapshots,
    )
    from features.store import apply, open_store  # lazy: loaded only when this command runs (keeps `mhp --help` light)
    from mhp.cli import main as mhp  # lazy: loaded only when this command runs (keeps `mhp --help` light)

    root = Path(args.workspace).resolve()
    if root.exists():
        shutil.rmtree(root)
    steps = _Steps()
    t_start = time.perf_counter()

    with steps.step(f"simulate {args.customers:,} customers x {args.days} days"):
        assert mhp(["simulate", "--customers", str(args.customers), "--days", str(args.days), "--seed",
                    str(args.seed), "--out", str(root)]) == 0
    sim = json.loads((root / "simulation.json").read_text())
    start = datetime.fromisoformat(sim["start"]).replace(tzinfo=timezone.utc)
    end = start + args.days * DAY
    history_end = end - args.live_days * DAY

    ws = workspace.Workspace(root=str(root), state=root, profile=args.profile)
    stack = None
    if args.profile == "aws-local":
        from mhp.demo_stack import DemoStack  # lazy: loaded only when this command runs (keeps `mhp --help` light)

        with steps.step("deploy the stack (deploy/template.yaml) on the moto server"):
            stack = DemoStack(root)
            print(f"stack mhp-demo: {len(stack.outputs)} outputs, data under {stack.data_uri}")
        ws = workspace.Workspace(root=stack.data_uri, state=root, profile=args.profile)
        with steps.step("upload the event log to S3"):
            from concurrent.futures import ThreadPoolExecutor

            files = sorted((root / "events").rglob("*.parquet"))
            fs, _ = storage.filesystem(ws.events)
            with ThreadPoolExecutor(8) as pool:  # one small object per UTC day: upload concurrently
                list(pool.map(lambda f: fs.put_file(str(f), storage.join(ws.events, str(f.relative_to(root / "events")))[5:]),
                              files))

    reports = root / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    with steps.step("backfill features (event log and feature tables gated by Great Expectations)"):
        gate = check_event_log(ws.events, end, reports)
        print(f"event log: {gate.row_count:,} events pass {len(gate.outcomes)} checks")
        # The batch views are computed through the end so the live days' daily job can load them;
        # customer rows past history_end are never materialized (the stream writes those).
        res = run_backfill(ws.events, ws.features, until=end)
        for g in check_snapshots(res.outputs, reports):
            print(f"{g.suite_name}: {g.row_count:,} rows pass {len(g.outcomes)} checks")

    with steps.step("feast apply + materialize the history"):
        store = stack.feature_store() if stack else open_store(ws.profile, ws.feast_state, None)
        apply(store, ws.features)
        store.materialize(start_date=start - 400 * DAY, end_date=history_end)

    with steps.step("point-in-time training set (labels observed before the live days)"):
        from training.dataset import build_training_set  # lazy: loaded only when this command runs (keeps `mhp --help` light)

        ds = build_training_set(ws.events, ws.features, store, ws.dataset, sim_dir=str(root),
                                data_end=history_end)
        print(f"dataset: {ds.out_dir}")

    with steps.step("train the multi-task model (SageMaker training contract)"):
        from training.artifact import pack_model_dir  # lazy: loaded only when this command runs (keeps `mhp --help` light)
        from training.sagemaker_entry import run_training  # lazy: loaded only when this command runs (keeps `mhp --help` light)

        outcome = run_training(str(root / "dataset"), root / "model" / "model", root / "model" / "report",
                               {"epochs": args.epochs})
        tarball = pack_model_dir(root / "model" / "model", root / "model" / "model.tar.gz")
        print(outcome.table)

    from serving.config import ServingConfig  # lazy: loaded only when this command runs (keeps `mhp --help` light)
    from serving.runtime import build_service  # lazy: loaded only when this command runs (keeps `mhp --help` light)
    from serving.server import InferenceServer  # lazy: loaded only when this command runs (keeps `mhp --help` light)

    with steps.step("serve + replay the live days through the stream ingester, scoring and alerting"):
        server = InferenceServer(str(tarball), port=0).start()
        try:
            if stack is not None:
                stack.serve_with(server.url)
                queue = stack.subscribe_readback()
                live = _replay_on_stack(stack, root, history_end, end)
            else:
                queue = None
                service = build_service(ServingConfig(profile=args.profile, endpoint_url=server.url), store, root)
                live = _replay(args, ws, root, store, service, start, history_end, end)
        finally:
            server.stop()
    alerts = _read_alerts(root, queue)

    with steps.step("drift: served features vs the training set"):
        mhp(["drift", "--reference", str(root / "dataset" / "dataset.parquet"),
             "--serving", str(root / "serving" / "served.jsonl"), "--out", str(root / "drift"), "--top", "5"])

    with steps.step("alert rules vs the simulator's ground truth"):
        rules_table = _rule_quality(ws.events, root, alerts, history_end, end)

    print(_summary(args, root, outcome, live, alerts, steps, time.perf_counter() - t_start, tarball))
    print(rules_table)
    return 0


def _rule_quality(events_uri: str, root: Path, alerts: list[dict], history_end: datetime, end: datetime) -> str:
    from serving.config import DEFAULT_RULES  # lazy: loaded only when this command runs (keeps `mhp --help` light)
    from serving.rule_quality import (  # lazy: as above
        format_rule_quality,
        ground_truth_events,
        oracle_probabilities,
        rule_quality,
    )

    cancels, calls = ground_truth_events(events_uri, end)
    rows = rule_quality(alerts, cancels, calls, DEFAULT_RULES, history_end, end, observed_until=end,
                        oracle=oracle_probabilities(str(root), alerts))
    return ("\nalert rules vs the simulator's ground truth (live days; precision counts alerts whose horizon "
            "runs past the simulation's end as misses unless the event was seen: a lower bound; the oracle's "
            "precision is not censored):\n" + format_rule_quality(rows))


def _replay(args, ws, root, store, service, start, history_end, end) -> dict:
    from tqdm import tqdm

    from features import catalog as C  # lazy: loaded only when this command runs (keeps `mhp --help` light)
    from ingestion.hooks import NoOpScoringHook  # lazy: loaded only when this command runs (keeps `mhp --help` light)
    from ingestion.push import MemoryPusher  # lazy: loaded only when this command runs (keeps `mhp --help` light)
    from ingestion.replay import StreamReplay  # lazy: loaded only when this command runs (keeps `mhp --help` light)
    from mhp.commands.ingest import build_ingester  # lazy: loaded only when this command runs (keeps `mhp --help` light)
    from serving.batch import (  # lazy: loaded only when this command runs (keeps `mhp --help` light)
        active_customers,
        score_all,
    )
    from serving.hook import (  # lazy: loaded only when this command runs (keeps `mhp --help` light)
        DrainAfterBatch,
        ServingScoringHook,
    )

    ingester, _ = build_ingester(ws)
    feast_pusher = ingester.pusher
    stream = root / "stream.jsonl"
    total = sum(1 for _ in open(stream, "rb"))
    with tqdm(total=total, desc="stream", unit="rec") as bar:
        replay = StreamReplay(ingester, stream, batch_size=500, progress=bar)
        # 1. Rebuild the bounded state from history: the online store already holds it (materialize).
        ingester.pusher, ingester.hook = MemoryPusher(), NoOpScoringHook()
        replay.run_until(to_us(history_end))
        bootstrap = Counter(ingester.totals)
        # 2. Live: push online, score on high-signal events, daily batch job at each midnight.
        hook = ServingScoringHook(service)
        ingester.pusher, ingester.hook = feast_pusher, hook
        replay.ingester = DrainAfterBatch(ingester, hook)   # the hook records; the worker scores after each batch
        daily = Counter()
        day = history_end
        while day < end:
            nxt = day + DAY
            replay.run_until(to_us(nxt) - 1)
            with contextlib.redirect_stdout(io.StringIO()):  # Feast prints per view; the bar says enough
                store.materialize(start_date=day, end_date=nxt, feature_views=list(C.BATCH_VIEWS))
            ids = active_customers(ws.events, nxt)
            out = score_all(service, ids, nxt)
            daily["scored"] += len(out.scored)
            daily["alerts"] += len(out.alerts)
            day = nxt
        replay.run_until(None)
    return {"totals": dict(Counter(ingester.totals) - bootstrap), "daily": dict(daily),
            "bootstrap_events": bootstrap.get("applied", 0)}


def _replay_on_stack(stack, root: Path, history_end: datetime, end: datetime) -> dict:
    from tqdm import tqdm

    from mhp.demo_stack import (  # lazy: loaded only when this command runs (keeps `mhp --help` light)
        bootstrap,
        live_days,
    )

    stream = root / "stream.jsonl"
    total = sum(1 for line in open(stream, "rb") if line.strip())
    with tqdm(total=total, desc="stream", unit="rec") as bar:
        t0 = time.perf_counter()
        consumed, applied = bootstrap(stack, stream, history_end, progress=bar)
        print(f"\ningester state rebuilt in process and written to the stack's state table in "
              f"{time.perf_counter() - t0:.1f}s", flush=True)
        live = live_days(stack, stream, consumed, history_end, end, progress=bar)
    for day, n, parts in live["days"]:
        print(f"  live day {day}: {n:,} records through Kinesis -> ingest_handler "
              + ", ".join(f"{k} {v:.1f}s" for k, v in parts.items()))
    live["bootstrap_events"] = applied
    return live


def _summary(args, root: Path, outcome, live: dict, alerts: list[dict], steps: _Steps, seconds: float,
             tarball) -> str:
    by_type = Counter(a["type"] for a in alerts)
    lines = ["", "=" * 72, f"demo finished in {seconds:.0f}s ({args.profile} profile)", "",
             "model vs the simulator's oracle (test split):", outcome.table, ""]
    t = live["totals"]
    lines.append(f"ingester state rebuilt from {live['bootstrap_events']:,} history events; live days:")
    lines.append(f"  {t.get('applied', 0):,} events applied, {t.get('pushes', 0):,} pushes "
                 f"({t.get('pushed_rows', 0):,} rows), {t.get('scored_customers', 0):,} event-triggered scorings, "
                 f"{live['daily'].get('scored', 0):,} daily batch scorings")
    lines.append(f"alerts: {len(alerts):,} " + (", ".join(f"{k} {v:,}" for k, v in sorted(by_type.items())) or ""))
    for kind in sorted(by_type):
        example = next(a for a in alerts if a["type"] == kind)
        reasons = ", ".join(f["feature"] for f in example.get("top_features", [])[:3])
        lines.append(f"  e.g. {kind}: customer {example['customer_id']} at {example.get('as_of', '')} "
                     f"(severity {example['severity']}; top features: {reasons})")
    lines += ["", "steps:"] + [f"  {name:<75s} {secs:6.1f}s" for name, secs in steps.times]
    lines += ["", "outputs:",
              f"  event log + stream     {root / 'events'}, {root / 'stream.jsonl'}",
              f"  feature tables         {root / 'features'} (Feast repo state in {root / 'feast'})",
              f"  data-quality reports   {root / 'reports'}",
              f"  training set           {root / 'dataset'}",
              f"  model artifact         {tarball}",
              f"  evaluation report      {root / 'model' / 'report' / 'report.md'}",
              f"  alerts                 {root / 'alerts' / 'alerts.jsonl' if args.profile == 'local' else 'the stack SNS topic mhp-demo-alerts (read back through SQS)'}",
              f"  served feature log     {root / 'serving' / 'served.jsonl'}",
              f"  drift table and plot   {root / 'drift'}"]
    if args.profile == "local":  # aws-local's moto server (its data) stops with the demo
        sim = json.loads((root / "simulation.json").read_text())
        end = datetime.fromisoformat(sim["start"]).replace(tzinfo=timezone.utc) + args.days * DAY
        lines += ["", "customer-success console (alerts, customer pages, overview; docs/console.md):",
                  f"  mhp console --workspace {root} --at {end:%Y-%m-%dT%H:%M:%SZ}"]
    return "\n".join(lines)


def _read_alerts(root: Path, queue_url: str | None) -> list[dict]:
    if queue_url is None:
        path = root / "alerts" / "alerts.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []

    return aws.drain_queue(queue_url)
