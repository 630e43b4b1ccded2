"""The offline engine: feature snapshot tables from the Parquet event log.

Set-based SQL generated from the catalog (no per-feature code, no
per-customer loops), run on DuckDB; every statement is plain windowed SQL so
the same plan can move to Spark or Athena when the history outgrows a machine.

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
from events.contract import EVENT_LOG_SCHEMA, SUBJECTS

from . import catalog as C

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


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _metric_sql(m: C.Metric) -> str:
    # Integers (fractional values in fixed point, Metric.scale) held in DOUBLE: exact below 2**53,
    # so differences of running sums carry no rounding and windows are fast to sum.
    value = "1" if m.value is None else f"CAST(FLOOR({_q(m.value)} * {m.scale} + 0.5) AS BIGINT)"
    if m.per_day == "any":
        return f"CAST(MAX(CASE WHEN {m.source.sql()} THEN 1 ELSE 0 END) AS DOUBLE)"
    return f"CAST(SUM(CASE WHEN {m.source.sql()} THEN {value} ELSE 0 END) AS DOUBLE)"


def _value(metric: str, raw: str) -> str:
    """A metric's accumulated integer in its own unit (the generated state.snapshot divides the same way)."""
    scale = C.METRIC_BY_NAME[metric].scale
    return raw if scale == 1 else f"({raw} / {float(scale)!r})"


def _window_pairs() -> list[tuple[str, int]]:
    pairs: dict[tuple[str, int], None] = {}
    for f in C.CUSTOMER_FEATURES:
        if isinstance(f, C.WindowSum):
            pairs[(f.metric, f.days)] = None
        elif isinstance(f, C.WindowRatio):
            pairs[(f.num, f.days)] = None
            pairs[(f.den, f.days)] = None
    return list(pairs)


def _lifetime_metrics() -> list[str]:
    names: dict[str, None] = {}
    for f in C.CUSTOMER_FEATURES:
        if isinstance(f, C.LifetimeSum):
            names[f.metric] = None
        elif isinstance(f, C.LifetimeRatio):
            names[f.num] = names[f.den] = None
        elif isinstance(f, C.PrimaryShare):
            names[f.total_metric] = None
    return list(names)


