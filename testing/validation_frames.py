"""Synthetic, contract-valid tables for the validation tests and benchmark.

Generated from the same declarations the suites are (the event contract's
field constraints, ``ColumnSpec`` lists), vectorised with numpy so that a few
million rows take seconds. Not a marketplace simulation: the values carry no
behaviour, only validity.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from validation.specs import ColumnSpec

START = datetime(2025, 1, 1, tzinfo=timezone.utc)


def make_event_log(n: int, *, start: datetime = START, days: int = 90, seed: int = 0) -> pd.DataFrame:
    """``n`` valid events of every type, as the Parquet event log reads back into pandas."""
    from events.contract import EVENT_LOG_SCHEMA, EVENT_MODELS
    from validation.suites import _constraints, _is_required

    rng = np.random.default_rng(seed)
    types = np.array(sorted(EVENT_MODELS))
    event_type = types[rng.integers(0, len(types), n)]
    cols: dict[str, np.ndarray] = {
        "event_id": _ids("e", np.arange(n)),
        "event_type": event_type,
        "timestamp": (pd.Timestamp(start) + pd.to_timedelta(
            np.sort(rng.integers(0, days * 86_400_000_000, n)), unit="us")).to_numpy(),
        "schema_version": np.ones(n, dtype=np.int64),
    }
    for f in EVENT_LOG_SCHEMA:
        if f.name in cols:
            continue
        values = np.full(n, None, dtype=object)
        for et, model in EVENT_MODELS.items():
            info = model.model_fields.get(f.name)
            if info is None:
                continue
            mask = event_type == et
            m = int(mask.sum())
            if not _is_required(info):  # optional fields are present about half the time
                mask &= rng.random(n) < 0.5
                m = int(mask.sum())
            values[mask] = _values(f, _constraints(info), m, rng)
        cols[f.name] = values
    _session_rules(cols, rng)
    table = pa.table({f.name: pa.array(cols[f.name], type=f.type, from_pandas=True) for f in EVENT_LOG_SCHEMA},
                     schema=EVENT_LOG_SCHEMA)
    return table.to_pandas()


def _ids(prefix: str, ints: np.ndarray) -> np.ndarray:
    return (prefix + pd.Series(ints).astype(str)).to_numpy(dtype=object)


def _values(f: pa.Field, c: dict, m: int, rng) -> np.ndarray:
    if "values" in c:
        choices = np.array(c["values"], dtype=object)
        return choices[rng.integers(0, len(choices), m)]
    t = str(f.type)
    if t == "bool":
        return rng.random(m) < 0.2
    if t in ("double", "int64"):
        lo, hi = float(c.get("min", 0)), float(c.get("max", 1000))
        if t == "int64":
            return rng.integers(int(lo), int(hi) + 1, m)
        x = lo + (hi - lo) * rng.random(m)
        return np.where(x <= lo, lo + (hi - lo) / 2, x) if c.get("strict_min") else x
    if "pattern" in c:  # an id
        return _ids(f.name.split("_")[0][:1] or "x", rng.integers(0, max(m // 5, 10), m))
    return np.array(["some_text"] * m, dtype=object)


def _session_rules(cols: dict, rng) -> None:
    """SessionCompleted's cross-field rules."""
    sc = cols["event_type"] == "session_completed"
    status = cols["status"]
    cancelled, completed = sc & (status == "cancelled"), sc & (status == "completed")
    cols["cancelled_by"] = np.where(cancelled, np.where(rng.random(len(sc)) < 0.5, "student", "tutor"), None)
    cols["student_rating"] = np.where(completed, cols["student_rating"], None)
    cols["duration_minutes"] = np.where(completed, 1 + 119 * rng.random(len(sc)), cols["duration_minutes"])


def make_feature_table(specs: Sequence[ColumnSpec], n: int, *, entity_key: str = "customer_id",
                       start: datetime = START, seed: int = 0) -> pd.DataFrame:
    """One row per (entity, event_timestamp), every column within its spec."""
    rng = np.random.default_rng(seed)
    ts = pd.Timestamp(start) + pd.to_timedelta(rng.integers(0, 90, n), unit="D")
    df = pd.DataFrame({entity_key: _ids("c", np.arange(n)), "event_timestamp": ts})
    for s in specs:
        if s.kind == "count":
            x = rng.poisson(3.0, n).astype("int64")
        elif s.kind == "rate":
            x = rng.beta(2, 5, n)
        elif s.kind == "numeric":
            lo = 0.0 if s.min is None else float(s.min)
            hi = lo + 100.0 if s.max is None else float(s.max)
            x = lo + (hi - lo) * rng.random(n)
        elif s.kind == "timestamp":
            x = (ts - pd.to_timedelta(rng.integers(0, 30 * 86_400, n), unit="s")).to_numpy()
        elif s.kind == "categorical":
            values = np.array(s.values or ("a", "b", "c"), dtype=object)
            x = values[rng.integers(0, len(values), n)]
        else:
            x = rng.random(n) < 0.3
        col = pd.Series(x)
        if s.nullable and s.kind not in ("boolean",):
            col = col.mask(rng.random(n) < 0.1)
        df[s.name] = col.to_numpy() if s.kind != "timestamp" else col
    return df


def make_training_set(specs: Sequence[ColumnSpec], n: int, *, seed: int = 0) -> pd.DataFrame:
    """A feature table plus labels and a train/validation/test split."""
    rng = np.random.default_rng(seed + 1)
    df = make_feature_table(specs, n, seed=seed)
    df["churn_30d"] = (rng.random(n) < 0.08).astype("int8")
    df["ib_calls_14d"] = (rng.random(n) < 0.15).astype("int8")
    df["health_score"] = 100 * rng.beta(5, 2, n)
    df["split"] = np.array(["train", "validation", "test"], dtype=object)[
        np.searchsorted([0.7, 0.85], rng.random(n), side="right")]
    return df
