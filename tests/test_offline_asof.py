"""The project's offline store (ASOF joins, ``features.feast_offline``) against Feast's stock
``DuckDBOfflineStore`` on the same small world and the same entity rows: same columns in the same
order, same Arrow/pandas types, every cell equal (NaN == NaN), for the customer view, the whole
service with the second lookup, duplicate and unknown keys, rows before any snapshot, sub-microsecond
times, and TTLs; and the column-wise on-demand functions against the per-value reference."""
from __future__ import annotations

import math
import random
from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from feast import FeatureStore
from feast.repo_config import RepoConfig

from features import catalog as C
from features import feast_objects, pit_join
from features import retrieval as R
from features import store as FS
from features.asof_retrieval import AsOfRetrievalJob
from features.backfill import run_backfill
from features.on_demand_arrays import evaluate_on_demand_columns
from tests.eventlog import random_history, ts, write_log

UNTIL = ts("2025-03-10T00:00:00Z")


def _open(root, kind: str, features_uri: str, ttl: timedelta | None = None) -> FeatureStore:
    cfg = FS.repo_config("local", root / kind)
    if kind == "stock":
        cfg["offline_store"] = {"type": "duckdb"}
    (root / kind).mkdir(parents=True, exist_ok=True)
    store = FeatureStore(repo_path=str(root / kind), config=RepoConfig(**cfg))
    objs = feast_objects.build(features_uri)
    if ttl is not None:
        for view in (C.CUSTOMER_VIEW, C.TUTOR_VIEW, C.SUBJECT_VIEW, C.MARKETPLACE_VIEW):
            objs[view].ttl = ttl
    store.apply(list(objs.values()))
    return store


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("asof")
    run_backfill(write_log(random_history(random.Random(5), customers=30, days=50), root / "events"),
                 str(root / "features"), until=UNTIL, progress=False)
    return root, str((root / "features").resolve())


def _entity(store: FeatureStore, n: int = 600, seed: int = 3) -> pd.DataFrame:
    path = store.get_feature_view(C.CUSTOMER_VIEW).batch_source.path
    snaps = pd.read_parquet(path, columns=["customer_id", "event_timestamp"])
    rng = np.random.default_rng(seed)
    lo, hi = snaps.event_timestamp.min() - pd.Timedelta(days=3), snaps.event_timestamp.max()
    ids = np.append(snaps.customer_id.unique(), "nobody")
    ent = pd.DataFrame({"customer_id": rng.choice(ids, n),
                        "event_timestamp": pd.Series(lo + (hi - lo) * rng.random(n)).dt.floor("us")})
    exact = snaps.sample(20, random_state=1)                                  # exactly at a snapshot
    ent = pd.concat([ent, exact, exact.iloc[:5]], ignore_index=True)          # and duplicate rows
    ent["extra"] = np.arange(len(ent))
    return ent


def _same(a: pd.DataFrame, b: pd.DataFrame, key: str) -> None:
    assert list(a.columns) == list(b.columns)
    a = a.sort_values(key).reset_index(drop=True)
    b = b.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_exact=True)                     # NaN == NaN, dtypes too


@pytest.fixture(params=["take", "gather"])
def path(request, monkeypatch):
    """Both ways pit_join reads a view: take by index (small views) and the hash-join gather (big ones)."""
    monkeypatch.setattr(pit_join, "TAKE_CELLS", 10**12 if request.param == "take" else 0)
    return request.param


