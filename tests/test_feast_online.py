"""features.feast_online.BatchedSqliteOnlineStore writes exactly what Feast's SQLite store writes.

The same rows (ints, floats, strings, booleans, nulls, a second write that overwrites) go to two
toy repos that differ only in the online store type; the online tables must be equal row for
row, byte for byte, and reads through Feast must agree.
"""
from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, PushSource, ValueType
from feast.data_source import PushMode
from feast.repo_config import RepoConfig
from feast.types import Bool, Float64, Int64, String

from features.store import ONLINE_STORE_TYPE

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


def _store(root, online_type: str) -> FeatureStore:
    root.mkdir()
    config = RepoConfig(project="toy", provider="local", entity_key_serialization_version=3,
                        registry=str(root / "registry.db"), offline_store={"type": "duckdb"},
                        online_store={"type": online_type, "path": str(root / "online.db")})
    store = FeatureStore(repo_path=str(root), config=config)
    _rows(1, 0).to_parquet(root / "toy.parquet")         # the push source's batch source must exist
    batch = FileSource(name="toy_source", path=str(root / "toy.parquet"), timestamp_field="event_timestamp")
    push = PushSource(name="toy_push", batch_source=batch)
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)
    view = FeatureView(name="toy", entities=[customer], ttl=timedelta(0), source=push, online=True,
                       schema=[Field(name="n", dtype=Int64), Field(name="x", dtype=Float64),
                               Field(name="tier", dtype=String), Field(name="flag", dtype=Bool)])
    store.apply([customer, view])
    return store


def _rows(n: int, shift: int) -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(n)],
        "event_timestamp": [T0 + timedelta(hours=i + shift) for i in range(n)],
        "n": pd.array([None if i % 7 == 0 else i * 3 + shift for i in range(n)], dtype="Int64"),
        "x": [None if i % 5 == 0 else i / 3 + shift for i in range(n)],
        "tier": [None if i % 4 == 0 else ["budget", "standard", "premium"][i % 3] for i in range(n)],
        "flag": pd.array([None if i % 6 == 0 else bool(i % 2) for i in range(n)], dtype="boolean"),
    })


def _table(store: FeatureStore) -> list[tuple]:
    with sqlite3.connect(store.config.online_store.path) as con:
        return con.execute("SELECT entity_key, feature_name, value, value_text, event_ts, created_ts "
                           "FROM toy_toy ORDER BY entity_key, feature_name").fetchall()


def test_batched_store_writes_the_same_table_as_feasts(tmp_path):
    stock, batched = _store(tmp_path / "stock", "sqlite"), _store(tmp_path / "batched", ONLINE_STORE_TYPE)
    assert type(batched._get_provider().online_store).__name__ == "BatchedSqliteOnlineStore"
    for shift in (0, 100):                      # the second push overwrites every row
        for store in (stock, batched):
            store.push("toy_push", _rows(40, shift), to=PushMode.ONLINE)
    table = _table(stock)
    assert len(table) == 40 * 4
    assert _table(batched) == table
    features = ["toy:n", "toy:x", "toy:tier", "toy:flag"]
    rows = [{"customer_id": f"c{i}"} for i in range(42)]           # two unknown customers too
    read = [s.get_online_features(features=features, entity_rows=rows).to_dict() for s in (stock, batched)]
    assert read[0] == read[1]
    assert read[1]["n"][1] == 103 and read[1]["n"][0] is None and read[1]["n"][41] is None


def test_batched_store_fails_loudly_on_a_missing_table(tmp_path):
    """An unknown table fails loudly (no silent drop), as Feast's own store does."""
    batched = _store(tmp_path / "b", ONLINE_STORE_TYPE)
    with sqlite3.connect(batched.config.online_store.path) as con:
        con.execute("DROP TABLE toy_toy")
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        batched.push("toy_push", _rows(3, 0), to=PushMode.ONLINE)
