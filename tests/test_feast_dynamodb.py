"""features.feast_dynamodb.GuardedDynamoDBOnlineStore on DynamoDB (moto): Feast's items, conditional writes.

A toy repo per online store type; the same pushes go to the stock ``dynamodb`` store and the
guarded one. In clock order both leave the same items; an older row never replaces a newer one
on the guarded store (it does on the stock one); equal clocks write; both write modes (conditional
PutItem per row, the default; TransactWriteItems chunks) keep the guard.
"""
from __future__ import annotations

import random
import threading
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, PushSource, ValueType
from feast.data_source import PushMode
from feast.repo_config import RepoConfig
from feast.types import Float64, Int64, String

from core import aws
from features import feast_dynamodb
from features.store import AWS_ONLINE_STORE_TYPE, repo_config

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


def _store(root, online: dict, project: str) -> FeatureStore:
    root.mkdir()
    config = RepoConfig(project=project, provider="aws", entity_key_serialization_version=3,
                        registry=str(root / "registry.db"), offline_store={"type": "duckdb"},
                        online_store={"region": aws.region(), "endpoint_url": aws.endpoint_url(), **online})
    store = FeatureStore(repo_path=str(root), config=config)
    _rows(1, 0).to_parquet(root / "toy.parquet")
    batch = FileSource(name="toy_source", path=str(root / "toy.parquet"), timestamp_field="event_timestamp")
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)
    view = FeatureView(name="toy", entities=[customer], ttl=timedelta(0),
                       source=PushSource(name="toy_push", batch_source=batch), online=True,
                       schema=[Field(name="n", dtype=Int64), Field(name="x", dtype=Float64),
                               Field(name="tier", dtype=String)])
    store.apply([customer, view])
    return store


def _rows(n: int, shift: int, step=timedelta(hours=1)) -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(n)],
        "event_timestamp": [T0 + step * (i + shift) for i in range(n)],
        "n": pd.array([i * 3 + shift for i in range(n)], dtype="Int64"),
        "x": [None if i % 5 == 0 else i / 3 + shift for i in range(n)],
        "tier": [None if i % 4 == 0 else ["budget", "standard", "premium"][i % 3] for i in range(n)],
    })


def _n(store: FeatureStore, n: int) -> list:
    return store.get_online_features(features=["toy:n"],
                                     entity_rows=[{"customer_id": f"c{i}"} for i in range(n)]).to_dict()["n"]


def _items(store: FeatureStore, project: str) -> list[dict]:
    items = aws.boto3_client("dynamodb").scan(TableName=f"{project}.toy")["Items"]
    return sorted(items, key=lambda i: i["entity_id"]["S"])


class CallLog:
    """The DynamoDB operations a store's client makes, with their item counts."""

    def __init__(self, store: FeatureStore):
        online = store._get_provider().online_store
        cfg = store.config.online_store
        self.client = online._get_dynamodb_client(cfg.region, cfg.endpoint_url)
        self.calls: list[tuple[str, int]] = []

    def hook(self, params, model, **_):
        n = len(params.get("TransactItems", [])) or sum(len(v) for v in params.get("RequestItems", {}).values()) or 1
        self.calls.append((model.name, n))

    def __enter__(self):
        self.client.meta.events.register("provide-client-params.dynamodb.*", self.hook)
        return self

    def __exit__(self, *exc):
        self.client.meta.events.unregister("provide-client-params.dynamodb.*", self.hook)


@pytest.fixture
def stores(moto_endpoint, tmp_path):
    return (_store(tmp_path / "stock", {"type": "dynamodb"}, "stock"),
            _store(tmp_path / "guarded", {"type": AWS_ONLINE_STORE_TYPE}, "guarded"))


def test_the_aws_profiles_use_the_guarded_store(moto_endpoint, tmp_path):
    for profile in ("aws-local", "aws"):
        assert repo_config(profile, tmp_path, "s3://b/ws")["online_store"]["type"] == AWS_ONLINE_STORE_TYPE
    assert repo_config("local", tmp_path)["online_store"]["type"] == "features.feast_online.BatchedSqliteOnlineStore"


