"""Point-in-time join of an entity table with feature views on Spark: ``features.pit_join``'s semantics as Spark SQL.

The same rules as the DuckDB ``ASOF LEFT JOIN`` (and Feast's own range join):

* a row of view V matches an entity row when its join keys are equal (a null key matches nothing)
  and ``V.timestamp <= entity.event_timestamp``;
* with a TTL (``ttl > 0``) the latest matching row must also satisfy ``V.timestamp + ttl >=
  entity.event_timestamp``, otherwise the features are null;
* the latest row wins; among rows of the same keys and timestamp, the latest created (when the
  view has a created-timestamp column; without one, any one of them, as in Feast and DuckDB);
* every entity row comes back exactly once, in input order, with nulls where nothing matched.

Per view, without a range join: the view's keys and timestamps and the entity rows are unioned
and one window per key (ordered by time, a view row before an entity row at the same time)
carries the latest view timestamp forward to each entity row; the matched rows' features are
then read by an equi-join on (keys, timestamp). Only the keys and timestamps are sorted, never
the wide rows, and nothing grows with the number of rows per key.
"""
from __future__ import annotations

import uuid

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .pit_join import ROW, ViewJoin, _ttl_us


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _view_sql(entity_relation: str, v: ViewJoin, tag: str) -> tuple[str, str]:
    """(the view's rows as a CTE named ``s_<tag>``, a query over it): per entity row ``ROW``, ``__f0``,
    ``__f1``, ...: view ``v``'s features as of the row's time."""
    keys = list(v.join_keys)
    k_src = [f"{_q(k)} AS __k{j}" for j, k in enumerate(keys)]
    k_ent = [f"{_q(v.join_keys[k])} AS __k{j}" for j, k in enumerate(keys)]
    k_names = [f"__k{j}" for j in range(len(keys))]
    created = f", {_q(v.created_timestamp_field)} AS __c" if v.created_timestamp_field else ""
    feats = ", ".join(f"{_q(src)} AS __f{i}" for i, src in enumerate(v.features))
    not_null = " AND ".join(f"{_q(k)} IS NOT NULL" for k in keys)
    source = (f"SELECT {', '.join(k_src)}, CAST({_q(v.timestamp_field)} AS TIMESTAMP) AS __t{created}, {feats} "
              f"FROM {_q(v.relation)} WHERE {not_null}")
    part = ", ".join(k_names)
    # view rows (kind 0) sort before entity rows (kind 1) at the same time: V.timestamp <= t matches
    stacked = (f"SELECT {part}, __t, 0 AS __kind, CAST(NULL AS BIGINT) AS {ROW} FROM s_{tag} UNION ALL "
               f"SELECT {', '.join(k_ent)}, __ts AS __t, 1 AS __kind, {ROW} FROM {_q(entity_relation)}")
    ttl = _ttl_us(v.ttl)
    matched = f"CASE WHEN unix_micros(__lt) + {ttl} >= unix_micros(__t) THEN __lt END" if ttl else "__lt"
    latest = (f"SELECT {ROW}, {part}, __t, __kind, max(CASE WHEN __kind = 0 THEN __t END) OVER (PARTITION BY "
              f"{part} ORDER BY __t, __kind ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS __lt "
              f"FROM ({stacked})")
    match = f"SELECT {ROW}, {part}, {matched} AS __mt FROM ({latest}) WHERE __kind = 1"
    on = " AND ".join([f"s.{k} = m.{k}" for k in k_names] + ["s.__t = m.__mt"])
    f_out = ", ".join(f"s.__f{i}" for i in range(len(v.features)))
    # one row per entity row even if (keys, timestamp) repeats in the view: the latest created wins
    order = "s.__c DESC" if v.created_timestamp_field else "s.__t"
    return (f"s_{tag} AS ({source})",
            f"SELECT {ROW}, {', '.join(f'__f{i}' for i in range(len(v.features)))} FROM ("
            f"SELECT m.{ROW}, {f_out}, row_number() OVER (PARTITION BY m.{ROW} ORDER BY {order}) AS __rn "
            f"FROM ({match}) m LEFT JOIN s_{tag} s ON {on}) WHERE __rn = 1")


def spark_pit_join(spark, entity: pa.Table, event_timestamp_col: str, views: list[ViewJoin]) -> pa.Table:
    """The feature columns for every row of ``entity`` (an Arrow table holding the join keys and
    ``event_timestamp_col``), in the entity table's order; every ``ViewJoin.relation`` is a table or
    temp view of ``spark``. Output columns are named by ``ViewJoin.features``' values."""
    views = [v for v in views if v.features]  # a view with nothing requested adds no column
    tag = uuid.uuid4().hex[:12]
    e_name = f"__mhp_entity_{tag}"
    keys = list(dict.fromkeys(e for v in views for e in v.join_keys.values()))
    ts = pc.cast(entity.column(event_timestamp_col), pa.timestamp("us", tz="UTC"), safe=False)
    narrow = pa.table([pa.array(np.arange(entity.num_rows, dtype=np.int64)), ts] + [entity.column(k) for k in keys],
                      names=[ROW, "__ts"] + keys)
    spark.createDataFrame(narrow).createOrReplaceTempView(e_name)
    try:
        ctes, outs, froms = [], [f"e.{ROW}"], f"FROM {_q(e_name)} e"
        for i, v in enumerate(views):
            cte, query = _view_sql(e_name, v, f"{tag}_{i}")
            ctes.append(cte)
            outs += [f"v{i}.__f{j} AS {_q(out)}" for j, out in enumerate(v.features.values())]
            froms += f" LEFT JOIN ({query}) v{i} ON v{i}.{ROW} = e.{ROW}"
        with_ = f"WITH {', '.join(ctes)} " if ctes else ""
        got = spark.sql(f"{with_}SELECT {', '.join(outs)} {froms}").toArrow()
    finally:
        spark.catalog.dropTempView(e_name)
    # back in entity order on the driver (a sort here, not a distributed one: the result is collected anyway)
    got = got.take(pc.sort_indices(got.column(ROW)))
    in_order = got.num_rows == entity.num_rows and (
        entity.num_rows == 0 or pc.all(pc.equal(got.column(ROW), pa.array(np.arange(entity.num_rows)))).as_py())
    if not in_order:  # a LEFT JOIN from the entity rows keeps each once; say so if it ever did not
        raise RuntimeError(f"point-in-time join on Spark returned {got.num_rows} rows for {entity.num_rows} "
                           "entity rows, or not in entity order")
    return got.drop_columns([ROW])
