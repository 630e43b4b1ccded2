"""The backfill on Apache Spark (``mhp backfill --engine spark``): the same tables as the DuckDB
engine (``features.backfill``), bit for bit, from the same generated statements.

The statements of ``features.backfill_sql`` are rendered in Spark's dialect and each becomes a
cached temp view; Spark partitions the work itself (shuffles spill to disk), so there is no
key-range loop: all customers go through one plan.

Outputs: the same files as the DuckDB engine, ``<view>.parquet`` (one file each, which Feast's
FileSource, ``features.retrieval`` and the training job read) and ``horizon.json``. The small
group tables are collected as Arrow and written by the driver. The customer table is written by
Spark's tasks as sorted part files under a scratch directory, then streamed into the one file
row group by row group (the driver holds one row group at a time); at cluster scale that merge is
a single sequential copy of the table, the one step that does not scale out (readers that took the
part-file directory would remove it).

Storage: local paths are read and written directly. In local mode an ``s3://`` event log is first
copied to local scratch through ``core.storage`` (fsspec; this Spark has no S3 connector) and the
customer table's part files go to the driver's scratch. Under spark-submit on EMR or Glue
(``core.spark.on_cluster``) Spark reads the ``s3://`` log itself and writes the part files beside
the output (``<out>/_spark_parts/``, removed after the merge), where every executor can write.
Outputs are written through ``core.storage``.
"""
from __future__ import annotations

import os
import re
import tempfile
from datetime import datetime

from core import storage
from core.spark import ANSI_QUOTES, on_cluster, spark_session, sql_conf
from core.times import DAY_US, from_us, to_us
from events.contract import EVENT_LOG_SCHEMA

from . import catalog as C
from .backfill import BackfillResult, _ParquetParts, write_horizon
from .backfill_sql import Statement, customer_statements, group_tables
from .sql_dialect import SPARK

def _stage_events(events_uri: str, work: str) -> str:
    """A path Spark can read: the log itself (a local path, or s3:// under spark-submit on EMR/Glue),
    or a local copy of an s3:// log under ``work`` (local mode)."""
    if storage.is_s3(events_uri) and on_cluster():
        return events_uri
    if not storage.is_s3(events_uri):
        path = storage.filesystem(events_uri)[1]
        if not os.path.isdir(path):
            raise ValueError(f"no event log directory at {events_uri}")
        return path
    fs, path = storage.filesystem(events_uri)
    local = os.path.join(work, "events")
    fs.get(path.rstrip("/") + "/", local, recursive=True)
    return local


def read_event_log(spark, events_path: str):
    """The log's Parquet files as a DataFrame with the contract's columns by name (a file missing one
    reads it as null, as DuckDB's union_by_name): no schema inference over every file."""
    from pyspark.sql.pandas.types import from_arrow_schema  # lazy: pyspark loads only when Spark runs

    return (spark.read.schema(from_arrow_schema(EVENT_LOG_SCHEMA)).option("recursiveFileLookup", "true")
            .option("pathGlobFilter", "*.parquet").parquet(events_path))


