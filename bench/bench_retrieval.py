"""Point-in-time retrieval of the full feature service through Feast's API (``get_historical_features``,
via ``features.retrieval.historical_features``) on the project's offline store (ASOF joins):

* 1,000,000 entity rows on the 10,000 x 180-day simulation (``quick``: 20,000 rows on 500 x 60): time,
  rows returned / asked;
* a 20,000-row sample of those rows (``quick``: 2,000) through Feast's stock ``DuckDBOfflineStore``:
  every cell equal (NaN == NaN, same dtypes), and both stores' times on that sample;
* the demo-size training set (``mhp simulate`` defaults, 2,000 x 120 days; ``quick``: 300 x 80): the
  dataset builder's feature step (``training.dataset.retrieve_features``) timed inside the build.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from features import catalog as C

ROWS, SAMPLE, CHUNK = 1_000_000, 20_000, 1_000_000
GOAL_SECONDS, DEMO_GOAL_SECONDS = 40.0, 5.0


def run(quick: bool = False) -> list[dict]:
    from features.backfill import run_backfill
    from mhp.cli import main as mhp

    customers, days = (500, 60) if quick else (10_000, 180)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        assert mhp(["simulate", "--customers", str(customers), "--days", str(days), "--seed", "7",
                    "--out", str(ws), "--no-progress"]) == 0
        res = run_backfill(str(ws / "events"), str(ws / "features"), progress=False)
        rows += _retrieval(ws, res, quick, f"{customers:,} x {days} days")
    rows += _demo_training_set(quick)
    return rows


def entity_rows(customer_table: str, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` (customer, time) rows: customers with snapshots, times uniform over the snapshots' span
    (whole microseconds, as event times are)."""
    snaps = pd.read_parquet(customer_table, columns=["customer_id", "event_timestamp"])
    rng = np.random.default_rng(seed)
    lo, hi = snaps.event_timestamp.min(), snaps.event_timestamp.max()
    ent = pd.DataFrame({"customer_id": rng.choice(snaps.customer_id.unique(), n),
                        "event_timestamp": lo + (hi - lo) * rng.random(n)})
    ent["event_timestamp"] = ent["event_timestamp"].dt.floor("us")
    return ent


def _stock_store(ws: Path, features: str):
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    from features.store import apply, repo_config

    cfg = repo_config("local", ws / "feast_stock")
    cfg["offline_store"] = {"type": "duckdb"}  # Feast's own DuckDBOfflineStore
    (ws / "feast_stock").mkdir(exist_ok=True)
    store = FeatureStore(repo_path=str(ws / "feast_stock"), config=RepoConfig(**cfg))
    apply(store, features)
    return store


