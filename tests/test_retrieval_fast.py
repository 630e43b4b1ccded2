"""The fast online path (features.retrieval.online_feature_dict / online_features) against the
reference, Feast's own ``store.get_online_features(features=<churn_model_v1>, ...)``: same columns in
the same order, same values of the same Python types, for known and unknown customers, customers
without a primary tutor, nulls, duplicates and sub-second request times; on SQLite and on
DynamoDB (moto); and a re-apply of the registry is picked up."""
import math
import random

import pandas as pd
import pytest

from core import aws, storage
from features import catalog as C
from features import feast_objects
from features import retrieval as R
from features import store as FS
from features.backfill import run_backfill
from tests.eventlog import ev, local_feature_store, random_history, ts, write_log

UNTIL = ts("2025-03-10T00:00:00Z")
MATERIALIZE_FROM = ts("2024-11-01T00:00:00Z")


def _history():
    events = random_history(random.Random(23), customers=25, days=45)
    # a customer without any completed session (no primary tutor) and without payments or calls
    events += [ev("customer_signup", "2025-01-03T08:00:00.250001Z", customer_id="lonely", tier="budget",
                  acquisition_channel="organic", grade_level=5, subject_category="STEM",
                  primary_subject="algebra", region="west"),
               ev("login", "2025-02-20T10:00:00.000001Z", customer_id="lonely")]
    return events


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast")
    store = local_feature_store(root, _history(), UNTIL, feast_dir="state")
    store.materialize(start_date=MATERIALIZE_FROM, end_date=UNTIL)
    return store, root


