"""`mhp ingest`: replay a stream file (or poll a Kinesis stream) through the Lambda handler."""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from core import aws, workspace
from core.errors import UsageError
from mhp.commands.prerequisites import require_applied, require_backfill

STATE_TABLE = "mhp-ingestion-state"
DLQ_NAME = "mhp-ingestion-dead-letters"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ingest", help="stream events through the ingester (Lambda handler) into the online store",
        description="Replay the simulator's stream.jsonl (--from) or poll a Kinesis stream (--kinesis) through "
                    "the Kinesis Lambda handler: bounded per-customer state, dead letters, Feast push. "
                    "Run `mhp backfill` and `mhp apply` first (the Feast repo must be registered).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from", dest="source", metavar="STREAM_JSONL", help="time-ordered JSON-lines stream file")
    src.add_argument("--kinesis", metavar="NAME", help="Kinesis stream to poll like the event source mapping")
    workspace.add_arguments(p)
    p.add_argument("--batch-size", default="500", help="records per handler invocation (default 500)")
    p.add_argument("--max-retries", default="3", help="--kinesis: retries before giving up on records (default 3)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _positive(name: str, text: str) -> int:

    try:
        v = int(text)
    except ValueError:
        v = 0
    if v <= 0:
        raise UsageError(f"--{name}: expected a positive integer, got {text!r}")
    return v


def build_ingester(ws: workspace.Workspace):
    """The ingester for a workspace: embedded (SQLite state + dead letters) or AWS (DynamoDB + SQS)."""
    from features.store import open_store  # lazy: loaded only when this command runs (keeps `mhp --help` light)
    from ingestion.dead_letters import (  # lazy: loaded only when this command runs (keeps `mhp --help` light)
        SQLiteDeadLetters,
        SQSDeadLetters,
    )
    from ingestion.dynamodb_state_store import (  # lazy: loaded only when this command runs (keeps `mhp --help` light)
        DynamoDBStateStore,
    )
    from ingestion.handler import Ingester  # lazy: loaded only when this command runs (keeps `mhp --help` light)
    from ingestion.push import FeastPusher  # lazy: loaded only when this command runs (keeps `mhp --help` light)
    from ingestion.state_store import (  # lazy: loaded only when this command runs (keeps `mhp --help` light)
        SQLiteStateStore,
    )

    store = open_store(ws.profile, ws.feast_state, None if ws.profile == "local" else ws.root)
    if ws.profile == "local":
        d = Path(ws.state) / "ingestion"
        state, dlq = SQLiteStateStore(d / "state.db"), SQLiteDeadLetters(d / "dead_letters.db")
    else:
        state, dlq = DynamoDBStateStore(STATE_TABLE), SQSDeadLetters.create(DLQ_NAME)
    return Ingester(state, FeastPusher(store), dlq), store


def summary(totals, seconds: float, extra: dict | None = None) -> str:
    dl = {k.split(":", 1)[1]: n for k, n in sorted(totals.items()) if k.startswith("dead_letter:")}
    lines = [f"ingest: {totals.get('records', 0):,} records in {seconds:.1f}s "
             f"({totals.get('records', 0) / max(seconds, 1e-9):,.0f} records/s)",
             f"  applied events      {totals.get('applied', 0):,}",
             f"  duplicates          {totals.get('duplicates', 0):,}",
             f"  day ticks applied   {totals.get('ticks', 0):,} (no-op {totals.get('tick_noops', 0):,})",
             f"  tutor events (batch path only) {totals.get('tutor_events', 0):,}",
             f"  dead letters        {sum(dl.values()):,}" + (
                 " (" + ", ".join(f"{k}: {n:,}" for k, n in dl.items()) + ")" if dl else ""),
             f"  retried (batchItemFailures) {totals.get('failed', 0):,}; version conflicts {totals.get('conflicts', 0):,}",
             f"  pushes              {totals.get('pushes', 0):,} ({totals.get('pushed_rows', 0):,} customer rows)",
             f"  scoring hook        {totals.get('scored_customers', 0):,} customer triggers"]
    for k, v in (extra or {}).items():
        lines.append(f"  {k:19s} {v}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    ws = workspace.from_args(args)
    batch_size = _positive("batch-size", args.batch_size)
    if args.source is not None:
        path = Path(args.source)
        if not path.is_file():
            raise UsageError(f"--from: expected a stream.jsonl file (from `mhp simulate`), got {args.source!r}")
    max_retries = _positive("max-retries", args.max_retries) if args.kinesis else 0
    require_backfill(ws)
    ingester, store = build_ingester(ws)
    require_applied(store, ws)
    t0 = time.perf_counter()
    with FirstHandlerError() as first_error:
        extra, failed = _ingest(args, ingester, batch_size, max_retries)
    print(summary(ingester.totals, time.perf_counter() - t0, extra))
    if failed:
        raise RuntimeError(f"{failed:,} record(s) failed and were not applied"
                           + (f"; first error: {first_error.message}" if first_error.message else ""))
    return 0


class FirstHandlerError(logging.Handler):
    """While the CLI ingests, the handler's per-batch error logs (JSON with a traceback each, for a
    Lambda's log stream) are kept out of the terminal: the first message goes into the summary."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.message: str | None = None
        self._logger = logging.getLogger("mhp-ingestion")
        self._saved: list[logging.Handler] = []

    def emit(self, record: logging.LogRecord) -> None:
        if self.message is None:
            exc = record.exc_info[1] if record.exc_info else None
            self.message = f"{record.getMessage()}: {exc}" if exc else record.getMessage()

    def __enter__(self) -> "FirstHandlerError":
        self._saved = list(self._logger.handlers)
        for h in self._saved:
            self._logger.removeHandler(h)
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        self._logger.removeHandler(self)
        for h in self._saved:
            self._logger.addHandler(h)


def _ingest(args, ingester, batch_size: int, max_retries: int) -> tuple[dict, int]:
    """(summary lines, records that failed for good: a replay does not retry, the poller gives up)."""
    from tqdm import tqdm

    if args.source is not None:
        from ingestion.replay import StreamReplay  # lazy: loaded only when this command runs (keeps `mhp --help` light)

        with open(args.source, "rb") as f:
            total = sum(1 for line in f if line.strip())
        with tqdm(total=total, desc="ingest", unit="rec", disable=args.no_progress) as bar:
            rep = StreamReplay(ingester, Path(args.source), batch_size=batch_size, progress=bar)
            rep.run_until(None)
        return {"handler calls": f"{rep.invocations:,}", "day ticks sent": f"{rep.ticks_sent:,}"}, len(rep.failures)
    from ingestion.kinesis_poller import KinesisPoller  # lazy: loaded only when this command runs (keeps `mhp --help` light)

    poller = KinesisPoller(ingester, aws.boto3_client("kinesis"), args.kinesis, ingester.store,
                           batch_size=batch_size, max_retries=max_retries)
    poller.poll()
    s = poller.stats
    return {"handler calls": f"{s.invocations:,}", "retries": f"{s.retries:,} (bisections {s.bisections:,})",
            "given up": f"{s.given_up:,}"}, s.given_up
