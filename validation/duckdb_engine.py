"""Gate engine ``duckdb``: each expectation of a GX suite translated to SQL aggregates.

One scan per distinct row condition. GX on pandas spends seconds per expectation on
millions of rows; DuckDB runs the whole suite in seconds. Only the expectation types the
suite builders emit are translated; anything else falls back to GX.
"""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from validation.gx_engine import _run_gx
from validation.results import (
    SAMPLE_ROWS,
    ExpectationOutcome,
    _column_of,
    _condition_text,
    _config_parts,
    _plain,
    _unexpected_summary,
)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (int, float, np.integer, np.floating)):
        return repr(float(v)) if isinstance(v, (float, np.floating)) else str(int(v))
    if isinstance(v, (datetime, pd.Timestamp)):
        ts = pd.Timestamp(v)
        return f"TIMESTAMPTZ '{ts.isoformat()}'" if ts.tzinfo else f"TIMESTAMP '{ts.isoformat()}'"
    if isinstance(v, str):
        # GX serialises datetimes in kwargs as ISO strings
        return "'" + v.replace("'", "''") + "'"
    raise TypeError(f"no SQL literal for {v!r}")


def _cond_sql(d: dict | None) -> str:
    if not d:
        return "TRUE"
    t = d.get("type")
    if t == "comparison":
        col, op, p = _q(d["column"]["name"]), str(d["operator"]), d["parameter"]
        if op == "IN":
            return f"{col} IN ({', '.join(_lit(x) for x in p)})"
        if op == "NOT_IN":  # pandas keeps nulls for "not in"
            return f"coalesce({col} NOT IN ({', '.join(_lit(x) for x in p)}), TRUE)"
        if op == "!=":  # pandas: NaN != x is True
            return f"({col} IS DISTINCT FROM {_lit(p)})"
        return f"({col} {op} {_lit(p)})"
    if t in ("and", "or"):
        return "(" + f" {t.upper()} ".join(_cond_sql(c) for c in d["conditions"]) + ")"
    raise NotImplementedError(f"row condition {d!r}")


_INFERRED_PY_TYPES = {
    "string": {"str"}, "boolean": {"bool"}, "integer": {"int"}, "floating": {"float"},
    "mixed-integer-float": {"int", "float"}, "empty": set(),
}


def _dtype_ok(series: pd.Series, type_list: list[str]) -> tuple[bool, str, list]:
    """GX's in_type_list semantics: the dtype name, or per-value Python types for object columns."""
    name = str(series.dtype)
    if name != "object":
        ok = name in type_list or type(series.dtype).__name__ in type_list
        return ok, name, []
    if "object" in type_list:
        return True, name, []
    allowed = set(type_list) & {"str", "int", "float", "bool"}
    # infer_dtype is one C pass; only a failing column pays for the per-value scan.
    inferred = pd.api.types.infer_dtype(series, skipna=True)
    if inferred in _INFERRED_PY_TYPES and _INFERRED_PY_TYPES[inferred] <= allowed:
        return True, name, []
    values = series.dropna()
    bad = values[~values.map(lambda x: type(x).__name__ in allowed)]
    return bad.empty, f"object with {len(bad):,} values of other types", bad.head(SAMPLE_ROWS).tolist()


_ROW_LEVEL = {
    "expect_column_values_to_not_be_null", "expect_column_values_to_be_null", "expect_column_values_to_be_in_set",
    "expect_column_values_to_be_between", "expect_column_value_lengths_to_be_between",
    "expect_column_values_to_match_regex", "expect_column_pair_values_a_to_be_greater_than_b",
}


