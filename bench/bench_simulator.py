"""Simulator benchmark: 10,000 customers x 180 days under 60 s, memory flat in the number of days.

Each size runs in its own subprocess so that its peak RSS (ru_maxrss) is its own.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile

_CHILD = """
import json, resource, sys, time
from simulator.config import SimConfig
from simulator.run import simulate
customers, days, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
t0 = time.perf_counter()
summary = simulate(SimConfig(customers=customers, days=days, seed=1), out)
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "events": summary["events_total"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _run(customers: int, days: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run([sys.executable, "-c", _CHILD, str(customers), str(days), out],
                              check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _oracle(customers: int, days: int, n_rows: int, n_paths: int) -> float:
    """Seconds for label_probabilities over n_rows rows x n_paths paths (31 simulated days each)."""
    import time

    import pandas as pd
    import pyarrow.parquet as pq

    from simulator.config import SimConfig
    from simulator.oracle import label_probabilities
    from simulator.run import simulate

    with tempfile.TemporaryDirectory() as out:
        simulate(SimConfig(customers=customers, days=days, seed=1), out)
        truth = pq.read_table(f"{out}/truth.parquet", columns=["customer_id", "date"]).to_pandas()
        last = truth["date"].max()
        rows = truth.loc[truth["date"] == last, ["customer_id"]].head(n_rows).assign(
            event_timestamp=pd.Timestamp(last, tz="UTC") + pd.Timedelta(hours=15))
        t0 = time.perf_counter()
        label_probabilities(out, rows, n_paths=n_paths, seed=0)
        return time.perf_counter() - t0


def run(quick: bool) -> list[dict]:
    customers, short_days, long_days, big = (500, 10, 30, 5_000) if quick else (10_000, 60, 180, 100_000)
    big_days = 5 if quick else 30
    name = "simulator"
    short, long_, huge = _run(customers, short_days), _run(customers, long_days), _run(big, big_days)
    n_rows, n_paths = (100, 50) if quick else (1_000, 200)
    oracle_seconds = _oracle(300 if quick else 2_000, 10 if quick else 30, n_rows, n_paths)
    growth = long_["peak_rss_mb"] / short["peak_rss_mb"]
    label = f"{customers:,} customers x {long_days} days"
    return [
        {"benchmark": name, "metric": f"wall time, {label}", "value": round(long_["seconds"], 1), "unit": "s",
         "goal": "< 60", "ok": long_["seconds"] < 60 or quick},
        {"benchmark": name, "metric": f"events, {label}", "value": long_["events"], "unit": "events"},
        {"benchmark": name, "metric": f"throughput, {label}", "value": round(long_["events"] / long_["seconds"]),
         "unit": "events/s"},
        {"benchmark": name, "metric": f"peak RSS, {customers:,} x {short_days} days", "value": round(short["peak_rss_mb"]),
         "unit": "MB"},
        {"benchmark": name, "metric": f"peak RSS, {label}", "value": round(long_["peak_rss_mb"]), "unit": "MB"},
        {"benchmark": name, "metric": f"peak RSS ratio, {long_days} vs {short_days} days", "value": round(growth, 2),
         "unit": "x", "goal": "<= 1.15 (flat in days)", "ok": growth <= 1.15},
        {"benchmark": name, "metric": f"wall time, {big:,} customers x {big_days} days", "value": round(huge["seconds"], 1),
         "unit": "s", "goal": "runs", "ok": True},
        {"benchmark": name, "metric": f"events, {big:,} customers x {big_days} days", "value": huge["events"],
         "unit": "events"},
        {"benchmark": name, "metric": f"peak RSS, {big:,} customers x {big_days} days", "value": round(huge["peak_rss_mb"]),
         "unit": "MB"},
        {"benchmark": name, "metric": f"oracle, {n_rows:,} rows x {n_paths} paths x 31 days", "value":
         round(oracle_seconds, 1), "unit": "s"},
    ]