def test_customer_view_and_service_equal_the_stock_store(world, path):
    root, uri = world
    ours, stock = _open(root / f"a{path}", "ours", uri), _open(root / f"a{path}", "stock", uri)
    ent = _entity(ours)
    refs = [f"{C.CUSTOMER_VIEW}:{f.name}" for f in C.CUSTOMER_FEATURES]
    job = ours.get_historical_features(ent.copy(), features=refs)
    assert isinstance(job, AsOfRetrievalJob)                                  # the ASOF path, not a fallback
    got = job.to_df()
    assert got["extra"].tolist() == ent["extra"].tolist()                     # every row, in input order
    _same(got, stock.get_historical_features(ent.copy(), features=refs).to_df(), "extra")
    assert got.loc[got.customer_id == "nobody", "session_count_7d"].isna().all()

    first = got[["customer_id", "primary_tutor_id", "primary_subject"]]
    full = ent.copy()
    full["tutor_id"] = first["primary_tutor_id"].fillna("").to_numpy()
    full["subject"] = first["primary_subject"].fillna("").to_numpy()
    full["marketplace_id"] = C.MARKETPLACE_KEY
    full[C.REQUEST_TIME_FIELD] = (full.event_timestamp - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(microseconds=1)
    a = ours.get_historical_features(full.copy(), features=ours.get_feature_service(C.FEATURE_SERVICE)).to_df()
    b = stock.get_historical_features(full.copy(), features=stock.get_feature_service(C.FEATURE_SERVICE)).to_df()
    _same(a, b, "extra")
    assert a["days_since_signup"].notna().any() and a["tutor_avg_rating_30d"].notna().any()


def test_the_project_wrapper_equals_the_stock_store(world):
    root, uri = world
    ours, stock = _open(root / "b", "ours", uri), _open(root / "b", "stock", uri)
    ent = _entity(ours, seed=4)
    ent = ent[ent.event_timestamp < pd.Timestamp(R.horizon(ours).valid_before)]
    pd.testing.assert_frame_equal(R.historical_features(ours, ent), R.historical_features(stock, ent),
                                  check_exact=True)


@pytest.mark.parametrize("ttl", [timedelta(0), timedelta(days=1), timedelta(hours=5, microseconds=3)])
def test_ttl_semantics_equal_the_stock_store(world, ttl, path):
    root, uri = world
    sub = root / f"ttl{ttl.total_seconds()}{path}"  # the views' own TTLs replaced by ``ttl``
    ours, stock = _open(sub, "ours", uri, ttl), _open(sub, "stock", uri, ttl)
    ent = _entity(ours, seed=6)
    ent["marketplace_id"] = C.MARKETPLACE_KEY
    snaps = pd.read_parquet(ours.get_feature_view(C.CUSTOMER_VIEW).batch_source.path)
    first = snaps.groupby("customer_id").event_timestamp.min()
    refs = [f"{C.CUSTOMER_VIEW}:{f.name}" for f in C.CUSTOMER_FEATURES] + [f"{C.MARKETPLACE_VIEW}:{c}"
                                                                             for c, _, _ in C.subject_columns()]
    a = ours.get_historical_features(ent.copy(), features=refs).to_df()
    b = stock.get_historical_features(ent.copy(), features=refs).to_df()
    _same(a, b, "extra")
    a["first_seen"] = a.customer_id.map(first)
    expired = a["session_count_7d"].isna() & (a.customer_id != "nobody") & (a.event_timestamp >= a.first_seen)
    assert (~expired).any()
    if ttl < timedelta(days=1):  # snapshots are at most a day apart while a customer is active
        assert expired.any() == bool(ttl)                                     # a short TTL drops rows, none without one


def test_empty_entity_frame_equals_the_stock_store(world):
    root, uri = world
    ours, stock = _open(root / "c", "ours", uri), _open(root / "c", "stock", uri)
    ent = _entity(ours).iloc[:0]
    refs = [f"{C.CUSTOMER_VIEW}:primary_tutor_id", f"{C.TREND_VIEW}:rating_trend"]
    _same(ours.get_historical_features(ent.copy(), features=refs).to_df(),
          stock.get_historical_features(ent.copy(), features=refs).to_df(), "extra")


def test_sub_microsecond_times_are_refused_as_by_the_stock_store(world):
    root, uri = world
    ours, stock = _open(root / "d", "ours", uri), _open(root / "d", "stock", uri)
    ent = pd.DataFrame({"customer_id": ["c1"], "event_timestamp": [pd.Timestamp("2025-02-01T00:00:00.0000005Z")]})
    refs = [f"{C.CUSTOMER_VIEW}:primary_tutor_id"]
    with pytest.raises(pa.ArrowInvalid):
        stock.get_historical_features(ent.copy(), features=refs).to_df()
    with pytest.raises(ValueError, match="event times must be whole microseconds"):
        ours.get_historical_features(ent.copy(), features=refs).to_df()


def test_repeated_key_and_timestamp_fall_back_to_the_take(monkeypatch):
    """A view with two rows for one (key, timestamp): the gather would return both, so the join
    takes by index instead; every entity row once, in order, the TTL applied."""
    import duckdb

    con = duckdb.connect()
    t = pd.Timestamp("2025-01-01T00:00:00Z")
    con.register("v", pa.table({"k": ["a", "a", "a", "b"],
                                "ts": pa.array([t, t, t + pd.Timedelta(days=2), t], pa.timestamp("us", "UTC")),
                                "x": [1.0, 1.0, 3.0, 7.0]}))
    ent = pa.table({"k": ["a", "b", "a", "c", None, "a"],
                    "event_timestamp": pa.array([t + pd.Timedelta(hours=1), t + pd.Timedelta(days=5), t,
                                                 t, t, t - pd.Timedelta(seconds=1)], pa.timestamp("us", "UTC"))})
    view = pit_join.ViewJoin("v", {"k": "k"}, "ts", None, {"x": "x_out"}, timedelta(days=1))
    for cells in (0, 10**12):
        monkeypatch.setattr(pit_join, "TAKE_CELLS", cells)
        got = pit_join.pit_join(con, ent, "event_timestamp", [view])
        assert got.column_names == ["x_out"]
        assert got.column("x_out").to_pylist() == [1.0, None, 1.0, None, None, None]   # b: 5 days > ttl


def _bits(values) -> list:
    return [("nan",) if isinstance(v, float) and math.isnan(v) else (type(v), v) for v in values]


@pytest.mark.parametrize("view", [C.RECENCY_VIEW, C.TREND_VIEW])
def test_on_demand_columns_are_bit_identical_to_the_per_value_function(view):
    rng = random.Random(11)
    names = {n for f in C.ON_DEMAND if f.view == view for n in f.inputs} | {C.REQUEST_TIME_FIELD}
    n = 2000
    inputs: dict[str, list] = {}
    for name in sorted(names):
        if name.endswith("_ts") or name == C.REQUEST_TIME_FIELD:
            base = 1_735_689_600_000_000
            inputs[name] = [None if rng.random() < 0.1 else base + rng.randrange(-10**13, 10**13) for _ in range(n)]
        else:
            inputs[name] = [None if rng.random() < 0.1 else rng.choice([rng.randrange(0, 50), rng.uniform(0, 90)])
                            for _ in range(n)]
    ref = C.evaluate_on_demand(view, inputs)
    arrow = {k: pa.chunked_array([pa.array(v[:700]), pa.array(v[700:])]) for k, v in inputs.items()}
    # ints and floats mixed in one input: Arrow holds them as float64, as the joined table does for doubles
    got = evaluate_on_demand_columns(view, arrow, n)
    assert list(got) == list(ref)
    for name in ref:
        assert _bits(got[name].to_pylist()) == _bits([float(x) for x in ref[name]]), name
        assert got[name].null_count == 0
