"""`mhp dataset --engine spark`: the same training set as the DuckDB engine, cell for cell.

On one small simulation: the whole build through the CLI on Spark against the DuckDB build (the
Parquet frame with its dtypes and null positions, the metadata, the schema); Feast's
``get_historical_features`` through the Spark offline store against the DuckDB store on the edges
(unknown customers, rows before any snapshot, rows past every snapshot, duplicate rows, TTLs that
expire rows, the primary tutor/subject lookup, an empty frame); the join itself beside the DuckDB
join (created-time ties, null keys, the TTL bound); and the one-line error when Java
is missing. One Spark session for the module.
"""
from __future__ import annotations

import json
import os
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from feast import FeatureStore
from feast.repo_config import RepoConfig

from core import spark as S
from features import catalog as C
from features import feast_objects
from features import retrieval as R
from features import store as FS
from features.feast_spark_offline import TYPE, SparkRetrievalJob
from training import dataset as D
from training.label_join import compute_labels, compute_labels_spark
from training.sampling import connect_events

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def spark():
    # small data on a 2-core machine: fewer shuffle tasks (a setting of the session, not of the results)
    before = os.environ.get("MHP_SPARK_SHUFFLE_PARTITIONS")
    os.environ["MHP_SPARK_SHUFFLE_PARTITIONS"] = "2"
    S.stop_spark()
    session = S.spark_session()
    yield session
    S.stop_spark()
    if before is None:
        os.environ.pop("MHP_SPARK_SHUFFLE_PARTITIONS")
    else:
        os.environ["MHP_SPARK_SHUFFLE_PARTITIONS"] = before


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """A 150-customer, 100-day simulation, backfilled and applied, with its DuckDB training set."""
    from mhp.cli import main

    ws = tmp_path_factory.mktemp("sparkds") / "ws"
    assert main(["simulate", "--customers", "150", "--days", "100", "--seed", "4", "--out", str(ws),
                 "--no-progress"]) == 0
    res = D.build_for_workspace(ws, out_dir=ws / "duckdb", progress=False, oracle_paths=5, log=lambda _: None)
    return ws, res


def _stores(root, features_uri, ttl: timedelta | None = None) -> tuple[FeatureStore, FeatureStore]:
    """(DuckDB store, Spark store) over the same tables and one registry; ``ttl`` replaces every view's TTL."""
    root.mkdir(parents=True, exist_ok=True)
    cfg = FS.repo_config("local", root)
    duck = FeatureStore(repo_path=str(root), config=RepoConfig(**cfg))
    objs = feast_objects.build(features_uri)
    if ttl is not None:
        for view in (C.CUSTOMER_VIEW, C.TUTOR_VIEW, C.SUBJECT_VIEW, C.MARKETPLACE_VIEW):
            objs[view].ttl = ttl
    duck.apply(list(objs.values()))
    cfg["offline_store"] = {"type": TYPE}
    return duck, FeatureStore(repo_path=str(root), config=RepoConfig(**cfg))


def _edge_entities(ws, n: int = 300, seed: int = 2) -> pd.DataFrame:
    """Random (customer, t) over and beyond the tables' span, an unknown customer, rows exactly at a
    snapshot, rows before every snapshot and far past the last, and duplicates of all of those."""
    snaps = pd.read_parquet(ws / "features" / f"{C.CUSTOMER_VIEW}.parquet", columns=["customer_id", "event_timestamp"])
    rng = np.random.default_rng(seed)
    lo, hi = snaps.event_timestamp.min() - pd.Timedelta(days=2), snaps.event_timestamp.max()
    ids = np.append(snaps.customer_id.unique(), "nobody")
    ent = pd.DataFrame({"customer_id": rng.choice(ids, n),
                        "event_timestamp": pd.Series(lo + (hi - lo) * rng.random(n)).dt.floor("us")})
    exact = snaps.sample(15, random_state=1)
    early = exact.assign(event_timestamp=lo - pd.Timedelta(days=30))
    future = exact.assign(event_timestamp=hi + pd.Timedelta(days=400))
    ent = pd.concat([ent, exact, early, future, ent.iloc[:10], exact.iloc[:5]], ignore_index=True)
    ent["extra"] = np.arange(len(ent))
    return ent


