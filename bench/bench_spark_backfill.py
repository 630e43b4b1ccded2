"""The backfill on Spark beside DuckDB: ``run_backfill(engine="spark")`` vs the default engine.

A 2,000 customers x 120 days simulation (quick: 300 x 60), backfilled by each engine in a process
of its own (wall time of the backfill call; for Spark also the local JVM's start, reported apart).
Spark runs in local mode with the settings of ``core.spark`` (``local[2]``, 2 GB driver, 8 shuffle
partitions unless MHP_SPARK_* say otherwise). The two engines' tables must be equal, cell for cell,
with the same schemas and horizon (a row of its own).

With BENCH_SPARK_LARGE=1 the same at 10,000 customers x 180 days as well (minutes on 2 cores).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
VIEWS = ("customer_features", "tutor_features", "subject_features", "marketplace_features")

_CHILD = """
import json, sys, time
t0 = time.perf_counter()
if sys.argv[3] == "spark":
    from core.spark import spark_session
    spark_session()
t1 = time.perf_counter()
from features.backfill import run_backfill
res = run_backfill(sys.argv[1], sys.argv[2], progress=False, engine=sys.argv[3])
print(json.dumps({"start_s": t1 - t0, "s": time.perf_counter() - t1, "rows": res.customer_rows}))
"""


def _backfill(engine: str, events: str, out: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _CHILD, events, out, engine], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"backfill --engine {engine} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _equal(a: Path, b: Path) -> bool:
    for view in VIEWS:
        x, y = pq.read_table(a / f"{view}.parquet"), pq.read_table(b / f"{view}.parquet")
        if not (x.schema.equals(y.schema) and x.equals(y)):
            return False
    return json.loads((a / "horizon.json").read_text()) == json.loads((b / "horizon.json").read_text())


def _compare(customers: int, days: int) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="mhp-spark-backfill-") as tmp:
        ws = Path(tmp) / "ws"
        done = subprocess.run([sys.executable, "-m", "mhp.cli", "simulate", "--customers", str(customers), "--days",
                               str(days), "--seed", "7", "--out", str(ws), "--no-progress"], cwd=ROOT,
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if done.returncode:
            raise RuntimeError(f"simulation failed: {done.stderr[-2000:]}")
        (ws / "stream.jsonl").unlink(missing_ok=True)
        events = pq.ParquetDataset(ws / "events").read(columns=["event_id"]).num_rows
        load = "load avg {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
        duck = _backfill("duckdb", str(ws / "events"), str(ws / "duckdb"))
        spark = _backfill("spark", str(ws / "events"), str(ws / "spark"))
        equal = spark["rows"] == duck["rows"] and _equal(ws / "duckdb", ws / "spark")
    name = f"backfill duckdb vs spark, {customers:,} x {days} days ({events:,} events, {duck['rows']:,} customer rows)"
    print(f"  {name}: duckdb {duck['s']:.1f} s, spark {spark['s']:.1f} s (+ {spark['start_s']:.1f} s JVM start), "
          f"equal: {equal}", flush=True)
    return [
        dict(benchmark=name, metric=f"duckdb backfill ({load})", value=duck["s"], unit="s"),
        dict(benchmark=name, metric="spark backfill, local[2]", value=spark["s"], unit="s"),
        dict(benchmark=name, metric="spark session start (local JVM)", value=spark["start_s"], unit="s"),
        dict(benchmark=name, metric="spark / duckdb", value=spark["s"] / duck["s"], unit="x"),
        dict(benchmark=name, metric="tables equal, cell for cell (schemas, horizon)", value="yes" if equal else "NO",
             goal="yes", ok=equal),
    ]


def run(quick: bool = False) -> list[dict]:
    rows = _compare(*((300, 60) if quick else (2_000, 120)))
    if os.environ.get("BENCH_SPARK_LARGE") == "1" and not quick:
        rows += _compare(10_000, 180)
    return rows
