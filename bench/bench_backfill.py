"""Backfill benchmarks.

* The set-based backfill of a 10,000 customers x 180 days simulation (goals <= 45 s and <= 3 GB
  peak RSS of the backfill process: it runs in a child process of its own, so the simulator and
  the pandas baseline do not count) beside a straightforward per-customer pandas loop over the
  same events (``baseline_customer_features``; timed on a sample of customers and scaled to all
  of them; goal: backfill >= 20x faster).
* Full size only: 100,000 customers x 180 days, simulated and backfilled once; it must complete,
  its time and peak are printed (the peak must not grow with the customers: partitions).
(Point-in-time retrieval is timed by bench_retrieval.py.)
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from features import catalog as C

DAY = pd.Timedelta(days=1)


def baseline_customer_features(events: pd.DataFrame, until: pd.Timestamp) -> list[dict]:
    """The naive way: for each customer and each snapshot instant, filter the events and aggregate."""
    rows = []
    for cid, ev in events.groupby("customer_id", sort=False):
        ev = ev.sort_values(["timestamp", "event_id"])
        days = ev["timestamp"].dt.floor("D")
        instants = set(ev["timestamp"])
        for d in days.unique():
            instants.update(d + DAY * k for k in range(1, C.MAX_WINDOW_DAYS + 1) if d + DAY * k <= until)
        metric_values = {m.name: _metric_column(m, ev) for m in C.METRICS}
        seen = {f.name: _matches(f.source, ev) for f in C.CUSTOMER_FEATURES if isinstance(f, C.LastSeen)}
        for t in sorted(instants):
            upto = ev["timestamp"] <= t
            row = {"customer_id": cid, "event_timestamp": t}
            for f in C.CUSTOMER_FEATURES:
                if isinstance(f, (C.WindowSum, C.WindowRatio)):
                    start = t.floor("D") - DAY * (f.days - 1)
                    inw = upto & (ev["timestamp"] >= start)
                    if isinstance(f, C.WindowSum):
                        row[f.name] = _agg(C.METRIC_BY_NAME[f.metric], metric_values[f.metric], inw, days)
                    else:
                        den = _agg(C.METRIC_BY_NAME[f.den], metric_values[f.den], inw, days)
                        row[f.name] = _agg(C.METRIC_BY_NAME[f.num], metric_values[f.num], inw, days) / den if den else None
                elif isinstance(f, C.LifetimeSum):
                    row[f.name] = metric_values[f.metric][upto].sum()
                elif isinstance(f, C.LastSeen):
                    hit = ev.loc[upto & seen[f.name], "timestamp"]
                    row[f.name] = hit.max() if len(hit) else None
            rows.append(row)
    return rows


def _matches(source, ev: pd.DataFrame) -> pd.Series:
    return ev.apply(lambda r: source.test({k: (None if pd.isna(v) else v) for k, v in r.items()}), axis=1)


def _metric_column(m: C.Metric, ev: pd.DataFrame) -> pd.Series:
    match = _matches(m.source, ev)
    values = 1.0 if m.value is None else ev[m.value].fillna(0.0)
    return match.astype(float) * values


def _agg(m: C.Metric, values: pd.Series, mask: pd.Series, days: pd.Series) -> float:
    if m.per_day == "any":
        return float(days[mask & (values > 0)].nunique())
    return float(values[mask].sum())


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_CHILD = """
import json, resource, sys, time
from features.backfill import run_backfill
t0 = time.perf_counter()
res = run_backfill(sys.argv[1], sys.argv[2], progress=False)
print(json.dumps({"s": time.perf_counter() - t0, "rows": res.customer_rows, "until": res.until.isoformat(),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def backfill_in_child(events: str, out: str) -> dict:
    """Backfill in a process of its own: wall time, customer rows and that process's peak RSS."""
    done = subprocess.run([sys.executable, "-c", _CHILD, events, out], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent)
    if done.returncode:
        raise RuntimeError(f"backfill failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[dict]:
    from mhp.cli import main as mhp

    customers, days = (500, 60) if quick else (10_000, 180)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        assert mhp(["simulate", "--customers", str(customers), "--days", str(days), "--seed", "7",
                    "--out", str(ws)]) == 0
        load = "load avg {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
        res = backfill_in_child(str(ws / "events"), str(ws / "features"))
        backfill_s = res["s"]
        rows.append(dict(benchmark="backfill", metric=f"{customers:,} customers x {days} days ({load})",
                         value=backfill_s, unit="s", goal="<= 45 s at 10,000 x 180",
                         ok=backfill_s <= 45 if not quick else None))
        rows.append(dict(benchmark="backfill", metric="peak RSS of the backfill process", value=res["peak_mb"],
                         unit="MB", goal="<= 3,000 MB", ok=res["peak_mb"] <= 3000 if not quick else None))
        rows.append(dict(benchmark="backfill", metric="customer snapshot rows", value=res["rows"], unit="rows"))

        events = pd.read_parquet(ws / "events")
        events = events[events.customer_id.notna()]
        until = pd.Timestamp(res["until"])
        sample_ids = sorted(events.customer_id.unique())[:20]
        sample = events[events.customer_id.isin(sample_ids)]
        t0 = time.perf_counter()
        baseline_customer_features(sample, until)
        per_customer = (time.perf_counter() - t0) / len(sample_ids)
        baseline_s = per_customer * events.customer_id.nunique()
        rows.append(dict(benchmark="backfill", metric="per-customer pandas loop (scaled from a sample)",
                         value=baseline_s, unit="s"))
        speedup = baseline_s / backfill_s
        rows.append(dict(benchmark="backfill", metric="speed-up over the loop", value=speedup, unit="x",
                         goal=">= 20x", ok=speedup >= 20))
    rows.append(dict(benchmark="backfill", metric="peak RSS of the bench process (simulator, pandas baseline)",
                     value=_rss_mb(), unit="MB"))
    if not quick:
        rows += _large()
    return rows


def _large(customers: int = 100_000, days: int = 180) -> list[dict]:
    """The partitioned backfill at 10x the customers: completes, time and peak printed."""
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        done = subprocess.run([sys.executable, "-m", "mhp.cli", "simulate", "--customers", str(customers), "--days",
                               str(days), "--seed", "7", "--out", str(ws)], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent.parent)
        if done.returncode:
            raise RuntimeError(f"simulation failed: {done.stderr[-2000:]}")
        (ws / "stream.jsonl").unlink(missing_ok=True)     # GBs the backfill does not read
        load = "load avg {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
        res = backfill_in_child(str(ws / "events"), str(ws / "features"))
    print(f"  backfill {customers:,} x {days}: {res['s']:.1f} s, peak {res['peak_mb']:,.0f} MB", flush=True)
    return [dict(benchmark="backfill", metric=f"{customers:,} customers x {days} days: completes ({load})",
                 value=res["s"], unit="s", goal="completes", ok=True),
            dict(benchmark="backfill", metric=f"peak RSS of the backfill process at {customers:,} customers",
                 value=res["peak_mb"], unit="MB"),
            dict(benchmark="backfill", metric=f"customer snapshot rows at {customers:,} customers", value=res["rows"],
                 unit="rows")]


if __name__ == "__main__":
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    for r in run(quick=True):
        print(r)
