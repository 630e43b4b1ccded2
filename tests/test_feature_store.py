"""The Feast repo over the backfill: point-in-time retrieval that never drops a row,
online values after materialize (including decay), and the AWS profile on moto
agreeing with the embedded one."""
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import aws, storage
from features import catalog as C
from features import store as FS
from features.backfill import run_backfill
from features.retrieval import historical_features, model_columns, online_features
from tests.eventlog import random_history, same_value, ts, write_log

UNTIL = ts("2025-03-10T00:00:00Z")
REPO = Path(__file__).resolve().parents[1] / "feature_repo"


@pytest.fixture(scope="module")
def history():
    return random_history(random.Random(11), customers=10, days=45)


@pytest.fixture(scope="module")
def local(tmp_path_factory, history):
    root = tmp_path_factory.mktemp("local")
    res = run_backfill(write_log(history, root / "events"), str(root / "features"), until=UNTIL, progress=False)
    store = FS.open_store("local", root / "state")
    FS.apply(store, str(root / "features"))
    return store, res


def entity_rows():
    rows = [("c0", "2024-12-01T00:00:00Z"),      # before any data: nulls, kept
            ("c1", "2025-01-05T12:00:00Z"), ("c1", "2025-01-05T12:00:00Z"),  # duplicates stay two rows
            ("c2", "2025-02-01T00:00:00Z"),
            ("nobody", "2025-01-10T00:00:00Z"),  # unknown customer: nulls, kept
            ("c3", "2025-03-09T23:00:00Z")]
    rng = random.Random(3)
    rows += [(f"c{rng.randrange(10)}", pd.Timestamp("2025-01-01", tz="UTC") + pd.Timedelta(hours=rng.randrange(68 * 24)))
             for _ in range(40)]
    return pd.DataFrame({"customer_id": [r[0] for r in rows],
                         "event_timestamp": pd.to_datetime([str(r[1]) for r in rows], utc=True, format="ISO8601")})


def as_of(table: pd.DataFrame, key: str, value, t):
    rows = table[(table[key] == value) & (table.event_timestamp <= t)]
    return None if rows.empty else rows.sort_values("event_timestamp").iloc[-1]


def test_historical_returns_every_row_with_point_in_time_values(local):
    store, res = local
    ent = entity_rows()
    ent["label"] = range(len(ent))
    out = historical_features(store, ent)
    assert len(out) == len(ent)
    assert list(out["label"]) == list(ent["label"])          # input order, extra columns kept
    assert set(model_columns()) <= set(out.columns) and len(model_columns()) > 140
    snaps = pd.read_parquet(res.outputs[C.CUSTOMER_VIEW])
    tutors = pd.read_parquet(res.outputs[C.TUTOR_VIEW])
    market = pd.read_parquet(res.outputs[C.MARKETPLACE_VIEW])
    checked = 0
    for i, row in out.iterrows():
        t = row["event_timestamp"]
        want = as_of(snaps, "customer_id", row["customer_id"], t)
        if want is None:
            assert pd.isna(row["session_count_7d"]) and pd.isna(row["days_since_signup"])
            continue
        for name in ("session_count_7d", "avg_session_rating_30d", "payment_amount_14d", "total_spend_lifetime",
                     "tutor_consistency_score", "tutor_switch_count_30d", "subscription_tier"):
            a, b = row[name], want[name]
            assert same_value(a, b, rel=1e-12), (i, name, a, b)
        assert row["tutor_id"] == want["primary_tutor_id"] or (row["tutor_id"] is None and want["primary_tutor_id"] is None)
        if want["primary_tutor_id"] is not None:
            tw = as_of(tutors, "tutor_id", want["primary_tutor_id"], t)
            a = row["tutor_avg_rating_30d"]
            b = None if tw is None else tw["tutor_avg_rating_30d"]
            assert (pd.isna(a) and (b is None or pd.isna(b))) or a == pytest.approx(b)
        mw = as_of(market, "marketplace_id", C.MARKETPLACE_KEY, t)
        assert (mw is None and pd.isna(row["tutor_count_algebra"])) or row["tutor_count_algebra"] == mw["tutor_count_algebra"]
        expect_days = (t - pd.Timestamp(int(want["signup_ts"]), unit="us", tz="UTC")).total_seconds() / 86400 if not pd.isna(want["signup_ts"]) else np.nan
        assert (pd.isna(expect_days) and pd.isna(row["days_since_signup"])) or row["days_since_signup"] == pytest.approx(expect_days)
        assert row["customer_tenure_days"] == np.floor(row["days_since_signup"]) or pd.isna(row["days_since_signup"])
        for rate, total in (("messages_per_tenure_day", "total_messages_lifetime"),
                            ("sessions_per_tenure_day", "total_sessions_lifetime")):
            if pd.isna(expect_days):
                assert pd.isna(row[rate])
            else:  # the signup day counts: a customer seen on their first day divides by 1
                assert row[rate] == pytest.approx(want[total] / (np.floor(expect_days) + 1), rel=1e-12)
        if not pd.isna(row["rating_trend"]):
            assert row["rating_trend"] == pytest.approx(want["avg_session_rating_7d"] - want["avg_session_rating_30d"])
        assert row["engagement_trend"] == want["login_count_7d"] - want["login_count_14d"]
        checked += 1
    assert checked > 30


