"""Training sets: labels from hand-written futures, horizon exclusion, sampling, the time split,
every entity row kept, and the quality gate stopping training on corrupted data."""
from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from core.times import DAY_US, from_us, to_us
from labels import health_score
from tests.eventlog import ev, session, ts, write_log
from training import dataset as D
from training.errors import DatasetBuildError
from training.label_join import compute_labels
from training.sampling import (
    SamplingPolicy,
    activity_start_us,
    connect_events,
    sample_entities,
)
from training.splits import SplitPolicy, assign_splits, split_boundaries

T = ts("2025-02-01T00:00:00Z")
DAY = timedelta(days=1)


def signup(cid, at, tier="standard"):
    return ev("customer_signup", at, customer_id=cid, tier=tier, acquisition_channel="paid", grade_level=7,
              subject_category="STEM", primary_subject="algebra", region="west")


def call(cid, at):
    return ev("inbound_call", at, customer_id=cid, duration_seconds=120.0, sentiment_score=-0.5,
              issue_category="billing", escalated=False)


def cancel(cid, at):
    return ev("subscription_cancelled", at, customer_id=cid)


def login(cid, at):
    return ev("login", at, customer_id=cid)


@pytest.fixture(scope="module")
def label_log(tmp_path_factory):
    """c1: two calls in (t, t+14d] (one exactly at t+14d), a call at exactly t (not future), sessions,
    a failed payment, cancellation at exactly t+30d. c2: the mirror image just outside each bound."""
    e = [signup("c1", T - 20 * DAY), signup("c2", T - 20 * DAY), signup("c3", T - 20 * DAY)]
    e += [session(T - timedelta(hours=1), rating=1.0, customer_id="c1"),   # before t: not a label input
          call("c1", T),                                                  # at t: features, not labels
          call("c1", T + DAY), call("c1", T + 14 * DAY),                  # 2 calls in (t, t+14d]
          session(T + 2 * DAY, rating=5.0, customer_id="c1"),
          session(T + 3 * DAY, rating=3.0, customer_id="c1"),
          session(T + 4 * DAY, status="no_show", customer_id="c1"),
          session(T + 5 * DAY, rating=None, customer_id="c1"),            # completed, unrated
          ev("payment_failed", T + 6 * DAY, customer_id="c1", amount=99.0),
          cancel("c1", T + 30 * DAY)]                                     # exactly at the horizon: churn
    e += [call("c2", T - 5 * DAY + timedelta(hours=3)),                           # before t: not a label input
          call("c2", T + DAY), call("c2", T + 14 * DAY + timedelta(seconds=1)),   # only 1 within 14d
          cancel("c2", T + 30 * DAY + timedelta(seconds=1))]                       # just outside 30d
    e += [login("c3", T + 40 * DAY + timedelta(hours=i)) for i in range(3)]       # data runs to t+41d
    return write_log(e, tmp_path_factory.mktemp("labels") / "events")


def rows(*pairs):
    return pd.DataFrame({"customer_id": [p[0] for p in pairs],
                         "event_timestamp": pd.to_datetime([p[1] for p in pairs], utc=True)})