def _retrieval(ws: Path, res, quick: bool, size: str) -> list[dict]:
    import warnings

    from features.retrieval import historical_features
    from features.store import OFFLINE_STORE_TYPE, apply, open_store

    n, sample_n, chunk = (20_000, 2_000, 20_000) if quick else (ROWS, SAMPLE, CHUNK)
    entity = entity_rows(res.outputs[C.CUSTOMER_VIEW], n)
    store = open_store("local", ws / "feast")
    assert store.config.offline_store.type == OFFLINE_STORE_TYPE
    apply(store, str(ws / "features"))
    out, parts = [], []
    warnings.simplefilter("ignore")  # Feast's "on demand feature views are experimental"
    t0 = time.perf_counter()
    for i in range(0, n, chunk):
        parts.append(historical_features(store, entity.iloc[i:i + chunk]))
    secs = time.perf_counter() - t0
    got = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    del parts
    in_order = bool((got["customer_id"].to_numpy() == entity["customer_id"].to_numpy()).all()
                    and (got["event_timestamp"].to_numpy() == entity["event_timestamp"].to_numpy()).all())
    n_feat = len(C.model_features())
    out.append(dict(benchmark="retrieval", metric=f"{n:,} rows x {n_feat} features, get_historical_features ({size})",
                    value=round(secs, 1), unit="s", goal=f"<= {GOAL_SECONDS:.0f}", ok=secs <= GOAL_SECONDS))
    out.append(dict(benchmark="retrieval", metric="rows returned / asked, in input order",
                    value=f"{len(got):,} / {n:,}", unit="", goal="all", ok=len(got) == n and in_order))

    pick = np.random.default_rng(1).choice(n, sample_n, replace=False)
    pick.sort()
    sample = entity.iloc[pick].reset_index(drop=True)
    ours_full = got.iloc[pick].reset_index(drop=True)
    del got
    t0 = time.perf_counter()
    ours = historical_features(store, sample)
    ours_secs = time.perf_counter() - t0
    stock = _stock_store(ws, str(ws / "features"))
    t0 = time.perf_counter()
    ref = pd.concat([historical_features(stock, sample.iloc[i:i + 5_000]) for i in range(0, sample_n, 5_000)],
                    ignore_index=True)
    stock_secs = time.perf_counter() - t0
    diff = _first_difference(ref, ours) or _first_difference(ref, ours_full)
    out.append(dict(benchmark="retrieval", metric=f"{sample_n:,}-row sample: every cell equal to Feast's stock "
                    "DuckDBOfflineStore (NaN == NaN)", value=diff or "equal", unit="", goal="equal", ok=diff is None))
    out.append(dict(benchmark="retrieval", metric=f"{sample_n:,}-row sample, project store", value=round(ours_secs, 1),
                    unit="s"))
    out.append(dict(benchmark="retrieval", metric=f"{sample_n:,}-row sample, Feast's stock duckdb store (5,000-row chunks)",
                    value=round(stock_secs, 1), unit="s"))
    # informational: at 20,000 rows the project store's fixed cost (planning, reading the views) dominates
    out.append(dict(benchmark="retrieval", metric="stock / project time on the sample", value=round(stock_secs / ours_secs, 1),
                    unit="x"))
    return out


def _first_difference(a: pd.DataFrame, b: pd.DataFrame) -> str | None:
    try:
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    except AssertionError as exc:
        return " ".join(str(exc).split())[:120]
    return None


def _demo_training_set(quick: bool) -> list[dict]:
    """The demo-size training set's feature step, timed inside ``training.dataset.build_for_workspace``."""
    from core.workspace import Workspace
    from simulator.config import DEFAULT_CUSTOMERS, DEFAULT_DAYS, SimConfig
    from simulator.run import simulate
    from training import dataset as D

    customers, days = (300, 80) if quick else (DEFAULT_CUSTOMERS, DEFAULT_DAYS)
    spent, n_rows = [], []
    retrieve = D.retrieve_features

    def timed(store, entity_df, *args, **kwargs):
        t0 = time.perf_counter()
        got = retrieve(store, entity_df, *args, **kwargs)
        spent.append(time.perf_counter() - t0)
        n_rows.append(len(entity_df))
        return got

    with tempfile.TemporaryDirectory(prefix="bench-retrieval-demo-") as tmp:
        ws = Path(tmp) / "ws"
        simulate(SimConfig(customers=customers, days=days), str(ws))
        D.ensure_feature_store(Workspace.local(ws), progress=False, log=lambda s: None)
        D.retrieve_features = timed  # instrumentation only: the builder's own function does the work
        try:
            t0 = time.perf_counter()
            D.build_for_workspace(ws, progress=False, log=lambda s: None)
            build = time.perf_counter() - t0
        finally:
            D.retrieve_features = retrieve
    feat = sum(spent)
    size = f"{customers:,} x {days} days"
    return [
        dict(benchmark="retrieval", metric=f"demo-size training set ({size}): features, {sum(n_rows):,} rows",
             value=round(feat, 1), unit="s", goal=f"<= {DEMO_GOAL_SECONDS:.0f}", ok=feat <= DEMO_GOAL_SECONDS),
        dict(benchmark="retrieval", metric=f"demo-size training set ({size}): whole dataset build",
             value=round(build, 1), unit="s"),
    ]
