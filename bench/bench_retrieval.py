"""Point-in-time retrieval of the full feature service for N entity rows (1,000,000 at full size)
through Feast's duckdb store, beside Feast's ``file`` store on the same data."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from features import catalog as C


def run(quick: bool = False) -> list[dict]:
    from features.backfill import run_backfill
    from mhp.cli import main as mhp

    customers, days = (500, 60) if quick else (10_000, 180)
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        assert mhp(["simulate", "--customers", str(customers), "--days", str(days), "--seed", "7",
                    "--out", str(ws), "--no-progress"]) == 0
        res = run_backfill(str(ws / "events"), str(ws / "features"), progress=False)
        return _retrieval(ws, res, quick)


def _retrieval(ws: Path, res, quick: bool) -> list[dict]:
    """Point-in-time retrieval of churn_model_v1 through the duckdb store and through Feast's file store."""
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    from features.retrieval import historical_features
    from features.store import apply, open_store, repo_config

    n = 20_000 if quick else 1_000_000
    snaps = pd.read_parquet(res.outputs[C.CUSTOMER_VIEW], columns=["customer_id", "event_timestamp"])
    rng = np.random.default_rng(0)
    ids = snaps.customer_id.unique()
    lo, hi = snaps.event_timestamp.min(), snaps.event_timestamp.max()
    entity = pd.DataFrame({
        "customer_id": rng.choice(ids, n),
        "event_timestamp": lo + (hi - lo) * rng.random(n),
    })
    entity["event_timestamp"] = entity["event_timestamp"].dt.floor("us")
    out = []
    store = open_store("local", ws / "feast")
    apply(store, str(ws / "features"))
    t0 = time.perf_counter()
    # In chunks, as the dataset builder does: one join over a million rows and ~160 columns
    # spills tens of GB to DuckDB's temp folder.
    chunk = 100_000
    returned, chunk_secs = 0, []
    for i in range(0, n, chunk):
        t1 = time.perf_counter()
        returned += len(historical_features(store, entity.iloc[i:i + chunk]))
        chunk_secs.append(time.perf_counter() - t1)
    secs = time.perf_counter() - t0
    out.append(dict(benchmark="retrieval",
                    metric=f"duckdb store, {n:,} rows x {len(C.model_features())} features ({chunk:,}-row chunks)",
                    value=secs, unit="s"))
    out.append(dict(benchmark="retrieval", metric=f"duckdb store, the first {min(n, chunk):,} rows",
                    value=chunk_secs[0], unit="s"))
    out.append(dict(benchmark="retrieval", metric="duckdb store rows returned / requested",
                    value=f"{returned:,} / {n:,}", unit="", goal="all", ok=returned == n))
    cfg = repo_config("local", ws / "feast_file")
    cfg["offline_store"] = {"type": "file"}
    (ws / "feast_file").mkdir(exist_ok=True)
    file_store = FeatureStore(repo_path=str(ws / "feast_file"), config=RepoConfig(**cfg))
    apply(file_store, str(ws / "features"))
    n_file = min(n, chunk)  # the file store loads everything into pandas: one chunk is enough to compare
    t0 = time.perf_counter()
    try:
        df = historical_features(file_store, entity.iloc[:n_file])
        got = f"{len(df):,} / {n_file:,}"
    except Exception as exc:  # the file store drops rows; our retrieval refuses to return fewer
        got = f"failed: {str(exc)[:60]}"
    secs = time.perf_counter() - t0
    out.append(dict(benchmark="retrieval", metric=f"Feast file store, the first {n_file:,} of those rows", value=secs, unit="s"))
    out.append(dict(benchmark="retrieval", metric="file store rows returned / requested", value=got, unit="",
                    goal="(it drops rows)"))
    return out


