"""The `feast init` template's walk-through on this repo: apply -> materialize -> online -> historical.

Run from this folder: ``python test_workflow.py``. The feature tables are read from data/features
(definitions.py); when they are missing, a small marketplace is simulated and backfilled first, the
equivalent of ``mhp simulate --out data --customers 200 --days 21 && mhp backfill --workspace data``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from feast import FeatureStore

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"


def ensure_feature_tables(customers: int = 200, days: int = 21, seed: int = 7, start: str | None = None) -> pd.Timestamp:
    """The backfill's horizon (its ``until``); simulates + backfills into data/ when no tables exist.
    ``start``: the first simulated day (YYYY-MM-DD; default: ``days`` days before today, so that
    ``feast materialize-incremental``'s first run, which starts at now - ttl, finds the last day of
    the daily views)."""
    from features.backfill import HORIZON_FILE, run_backfill  # lazy: only when the tables must be built
    from simulator.config import SimConfig  # lazy: only when the tables must be built
    from simulator.run import simulate  # lazy: only when the tables must be built

    features = DATA / "features"
    if not (features / HORIZON_FILE).exists():
        if not (DATA / "events").exists():
            if start is None:
                start = (pd.Timestamp.now(tz="UTC").normalize() - pd.Timedelta(days=days)).date().isoformat()
            simulate(SimConfig(customers=customers, days=days, seed=seed, start=start), str(DATA))
        run_backfill(str(DATA / "events"), str(features), progress=False)
    return pd.Timestamp(json.loads((features / HORIZON_FILE).read_text())["until"]).tz_convert("UTC")


def run_demo() -> dict:
    until = ensure_feature_tables()
    print("--- feast apply")
    feast = Path(sys.executable).with_name("feast")
    subprocess.run([str(feast) if feast.exists() else "feast", "apply"], cwd=HERE, check=True)
    store = FeatureStore(repo_path=str(HERE))

    print(f"--- feast materialize-incremental {until.isoformat()}")
    store.materialize_incremental(end_date=until.to_pydatetime())

    customers = pd.read_parquet(DATA / "features" / "customer_features.parquet", columns=["customer_id"])
    ids = sorted(customers["customer_id"].unique())[:3]
    print(f"--- online features for {ids} at {until.isoformat()} (one call per customer: features/online_http.py)")
    from features.retrieval import online_features  # lazy: `feast apply` imports this file; keep that light

    online = online_features(store, ids, until)
    print(online[["customer_id", "tutor_id", "subject", "session_count_30d", "days_since_signup"]].to_string())

    print("--- historical features (point in time) for the same customers, a week earlier")
    entity_df = pd.DataFrame({"customer_id": ids, "event_timestamp": until - pd.Timedelta(days=7)})
    from features.retrieval import historical_features  # lazy: as above

    hist = historical_features(store, entity_df)
    print(hist[["customer_id", "event_timestamp", "session_count_30d"]].to_string())
    return {"until": until, "online": online, "historical": hist}


if __name__ == "__main__":
    os.chdir(HERE)
    run_demo()