def _violation_sql(etype: str, kw: dict, df: pd.DataFrame) -> str:
    if etype == "expect_column_pair_values_a_to_be_greater_than_b":
        a, b = _q(kw["column_A"]), _q(kw["column_B"])
        op = ">=" if kw.get("or_equal") else ">"
        return f"({a} IS NOT NULL AND {b} IS NOT NULL AND NOT ({a} {op} {b}))"
    c = _q(kw["column"])
    if etype == "expect_column_values_to_not_be_null":
        return f"({c} IS NULL)"
    if etype == "expect_column_values_to_be_null":
        return f"({c} IS NOT NULL)"
    if etype == "expect_column_values_to_be_in_set":
        series = df[kw["column"]]
        values = kw["value_set"]
        if pd.api.types.is_bool_dtype(series):
            values = [v for v in values if isinstance(v, bool) or v in (0, 1)]
            values = sorted({bool(v) for v in values})
        elif pd.api.types.is_numeric_dtype(series):
            values = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, str)]
        else:
            values = [str(v) for v in values]
        if not values:
            return f"({c} IS NOT NULL)"
        return f"({c} IS NOT NULL AND {c} NOT IN ({', '.join(_lit(v) for v in values)}))"
    if etype == "expect_column_values_to_be_between":
        parts = []
        if kw.get("min_value") is not None:
            parts.append(f"{c} {'<=' if kw.get('strict_min') else '<'} {_bound(kw['min_value'], df[kw['column']])}")
        if kw.get("max_value") is not None:
            parts.append(f"{c} {'>=' if kw.get('strict_max') else '>'} {_bound(kw['max_value'], df[kw['column']])}")
        return f"({c} IS NOT NULL AND ({' OR '.join(parts) or 'FALSE'}))"
    if etype == "expect_column_value_lengths_to_be_between":
        parts = []
        if kw.get("min_value") is not None:
            parts.append(f"length({c}) < {int(kw['min_value'])}")
        if kw.get("max_value") is not None:
            parts.append(f"length({c}) > {int(kw['max_value'])}")
        return f"({c} IS NOT NULL AND ({' OR '.join(parts) or 'FALSE'}))"
    if etype == "expect_column_values_to_match_regex":
        return f"({c} IS NOT NULL AND NOT regexp_matches({c}, {_lit(kw['regex'])}))"
    raise NotImplementedError(etype)


def _bound(v: Any, series: pd.Series) -> str:
    if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(series):
        ts = pd.Timestamp(v)
        if ts.tzinfo is None and isinstance(series.dtype, pd.DatetimeTZDtype):
            ts = ts.tz_localize("UTC")
        return _lit(ts)
    return _lit(v)


