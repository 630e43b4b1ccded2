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


def _read(store: FeatureStore, n: int) -> dict:
    return store.get_online_features(features=["toy:n", "toy:x"],
                                     entity_rows=[{"customer_id": f"c{i}"} for i in range(n)]).to_dict()


def test_an_older_row_never_replaces_a_newer_one(tmp_path):
    """Pushing rows with an older clock after newer ones leaves the newer rows (the stock store
    would take the older ones: the guard is what keeps them)."""
    stock, batched = _store(tmp_path / "stock", "sqlite"), _store(tmp_path / "batched", ONLINE_STORE_TYPE)
    for store in (stock, batched):
        store.push("toy_push", _rows(20, 100), to=PushMode.ONLINE)
    newer = _table(batched)
    older = _rows(20, 0)                       # clocks 100 h earlier, other values
    for store in (stock, batched):
        store.push("toy_push", older, to=PushMode.ONLINE)
    assert _table(batched) == newer
    assert _read(batched, 20)["n"][1] == 103 and _read(stock, 20)["n"][1] == 3
    # a batch mixing older and newer rows: only the newer ones are written
    mixed = _rows(20, 200)
    mixed.loc[mixed.index % 2 == 0, "event_timestamp"] -= timedelta(hours=300)
    batched.push("toy_push", mixed, to=PushMode.ONLINE)
    got = _read(batched, 20)
    assert got["n"][1] == 203 and got["n"][3] == 209                # odd rows: newer, written
    assert got["n"][2] == 106 and got["n"][4] == 112                # even rows: older, kept as they were


def test_equal_clocks_write_and_sub_second_clocks_compare_in_time_order(tmp_path):
    """A re-push at the same clock with new values is written (a late event re-pushes the row at
    the customer's current clock); a clock one microsecond older is not, one microsecond newer is."""
    store = _store(tmp_path / "b", ONLINE_STORE_TYPE)
    base = _rows(1, 0).assign(n=pd.array([1], dtype="Int64"))
    base["event_timestamp"] = T0 + timedelta(seconds=5)                        # a whole second
    store.push("toy_push", base, to=PushMode.ONLINE)
    for delta, n, expected in [(timedelta(0), 2, 2),                          # same clock: written
                               (-timedelta(microseconds=1), 3, 2),            # older: skipped
                               (timedelta(microseconds=1), 4, 4),             # newer (fractional): written
                               (timedelta(0), 5, 4),                              # the whole second again: older now
                               (timedelta(microseconds=1), 6, 6)]:            # same fractional clock: written
        row = base.assign(n=pd.array([n], dtype="Int64"))
        row["event_timestamp"] = T0 + timedelta(seconds=5) + delta
        store.push("toy_push", row, to=PushMode.ONLINE)
        assert store.get_online_features(features=["toy:n"], entity_rows=[{"customer_id": "c0"}]
                                         ).to_dict()["n"] == [expected], (delta, n)
