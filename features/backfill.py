"""The offline engine: feature snapshot tables from the Parquet event log, on DuckDB.

Set-based SQL generated from the catalog (``features.backfill_sql``: no per-feature code, no
per-customer loops); the same statements, in Spark's dialect, run on Apache Spark
(``features.backfill_spark``, ``mhp backfill --engine spark``) and give the same tables bit for bit.

Customer snapshots: one row per (customer, instant), where the instants are
the customer's distinct event timestamps plus every UTC midnight that falls
within MAX_WINDOW_DAYS after one of their events (capped at ``until``): the
midnights at which a window can still change. So Feast's latest-row-as-of-t
is exact and windows decay on schedule. Tutor, subject and marketplace snapshots: one row per group per
UTC midnight, over the complete days before it (the marketplace table is the subject table
pivoted to one wide row per day).

``until`` is the tables' horizon (default: the midnight after the last event): events after it
are ignored and no snapshot is written after it. The tables are exact for t before the first
midnight after ``until`` (the next decay) when the log has no event after ``until``, and for
t <= ``until`` when it has (those events are missing). Later values would be stale, so that
bound (``valid_before``) is written to ``HORIZON_FILE`` beside the tables and point-in-time
retrieval (``features.retrieval.historical_features``) refuses rows at or after it. To read later
times, backfill with a later ``until``: the midnight ticks then run on to it, exactly as the
online day ticks do.

All times are integer microseconds since the epoch (UTC) inside the SQL.
"""
from __future__ import annotations

import bisect
import dataclasses
import json
import os
import tempfile
from datetime import datetime

import duckdb

from core.storage import duckdb_connect, filesystem, join, write_parquet
from core.times import DAY_US, from_us, isoformat_z, to_us
from events.contract import EVENT_LOG_SCHEMA

from . import catalog as C
from .backfill_sql import Statement, customer_statements, group_tables
from .sql_dialect import DUCKDB

HORIZON_FILE = "horizon.json"   # {"until", "valid_before", "first_event"} (+ "_us" integers) beside the tables


@dataclasses.dataclass(frozen=True)
class Horizon:
    until: datetime          # the backfill's cap: no event after it, no snapshot after it
    valid_before: datetime   # rows at t < valid_before are exact


@dataclasses.dataclass
class BackfillResult:
    customer_rows: int
    tutor_rows: int
    marketplace_rows: int
    first_event: datetime | None
    until: datetime
    outputs: dict[str, str]