def _run_duckdb(df: pd.DataFrame, suite, keys: list[str]) -> list[ExpectationOutcome]:
    import duckdb

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")  # no bars on users' terminals
    exps = [(i, *_config_parts(e)) for i, e in enumerate(suite.expectations)]
    outcomes: dict[int, ExpectationOutcome] = {}
    bad_columns: set[str] = set()
    row_level: dict[str, list[tuple[int, str, dict, dict, str]]] = {}
    gx_fallback = []

    def outcome(i, etype, kw, meta, success, observed, **extra):
        outcomes[i] = ExpectationOutcome(expectation_type=etype, column=_column_of(kw),
                                         condition=_condition_text(kw.get("row_condition")), success=success,
                                         observed=observed, why=meta.get("why", ""), kwargs=kw, **extra)

    # Columns and types first: a column missing or of the wrong type cannot be checked further.
    for i, etype, kw, meta in exps:
        if etype == "expect_column_to_exist":
            ok = kw["column"] in df.columns
            outcome(i, etype, kw, meta, ok, "present" if ok else "column is missing")
            if not ok:
                bad_columns.add(kw["column"])
        elif etype == "expect_column_values_to_be_in_type_list" and kw["column"] in df.columns:
            ok, observed, sample = _dtype_ok(df[kw["column"]], kw["type_list"])
            outcome(i, etype, kw, meta, ok, f"observed {observed}", sample_values=[_plain(v) for v in sample])
            if not ok:
                bad_columns.add(kw["column"])
    # DuckDB re-reads Python objects on every scan of a pandas frame; Arrow once is far cheaper.
    con.register("t", _to_arrow(df, bad_columns))
    for i, etype, kw, meta in exps:
        if i in outcomes:
            continue
        used = [c for k in ("column", "column_A", "column_B") if (c := kw.get(k))] + list(kw.get("column_list", []))
        cond = kw.get("row_condition")
        if cond and cond.get("type") == "pass_through":
            gx_fallback.append(i)
            continue
        skipped = [c for c in used if c in bad_columns or c not in df.columns]
        if skipped:
            outcome(i, etype, kw, meta, False, f"not evaluated: column {skipped[0]!r} is missing or mistyped",
                    error="column missing or mistyped")
            continue
        if etype in _ROW_LEVEL:
            row_level.setdefault(_cond_sql(cond), []).append((i, etype, kw, meta, _violation_sql(etype, kw, df)))
        elif etype in ("expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique"):
            _unique(con, i, etype, kw, meta, keys, outcome)
        elif etype == "expect_table_row_count_to_be_between":
            n = con.execute(f"SELECT count(*) FROM t WHERE {_cond_sql(cond)}").fetchone()[0]
            ok = (kw.get("min_value") is None or n >= kw["min_value"]) and (
                kw.get("max_value") is None or n <= kw["max_value"])
            outcome(i, etype, kw, meta, ok, f"observed {n:,} rows")
        elif etype == "expect_column_mean_to_be_between":
            m = con.execute(f"SELECT avg({_q(kw['column'])}::DOUBLE) FROM t WHERE {_cond_sql(cond)}").fetchone()[0]
            ok = m is not None and (kw.get("min_value") is None or m >= kw["min_value"]) and (
                kw.get("max_value") is None or m <= kw["max_value"])
            outcome(i, etype, kw, meta, ok, f"observed mean {m:.4g}" if m is not None else "observed no values")
        else:
            gx_fallback.append(i)

    # Row-level checks. Most conditions select by one column (event_type == x / in [...]):
    # those share ONE grouped scan, each distinct violation predicate evaluated once per
    # row instead of once per event type. Other conditions get one scan each.
    grouped, by_condition = [], {}
    part = _partition_column(row_level)
    for cond_sql, items in row_level.items():
        for item in items:
            sel = _selection(item[2].get("row_condition"), part)
            if sel is not False:
                grouped.append((*item, sel))
            else:
                by_condition.setdefault(cond_sql, []).append(item)
    if grouped:
        viols = list(dict.fromkeys(g[4] for g in grouped))
        group_col = _q(part) if part else "NULL"
        aggs = ", ".join(_count_sql(v) for v in viols)
        per_value = {r[0]: r[1:] for r in con.execute(
            f"SELECT {group_col} AS g, count(*), {aggs} FROM t GROUP BY g").fetchall()}
        for i, etype, kw, meta, viol, sel in grouped:
            vals = per_value.values() if sel is None else [per_value[v] for v in sel if v in per_value]
            j = 1 + viols.index(viol)
            total, unexpected = sum(r[0] for r in vals), sum(r[j] for r in vals)
            cond_sql = "TRUE" if sel is None else f"{group_col} IN ({', '.join(_lit(v) for v in sel)})"
            _row_outcome(con, outcome, keys, i, etype, kw, meta, viol, cond_sql, total, unexpected)
    for cond_sql, items in by_condition.items():
        aggs = ", ".join(f"count(*) FILTER (WHERE {v})" for (_, _, _, _, v) in items)
        counts = con.execute(f"SELECT count(*), {aggs} FROM t WHERE {cond_sql}").fetchone()
        for (i, etype, kw, meta, viol), unexpected in zip(items, counts[1:]):
            _row_outcome(con, outcome, keys, i, etype, kw, meta, viol, cond_sql, counts[0], unexpected)
    if gx_fallback:
        import great_expectations as gx

        sub = gx.ExpectationSuite(name=f"{suite.name}_fallback")
        for i in gx_fallback:
            sub.add_expectation(suite.expectations[i].copy() if hasattr(suite.expectations[i], "copy")
                                else suite.expectations[i])
        for i, o in zip(gx_fallback, _run_gx(df, sub, keys)):
            outcomes[i] = o
    con.close()
    return [outcomes[i] for i, *_ in exps]


def _count_sql(viol: str) -> str:
    # Null checks read only the validity mask: count(col) instead of a per-row predicate.
    m = re.fullmatch(r'\(("(?:[^"]|"")+") IS (NOT )?NULL\)', viol)
    if m:
        return f"count({m.group(1)})" if m.group(2) else f"count(*) - count({m.group(1)})"
    return f"count(*) FILTER (WHERE {viol})"