def load_events(spark, events_path: str, until_us: int | None) -> tuple[int, int | None, int]:
    """Expose the log as views ``ev_raw`` / ``ev_all`` / ``ev`` with ``tsu`` (microseconds);
    returns the cap in microseconds (default: the midnight after the last event), the first
    event's time at or before it (None: no event) and the number of events after it.

    ``ev_all`` is cached (memory, spilling to disk): every statement scans it."""
    # The contract's columns by name (files missing one read it as null), plus the hive partition.
    fs, root = storage.filesystem(events_path)
    if not fs.glob(root.rstrip("/") + "/**/*.parquet"):
        raise ValueError(f"no events found under {events_path}")
    read_event_log(spark, events_path).createOrReplaceTempView("ev_log")
    cols = ", ".join(f'"{n}"' for n in EVENT_LOG_SCHEMA.names)
    spark.sql(f'SELECT {cols}, {SPARK.epoch_us(chr(34) + "timestamp" + chr(34))} AS tsu FROM ev_log') \
        .createOrReplaceTempView("ev_raw")
    if until_us is None:   # one scan: the cap is the midnight after the last event, so nothing is later
        first_us, last = spark.sql("SELECT MIN(tsu), MAX(tsu) FROM ev_raw").first()
        if last is None:
            raise ValueError(f"no events found under {events_path}")
        until_us, later = (last // DAY_US + 1) * DAY_US, 0
    else:
        first_us, later = spark.sql(
            f"SELECT MIN(CASE WHEN tsu <= {until_us} THEN tsu END), COUNT_IF(tsu > {until_us}) FROM ev_raw").first()
    spark.sql(f"SELECT * FROM ev_raw WHERE tsu <= {until_us}").cache().createOrReplaceTempView("ev_all")
    spark.sql("SELECT * FROM ev_all").createOrReplaceTempView("ev")
    return until_us, first_us, later


def _materialize(spark, stmt: Statement, later: list[Statement]):
    """The statement's result as a temp view named after its table, cached (on first use) when a
    later statement reads it: a view is otherwise recomputed by each reader."""
    table, query = stmt
    df = spark.sql(query)
    if any(re.search(rf"\b{re.escape(table)}\b", q) for _, q in later):
        df = df.cache()
    df.createOrReplaceTempView(table)
    return df


def _plain_schema(schema):
    """The schema without Spark's metadata (the DuckDB engine's files carry none)."""
    return schema.remove_metadata()


def _as_written_by_duckdb(table):
    """The group table with the DuckDB engine's column flags: its Parquet writer marks a column
    required (Arrow: not nullable) exactly when the column holds no null."""
    import pyarrow as pa

    schema = pa.schema([f.with_nullable(table.column(f.name).null_count > 0) for f in table.schema])
    return table.cast(schema)


def _write_customer_table(df, uri: str, folder: str) -> int:
    """Spark's tasks write the sorted table as part files under ``folder`` (storage every executor
    reaches); they are streamed into one file at ``uri`` and removed."""
    import pyarrow.parquet as pq

    df.write.mode("overwrite").parquet(folder)
    fs, root = storage.filesystem(folder)
    parts = sorted(fs.glob(root.rstrip("/") + "/part-*.parquet"))  # part numbers follow the sort order
    rows = 0
    with _ParquetParts(uri) as out:
        for path in parts:
            f = pq.ParquetFile(fs.open(path, "rb"))
            schema = _plain_schema(f.schema_arrow)
            for i in range(f.num_row_groups):
                group = f.read_row_group(i).replace_schema_metadata(None).cast(schema)
                rows += group.num_rows
                out.write(group)
        if not rows:   # keep the schema of an empty table
            out.write(pq.read_table(fs.open(parts[0], "rb")).replace_schema_metadata(None) if parts
                      else df.limit(0).toArrow())
    fs.rm(root, recursive=True)
    return rows


def run_backfill(events_uri: str, out_uri: str, until: datetime | None = None,
                 progress: bool = True) -> BackfillResult:
    """Compute all snapshot tables on Spark and write them as Parquet under ``out_uri`` (the
    DuckDB engine's files, bit for bit)."""
    from tqdm import tqdm

    spark = spark_session()
    with tempfile.TemporaryDirectory(prefix="backfill-spark-") as work, sql_conf(spark, ANSI_QUOTES):
        events_path = _stage_events(events_uri, work)
        until_us, first_us, later = load_events(spark, events_path, None if until is None else to_us(until))
        if first_us is None:
            raise ValueError(f"no events at or before {until} under {events_uri}")
        first_day, until_day = first_us // DAY_US, until_us // DAY_US
        out = out_uri.rstrip("/")
        written = {}
        cached = []
        steps = customer_statements(until_us, SPARK) + group_tables(first_day, until_day, SPARK)
        tables = {}
        for i, stmt in enumerate(tqdm(steps, desc="backfill (spark)", unit="step", disable=not progress)):
            cached.append(_materialize(spark, stmt, steps[i + 1:]))
            tables[stmt[0]] = cached[-1]
            if stmt[0] == "customer_snapshots":
                written[C.CUSTOMER_VIEW] = f"{out}/{C.CUSTOMER_VIEW}.parquet"
                # local mode: the driver's scratch; on a cluster: beside the output, where executors write
                parts = f"{out}/_spark_parts" if on_cluster() else os.path.join(work, "customer_parts")
                customer_rows = _write_customer_table(cached[-1], written[C.CUSTOMER_VIEW], parts)
        counts = {}
        for view in (C.TUTOR_VIEW, C.SUBJECT_VIEW, C.MARKETPLACE_VIEW):
            table = _as_written_by_duckdb(tables[view].toArrow().replace_schema_metadata(None))
            counts[view] = table.num_rows
            written[view] = storage.write_parquet(table, f"{out}/{view}.parquet")
        valid_before_us = until_us + 1 if later else (until_us // DAY_US + 1) * DAY_US
        write_horizon(out_uri, until_us, valid_before_us, first_us)
        for df in cached:
            df.unpersist()
        spark.catalog.uncacheTable("ev_all")
        for name in ["ev_log", "ev_raw", "ev_all", "ev"] + list(tables):
            spark.catalog.dropTempView(name)
    return BackfillResult(customer_rows, counts[C.TUTOR_VIEW], counts[C.MARKETPLACE_VIEW], from_us(first_us),
                          from_us(until_us), written)