def _service_rows(duck: FeatureStore, ent: pd.DataFrame) -> pd.DataFrame:
    """``ent`` with the service's entity columns: primary tutor and subject as of t (DuckDB store)."""
    first = duck.get_historical_features(ent.copy(), features=[f"{C.CUSTOMER_VIEW}:primary_tutor_id",
                                                               f"{C.CUSTOMER_VIEW}:primary_subject"]).to_df()
    full = ent.copy()
    full["tutor_id"] = first["primary_tutor_id"].fillna(R.NO_TUTOR).to_numpy()
    full["subject"] = first["primary_subject"].fillna(R.NO_SUBJECT).to_numpy()
    full["marketplace_id"] = C.MARKETPLACE_KEY
    full[C.REQUEST_TIME_FIELD] = (full.event_timestamp - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(microseconds=1)
    return full


def _same_job(duck: FeatureStore, spk: FeatureStore, ent: pd.DataFrame, features) -> pd.DataFrame:
    """Both stores' answers: same Arrow schema, same frame (NaN == NaN), every row in input order."""
    a = duck.get_historical_features(ent.copy(), features=features).to_arrow()
    job = spk.get_historical_features(ent.copy(), features=features)
    assert isinstance(job, SparkRetrievalJob)                    # the Spark path, not a fallback
    b = job.to_arrow()
    assert b.schema == a.schema
    assert b.column("extra").to_pylist() == ent["extra"].tolist()
    pd.testing.assert_frame_equal(b.to_pandas(), a.to_pandas(), check_exact=True)
    return b.to_pandas()


def test_the_service_on_spark_equals_the_duckdb_store_on_every_edge(spark, sim, tmp_path):
    ws, _ = sim
    duck, spk = _stores(tmp_path / "feast", str(ws / "features"))
    ent = _edge_entities(ws)
    full = _service_rows(duck, ent)
    got = _same_job(duck, spk, full, duck.get_feature_service(C.FEATURE_SERVICE))
    assert got.loc[got.customer_id == "nobody", "session_count_7d"].isna().all()
    assert got.loc[got.extra.isin(ent.extra[-20:]), "signup_ts"].notna().any()      # the duplicates have values
    # the second lookup found the primary tutor's and subject's rows, and the daily views expire
    assert got["tutor_avg_rating_30d"].notna().any() and got["days_since_signup"].notna().any()
    future = got["event_timestamp"] > pd.Timestamp(ent["event_timestamp"].max()) - pd.Timedelta(days=300)
    assert future.any() and got.loc[future, "tutor_avg_rating_30d"].isna().all()
    assert not _expired(ws, got).any()                          # the customer view's 10-year TTL expires nothing
    # an empty frame: Feast's own types on both
    _same_job(duck, spk, full.iloc[:0], duck.get_feature_service(C.FEATURE_SERVICE))


def _expired(ws, got: pd.DataFrame) -> pd.Series:
    """Rows of a known customer, at or after its first snapshot, without customer features."""
    snaps = pd.read_parquet(ws / "features" / f"{C.CUSTOMER_VIEW}.parquet", columns=["customer_id", "event_timestamp"])
    first = got.customer_id.map(snaps.groupby("customer_id").event_timestamp.min())
    return got["login_count_7d"].isna() & first.notna() & (got.event_timestamp >= first)


def test_a_short_ttl_expires_the_same_rows_on_spark(spark, sim, tmp_path):
    ws, _ = sim
    duck, spk = _stores(tmp_path / "feast", str(ws / "features"), timedelta(hours=5, microseconds=3))
    ent = _service_rows(duck, _edge_entities(ws, n=200, seed=7))
    got = _same_job(duck, spk, ent, duck.get_feature_service(C.FEATURE_SERVICE))
    assert _expired(ws, got).any() and not _expired(ws, got).all()   # snapshots a day apart: some rows expire


def test_labels_from_the_same_sql_on_spark(spark, sim):
    ws, res = sim
    con, end_us = connect_events(str(ws / "events"))
    rows = res.frame[["customer_id", "event_timestamp"]]
    rows = pd.concat([rows, rows.iloc[:7]], ignore_index=True)                       # duplicates too
    a = compute_labels(con, rows, end_us)
    b = compute_labels_spark(spark, str(ws / "events"), rows, end_us)
    pd.testing.assert_frame_equal(b, a, check_exact=True)
    assert a["ib_calls_14d"].sum() > 0 and a["churn_30d"].sum() > 0                  # not trivially zero


def test_mhp_dataset_engine_spark_writes_the_duckdb_training_set_cell_for_cell(spark, sim, capsys):
    from mhp.cli import main

    ws, res = sim
    assert main(["dataset", "--workspace", str(ws), "--engine", "spark", "--out", str(ws / "spark"),
                 "--oracle-paths", "5", "--no-progress"]) == 0
    assert "quality gate training_set_churn_model_v1: passed" in capsys.readouterr().out
    a = pd.read_parquet(ws / "duckdb" / D.DATASET_FILE)
    b = pd.read_parquet(ws / "spark" / D.DATASET_FILE)
    assert len(a) > 300 and a["tutor_avg_rating_30d"].notna().any() and a["oracle_churn_30d"].notna().any()
    pd.testing.assert_frame_equal(b, a, check_exact=True)                         # dtypes, nulls, every cell
    meta_a = json.loads((ws / "duckdb" / D.METADATA_FILE).read_text())
    meta_b = json.loads((ws / "spark" / D.METADATA_FILE).read_text())
    assert (meta_a.pop("engine"), meta_b.pop("engine")) == ("duckdb", "spark")
    assert meta_b == meta_a                                                         # counts, rates, boundaries
    assert (ws / "spark" / D.SCHEMA_FILE).read_text() == (ws / "duckdb" / D.SCHEMA_FILE).read_text()


def test_spark_pit_join_equals_the_duckdb_join_on_ties_null_keys_and_created_times(spark):
    """The join itself, beside ``features.pit_join``: a repeated (key, time) resolved by the latest
    created row, a null key matching nothing, a TTL bound met exactly and missed by a microsecond."""
    import duckdb
    import pyarrow as pa

    from features.pit_join import ViewJoin, pit_join
    from features.spark_pit_join import spark_pit_join

    t = pd.Timestamp("2025-01-01T00:00:00Z")
    us = pa.timestamp("us", "UTC")
    view = pa.table({"k": ["a", "a", "a", "b", None],
                     "ts": pa.array([t, t, t + pd.Timedelta(days=2), t, t], us),
                     "created": pa.array([t, t + pd.Timedelta(hours=1), t, t, t], us),
                     "x": [1.0, 2.0, 3.0, 7.0, 9.0], "n": pa.array([1, 2, None, 4, 5], pa.int64())})
    ent = pa.table({"k": ["a", "b", "a", "c", None, "a", "b", "b"],
                    "event_timestamp": pa.array([t + pd.Timedelta(hours=1), t + pd.Timedelta(days=1),
                                                 t + pd.Timedelta(days=3), t, t, t - pd.Timedelta(seconds=1),
                                                 t + pd.Timedelta(days=1, microseconds=1), t], us)})
    con = duckdb.connect()
    con.register("v", view)
    spark.createDataFrame(view).createOrReplaceTempView("v")
    for created in ("created", None):
        joins = [ViewJoin("v", {"k": "k"}, "ts", created, {"x": "x_out", "n": "n_out"}, timedelta(days=1))]
        want = pit_join(con, ent, "event_timestamp", joins).to_pydict()
        got = spark_pit_join(spark, ent, "event_timestamp", joins).to_pydict()
        assert list(got) == ["x_out", "n_out"]
        if created:
            assert got == want and got["x_out"] == [2.0, 7.0, 3.0, None, None, None, None, 7.0]
        else:  # two rows of one (key, time) and nothing to order them: either is Feast's answer, one is kept
            assert got["x_out"][0] in (1.0, 2.0) and (got["x_out"][0], got["n_out"][0]) in ((1.0, 1), (2.0, 2))
            assert {k: v[1:] for k, v in got.items()} == {k: v[1:] for k, v in want.items()}
    spark.catalog.dropTempView("v")


def test_without_java_the_spark_engine_is_one_line_and_exit_2(sim, tmp_path, monkeypatch, capsys):
    """(Last in the module: it stops the module's Spark session.)"""
    from mhp.cli import main

    ws, _ = sim
    S.stop_spark()                                 # the module's session (the fixture's stop is then a no-op)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-java"))
    assert main(["dataset", "--workspace", str(ws), "--engine", "spark", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs a Java 17+ runtime" in err and "\n" not in err
    assert not (tmp_path / "x").exists()
