"""The ingester's direct online write (ingestion.push.FeastPusher -> features.online_encoding ->
the store's write_encoded) stores exactly what Feast's own push path (FeatureStore.push of the
DataFrame) stores: the same online table, byte for byte, and the same reads."""
from __future__ import annotations

import math
import random
import sqlite3
from datetime import timezone

import pandas as pd
import pytest
from feast.data_source import PushMode
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.types import Bool, Float64, Int64, String

from features import catalog as C
from features.online_encoding import value_encoder
from ingestion.push import PUSH_SOURCE, FeastPusher
from tests.eventlog import local_feature_store, random_history, replay, ts

UNTIL = ts("2025-02-20T00:00:00Z")


_PANDAS_DTYPES = {"int64": "Int64", "float64": "float64", "bool": "boolean", "string": "object"}


def rows_frame(rows: list[tuple[str, int, dict]]) -> pd.DataFrame:
    """What FeatureStore.push takes for the pusher's rows: customer_id, event_timestamp (us, UTC) and every customer-view feature."""
    data: dict[str, object] = {
        "customer_id": [r[0] for r in rows],
        "event_timestamp": pd.Series(pd.to_datetime([r[1] for r in rows], unit="us", utc=True),
                                     dtype="datetime64[us, UTC]"),
    }
    for f in C.CUSTOMER_FEATURES:
        data[f.name] = pd.Series([r[2][f.name] for r in rows], dtype=_PANDAS_DTYPES[f.dtype])
    return pd.DataFrame(data)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("enc")
    history = random_history(random.Random(9), customers=6, days=30)
    stores = [local_feature_store(root, history, UNTIL, feast_dir=name) for name in ("feast-df", "feast-direct")]
    return history, stores


def _edge_row(snap: dict) -> dict:
    """A snapshot with nulls, NaN and a negative zero in every feature type."""
    row = dict(snap)
    by_type: dict[str, list[str]] = {}
    for f in C.CUSTOMER_FEATURES:
        by_type.setdefault(f.dtype, []).append(f.name)
    for names in by_type.values():
        row[names[0]] = None
    floats = by_type["float64"]
    row[floats[1]], row[floats[2]], row[floats[3]] = math.nan, -0.0, 1e-310    # NaN, -0.0, a subnormal
    return row


def _table(store) -> list[tuple]:
    with sqlite3.connect(store.config.online_store.path) as con:
        name = f"{store.project}_{C.CUSTOMER_VIEW}"
        return con.execute(f"SELECT entity_key, feature_name, value, value_text, event_ts, created_ts FROM {name} "
                           "ORDER BY entity_key, feature_name").fetchall()


def test_direct_push_stores_what_feasts_push_stores(world):
    history, (via_df, direct) = world
    snaps = replay(history, UNTIL)
    cids = sorted(snaps)
    pusher = FeastPusher(direct)
    for k in (1, 2):   # a first push (inserts), then later rows (updates)
        rows = []
        for cid in cids:
            clocks = sorted(snaps[cid])
            clock = clocks[len(clocks) * k // 3]
            rows.append((cid, clock, snaps[cid][clock]))
        if k == 2:
            rows[0] = (rows[0][0], rows[0][1], _edge_row(rows[0][2]))
        via_df.push(PUSH_SOURCE, rows_frame(rows), to=PushMode.ONLINE)
        pusher.push(rows)
        expected = _table(via_df)
        assert len(expected) == len(cids) * len(C.CUSTOMER_FEATURES)
        assert _table(direct) == expected
    names = [f"{C.CUSTOMER_VIEW}:{f.name}" for f in C.CUSTOMER_FEATURES]
    entity_rows = [{"customer_id": c} for c in cids + ["nobody"]]
    got = [s.get_online_features(features=names, entity_rows=entity_rows).to_dict() for s in (via_df, direct)]
    assert got[0].keys() == got[1].keys()
    for key in got[0]:
        assert [repr(v) for v in got[0][key]] == [repr(v) for v in got[1][key]], key
    assert pusher.calls == 2 and pusher.rows == 2 * len(cids)


@pytest.mark.parametrize("dtype, values", [
    (Float64, [0.0, -0.0, 1.5, -2.25, 1e-310, 1e308, float("inf"), 3]),
    (Int64, [0, 1, -1, 2 ** 40, -(2 ** 63), True, 7.0]),
    (Bool, [True, False, 1, 0]),
    (String, ["", "premium", "ünïcode"]),
])
def test_value_encoding_is_feasts_proto_and_text(dtype, values):
    encode = value_encoder(dtype)
    field = {Float64: "double_val", Int64: "int64_val", Bool: "bool_val", String: "string_val"}[dtype]
    cast = {Float64: float, Int64: int, Bool: bool, String: str}[dtype]
    for v in values:
        proto = ValueProto(**{field: cast(v)})
        assert encode(v) == (proto.SerializeToString(), str(getattr(proto, field))), v
    assert encode(None) == (b"", None)


def test_bad_values_and_rows_fail_with_clear_errors(world):
    with pytest.raises(ValueError, match="fractional value 2.5"):
        value_encoder(Int64)(2.5)
    with pytest.raises(TypeError, match="no direct online encoding"):
        value_encoder(object())
    _, (_, direct) = world
    pusher = FeastPusher(direct)
    snap = replay(*[random_history(random.Random(9), customers=1, days=5), UNTIL])
    row = dict(next(iter(next(iter(snap.values())).values())))
    del row[C.CUSTOMER_FEATURES[3].name]
    with pytest.raises(KeyError, match=f"has no feature '{C.CUSTOMER_FEATURES[3].name}'"):
        pusher.push([("c1", 1, row)])
    with pytest.raises(ValueError, match="push source 'nope'"):
        FeastPusher(direct, push_source="nope").push([("c1", 1, row)])


def test_dynamodb_items_of_encoded_rows_are_feasts(world):
    from feast.infra.online_stores.dynamodb import _to_client_write_item

    from features.feast_dynamodb import encoded_item
    from features.online_encoding import RowEncoder

    history, (_, direct) = world
    snaps = replay(history, UNTIL)
    view = direct.get_feature_view(C.CUSTOMER_VIEW)
    encoder = RowEncoder(view, direct.config.entity_key_serialization_version)
    for cid in sorted(snaps)[:3]:
        clock = max(snaps[cid])
        (row,) = encoder.encode([(cid, clock + 7, _edge_row(snaps[cid][clock]))])   # a sub-second clock
        key, values, when, _ = row.to_feast(encoder.entity_key(cid))
        assert encoded_item(row) == _to_client_write_item(direct.config, key, values,
                                                          when.replace(tzinfo=timezone.utc))