def customer_sql(until_us: int) -> list[str]:
    """Statements that leave the customer snapshot table in ``customer_snapshots``."""
    metrics = C.METRICS
    inst_cols = [f"{_metric_sql(m)} AS {_q('m_' + m.name)}" for m in metrics]
    for f in C.CUSTOMER_FEATURES:
        if isinstance(f, C.FirstAbove):
            inst_cols.append(f"arg_min({_q(f.field)}, event_id) FILTER (WHERE {f.source.sql()} AND "
                             f"{_q(f.field)} IS NOT NULL) AS {_q('i_' + f.name)}")
        elif isinstance(f, C.LatestValue):
            inst_cols.append(f"arg_max({_q(f.field)}, event_id) FILTER (WHERE {f.source.sql()} AND "
                             f"{_q(f.field)} IS NOT NULL) AS {_q('i_' + f.name)}")
        elif isinstance(f, C.LastSeen):
            inst_cols.append(f"MAX(tsu) FILTER (WHERE {f.source.sql()}) AS {_q('i_' + f.name)}")
    zero_cols = [f"0 AS {_q('m_' + m.name)}" for m in metrics]
    null_cols = [f"NULL AS {_q('i_' + f.name)}" for f in C.CUSTOMER_FEATURES
                 if isinstance(f, (C.FirstAbove, C.LatestValue, C.LastSeen))]

    # A per-day "any" metric becomes additive: 1 at the customer's first matching instant of the day.
    any_cols = ", ".join(
        f"CASE WHEN {_q('m_' + m.name)} > 0 AND tsu = MIN(tsu) FILTER (WHERE {_q('m_' + m.name)} > 0) "
        f"OVER (PARTITION BY customer_id, day) THEN 1 ELSE 0 END AS {_q('m_' + m.name)}"
        for m in metrics if m.per_day == "any")
    stmts = [
        f"""CREATE OR REPLACE TEMP TABLE cust_inst AS
            SELECT customer_id, tsu, tsu // {DAY_US} AS day, {', '.join(inst_cols)}
            FROM ev WHERE customer_id IS NOT NULL GROUP BY customer_id, tsu""",
        # Day-boundary ticks: decay happens at midnights, while any window can still change.
        f"""CREATE OR REPLACE TEMP TABLE cust_snap AS
            WITH active AS (
              SELECT customer_id, day, LEAD(day) OVER (PARTITION BY customer_id ORDER BY day) AS next_day
              FROM (SELECT DISTINCT customer_id, day FROM cust_inst)),
            ticks AS (  -- the midnights within MAX_WINDOW_DAYS after an active day
              SELECT customer_id, unnest(range(day + 1, LEAST(COALESCE(next_day, day + {C.MAX_WINDOW_DAYS}),
                                                              day + {C.MAX_WINDOW_DAYS}, {until_us // DAY_US}) + 1)) AS day
              FROM active)
            SELECT * REPLACE ({any_cols}) FROM cust_inst
            UNION ALL
            SELECT t.customer_id, t.day * {DAY_US} AS tsu, t.day, {', '.join(zero_cols + null_cols)}
            FROM ticks t ANTI JOIN cust_inst i ON i.customer_id = t.customer_id AND i.tsu = t.day * {DAY_US}""",
    ]

    # A window is a difference of running sums: value(t) = running(t) - through_day(day(t) - N),
    # where through_day(d) sums all days <= d. LAG by rows equals the by-day lookup: rows are dense
    # for MAX_WINDOW_DAYS after every active day, and the rows a gap skips carry only zero ticks.
    assert max(n for _, n in _window_pairs()) <= C.MAX_WINDOW_DAYS
    used = list(dict.fromkeys(m for m, _ in _window_pairs()))
    through_cols = [f"SUM(SUM({_q('m_' + m)})) OVER (PARTITION BY customer_id ORDER BY day ROWS UNBOUNDED PRECEDING) "
                    f"AS {_q('d_' + m)}" for m in used]
    lag_cols = [f"COALESCE(LAG({_q('d_' + m)}, {n}) OVER w, 0) AS {_q(f'l{n}_{m}')}" for m, n in _window_pairs()]
    stmts.append(f"""CREATE OR REPLACE TEMP TABLE cust_lag AS
        SELECT customer_id, day, {', '.join(lag_cols)} FROM (
          SELECT customer_id, day, {', '.join(through_cols)} FROM cust_snap GROUP BY 1, 2)
        WINDOW w AS (PARTITION BY customer_id ORDER BY day)""")

    # Event-level helpers: the primary key's leader per instant, and distinct-in-window deltas.
    extra_ctes, extra_joins, extra_cols = [], [], []
    for f in C.CUSTOMER_FEATURES:
        if isinstance(f, C.PrimaryKey):
            a = "pk_" + f.name
            extra_ctes.append(f"""{a} AS (
                SELECT customer_id, tsu,
                       arg_max(key, event_id) FILTER (WHERE cnt = top) AS leader, MAX(top) AS top
                FROM (
                  SELECT *, MAX(cnt) OVER (PARTITION BY customer_id ORDER BY tsu, event_id
                                           ROWS UNBOUNDED PRECEDING) AS top
                  FROM (
                    SELECT customer_id, tsu, event_id, {_q(f.field)} AS key,
                           COUNT(*) OVER (PARTITION BY customer_id, {_q(f.field)} ORDER BY tsu, event_id
                                          ROWS UNBOUNDED PRECEDING) AS cnt
                    FROM ev WHERE customer_id IS NOT NULL AND {f.source.sql()}))
                GROUP BY 1, 2)""")
            extra_joins.append(f"LEFT JOIN {a} USING (customer_id, tsu)")
            extra_cols += [f"{a}.leader AS {_q('pl_' + f.name)}", f"{a}.top AS {_q('pt_' + f.name)}"]
        elif isinstance(f, C.DistinctInWindow):
            a = "dw_" + f.name
            # Key k counts from its first event on day d until midnight of d + N, merged across days.
            extra_ctes.append(f"""{a} AS (
                SELECT customer_id, tsu, SUM(delta) AS delta FROM (
                  SELECT customer_id, first_tsu AS tsu, 1 AS delta FROM kd_{f.name}
                  WHERE prev_day IS NULL OR day - prev_day >= {f.days}
                  UNION ALL
                  SELECT customer_id, (day + {f.days}) * {DAY_US} AS tsu, -1 AS delta FROM kd_{f.name}
                  WHERE next_day IS NULL OR next_day - day >= {f.days})
                GROUP BY 1, 2)""")
            extra_ctes.insert(len(extra_ctes) - 1, f"""kd_{f.name} AS (
                SELECT *, LAG(day) OVER w AS prev_day, LEAD(day) OVER w AS next_day FROM (
                  SELECT customer_id, {_q(f.field)} AS key, tsu // {DAY_US} AS day, MIN(tsu) AS first_tsu
                  FROM ev WHERE customer_id IS NOT NULL AND {f.source.sql()} GROUP BY 1, 2, 3)
                WINDOW w AS (PARTITION BY customer_id, key ORDER BY day))""")
            extra_joins.append(f"LEFT JOIN {a} USING (customer_id, tsu)")
            extra_cols.append(f"COALESCE({a}.delta, 0) AS {_q('dd_' + f.name)}")

    running = "OVER (PARTITION BY customer_id ORDER BY tsu ROWS UNBOUNDED PRECEDING)"
    sel = ["customer_id", "tsu", "day"]
    sel += [f"SUM({_q('m_' + m)}) {running} AS {_q('c_' + m)}"
            for m in dict.fromkeys(used + _lifetime_metrics())]
    for f in C.CUSTOMER_FEATURES:
        if isinstance(f, C.FirstAbove):
            sel.append(f"FIRST_VALUE({_q('i_' + f.name)} IGNORE NULLS) {running} AS {_q('v_' + f.name)}")
        elif isinstance(f, C.LatestValue):
            sel.append(f"LAST_VALUE({_q('i_' + f.name)} IGNORE NULLS) {running} AS {_q('v_' + f.name)}")
        elif isinstance(f, C.LastSeen):
            sel.append(f"MAX({_q('i_' + f.name)}) {running} AS {_q('v_' + f.name)}")
        elif isinstance(f, C.PrimaryKey):
            sel.append(f"LAST_VALUE({_q('pl_' + f.name)} IGNORE NULLS) {running} AS {_q('v_' + f.name)}")
            sel.append(f"COALESCE(MAX({_q('pt_' + f.name)}) {running}, 0) AS {_q('top_' + f.name)}")
        elif isinstance(f, C.DistinctInWindow):
            sel.append(f"SUM({_q('dd_' + f.name)}) {running} AS {_q('v_' + f.name)}")

    def win(metric: str, n: int) -> str:
        return _value(metric, f"({_q('c_' + metric)} - {_q(f'l{n}_{metric}')})")

    def life(metric: str) -> str:
        return _value(metric, _q("c_" + metric))

    out = ["customer_id", "make_timestamp(tsu)::TIMESTAMPTZ AS event_timestamp"]
    for f in C.CUSTOMER_FEATURES:
        n = _q(f.name)
        if isinstance(f, C.WindowSum):
            expr = f"{win(f.metric, f.days)}::DOUBLE / {f.days}" if f.per_day else win(f.metric, f.days)
            out.append(f"CAST({expr} AS {'BIGINT' if f.dtype == 'int64' else 'DOUBLE'}) AS {n}")
        elif isinstance(f, C.WindowRatio):
            d = win(f.den, f.days)
            out.append(f"CASE WHEN {d} > 0 THEN {win(f.num, f.days)}::DOUBLE / {d} END AS {n}")
        elif isinstance(f, C.LifetimeSum):
            out.append(f"CAST({life(f.metric)} AS {'BIGINT' if f.dtype == 'int64' else 'DOUBLE'}) AS {n}")
        elif isinstance(f, C.LifetimeRatio):
            d = life(f.den)
            out.append(f"CASE WHEN {d} > 0 THEN {life(f.num)}::DOUBLE / {d} END AS {n}")
        elif isinstance(f, C.FirstAbove):
            out.append(f"({_q('v_' + f.name)} > {f.threshold}) AS {n}")
        elif isinstance(f, C.LatestValue):
            out.append(f"CAST({_q('v_' + f.name)} AS {'BIGINT' if f.dtype == 'int64' else 'VARCHAR'}) AS {n}")
        elif isinstance(f, C.LastSeen):
            out.append(f"CAST({_q('v_' + f.name)} AS BIGINT) AS {n}")
        elif isinstance(f, C.PrimaryKey):
            out.append(f"{_q('v_' + f.name)} AS {n}")
        elif isinstance(f, C.PrimaryShare):
            d = _q("c_" + f.total_metric)
            out.append(f"CASE WHEN {d} > 0 THEN {_q('top_' + f.primary)}::DOUBLE / {d} END AS {n}")
        elif isinstance(f, C.DistinctInWindow):
            out.append(f"CAST({_q('v_' + f.name)} AS BIGINT) AS {n}")
        else:  # pragma: no cover
            raise TypeError(f"no set-based rule for {type(f).__name__}")

    ctes = ("WITH " + ",\n".join(extra_ctes) + ",\n") if extra_ctes else "WITH "
    stmts.append(f"""CREATE OR REPLACE TEMP TABLE customer_snapshots AS
        {ctes} base AS (
          SELECT s.*{''.join(', ' + c for c in extra_cols)} FROM cust_snap s {' '.join(extra_joins)}),
        acc AS (SELECT a.*, l.* EXCLUDE (customer_id, day) FROM (SELECT {', '.join(sel)} FROM base) a
                JOIN cust_lag l USING (customer_id, day))
        SELECT {', '.join(out)} FROM acc ORDER BY customer_id, tsu""")
    return stmts


