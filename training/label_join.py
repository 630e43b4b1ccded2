"""Labels of entity rows from the event log: the declared future-window aggregates as one SQL query.

Each ``labels.LabelAggregate`` (an event filter, a window of ``days``, counted or summed)
becomes one filtered aggregate of a single DuckDB range join of the entity rows with the
log over ``(t, t + LABEL_HORIZON_DAYS]``; the labels are then ``labels``' functions of those
aggregates, the same functions the simulator's oracle applies to simulated futures. Nothing
here is per label: a new aggregate declared in ``labels/`` is in the query.
"""
from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core.times import DAY_US, from_us, to_us
from labels import (
    AGGREGATES,
    CHURN,
    HEALTH,
    LABEL_HORIZON_DAYS,
    LabelAggregate,
    label_values,
)
from training.errors import DatasetBuildError

#: kept in the dataset as ``future_<name>`` columns (not model inputs): the health score's inputs,
#: except the cancellation count, which churn_30d already is
FUTURE_COLUMNS: tuple[LabelAggregate, ...] = tuple(a for a in HEALTH.inputs if a not in CHURN.inputs)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def label_sql(aggregates: tuple[LabelAggregate, ...] = AGGREGATES, rows: str = "label_rows", events: str = "ev") -> str:
    """One query over the view ``events`` and the table ``rows`` (row_id, customer_id, t_us): a row per
    row_id, ordered by it, with one column per aggregate (0 when the window has no matching event)."""
    sources = list(dict.fromkeys(a.source for a in aggregates))   # an event filter shared by several aggregates is tested once
    values = list(dict.fromkeys(a.value for a in aggregates if a.value))
    horizon = max(a.days for a in aggregates)
    flags = [f"{s.sql()} AS m{i}" for i, s in enumerate(sources)]
    cols = []
    for a in aggregates:
        cond = f"f.m{sources.index(a.source)} AND f.tsu <= r.t_us + {a.days * DAY_US}"
        if a.value is None:
            cols.append(f"COUNT(f.tsu) FILTER (WHERE {cond}) AS {_quote(a.name)}")
        else:
            cols.append(f"COALESCE(SUM(f.{_quote(a.value)}) FILTER (WHERE {cond}), 0) AS {_quote(a.name)}")
    return f"""
        WITH f AS (
          SELECT customer_id, tsu, {", ".join([*map(_quote, values), *flags])} FROM {events}
          WHERE customer_id IS NOT NULL AND ({" OR ".join(s.sql() for s in sources)}))
        SELECT r.row_id, {", ".join(cols)}
        FROM {rows} r LEFT JOIN f
          ON f.customer_id = r.customer_id AND f.tsu > r.t_us AND f.tsu <= r.t_us + {horizon * DAY_US}
        GROUP BY r.row_id ORDER BY r.row_id"""


def _label_rows(entity_df: pd.DataFrame, data_end_us: int | None) -> pd.DataFrame:
    """The ``label_rows`` table (row_id, customer_id, t_us); refuses rows whose horizon passes the data's end."""
    t_us = entity_df["event_timestamp"].map(to_us).to_numpy(np.int64) if len(entity_df) else np.array([], np.int64)
    late = t_us + LABEL_HORIZON_DAYS * DAY_US > data_end_us if data_end_us is not None else np.zeros(len(t_us), bool)
    if late.any():
        raise DatasetBuildError(f"{int(late.sum())} entity rows have a label horizon past the end of the data "
                                f"({from_us(data_end_us)}); exclude them instead of labelling them")
    return pd.DataFrame({"row_id": np.arange(len(entity_df), dtype=np.int64),
                         "customer_id": entity_df["customer_id"].astype(str).to_numpy(), "t_us": t_us})


def _labels(entity_df: pd.DataFrame, agg: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=entity_df.index)
    for name, values in label_values({a.name: agg[a.name].to_numpy() for a in AGGREGATES}).items():
        out[name] = values
    for a in FUTURE_COLUMNS:
        out[f"future_{a.name}"] = agg[a.name].to_numpy()
    return out


def compute_labels(con, entity_df: pd.DataFrame, data_end_us: int | None = None) -> pd.DataFrame:
    """Labels of each entity row from the events in (t, t + horizon] (``labels``).

    ``con`` has the event log as view ``ev`` (``training.sampling.connect_events``). Returns a
    frame aligned with ``entity_df`` (same index): churn_30d, ib_calls_14d, health_score and
    the ``future_*`` aggregates (``FUTURE_COLUMNS``). A row whose horizon runs past
    ``data_end_us`` raises: such rows must be excluded before labelling, never labelled.
    """
    ent = _label_rows(entity_df, data_end_us)
    con.register("label_rows", ent)
    try:
        agg = con.execute(label_sql()).df()
    finally:
        con.unregister("label_rows")
    return _labels(entity_df, agg)


def compute_labels_spark(spark, events_uri: str, entity_df: pd.DataFrame, data_end_us: int) -> pd.DataFrame:
    """``compute_labels`` with the same ``label_sql`` run by Spark over the event log's Parquet files
    (events up to ``data_end_us``, as ``connect_events``). The generated SQL is standard but quotes
    identifiers with double quotes: Spark reads them so under ANSI mode with
    ``spark.sql.ansi.doubleQuotedIdentifiers``, set for this query only."""
    ent = _label_rows(entity_df, data_end_us)
    tag = uuid.uuid4().hex[:12]
    rows, ev = f"label_rows_{tag}", f"ev_{tag}"
    from core.spark import ANSI_QUOTES, sql_conf  # lazy: Spark only for this engine
    from features.backfill_spark import read_event_log  # lazy: as above

    events = read_event_log(spark, events_uri)
    (events.drop("date").selectExpr("*", "unix_micros(`timestamp`) AS tsu").where(f"tsu <= {int(data_end_us)}")
     .createOrReplaceTempView(ev))
    spark.createDataFrame(pa.Table.from_pandas(ent, preserve_index=False)).createOrReplaceTempView(rows)
    try:
        with sql_conf(spark, ANSI_QUOTES):
            got = spark.sql(label_sql(rows=rows, events=ev)).toArrow()
    finally:
        spark.catalog.dropTempView(rows)
        spark.catalog.dropTempView(ev)
    got = got.take(pc.sort_indices(got.column("row_id")))
    if got.column("row_id").to_pylist() != list(range(len(ent))):
        raise RuntimeError(f"label join on Spark returned {got.num_rows} rows for {len(ent)} entity rows")
    return _labels(entity_df, got.to_pandas())
