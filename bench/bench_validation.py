"""Validation gates at scale: the event-log suite on millions of events, the feature suite
on a million-row snapshot table. Synthetic, contract-valid data generated here.

Also times GX itself on pandas at a smaller size: the reason the gate switches to
the DuckDB engine above ``validation.gate.GX_MAX_ROWS`` rows.
"""
from __future__ import annotations

import time

from testing.validation_frames import make_event_log, make_feature_table
from validation.gate import run_gate
from validation.specs import ColumnSpec
from validation.suites import event_log_suite, feature_suite

FEATURE_SPECS = (
    [ColumnSpec(f"{m}_{w}d", "count", nullable=False) for m in ("sessions", "calls", "logins", "messages")
     for w in (7, 14, 30)]
    + [ColumnSpec(f"{m}_rate_{w}d", "rate") for m in ("cancel", "no_show") for w in (7, 30)]
    + [ColumnSpec(f"avg_rating_{w}d", "numeric", min=1, max=5) for w in (7, 30)]
    + [ColumnSpec("primary_subject", "categorical", values=("algebra", "physics", "english")),
       ColumnSpec("has_failed_payment", "boolean", nullable=False),
       ColumnSpec("last_session__ts", "timestamp"), ColumnSpec("last_call__ts", "timestamp")]
)


def _time(name, df, suite, engine):
    t = time.perf_counter()
    result = run_gate(name, df, suite, engine=engine, raise_on_failure=False)
    assert result.success, result.summary()
    return time.perf_counter() - t, len(suite.expectations)


def run(quick: bool) -> list[dict]:
    n_events = 100_000 if quick else 3_000_000
    n_features = 50_000 if quick else 1_000_000
    n_gx = 5_000 if quick else 50_000
    rows = []
    events = make_event_log(n_events, seed=0)
    suite = event_log_suite()
    secs, n_exp = _time("events", events, suite, "duckdb")
    rows.append(dict(benchmark="validation", metric=f"event log gate, {n_events:,} rows x {n_exp} expectations (duckdb)",
                     value=secs, unit="s", goal="< 15 s" if not quick else "", ok=secs < 15 if not quick else None))
    secs, _ = _time("events", events.head(n_gx), suite, "gx")
    rows.append(dict(benchmark="validation", metric=f"event log gate, {n_gx:,} rows (GX on pandas, for comparison)",
                     value=secs, unit="s"))
    del events
    table = make_feature_table(FEATURE_SPECS, n_features, seed=0)
    fsuite = feature_suite(FEATURE_SPECS)
    secs, n_exp = _time("features", table, fsuite, "duckdb")
    rows.append(dict(benchmark="validation", metric=f"feature table gate, {n_features:,} rows x {n_exp} expectations (duckdb)",
                     value=secs, unit="s", goal="< 10 s" if not quick else "", ok=secs < 10 if not quick else None))
    secs, _ = _time("features", table.head(n_gx * 4), fsuite, "gx")
    rows.append(dict(benchmark="validation", metric=f"feature table gate, {n_gx * 4:,} rows (GX on pandas, for comparison)",
                     value=secs, unit="s"))
    return rows