def _group_sql(table: str, key: str, metrics: tuple[C.GroupMetric, ...], features: list[tuple[str, C.GroupFeature]],
               first_day: int, until_day: int, all_subjects: bool = False) -> list[str]:
    """Snapshots at every midnight d in (first_day, until_day] over the complete days [d - N, d).

    One row per group and day: every declared subject with ``all_subjects`` (the subject view),
    otherwise every group seen in the log."""
    additive = [m for m in metrics if m.distinct is None]
    distinct = [m for m in metrics if m.distinct is not None]
    windows = sorted({f.days for _, f in features})
    groups = (f"SELECT unnest([{', '.join(repr(s) for s in SUBJECTS)}]) AS grp" if all_subjects else
              f"SELECT DISTINCT {_q(metrics[0].group_by)} AS grp FROM ev_all WHERE {_q(metrics[0].group_by)} IS NOT NULL")
    grid = f"""SELECT g.grp, d.day FROM ({groups}) g,
               (SELECT unnest(range({first_day}, {until_day} + 1)) AS day) d"""
    daily = ", ".join(
        f"SUM(CASE WHEN {m.source.sql()} THEN {'1' if m.value is None else _q(m.value)} ELSE 0 END) AS {_q(m.name)}"
        for m in additive)
    win_cols = [
        f"SUM({_q(m.name)}) OVER (PARTITION BY grp ORDER BY day RANGE BETWEEN {n} PRECEDING AND 1 PRECEDING) "
        f"AS {_q(f'{m.name}_{n}')}" for m in additive for n in windows]
    stmts = [f"""CREATE OR REPLACE TEMP TABLE {table}_win AS
        WITH daily AS (
          SELECT {_q(metrics[0].group_by)} AS grp, tsu // {DAY_US} AS day, {daily}
          FROM ev_all WHERE {_q(metrics[0].group_by)} IS NOT NULL GROUP BY 1, 2),
        dense AS (SELECT grid.grp, grid.day, daily.* EXCLUDE (grp, day)
                  FROM ({grid}) grid LEFT JOIN daily USING (grp, day))
        SELECT grp, day, {', '.join(win_cols)} FROM dense"""]
    for m in distinct:
        for n in windows:
            stmts.append(f"""CREATE OR REPLACE TEMP TABLE {table}_d_{m.name}_{n} AS
                WITH present AS (
                  SELECT DISTINCT {_q(m.group_by)} AS grp, {_q(m.distinct)} AS item, tsu // {DAY_US} AS day
                  FROM ev_all WHERE {m.source.sql()})
                SELECT grid.grp, grid.day, COUNT(DISTINCT present.item) AS {_q(f'{m.name}_{n}')}
                FROM ({grid}) grid LEFT JOIN present
                  ON present.grp = grid.grp AND present.day >= grid.day - {n} AND present.day < grid.day
                GROUP BY 1, 2""")
    joins = " ".join(f"LEFT JOIN {table}_d_{m.name}_{n} USING (grp, day)" for m in distinct for n in windows)

    def value(f: C.GroupFeature) -> str:
        num = f"COALESCE({_q(f'{f.num}_{f.days}')}, 0)"
        if f.den is None:
            return num if f.dtype == "int64" else f"{num}::DOUBLE * {f.scale!r}"
        den = f"COALESCE({_q(f'{f.den}_{f.days}')}, 0)"
        return f"CASE WHEN {den} > 0 THEN {num}::DOUBLE * {f.scale!r} / {den} END"

    # The grid starts on the first day so its data enters the windows; snapshots start a day later.
    base = f"SELECT w.grp, w.day, * EXCLUDE (grp, day) FROM {table}_win w {joins} WHERE w.day > {first_day}"
    cols = ", ".join(f"{value(f)} AS {_q(col)}" for col, f in features)
    stmts.append(f"""CREATE OR REPLACE TEMP TABLE {table} AS
        SELECT grp AS {_q(key)}, make_timestamp(day * {DAY_US})::TIMESTAMPTZ AS event_timestamp, {cols}
        FROM ({base}) ORDER BY 1, 2""")
    return stmts


