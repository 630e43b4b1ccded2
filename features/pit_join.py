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
#: views up to this many cells (rows x requested features) are materialized and the matched rows taken
#: by index (a small table stays in cache); bigger ones are read only where matched, by a hash join
TAKE_CELLS = 5_000_000


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


def _narrow_sql(v: ViewJoin) -> str:
    return f"SELECT {', '.join(_q(k) for k in v.join_keys)}, __t FROM ({_source_sql(v)})"


def _asof_on(v: ViewJoin) -> str:
    on = [f"e.{_q(ek)} = s.{_q(k)}" for k, ek in v.join_keys.items()]
    return " AND ".join(on + ["e.__ts >= s.__t"])


def _matched_t(v: ViewJoin) -> str:
    """The matched row's timestamp, null when none matched or it is older than the TTL allows."""
    ttl = _ttl_us(v.ttl)
    return f"CASE WHEN s.__t + INTERVAL ({ttl}) MICROSECOND >= e.__ts THEN s.__t END" if ttl else "s.__t"


def _gather_sql(entity_relation: str, v: ViewJoin) -> str:
    """Per entity row (in ``ROW`` order) the view's features: the ASOF join over the keys and timestamp
    alone, then the matched rows' features by (keys, timestamp); one row per entity row as long as
    (keys, timestamp) is unique in the view (checked by the caller)."""
    keys = ", ".join(f"s.{_q(k)} AS __k{j}" for j, k in enumerate(v.join_keys))
    match = (f"SELECT e.{ROW}, {keys}, {_matched_t(v)} AS __mt FROM {_q(entity_relation)} e "
             f"ASOF LEFT JOIN ({_narrow_sql(v)}) s ON {_asof_on(v)}")
    on = [f"f.{_q(k)} = m.__k{j}" for j, k in enumerate(v.join_keys)] + ["f.__t = m.__mt"]
    feats = ", ".join(f"f.{_q(src)}" for src in v.features)
    return (f"SELECT {feats} FROM ({match}) m LEFT JOIN ({_source_sql(v)}) f ON {' AND '.join(on)} "
            f"ORDER BY m.{ROW}")


def _match_sql(entity_relation: str, source_relation: str, v: ViewJoin) -> str:
    """Per entity row (in ``ROW`` order) the index of the matching row of a materialized source, or null."""
    keys = ", ".join(f"{_q(k)}" for k in v.join_keys)
    idx = f"CASE WHEN {_matched_t(v)} IS NOT NULL THEN s.__i END"
    return (f"SELECT {idx} AS __i FROM {_q(entity_relation)} e "
            f"ASOF LEFT JOIN (SELECT {keys}, __t, __i FROM {_q(source_relation)}) s "
            f"ON {_asof_on(v)} ORDER BY e.{ROW}")


def _take(con, e_name: str, v: ViewJoin, n: int, tag: str) -> pa.Table:
    """The view's features by materializing its columns and taking the matched rows (any source)."""
    src = con.sql(_source_sql(v)).to_arrow_table()
    src = src.append_column("__i", pa.array(np.arange(src.num_rows, dtype=np.int64)))
    s_name = f"__mhp_source_{tag}"
    con.register(s_name, src)
    try:
        idx = con.sql(_match_sql(e_name, s_name, v)).to_arrow_table().column("__i")
    finally:
        con.unregister(s_name)
    if len(idx) != n:  # an ASOF LEFT JOIN keeps every row; say so if it ever did not
        raise RuntimeError(f"point-in-time join returned {len(idx)} rows for {n} entity rows")
    return src.select(list(v.features)).take(idx)


def pit_join(con, entity: pa.Table, event_timestamp_col: str, views: list[ViewJoin]) -> pa.Table:
    """The feature columns for every row of ``entity`` (an Arrow table holding the join keys and
    ``event_timestamp_col``), in the entity table's order; ``con`` is a DuckDB connection on which
    every ``ViewJoin.relation`` exists.

    Per view: an ``ASOF LEFT JOIN`` of the entity rows with only the view's keys and timestamp (no
    wide rows are sorted); then for a big view a hash join that reads the requested columns of the
    matched rows while scanning the view once, for a small one (or one with repeated (keys,
    timestamp)) a take by row index from its materialized columns."""
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
            rows = con.sql(f"SELECT count(*) FROM {_q(v.relation)}").fetchall()[0][0]
            picked = None
            if rows * max(len(v.features), 1) > TAKE_CELLS:  # big view: read only the matched rows
                picked = con.sql(_gather_sql(e_name, v)).to_arrow_table()
            if picked is None or picked.num_rows != entity.num_rows:  # small, or (keys, timestamp) repeats
                picked = _take(con, e_name, v, entity.num_rows, f"{tag}_{i}")
            names += list(v.features.values())
            columns += list(picked.columns)
    finally:
        con.unregister(e_name)
    return pa.table(columns, names=names)
