"""The backfill on Spark (``--engine spark``) writes the DuckDB engine's tables bit for bit: the same
files, schemas (types and null flags), row order and cell values (doubles compared by their bits,
nulls by position), and the same horizon.json; from the library and through ``mhp backfill``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core import storage
from core.times import isoformat_z
from features import catalog as C
from features.backfill import HORIZON_FILE, run_backfill
from mhp.cli import main

pytestmark = pytest.mark.spark
ROOT = Path(__file__).resolve().parent.parent
VIEWS = (C.CUSTOMER_VIEW, C.TUTOR_VIEW, C.SUBJECT_VIEW, C.MARKETPLACE_VIEW)


@pytest.fixture(scope="module")
def spark():
    from core.spark import spark_session, stop_spark

    yield spark_session()
    stop_spark()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    ws = tmp_path_factory.mktemp("spark-backfill") / "ws"
    assert main(["simulate", "--customers", "250", "--days", "28", "--seed", "5", "--out", str(ws)]) == 0
    return ws


def assert_same_tables(expected: dict[str, str], actual: dict[str, str]) -> None:
    assert list(actual) == list(expected) == list(VIEWS)
    for view in VIEWS:
        assert os.path.isfile(actual[view]), f"{view}: expected one Parquet file at {actual[view]}"
        a, b = pq.read_table(expected[view]), pq.read_table(actual[view])
        assert a.num_rows > 0, view
        assert b.schema.equals(a.schema), f"{view}: schema\n{a.schema}\n!=\n{b.schema}"
        for name in a.column_names:
            x, y = a.column(name).combine_chunks(), b.column(name).combine_chunks()
            assert y.is_null().equals(x.is_null()), f"{view}.{name}: null positions differ"
            if pa.types.is_floating(x.type):
                bits = [np.asarray(c.fill_null(0.0).to_numpy()).view(np.int64) for c in (x, y)]
                diff = np.flatnonzero(bits[0] != bits[1])
                assert diff.size == 0, f"{view}.{name}: {diff.size} cells differ, first at row {diff[0]}: " \
                                       f"{x[diff[0]]} != {y[diff[0]]}"
            else:
                assert y.equals(x), f"{view}.{name}: values differ"


def horizon(uri: str) -> dict:
    return json.loads((Path(uri) / HORIZON_FILE).read_text())


@pytest.mark.aws
def test_spark_tables_from_s3_equal_duckdb_cell_for_cell(world, spark, tmp_path, moto_endpoint):
    """An s3:// log (staged to local scratch) to s3:// tables: DuckDB's local tables, bit for bit."""
    import boto3

    boto3.client("s3").create_bucket(Bucket="mhp-spark")
    fs, _ = storage.filesystem("s3://mhp-spark/")
    fs.put(str(world / "events") + "/", "mhp-spark/ws/events/", recursive=True)
    duck = run_backfill(str(world / "events"), str(tmp_path / "duckdb"), progress=False)
    on_spark = run_backfill("s3://mhp-spark/ws/events", "s3://mhp-spark/ws/features", progress=False, engine="spark")
    assert on_spark == dataclass_with_outputs(duck, {v: f"s3://mhp-spark/ws/features/{v}.parquet" for v in VIEWS})
    fs.get("mhp-spark/ws/features/", str(tmp_path / "spark") + "/", recursive=True)
    assert_same_tables(duck.outputs, {v: str(tmp_path / "spark" / f"{v}.parquet") for v in VIEWS})
    assert horizon(tmp_path / "spark") == horizon(tmp_path / "duckdb")
    # the temp views and cached tables are gone: a second job in the session starts clean
    assert not [t.name for t in spark.catalog.listTables() if t.isTemporary]


def dataclass_with_outputs(result, outputs):
    """``result`` with another engine's output paths (everything else must be equal)."""
    import dataclasses

    return dataclasses.replace(result, outputs=outputs)


def test_mhp_backfill_engine_spark_with_until(world, spark, tmp_path, capsys):
    """Through the CLI, with events after ``--until`` (the horizon then ends at it): the same tables
    and horizon as the DuckDB command."""
    last = max(pq.read_table(world / "events", columns=["timestamp"]).column("timestamp").to_pylist())
    until = isoformat_z(last.replace(hour=13, minute=37, second=5, microsecond=123456) - timedelta(days=9))
    out = {}
    for engine in ("duckdb", "spark"):
        assert main(["backfill", "--workspace", str(world), "--until", until, "--no-validate", "--engine", engine]) == 0, \
            capsys.readouterr().err
        printed = capsys.readouterr().out
        assert f"({engine})" in printed and "customer rows" in printed
        copy = tmp_path / engine
        copy.mkdir()
        for f in (world / "features").iterdir():
            f.rename(copy / f.name)
        out[engine] = copy
    assert "backfill on Spark" in printed
    assert_same_tables({v: str(out["duckdb"] / f"{v}.parquet") for v in VIEWS},
                       {v: str(out["spark"] / f"{v}.parquet") for v in VIEWS})
    h = horizon(out["spark"])
    assert h == horizon(out["duckdb"]) and h["until"] == until and h["valid_before_us"] == h["until_us"] + 1


def test_engine_errors(world, capsys):
    assert main(["backfill", "--workspace", str(world), "--engine", "flink"]) == 2
    err = capsys.readouterr().err
    assert "--engine" in err and "'flink'" in err and "spark" in err
    with pytest.raises(ValueError, match="engine: expected one of duckdb, spark, got 'polars'"):
        run_backfill(str(world / "events"), str(world / "never"), engine="polars")


def test_missing_java_is_one_clean_line(world, tmp_path):
    """No Java runtime: ``--engine spark`` fails in one line before any work, naming the fix."""
    env = {**os.environ, "JAVA_HOME": str(tmp_path / "no-java"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "mhp.cli", "backfill", "--workspace", str(world), "--no-validate",
                           "--engine", "spark"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Java 17+" in lines[0] and "JAVA_HOME" in lines[0], done.stderr
    assert "backfill:" not in done.stdout


def test_spark_submit_runs_the_backfill_in_the_clusters_session(world, tmp_path):
    """deploy/spark_job.py under spark-submit (a local master standing in for a cluster; the command given
    as Glue passes it, beside an argument of Glue's own): the session is
    spark-submit's (core.spark.on_cluster), the part files go beside the output and are removed, and
    the tables equal DuckDB's bit for bit."""
    ws = tmp_path / "ws"
    ws.mkdir()
    os.symlink(world / "events", ws / "events")
    duck = run_backfill(str(world / "events"), str(tmp_path / "duckdb"), progress=False)
    submit = Path(sys.executable).parent / "spark-submit"
    import pyspark

    env = {**os.environ, "MHP_SPARK_MASTER": "not-a-master",    # ignored under spark-submit
           "SPARK_HOME": os.path.dirname(pyspark.__file__), "PYSPARK_PYTHON": sys.executable,
           "PYSPARK_DRIVER_PYTHON": sys.executable}
    proc = subprocess.run([str(submit), "--master", "local[1]", "--conf", "spark.ui.enabled=false",
                           "--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.driver.bindAddress=127.0.0.1",
                           str(ROOT / "deploy" / "spark_job.py"), "--JOB_NAME", "as-glue-adds-it", "--mhp-args",
                           f"backfill --engine spark --no-validate --workspace {ws}"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "local[1]" in proc.stdout   # the master spark-submit was given, not MHP_SPARK_MASTER
    assert not (ws / "features" / "_spark_parts").exists()
    assert_same_tables(duck.outputs, {v: str(ws / "features" / f"{v}.parquet") for v in VIEWS})