def test_in_clock_order_the_items_are_feasts_and_an_older_row_never_replaces_a_newer_one(stores):
    stock, guarded = stores
    assert type(guarded._get_provider().online_store) is feast_dynamodb.GuardedDynamoDBOnlineStore
    for shift in (0, 100):
        for store in (stock, guarded):
            store.push("toy_push", _rows(40, shift), to=PushMode.ONLINE)
    assert _items(guarded, "guarded") == _items(stock, "stock")          # the same items, byte for byte
    newer = _items(guarded, "guarded")
    for store in (stock, guarded):
        store.push("toy_push", _rows(40, 0), to=PushMode.ONLINE)          # older clocks, other values
    assert _items(guarded, "guarded") == newer
    assert _n(guarded, 3) == [100, 103, 106] and _n(stock, 3) == [0, 3, 6]
    assert guarded.get_online_features(features=["toy:tier", "toy:x"], entity_rows=[{"customer_id": "c1"}]
                                       ).to_dict() == {"customer_id": ["c1"], "tier": ["standard"], "x": [1 / 3 + 100]}


def test_transact_mode_stays_batched_and_stale_rows_count_as_written(moto_endpoint, tmp_path):
    guarded = _store(tmp_path / "transact", {"type": AWS_ONLINE_STORE_TYPE, "write_mode": "transact"}, "transact")
    online = guarded._get_provider().online_store
    with CallLog(guarded) as log:
        guarded.push("toy_push", _rows(250, 10), to=PushMode.ONLINE)
    assert log.calls == [("TransactWriteItems", 100), ("TransactWriteItems", 100), ("TransactWriteItems", 50)]
    mixed = _rows(250, 20)
    mixed.loc[mixed.index < 150, "event_timestamp"] -= timedelta(days=30)   # 150 rows older than stored
    before = online.stats.stale
    with CallLog(guarded) as log:
        guarded.push("toy_push", mixed, to=PushMode.ONLINE)                 # no error: "a newer row is there"
    # a chunk with stale rows is cancelled whole, then sent again without them
    assert log.calls == [("TransactWriteItems", 100), ("TransactWriteItems", 100), ("TransactWriteItems", 50),
                         ("TransactWriteItems", 50)]
    assert online.stats.stale - before == 150
    got = _n(guarded, 250)
    assert got[149] == 149 * 3 + 10 and got[150] == 150 * 3 + 20


def test_equal_clocks_write_and_sub_second_and_offset_clocks_compare_in_time_order(stores):
    _, guarded = stores
    base = _rows(1, 0)
    at = T0 + timedelta(seconds=5)
    plus5 = timezone(timedelta(hours=5))
    for when, n, expected in [(at, 1, 1),
                              (at, 2, 2),                                        # same clock: written
                              (at - timedelta(microseconds=1), 3, 2),            # older: kept
                              (at + timedelta(microseconds=1), 4, 4),            # newer, fractional second
                              (at, 5, 4),                                        # the whole second: older now
                              ((at + timedelta(hours=1)).astimezone(plus5), 6, 6),   # later, given at +05:00
                              ((at + timedelta(minutes=30)).astimezone(plus5), 7, 6)]:  # earlier, at +05:00
        row = base.assign(n=pd.array([n], dtype="Int64"), event_timestamp=[pd.Timestamp(when)])
        guarded.push("toy_push", row, to=PushMode.ONLINE)
        assert _n(guarded, 1) == [expected], (when, n)


def test_put_mode_the_default_is_one_conditional_put_per_row(stores):
    _, store = stores
    assert store.config.online_store.write_mode == "put"
    store.push("toy_push", _rows(30, 100), to=PushMode.ONLINE)
    with CallLog(store) as log:
        store.push("toy_push", _rows(30, 0), to=PushMode.ONLINE)          # all older
    assert log.calls == [("PutItem", 1)] * 30
    assert store._get_provider().online_store.stats.stale == 30
    assert _n(store, 3) == [100, 103, 106]