def test_labels_count_only_events_strictly_after_t_within_each_horizon(label_log):
    con, end_us = connect_events(label_log)
    lab = compute_labels(con, rows(("c1", T), ("c2", T), ("c3", T), ("nobody", T)), end_us)
    assert lab["churn_30d"].tolist() == [1, 0, 0, 0]
    assert lab["ib_calls_14d"].tolist() == [1, 0, 0, 0]
    c1 = lab.iloc[0]
    assert c1["future_completed_sessions_30d"] == 3 and c1["future_rating_n_30d"] == 2
    assert c1["future_rating_sum_30d"] == 8.0 and c1["future_no_shows_30d"] == 1
    assert c1["future_inbound_calls_30d"] == 2 and c1["future_failed_payments_30d"] == 1
    # by hand: engagement 3/8, satisfaction (4-1)/4, friction (2 + 2*1 + 1)/6, not retained
    want = 100 * (0.35 * 3 / 8 + 0.25 * 0.75 + 0.20 * (1 - 5 / 6) + 0.20 * 0)
    assert c1["health_score"] == pytest.approx(want)
    # c3: no future events at all: no sessions, neutral satisfaction, no friction, retained
    assert lab.iloc[2]["health_score"] == pytest.approx(100 * (0.25 * 0.5 + 0.20 + 0.20))
    assert lab.iloc[2]["health_score"] == pytest.approx(float(health_score(0, 0, 0, 0, 0, 0, False)))
    # one second later, c1's call at t+14d is still in, the one at t+1d too; at t+1d the first call is at t
    lab2 = compute_labels(con, rows(("c1", T + DAY)), end_us)
    assert lab2["ib_calls_14d"].tolist() == [0]   # only the t+14d call is after t+1d


def test_rows_whose_horizon_passes_the_end_of_data_are_refused_not_labelled(label_log):
    con, end_us = connect_events(label_log)
    late = from_us(end_us) - timedelta(days=29)
    with pytest.raises(DatasetBuildError, match="horizon past the end of the data"):
        compute_labels(con, rows(("c3", late)), end_us)


def test_sampling_active_customers_only_and_never_past_the_horizon(label_log):
    con, end_us = connect_events(label_log)
    start = activity_start_us(con)
    policy = SamplingPolicy(cadence_days=1, warmup_days=0, event_rate=1.0)
    last = end_us - 30 * DAY_US
    got = sample_entities(con, policy, start, last)
    assert not got.duplicated(["customer_id", "event_timestamp"]).any()
    assert (got["event_timestamp"] + pd.Timedelta(days=30) <= from_us(end_us)).all()
    c1 = got[got.customer_id == "c1"]
    assert (c1["event_timestamp"] < pd.Timestamp(T + 30 * DAY)).all()   # never at/after the cancellation
    # high-signal events became rows at their own timestamps; a snapshot wins at the same instant
    reasons = dict(zip(zip(got["customer_id"], got["event_timestamp"]), got["sample_reason"]))
    assert reasons[("c2", pd.Timestamp(T - 5 * DAY + timedelta(hours=3)))] == "event:inbound_call"
    assert reasons[("c1", pd.Timestamp(T))] == "snapshot"
    assert reasons[("c1", pd.Timestamp(T - 20 * DAY + 19 * DAY))] == "snapshot"   # daily at 00:00 UTC
    assert ("c1", pd.Timestamp(T - 20 * DAY)) not in reasons          # before the activity start
    # deterministic: the same log, policy and seed give the same rows
    pd.testing.assert_frame_equal(got, sample_entities(con, policy, start, last))
    none = sample_entities(con, SamplingPolicy(cadence_days=1, warmup_days=0, event_rate=0.0), start, last)
    assert set(none["sample_reason"]) == {"snapshot"}


def test_time_split_leaves_a_label_horizon_between_train_and_holdout():
    rng = np.random.default_rng(0)
    first = to_us(pd.Timestamp("2025-01-15", tz="UTC"))
    last = to_us(pd.Timestamp("2025-04-01", tz="UTC"))
    for val_by in ("customer", "time"):
        policy = SplitPolicy(val_by=val_by, holdout_fraction=0.5 if val_by == "time" else 0.35)
        if val_by == "time":
            with pytest.raises(DatasetBuildError, match="too short"):
                split_boundaries(first, last, SplitPolicy(val_by="time", gap_days=40))
        b = split_boundaries(first, last, policy)
        n = 5000
        frame = pd.DataFrame({"customer_id": [f"c{i}" for i in rng.integers(0, 300, n)],
                              "event_timestamp": pd.to_datetime(rng.integers(first, last + 1, n), unit="us", utc=True)})
        split = assign_splits(frame, b, policy)
        f = frame.assign(split=split)
        train_t = f.loc[f.split == "train", "event_timestamp"]
        hold = f[f.split.isin(["validation", "test"])]
        assert len(train_t) and len(hold) and f.split.isna().any()          # rows in the gap are dropped
        # every train label window (t, t+30d] ends at or before the first holdout row
        assert train_t.max() + pd.Timedelta(days=30) <= hold["event_timestamp"].min()
        if val_by == "customer":   # no customer has rows in both validation and test
            v = set(hold.loc[hold.split == "validation", "customer_id"])
            assert v and not v & set(hold.loc[hold.split == "test", "customer_id"])
        else:
            vt = f.loc[f.split == "validation", "event_timestamp"]
            assert vt.max() + pd.Timedelta(days=30) <= f.loc[f.split == "test", "event_timestamp"].min()