def feast_reference(store, ids, t: pd.Timestamp) -> dict:
    """Feast's own path, spelled out: the primary tutor and subject, then get_online_features on the service."""
    rows = [{"customer_id": c} for c in ids]
    first = store.get_online_features(features=["customer_features:primary_tutor_id",
                                                "customer_features:primary_subject"], entity_rows=rows).to_dict()
    t_us = (t - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(microseconds=1)
    rows = [{"customer_id": c, "tutor_id": p if p is not None else "", "subject": s if s is not None else "",
             "marketplace_id": C.MARKETPLACE_KEY, C.REQUEST_TIME_FIELD: int(t_us)}
            for c, p, s in zip(ids, first["primary_tutor_id"], first["primary_subject"])]
    out = store.get_online_features(features=store.get_feature_service(C.FEATURE_SERVICE),
                                    entity_rows=rows).to_dict()
    out["tutor_id"] = [None if x == "" else x for x in out["tutor_id"]]
    out["subject"] = [None if x == "" else x for x in out["subject"]]
    return out


def _identical(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def assert_same_as_feast(store, ids, t):
    fast = R.online_feature_dict(store, ids, t)
    ref = feast_reference(store, ids, t)
    assert list(fast) == list(ref)                                   # same columns, same order
    bad = [(k, c, a, b) for k in ref for c, a, b in zip(ids, fast[k], ref[k]) if not _identical(a, b)]
    assert not bad, bad[:10]
    ref_df = pd.DataFrame(ref)
    pd.testing.assert_frame_equal(R.online_features(store, ids, t), ref_df)      # the frame too
    rows = R.online_feature_rows(store, ids, t)
    assert [list(r) for r in rows] == [list(ref)] * len(ids)
    assert all(_identical(r[k], ref[k][i]) for i, r in enumerate(rows) for k in ref)
    return fast


def test_fast_path_is_feasts_get_online_features(local):
    store, _ = local
    assert R._plan_for(store) is not None, "the fast path should cover churn_model_v1"
    ids = [f"c{i}" for i in range(25)] + ["lonely", "nobody", "c3", "", "c7", "nobody"]
    times = [pd.Timestamp(UNTIL) - pd.Timedelta(microseconds=123_457),        # sub-second
             pd.Timestamp("2025-03-01T00:00:00.000001Z"),
             pd.Timestamp(UNTIL).tz_convert("America/New_York"),              # any tz-aware time
             pd.Timestamp("2024-12-31T23:59:59.999999Z")]                     # before the signups
    for t in times:
        got = assert_same_as_feast(store, ids, t)
        assert len(got["customer_id"]) == len(ids) and got["customer_id"] == ids
    assert len([c for c in got if c in set(R.model_columns())]) == len(R.model_columns()) > 140
    # the cases are there: no primary tutor, unknown customers, nulls
    i_lonely, i_nobody = ids.index("lonely"), ids.index("nobody")
    assert got["tutor_id"][i_lonely] is None and got["tutor_id"][i_nobody] is None
    assert got["days_since_signup"][i_lonely] is not None and got["days_since_last_payment"][i_lonely] is None
    assert got["session_count_7d"][i_nobody] is None and got["tutor_avg_rating_30d"][i_lonely] is None
    assert any(t is not None for t in got["tutor_id"])
    # single customers, each one alone (the serving case)
    for c in ["c0", "lonely", "nobody"]:
        assert_same_as_feast(store, [c], times[0])


def test_fast_path_equals_historical_at_a_sub_second_time(local):
    store, _ = local
    ids = [f"c{i}" for i in range(25)] + ["lonely", "nobody"]
    # the online store holds the latest rows (the UNTIL tick): equal to offline at or after it
    t = pd.Timestamp(UNTIL) + pd.Timedelta(microseconds=123_457)
    online = R.online_features(store, ids, t)
    hist = R.historical_features(store, pd.DataFrame({"customer_id": ids, "event_timestamp": t}))
    for name in R.model_columns() + ["tutor_id"]:
        for c, a, b in zip(ids, online[name].to_numpy(dtype=object), hist[name].to_numpy(dtype=object)):
            na_a, na_b = a is None or pd.isna(a), b is None or pd.isna(b)
            assert (na_a and na_b) or (not na_a and not na_b and a == b), (name, c, a, b)


def test_request_time_must_be_tz_aware_and_ids_non_empty(local):
    store, _ = local
    with pytest.raises(ValueError, match="timezone-aware"):
        R.online_features(store, ["c1"], pd.Timestamp("2025-03-01"))
    with pytest.raises(ValueError, match="at least one"):
        R.online_features(store, [], pd.Timestamp(UNTIL))


def test_a_reapply_is_picked_up(local):
    """A changed service (here: without the marketplace view), applied in this process or by
    another one, is used on the next call; applying the original brings it back."""
    store, root = local
    t = pd.Timestamp(UNTIL)
    before = R.online_feature_dict(store, ["c1"], t)
    assert "tutor_count_algebra" in before
    objs = feast_objects.build(str(root / "features"))
    service = objs[C.FEATURE_SERVICE]
    slim = type(service)(name=service.name, features=[objs[C.CUSTOMER_VIEW][["session_count_7d"]],
                                                      objs[C.RECENCY_VIEW]])
    try:
        other = FS.open_store("local", root / "state")   # another client of the same registry
        other.apply([slim])
        after = assert_same_as_feast(store, ["c1", "nobody"], t)   # seen through the registry file
        assert "tutor_count_algebra" not in after and "days_since_signup" in after
        assert "session_velocity_change" not in after
        store.apply([service])                                   # in-process apply
        assert list(assert_same_as_feast(store, ["c1"], t)) == list(before)
    finally:
        store.apply([service])
        R.refresh(store)
    assert list(R.online_feature_dict(store, ["c1"], t)) == list(before)


def test_fast_path_on_dynamodb_equals_feast(moto_endpoint, tmp_path):
    bucket = "mhp-fast"
    aws.ensure_bucket(bucket)
    data = f"s3://{bucket}/ws"
    write_log(_history(), tmp_path / "events")
    for f in sorted((tmp_path / "events").rglob("*.parquet")):
        storage.write_parquet(pd.read_parquet(f), storage.join(data, "events", str(f.relative_to(tmp_path / "events"))))
    run_backfill(storage.join(data, "events"), storage.join(data, "features"), until=UNTIL, progress=False)
    store = FS.open_store("aws-local", tmp_path / "state", data)
    FS.apply(store, storage.join(data, "features"))
    assert store.config.online_store.type == FS.AWS_ONLINE_STORE_TYPE
    store.materialize(start_date=MATERIALIZE_FROM, end_date=UNTIL)
    assert R._plan_for(store) is not None
    ids = [f"c{i}" for i in range(25)] + ["lonely", "nobody", "c3"]
    got = assert_same_as_feast(store, ids, pd.Timestamp(UNTIL) - pd.Timedelta(microseconds=7))
    assert got["tutor_id"][ids.index("lonely")] is None
    assert_same_as_feast(store, ["c2"], pd.Timestamp(UNTIL))