@pytest.mark.parametrize("mode", ["put", "transact"])
def test_racing_writers_leave_the_newest_row(moto_endpoint, tmp_path, mode):
    """Four threads push the same customers' rows at shuffled clocks: every customer ends at its newest."""
    guarded = _store(tmp_path / mode, {"type": AWS_ONLINE_STORE_TYPE, "write_mode": mode}, mode)

    clocks = list(range(12))
    plans = []
    for w in range(4):
        rng = random.Random(w)
        mine = clocks[w::4]
        rng.shuffle(mine)
        plans.append(mine)

    def writer(plan):
        for k in plan:
            frame = _rows(20, 0).assign(n=pd.array([k] * 20, dtype="Int64"),
                                        event_timestamp=[T0 + timedelta(minutes=k)] * 20)
            guarded.push("toy_push", frame, to=PushMode.ONLINE)

    if mode == "transact":
        # moto's TransactWriteItems is not atomic against concurrent writers: it snapshots the whole
        # table and restores that snapshot when any condition fails, undoing other threads' writes
        # (moto/dynamodb/models: transact_write_items). Real DynamoDB is atomic; here the writers'
        # shuffled clocks arrive from one thread, which still exercises every guard decision.
        plans = [[k for ks in zip(*plans) for k in ks]]
    threads = [threading.Thread(target=writer, args=(p,)) for p in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _n(guarded, 20) == [11] * 20


def _batched(log: CallLog) -> tuple[int, list[int]]:
    """(BatchGetItem calls, items per BatchWriteItem call); nothing else was called."""
    assert {name for name, _ in log.calls} <= {"BatchGetItem", "BatchWriteItem"}
    return sum(name == "BatchGetItem" for name, _ in log.calls), [n for name, n in log.calls if name == "BatchWriteItem"]


def test_batch_mode_reads_clocks_then_writes_25_item_chunks_and_skips_older_rows(moto_endpoint, tmp_path):
    stock = _store(tmp_path / "stock", {"type": "dynamodb"}, "stock")
    guarded = _store(tmp_path / "batch", {"type": AWS_ONLINE_STORE_TYPE, "write_mode": "batch"}, "batch")
    online = guarded._get_provider().online_store
    with CallLog(guarded) as log:
        guarded.push("toy_push", _rows(60, 10), to=PushMode.ONLINE)
    stock.push("toy_push", _rows(60, 10), to=PushMode.ONLINE)
    assert _batched(log) == (1, [25, 25, 10])
    assert _items(guarded, "batch") == _items(stock, "stock")            # Feast's items, byte for byte
    mixed = _rows(60, 20)
    mixed.loc[mixed.index < 35, "event_timestamp"] -= timedelta(days=30)    # 35 rows older than stored
    with CallLog(guarded) as log:
        guarded.push("toy_push", mixed, to=PushMode.ONLINE)
    assert _batched(log) == (1, [25])
    assert online.stats.stale == 35 and online.stats.written == 85
    got = _n(guarded, 60)
    assert got[34] == 34 * 3 + 10 and got[35] == 35 * 3 + 20


def test_batch_mode_resends_unprocessed_items(moto_endpoint, tmp_path):
    """DynamoDB may leave items of a BatchWriteItem unprocessed (throttling): they are sent again."""
    guarded = _store(tmp_path / "batch", {"type": AWS_ONLINE_STORE_TYPE, "write_mode": "batch"}, "batch")
    cfg = guarded.config.online_store
    client = guarded._get_provider().online_store._get_dynamodb_client(cfg.region, cfg.endpoint_url)
    sent = []

    def leave_half(http_response, parsed, model, **_):   # the service's answer, as throttling would shape it
        if model.name == "BatchWriteItem" and not sent:
            items = parsed_request["batch.toy"]
            parsed["UnprocessedItems"] = {"batch.toy": items[len(items) // 2:]}
        if model.name == "BatchWriteItem":
            sent.append(len(parsed_request["batch.toy"]))

    parsed_request = {}

    def remember(params, model, **_):
        if model.name == "BatchWriteItem":
            parsed_request.clear()
            parsed_request.update(params["RequestItems"])

    client.meta.events.register("provide-client-params.dynamodb.BatchWriteItem", remember)
    client.meta.events.register("after-call.dynamodb.BatchWriteItem", leave_half)
    try:
        guarded.push("toy_push", _rows(20, 0), to=PushMode.ONLINE)
    finally:
        client.meta.events.unregister("provide-client-params.dynamodb.BatchWriteItem", remember)
        client.meta.events.unregister("after-call.dynamodb.BatchWriteItem", leave_half)
    assert sent == [20, 10]
    assert _n(guarded, 20) == [i * 3 for i in range(20)]
