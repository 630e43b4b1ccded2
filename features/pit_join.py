"""Point-in-time join of an entity table with feature views: one DuckDB ``ASOF LEFT JOIN`` per view.

The semantics are those of Feast's ibis/duckdb offline store (``point_in_time_join`` in
``feast.infra.offline_stores.ibis``), computed set-based instead of as a range join plus a window:

* a row of view V matches an entity row when its join keys are equal (a null key matches nothing)
  and ``V.timestamp <= entity.event_timestamp``;
* with a TTL (``ttl > 0``) additionally ``V.timestamp + ttl >= entity.event_timestamp``; Feast keeps
  the latest matching row, and the latest row at or before t is the one ``ASOF`` finds, so a row
  that fails the TTL means no row qualifies: the features are null;
* the latest row wins; with a created-timestamp column, the latest created among rows of the same
  key and timestamp (deduplicated before the join, as Feast orders by both);
* every entity row comes back exactly once, in input order, with nulls where nothing matched.

Per view: one scan of only the requested columns, an ``ASOF LEFT JOIN`` over the keys, timestamp
and row index alone, and a take of the matched rows.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ROW = "__mhp_pit_row"


@dataclass(frozen=True)
class ViewJoin:
    """One feature view's part of the join.

    ``relation``: a DuckDB relation name (table or view) holding the view's rows;
    ``join_keys``: feature-table column -> entity column; ``features``: source column -> output
    column; ``ttl``: Feast's TTL (``timedelta(0)`` / None: no expiry)."""

    relation: str
    join_keys: dict[str, str]
    timestamp_field: str
    created_timestamp_field: str | None
    features: dict[str, str]
    ttl: timedelta | None


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _ttl_us(ttl: timedelta | None) -> int:
    if not ttl:
        return 0
    return ttl // timedelta(microseconds=1)


def _source_sql(v: ViewJoin) -> str:
    """The view's rows: join keys, the timestamp as ``__t``, the requested features; one row per key
    and timestamp (the latest created) when there is a created-timestamp column."""
    cols = [_q(k) for k in v.join_keys] + [f"CAST({_q(v.timestamp_field)} AS TIMESTAMPTZ) AS __t"]
    cols += [_q(src) for src in v.features if src not in v.join_keys]
    sql = f"SELECT {', '.join(cols)} FROM {_q(v.relation)}"
    if v.created_timestamp_field:
        part = ", ".join([_q(k) for k in v.join_keys] + [_q(v.timestamp_field)])
        sql += (f" QUALIFY row_number() OVER (PARTITION BY {part} "
                f"ORDER BY {_q(v.created_timestamp_field)} DESC) = 1")
    return sql


def _match_sql(entity_relation: str, source_relation: str, v: ViewJoin) -> str:
    """Per entity row (in ``ROW`` order) the index of the matching source row, or null."""
    on = [f"e.{_q(ek)} = s.{_q(k)}" for k, ek in v.join_keys.items()]
    on.append("e.__ts >= s.__t")
    idx = "s.__i"
    ttl = _ttl_us(v.ttl)
    if ttl:
        idx = f"CASE WHEN s.__t + INTERVAL ({ttl}) MICROSECOND >= e.__ts THEN s.__i END"
    keys = ", ".join(f"{_q(k)}" for k in v.join_keys)
    return (f"SELECT {idx} AS __i FROM {_q(entity_relation)} e "
            f"ASOF LEFT JOIN (SELECT {keys}, __t, __i FROM {_q(source_relation)}) s "
            f"ON {' AND '.join(on)} ORDER BY e.{ROW}")


def pit_join(con, entity: pa.Table, event_timestamp_col: str, views: list[ViewJoin]) -> pa.Table:
    """The feature columns for every row of ``entity`` (an Arrow table holding the join keys and
    ``event_timestamp_col``), in the entity table's order; ``con`` is a DuckDB connection on which
    every ``ViewJoin.relation`` exists.

    Per view: one scan of the requested columns, an ``ASOF LEFT JOIN`` of the entity rows with only
    the keys, timestamp and row index of the view (no wide rows are sorted), then a take of the
    matched rows."""
    tag = uuid.uuid4().hex
    e_name = f"__mhp_entity_{tag}"
    keys = list(dict.fromkeys(e for v in views for e in v.join_keys.values()))
    ts = pc.cast(entity.column(event_timestamp_col), pa.timestamp("us", tz="UTC"), safe=False)  # exact: feature times are whole us
    narrow = pa.table([pa.array(np.arange(entity.num_rows, dtype=np.int64)), ts] + [entity.column(k) for k in keys],
                      names=[ROW, "__ts"] + keys)
    con.register(e_name, narrow)
    names, columns = [], []
    try:
        for i, v in enumerate(views):
            src = con.sql(_source_sql(v)).to_arrow_table().combine_chunks()
            src = src.append_column("__i", pa.array(np.arange(src.num_rows, dtype=np.int64)))
            s_name = f"__mhp_source_{tag}_{i}"
            con.register(s_name, src)
            try:
                idx = con.sql(_match_sql(e_name, s_name, v)).to_arrow_table().column("__i")
            finally:
                con.unregister(s_name)
            if len(idx) != entity.num_rows:  # an ASOF LEFT JOIN keeps every row; say so if it ever did not
                raise RuntimeError(f"point-in-time join returned {len(idx)} rows for {entity.num_rows} entity rows")
            picked = src.select(list(v.features)).take(idx)
            names += list(v.features.values())
            columns += list(picked.columns)
    finally:
        con.unregister(e_name)
    return pa.table(columns, names=names)