def test_online_after_materialize_equals_historical_and_has_decayed(local):
    store, res = local
    store.materialize(start_date=ts("2024-11-01T00:00:00Z"), end_date=UNTIL)
    customers = [f"c{i}" for i in range(10)]
    online = online_features(store, customers, pd.Timestamp(UNTIL))
    hist = historical_features(store, pd.DataFrame({"customer_id": customers,
                                                    "event_timestamp": pd.Timestamp(UNTIL)}))
    for name in model_columns():
        a, b = online[name].to_numpy(dtype=object), hist[name].to_numpy(dtype=object)
        for x, y in zip(a, b):
            assert same_value(x, y), (name, x, y)
    # The history ends 45 days in and UNTIL is ~68 days in: every 7d window has decayed to zero online.
    assert (online["login_count_7d"] == 0).all() and (online["session_count_7d"] == 0).all()
    assert online["avg_session_rating_7d"].isna().all()
    assert (online["total_sessions_lifetime"] > 0).any()


def test_bad_entity_frames_are_rejected(local):
    store, _ = local
    with pytest.raises(ValueError, match="missing column"):
        historical_features(store, pd.DataFrame({"customer_id": ["c1"]}))
    with pytest.raises(ValueError, match="timezone-aware"):
        historical_features(store, pd.DataFrame({"customer_id": ["c1"], "event_timestamp": [pd.Timestamp("2025-01-01")]}))


def test_aws_profile_on_moto_agrees_with_embedded(local, history, moto_endpoint, tmp_path):
    store_local, _ = local
    bucket = "mhp-test"
    aws.ensure_bucket(bucket)
    data = f"s3://{bucket}/ws"
    write_log(history, tmp_path / "events")
    for f in sorted((tmp_path / "events").rglob("*.parquet")):    # the event log on S3, as the simulator writes it
        storage.write_parquet(pd.read_parquet(f), storage.join(data, "events", str(f.relative_to(tmp_path / "events"))))
    res = run_backfill(storage.join(data, "events"), storage.join(data, "features"), until=UNTIL, progress=False)
    assert res.outputs[C.CUSTOMER_VIEW].startswith("s3://")
    store = FS.open_store("aws-local", tmp_path / "state", data)
    FS.apply(store, storage.join(data, "features"))
    assert store.config.online_store.type == FS.AWS_ONLINE_STORE_TYPE
    store.materialize(start_date=ts("2024-11-01T00:00:00Z"), end_date=UNTIL)
    ent = entity_rows()
    hist_aws, hist_local = historical_features(store, ent), historical_features(store_local, ent)
    pd.testing.assert_frame_equal(hist_aws[model_columns()], hist_local[model_columns()], check_dtype=False)
    customers = [f"c{i}" for i in range(10)]
    store_local.materialize(start_date=ts("2024-11-01T00:00:00Z"), end_date=UNTIL)
    on_aws = online_features(store, customers, pd.Timestamp(UNTIL))
    on_local = online_features(store_local, customers, pd.Timestamp(UNTIL))
    pd.testing.assert_frame_equal(on_aws[model_columns()], on_local[model_columns()], check_dtype=False)
    tables = aws.boto3_client("dynamodb").list_tables()["TableNames"]
    assert any(C.CUSTOMER_VIEW in t for t in tables)


def test_feast_cli_apply_on_the_checked_in_repo(tmp_path):
    """`cd feature_repo && feast apply` works (a copy, so the working tree stays clean)."""
    repo = tmp_path / "feature_repo"
    shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    feast = Path(sys.executable).with_name("feast")
    done = subprocess.run([str(feast), "apply"], cwd=repo, capture_output=True, text=True, timeout=240,
                          env={**__import__("os").environ, "MHP_FEATURES_URI": str(tmp_path / "features")})
    assert done.returncode == 0, done.stderr[-3000:]
    listed = subprocess.run([str(feast), "feature-services", "list"], cwd=repo, capture_output=True, text=True,
                            timeout=240)
    assert C.FEATURE_SERVICE in listed.stdout