def test_the_gate_stops_training_and_names_the_failing_checks(tmp_path):
    from testing.training_data import make_synthetic_dataset, write_dataset
    from training.sagemaker_entry import QualityGateError, run_training

    df, schema = make_synthetic_dataset(600, seed=3)
    df.loc[5, "churn_30d"] = 2                   # not a binary label
    df.loc[7, "health_score"] = 140.0            # outside 0-100
    df.loc[9, "event_timestamp"] = None          # a row without its as-of time
    write_dataset(df, schema, tmp_path / "ds")
    with pytest.raises(QualityGateError) as err:
        run_training(tmp_path / "ds", tmp_path / "model", tmp_path / "report", {"epochs": 1, "baselines": False},
                     log=lambda s: None)
    msg = str(err.value)
    assert "training stopped before fitting" in msg
    assert "column=churn_30d" in msg and "column=health_score" in msg and "column=event_timestamp" in msg
    assert not (tmp_path / "model" / "model.pt").exists()
    assert (tmp_path / "report" / "quality_report.html").is_file()
    # the same data, clean, trains
    df2, _ = make_synthetic_dataset(600, seed=3)
    write_dataset(df2, schema, tmp_path / "ok")
    run_training(tmp_path / "ok", tmp_path / "m2", tmp_path / "r2", {"epochs": 1, "baselines": False},
                 log=lambda s: None)
    assert (tmp_path / "m2" / "model.pt").is_file()


def test_the_gate_catches_a_feature_row_from_the_future_and_bad_feature_values():
    from training.quality import check_training_set

    schema = D.feature_schema_dict()
    n = 40
    df = pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)],
                       "event_timestamp": pd.Timestamp("2025-03-01", tz="UTC") + pd.to_timedelta(np.arange(n), "h"),
                       "split": ["train"] * 20 + ["validation"] * 10 + ["test"] * 10,
                       "churn_30d": [0, 1] * 20, "ib_calls_14d": [1, 0] * 20, "health_score": 50.0})
    cols = {f["name"]: (["standard"] * n if f["name"] == "subscription_tier" else
                        [None] * n if f["kind"] in ("categorical", "boolean") else 1.0 if "rate" in f["name"] else 0)
            for f in schema["features"]}
    df = pd.concat([df, pd.DataFrame(cols, index=df.index)], axis=1)
    df["customer_features__ts"] = df["event_timestamp"]
    assert check_training_set(df, schema).success
    bad = df.copy()
    bad.loc[3, "customer_features__ts"] = bad.loc[3, "event_timestamp"] + pd.Timedelta(seconds=1)
    bad.loc[4, "session_count_7d"] = -1
    bad.loc[5, "payment_success_rate_30d"] = 1.5
    bad.loc[6, "subscription_tier"] = "platinum"
    r = check_training_set(bad, schema, raise_on_failure=False)
    failed = {o.column for o in r.failures}
    assert {"event_timestamp, customer_features__ts", "session_count_7d", "payment_success_rate_30d",
            "subscription_tier"} <= failed, r.summary()
