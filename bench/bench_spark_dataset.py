"""Training sets on Spark: ``mhp dataset --engine spark`` beside ``--engine duckdb``.

A 2,000 customers x 120 days simulation (quick: 300 x 100), backfilled once; then each engine's
``mhp dataset`` as its own process (wall time of the whole command: imports, the JVM's start for
Spark in local mode, sampling, labels, Feast retrieval, the gate, the write). ``--no-oracle``: the
oracle is the same driver-side code on both engines and would only add the same seconds to each.
The two ``dataset.parquet`` files must be equal, cell for cell (a row of its own).

Then the steps the engine changes, in this process on the same entity rows (Spark's session started
and warmed by one query first, so its start is not in them): the labels (``label_sql``), the
features (``features.retrieval.historical_features``: two Feast calls), the snapshot times.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _mhp(*args: str) -> float:
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "mhp.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"mhp {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return time.perf_counter() - t0


def run(quick: bool = False) -> list[dict]:
    customers, days = (300, 100) if quick else (2000, 120)
    size = f"{customers:,} x {days} days"
    with tempfile.TemporaryDirectory(prefix="mhp-spark-dataset-") as tmp:
        ws = Path(tmp) / "ws"
        _mhp("simulate", "--customers", str(customers), "--days", str(days), "--seed", "1", "--out", str(ws),
             "--no-progress")
        _mhp("backfill", "--workspace", str(ws))
        common = ("dataset", "--workspace", str(ws), "--no-oracle", "--no-progress")
        duck = _mhp(*common, "--engine", "duckdb", "--out", str(ws / "duckdb"))
        spark = _mhp(*common, "--engine", "spark", "--out", str(ws / "spark"))
        a = pd.read_parquet(ws / "duckdb" / "dataset.parquet")
        b = pd.read_parquet(ws / "spark" / "dataset.parquet")
        try:
            pd.testing.assert_frame_equal(b, a, check_exact=True)
            equal = True
        except AssertionError:
            equal = False
        steps = _steps(ws, a[["customer_id", "event_timestamp"]])
    rows = len(a)
    return [
        {"benchmark": f"dataset {size} ({rows:,} rows)", "metric": "mhp dataset --engine duckdb", "value": duck,
         "unit": "s"},
        {"benchmark": f"dataset {size} ({rows:,} rows)", "metric": "mhp dataset --engine spark (local[2])",
         "value": spark, "unit": "s"},
        {"benchmark": f"dataset {size} ({rows:,} rows)", "metric": "spark / duckdb", "value": spark / duck,
         "unit": "x"},
        {"benchmark": f"dataset {size} ({rows:,} rows)", "metric": "training sets equal, cell for cell",
         "value": "yes" if equal else "NO", "goal": "yes", "ok": equal},
    ] + [{"benchmark": f"dataset {size} ({rows:,} rows)", "metric": f"{step}, {engine}", "value": sec, "unit": "s"}
         for (step, engine), sec in steps.items()]


def _steps(ws: Path, entity: pd.DataFrame) -> dict[tuple[str, str], float]:
    """Seconds per (step, engine) for the steps the engine changes."""
    import warnings

    from core.spark import spark_session, stop_spark
    from features import store as FS
    from features.feast_spark_offline import spark_feature_store
    from features.retrieval import historical_features
    from training.dataset import snapshot_timestamps
    from training.label_join import compute_labels, compute_labels_spark
    from training.sampling import connect_events

    warnings.simplefilter("ignore")
    spark = spark_session()
    spark.range(1000).selectExpr("sum(id)").collect()
    duck = FS.open_store("local", ws / "feast")
    stores = {"duckdb": duck, "spark": spark_feature_store(duck)}
    con, end_us = connect_events(str(ws / "events"))
    out = {}
    for engine in ("duckdb", "spark"):
        t0 = time.perf_counter()
        if engine == "spark":
            compute_labels_spark(spark, str(ws / "events"), entity, end_us)
        else:
            compute_labels(con, entity, end_us)
        out[("labels", engine)] = time.perf_counter() - t0
        t0 = time.perf_counter()
        historical_features(stores[engine], entity)
        out[("features (Feast, all rows in one call)", engine)] = time.perf_counter() - t0
        t0 = time.perf_counter()
        snapshot_timestamps(str(ws / "features"), entity, engine)
        out[("snapshot times", engine)] = time.perf_counter() - t0
    con.close()
    stop_spark()
    return out