def connect(events_uri: str) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that can read ``events_uri`` (local or s3://)."""
    if events_uri.startswith("s3://"):

        con = duckdb_connect()
    else:
        con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def load_events(con: duckdb.DuckDBPyConnection, events_uri: str, until_us: int | None) -> int:
    """Expose the log as views ``ev_all`` / ``ev`` with ``tsu`` (microseconds); returns the cap in microseconds."""
    if events_uri.startswith("s3://"):
        # DuckDB through fsspec reads one small object at a time; Arrow's dataset reader fetches the
        # day partitions concurrently, so pull the log once and scan it in memory.
        import pyarrow as pa
        import pyarrow.dataset as pads


        fs, path = filesystem(events_uri)
        schema = EVENT_LOG_SCHEMA.append(pa.field("date", pa.string()))  # the contract's columns + partition
        con.register("ev_arrow", pads.dataset(path, filesystem=fs, format="parquet", partitioning="hive",
                                              schema=schema).to_table())
        source = "ev_arrow"
    else:
        glob = events_uri.rstrip("/") + "/**/*.parquet"
        source = f"read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"
    con.execute(f"""CREATE OR REPLACE TEMP VIEW ev_raw AS
        SELECT * EXCLUDE (date), epoch_us("timestamp") AS tsu FROM {source}""")
    if until_us is None:
        last = con.execute("SELECT MAX(tsu) FROM ev_raw").fetchone()[0]
        if last is None:
            raise ValueError(f"no events found under {events_uri}")
        until_us = (last // DAY_US + 1) * DAY_US  # the midnight after the last event
    con.execute(f"CREATE OR REPLACE TEMP VIEW ev_all AS SELECT * FROM ev_raw WHERE tsu <= {until_us}")
    con.execute("CREATE OR REPLACE TEMP VIEW ev AS SELECT * FROM ev_all")
    return until_us


PARTITION_EVENTS = 300_000   # customer events per partition: what bounds the customer tables' memory
MEMORY_LIMIT = "1500MB"      # DuckDB's buffer pool; sorts and large tables spill to a temporary directory


def customer_partitions(counts: list[tuple[str, int]], max_events: int) -> list[tuple[str, str | None]]:
    """Key ranges ``[lo, hi)`` (``hi`` None: open) over customers sorted by id, each holding at most
    ``max_events`` events (a customer with more gets a range of its own)."""
    if max_events < 1:
        raise ValueError(f"max_events: expected a positive number of events per partition, got {max_events}")
    bounds, size = [], 0
    for cid, n in counts:
        if not bounds or (size + n > max_events and size > 0):
            bounds.append(cid)
            size = 0
        size += n
    return [(lo, bounds[i + 1] if i + 1 < len(bounds) else None) for i, lo in enumerate(bounds)]


def _stage_customer_events(con: duckdb.DuckDBPyConnection, parts: list[tuple[str, int]], work: str) -> str:
    """Split the customers' events by partition in one pass (Parquet files per partition under
    ``work``); ``parts``: (customer_id, partition). Returns the folder (``part=<i>/*.parquet``)."""
    con.execute("CREATE OR REPLACE TEMP TABLE cust_part (customer_id VARCHAR, part INTEGER)")
    con.executemany("INSERT INTO cust_part VALUES (?, ?)", parts)
    folder = os.path.join(work, "events")
    con.execute(f"""COPY (SELECT e.*, p.part FROM ev_all e JOIN cust_part p USING (customer_id))
                    TO '{folder}' (FORMAT PARQUET, PARTITION_BY (part))""")
    return folder


def _customer_tables(con: duckdb.DuckDBPyConnection, until_us: int, work: str, max_events: int,
                     progress: bool, write_part) -> int:
    """The customer snapshot table, one partition of customers at a time, handed to ``write_part``
    (an Arrow table) in key order; returns the number of rows."""
    from tqdm import tqdm

    counts = con.execute("SELECT customer_id, COUNT(*) FROM ev_all WHERE customer_id IS NOT NULL "
                         "GROUP BY 1 ORDER BY 1").fetchall()
    ranges = customer_partitions(counts, max_events) or [("", None)]
    folder = None
    if len(ranges) > 1:
        starts = [lo for lo, _ in ranges]
        folder = _stage_customer_events(con, [(cid, bisect.bisect_right(starts, cid) - 1) for cid, _ in counts], work)
    stmts, rows = customer_statements(until_us, DUCKDB), 0
    for i in tqdm(range(len(ranges)), desc="backfill customers", unit="part", disable=not progress):
        if folder is None:   # one partition: the log itself
            con.execute("CREATE OR REPLACE TEMP VIEW ev AS SELECT * FROM ev_all")
        else:
            con.execute(f"""CREATE OR REPLACE TEMP TABLE ev_part AS SELECT * FROM read_parquet(
                '{folder}/part={i}/*.parquet', hive_partitioning = false)""")
            con.execute("CREATE OR REPLACE TEMP VIEW ev AS SELECT * FROM ev_part")
        for stmt in stmts:
            _execute(con, stmt)
        part = con.sql("SELECT * FROM customer_snapshots").to_arrow_table()
        rows += part.num_rows
        write_part(part)
    for table in ["ev_part"] + [name for name, _ in stmts]:
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return rows


ENGINES = ("duckdb", "spark")


def run_backfill(events_uri: str, out_uri: str, until: datetime | None = None, progress: bool = True,
                 partition_events: int = PARTITION_EVENTS, memory_limit: str = MEMORY_LIMIT,
                 engine: str = "duckdb") -> BackfillResult:
    """Compute all snapshot tables and write them as Parquet under ``out_uri``.

    DuckDB (default): customers are processed in key ranges of at most ``partition_events`` events
    each, and DuckDB spills beyond ``memory_limit``: the peak memory does not grow with the number
    of customers. ``engine="spark"``: the same statements on Spark (``features.backfill_spark``;
    the partition and memory bounds are Spark's own), the same files bit for bit."""
    if engine not in ENGINES:
        raise ValueError(f"engine: expected one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "spark":
        from .backfill_spark import run_backfill as run_on_spark  # lazy: pyspark only for this engine

        return run_on_spark(events_uri, out_uri, until=until, progress=progress)
    from tqdm import tqdm

    con = connect(events_uri)
    with tempfile.TemporaryDirectory(prefix="backfill-") as work:
        con.execute(f"SET temp_directory = '{os.path.join(work, 'spill')}'")
        con.execute(f"SET memory_limit = '{memory_limit}'")
        until_us = None if until is None else to_us(until)
        until_us = load_events(con, events_uri, until_us)
        first_us = con.execute("SELECT MIN(tsu) FROM ev_all").fetchone()[0]
        if first_us is None:
            raise ValueError(f"no events at or before {until} under {events_uri}")
        first_day, until_day = first_us // DAY_US, until_us // DAY_US
        customer_uri = f"{out_uri.rstrip('/')}/{C.CUSTOMER_VIEW}.parquet"
        with _ParquetParts(customer_uri) as customer_out:
            customer_rows = _customer_tables(con, until_us, work, partition_events, progress, customer_out.write)
        steps = group_tables(first_day, until_day, DUCKDB)
        for stmt in tqdm(steps, desc="backfill groups", unit="step", disable=not progress):
            _execute(con, stmt)
        outputs = {C.TUTOR_VIEW: C.TUTOR_VIEW, C.SUBJECT_VIEW: C.SUBJECT_VIEW, C.MARKETPLACE_VIEW: C.MARKETPLACE_VIEW}
        written = {C.CUSTOMER_VIEW: customer_uri}
        for view, table in outputs.items():
            uri = f"{out_uri.rstrip('/')}/{view}.parquet"
            _write(con, table, uri)
            written[view] = uri
        later = con.execute(f"SELECT COUNT(*) FROM ev_raw WHERE tsu > {until_us}").fetchone()[0]
        valid_before_us = until_us + 1 if later else (until_us // DAY_US + 1) * DAY_US
        write_horizon(out_uri, until_us, valid_before_us, first_us)
        count = lambda t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]  # noqa: E731
        result = BackfillResult(customer_rows, count(C.TUTOR_VIEW), count(C.MARKETPLACE_VIEW),
                                from_us(first_us), from_us(until_us), written)
        con.close()
    return result


def write_horizon(out_uri: str, until_us: int, valid_before_us: int, first_us: int) -> None:
    fs, path = filesystem(join(out_uri, HORIZON_FILE))
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    doc = {}
    for name, us in (("until", until_us), ("valid_before", valid_before_us), ("first_event", first_us)):
        doc[name] = isoformat_z(from_us(us))
        doc[f"{name}_us"] = us
    with fs.open(path, "w") as f:
        json.dump(doc, f, indent=2)


def read_horizon(features_uri: str) -> Horizon | None:
    """The horizon of the tables under ``features_uri``; None if they have no horizon file."""
    fs, path = filesystem(join(features_uri, HORIZON_FILE))
    if not fs.exists(path):
        return None
    with fs.open(path, "r") as f:
        doc = json.load(f)
    return Horizon(from_us(int(doc["until_us"])), from_us(int(doc["valid_before_us"])))


class _ParquetParts:
    """One Parquet file written part by part (Arrow tables of one schema, in order)."""

    def __init__(self, uri: str):
        self.uri = uri
        self._file = self._writer = None

    def __enter__(self):
        return self

    def write(self, table) -> None:
        import pyarrow.parquet as pq

        if self._writer is None:
            fs, path = filesystem(self.uri)
            if not self.uri.startswith("s3://"):
                os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            self._file = fs.open(path, "wb")
            self._writer = pq.ParquetWriter(self._file, table.schema, coerce_timestamps="us")
        self._writer.write_table(table)

    def __exit__(self, *exc) -> None:
        if self._writer is not None:
            self._writer.close()
            self._file.close()


def _execute(con: duckdb.DuckDBPyConnection, stmt: Statement) -> None:
    table, query = stmt
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {query}")


def _write(con: duckdb.DuckDBPyConnection, table: str, uri: str) -> None:
    if uri.startswith("s3://"):
        write_parquet(con.sql(f"SELECT * FROM {table}").to_arrow_table(), uri)
    else:
        os.makedirs(os.path.dirname(uri) or ".", exist_ok=True)
        con.execute(f"COPY {table} TO '{uri}' (FORMAT PARQUET)")