def _marketplace_sql() -> str:
    """The marketplace view: the subject view pivoted to one wide row per day."""
    cols = ", ".join(f"MAX(CASE WHEN subject = '{s}' THEN {_q(C.SUBJECT_FEATURE_PREFIX + f.name)} END) AS {_q(col)}"
                     for col, f, s in C.subject_columns())
    return f"""CREATE OR REPLACE TEMP TABLE {C.MARKETPLACE_VIEW} AS
        SELECT '{C.MARKETPLACE_KEY}' AS marketplace_id, event_timestamp, {cols}
        FROM {C.SUBJECT_VIEW} GROUP BY event_timestamp ORDER BY event_timestamp"""


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
    stmts, rows = customer_sql(until_us), 0
    for i in tqdm(range(len(ranges)), desc="backfill customers", unit="part", disable=not progress):
        if folder is None:   # one partition: the log itself
            con.execute("CREATE OR REPLACE TEMP VIEW ev AS SELECT * FROM ev_all")
        else:
            con.execute(f"""CREATE OR REPLACE TEMP TABLE ev_part AS SELECT * FROM read_parquet(
                '{folder}/part={i}/*.parquet', hive_partitioning = false)""")
            con.execute("CREATE OR REPLACE TEMP VIEW ev AS SELECT * FROM ev_part")
        for stmt in stmts:
            con.execute(stmt)
        part = con.sql("SELECT * FROM customer_snapshots").to_arrow_table()
        rows += part.num_rows
        write_part(part)
    for table in ("ev_part", "cust_inst", "cust_snap", "cust_lag", "customer_snapshots"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return rows


def run_backfill(events_uri: str, out_uri: str, until: datetime | None = None, progress: bool = True,
                 partition_events: int = PARTITION_EVENTS, memory_limit: str = MEMORY_LIMIT) -> BackfillResult:
    """Compute all snapshot tables and write them as Parquet under ``out_uri``.

    Customers are processed in key ranges of at most ``partition_events`` events each, and DuckDB
    spills beyond ``memory_limit``: the peak memory does not grow with the number of customers."""
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
        steps = _group_sql(C.TUTOR_VIEW, "tutor_id", C.TUTOR_METRICS, [(f.name, f) for f in C.TUTOR_FEATURES],
                           first_day, until_day)
        steps += _group_sql(C.SUBJECT_VIEW, "subject", C.SUBJECT_METRICS, C.subject_view_columns(),
                            first_day, until_day, all_subjects=True)
        steps.append(_marketplace_sql())
        for stmt in tqdm(steps, desc="backfill groups", unit="step", disable=not progress):
            con.execute(stmt)
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


def _write(con: duckdb.DuckDBPyConnection, table: str, uri: str) -> None:
    if uri.startswith("s3://"):
        write_parquet(con.sql(f"SELECT * FROM {table}").to_arrow_table(), uri)
    else:
        os.makedirs(os.path.dirname(uri) or ".", exist_ok=True)
        con.execute(f"COPY {table} TO '{uri}' (FORMAT PARQUET)")
