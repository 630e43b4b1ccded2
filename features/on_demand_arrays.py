"""The on-demand views over whole columns: ``features.on_demand.evaluate_on_demand`` vectorised.

Offline retrieval evaluates the request-time features for every entity row at once (the project's
offline store, ``features.feast_offline``); the per-value function stays the reference for the
online paths. Same floating-point operations in the same order, so the results are bit-identical:
integer microsecond differences times 1000 converted to float64 (round to nearest, as Python's
``float(int)``), then ``/ 1e9 / 86400``; whole days are ``floor`` (Python's ``int(d // 1)``).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .declarations import ON_DEMAND, REQUEST_TIME_FIELD


def _micros(col) -> tuple[np.ndarray, np.ndarray]:
    """(int64 microseconds, valid mask) of an integer column; nulls (and NaN) are invalid."""
    arr = pa.chunked_array(col) if not isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_floating(arr.type):  # offline nulls may arrive as NaN
        valid = pc.and_(pc.is_valid(arr), pc.invert(pc.is_nan(arr)))
        vals = pc.cast(pc.fill_null(pc.if_else(valid, arr, 0.0), 0.0), pa.int64(), safe=False)
    elif pa.types.is_integer(arr.type):
        valid = pc.is_valid(arr)
        vals = pc.cast(pc.fill_null(arr, 0), pa.int64())
    else:
        raise TypeError(f"on-demand input: expected integer microseconds since the epoch, got {arr.type}")
    return (vals.to_numpy() if isinstance(vals, pa.ChunkedArray) else np.asarray(vals),
            np.asarray(valid.to_numpy(zero_copy_only=False) if isinstance(valid, pa.ChunkedArray) else valid,
                       dtype=bool))


def _numbers(col) -> np.ndarray:
    """float64 values, NaN where null (Python's ``float(v)``, ``nan`` for None)."""
    arr = pa.chunked_array(col) if not isinstance(col, pa.ChunkedArray) else col
    return np.asarray(pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def evaluate_on_demand_columns(view: str, columns, n: int) -> dict[str, pa.Array]:
    """The on-demand view ``view`` over Arrow columns (``columns[name]``: an Arrow array of ``n``
    values) -> output name -> float64 Arrow array (NaN, never null, where an input is missing), in
    the declaration order, as ``evaluate_on_demand`` returns them."""
    since: dict[str, np.ndarray] = {}
    now = _micros(columns[REQUEST_TIME_FIELD]) if any(
        f.view == view and f.op in ("days_since", "whole_days_since", "per_tenure_day") for f in ON_DEMAND) else None

    def days_since(name: str) -> np.ndarray:
        if name not in since:
            then, ok = _micros(columns[name])
            now_us, now_ok = now
            with np.errstate(invalid="ignore"):
                d = ((now_us - then) * 1000).astype(np.float64) / 1e9 / 86400.0
            since[name] = np.where(ok & now_ok, d, np.nan)
        return since[name]

    out: dict[str, pa.Array] = {}
    for f in ON_DEMAND:
        if f.view != view:
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            if f.op == "days_since":
                col = days_since(f.inputs[0]).copy()
            elif f.op == "whole_days_since":
                col = np.floor(days_since(f.inputs[0])) + 0.0  # + 0.0: float(int(-0.0)) is +0.0
            elif f.op == "per_tenure_day":
                count = (_numbers(columns[f.inputs[0]]) if len(f.inputs) == 2 else
                         _numbers(columns[f.inputs[0]]) - _numbers(columns[f.inputs[1]]))
                d = days_since(f.inputs[-1])
                ok = (d == d) & (d >= 0)
                col = np.where(ok, count / (np.floor(np.where(ok, d, 0.0)) + 1.0), np.nan)
            elif f.op == "per_day_change":
                da, db = f.divisors
                col = _numbers(columns[f.inputs[0]]) / float(da) - _numbers(columns[f.inputs[1]]) / float(db)
            elif f.op == "difference":
                col = _numbers(columns[f.inputs[0]]) - _numbers(columns[f.inputs[1]])
            else:  # pragma: no cover
                raise ValueError(f"{f.name}: unknown on-demand op {f.op!r}")
        if len(col) != n:
            raise ValueError(f"{f.name}: {len(col)} values for {n} rows")
        out[f.name] = pa.array(col, type=pa.float64(), from_pandas=False)
    return out