def _partition_column(row_level: dict) -> str | None:
    """The column most row conditions select on with == / IN (event_type, split), if any."""
    counts: dict[str, int] = {}
    for items in row_level.values():
        for item in items:
            c = item[2].get("row_condition")
            if c and c.get("type") == "comparison" and str(c["operator"]) in ("==", "IN"):
                counts[c["column"]["name"]] = counts.get(c["column"]["name"], 0) + 1
    return max(counts, key=counts.get) if counts else None


def _selection(cond: dict | None, part: str | None):
    """None: all rows; a list: rows whose partition value is in it; False: not expressible."""
    if not cond:
        return None
    if cond.get("type") == "comparison" and cond["column"]["name"] == part:
        op = str(cond["operator"])
        if op == "==" and cond["parameter"] is not None:
            return [cond["parameter"]]
        if op == "IN":
            return [v for v in cond["parameter"] if v is not None]
    return False


def _row_outcome(con, outcome, keys, i, etype, kw, meta, viol, cond_sql, total, unexpected) -> None:
    rows, values = [], []
    if unexpected:
        shown = list(dict.fromkeys([*keys, *_used_columns(kw)]))
        sample = con.execute(f"SELECT {', '.join(_q(c) for c in shown)} FROM t "
                             f"WHERE {cond_sql} AND {viol} LIMIT {SAMPLE_ROWS}").fetchdf()
        rows = [{k: _plain(v) for k, v in r.items()} for r in sample.to_dict("records")]
        if "column" in kw:
            values = [r.get(kw["column"]) for r in rows]
    outcome(i, etype, kw, meta, unexpected == 0, _unexpected_summary(int(unexpected), int(total), values),
            unexpected_count=int(unexpected), element_count=int(total), sample_values=values, sample_rows=rows)


def _to_arrow(df: pd.DataFrame, bad_columns: set[str]):
    import pyarrow as pa

    arrays, names = [], []
    for c in df.columns:
        if c in bad_columns:
            continue
        try:
            arrays.append(pa.array(df[c], from_pandas=True))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            bad_columns.add(c)  # mixed Python types: reported by the type check, not scanned
            continue
        names.append(str(c))
    return pa.table(arrays, names=names)


def _used_columns(kw: dict) -> list[str]:
    return [c for k in ("column", "column_A", "column_B") if (c := kw.get(k))] + list(kw.get("column_list", []))


def _unique(con, i, etype, kw, meta, keys, outcome) -> None:
    cols = [kw["column"]] if "column" in kw else list(kw["column_list"])
    qcols = ", ".join(_q(c) for c in cols)
    not_null = " AND ".join(f"{_q(c)} IS NOT NULL" for c in cols)
    dup_sql = f"SELECT {qcols}, count(*) AS n FROM t WHERE {not_null} GROUP BY ALL HAVING count(*) > 1"
    total, unexpected = con.execute(
        f"SELECT (SELECT count(*) FROM t WHERE {not_null}), coalesce((SELECT sum(n) FROM ({dup_sql})), 0)").fetchone()
    rows, values = [], []
    if unexpected:
        shown = list(dict.fromkeys([*keys, *cols]))
        join = " AND ".join(f"t.{_q(c)} = d.{_q(c)}" for c in cols)
        sample = con.execute(f"SELECT {', '.join('t.' + _q(c) for c in shown)} FROM t JOIN ({dup_sql}) d ON {join} "
                             f"ORDER BY {', '.join('t.' + _q(c) for c in cols)} LIMIT {SAMPLE_ROWS}").fetchdf()
        rows = [{k: _plain(v) for k, v in r.items()} for r in sample.to_dict("records")]
        values = [r[cols[0]] for r in rows] if len(cols) == 1 else []
    outcome(i, etype, kw, meta, unexpected == 0, _unexpected_summary(int(unexpected), int(total), values),
            unexpected_count=int(unexpected), element_count=int(total), sample_values=values, sample_rows=rows)
