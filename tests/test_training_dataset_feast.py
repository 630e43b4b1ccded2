"""Training sets through Feast: no leakage from the future, every entity row kept, and
`mhp dataset` + `mhp train` on a small simulation."""
from __future__ import annotations

import json
import random
from datetime import timedelta

import pandas as pd
import pytest

from core.times import DAY_US
from features import catalog as C
from features.retrieval import model_columns
from tests.eventlog import ev, local_feature_store, random_history, ts
from training import dataset as D
from training.label_join import compute_labels
from training.sampling import (
    SamplingPolicy,
    activity_start_us,
    connect_events,
    sample_entities,
)
from training.splits import SplitPolicy, assign_splits, split_boundaries

UNTIL = ts("2025-03-10T00:00:00Z")
T = ts("2025-01-25T00:00:00Z")


def _store(root, events):
    return str(root / "events"), local_feature_store(root, events, UNTIL)


def _alter_future(events, t):
    """Every event after t: a third dropped, a third shifted later, and new calls + a cancellation."""
    rng = random.Random(1)
    out = []
    for e in events:
        if e.timestamp <= t:
            out.append(e)
        elif rng.random() < 1 / 3:
            continue
        elif rng.random() < 0.5:
            out.append(e.model_copy(update={"timestamp": min(e.timestamp + timedelta(days=2, hours=5),
                                                             UNTIL - timedelta(seconds=1))}))
        else:
            out.append(e)
    for c in range(6):
        for k in (1, 2, 3):
            out.append(ev("inbound_call", t + timedelta(hours=7 * k, seconds=1), customer_id=f"c{c}",
                          duration_seconds=60.0, sentiment_score=-0.9, issue_category="billing", escalated=True))
    out.append(ev("subscription_cancelled", t + timedelta(days=3), customer_id="c0"))
    return out


@pytest.fixture(scope="module")
def history():
    return random_history(random.Random(5), customers=6, days=60)


@pytest.fixture(scope="module")
def original(tmp_path_factory, history):
    return _store(tmp_path_factory.mktemp("orig"), history)


def _entity(times):
    return pd.DataFrame({"customer_id": [f"c{c}" for t in times for c in range(6)],
                         "event_timestamp": pd.to_datetime([str(t) for t in times for _ in range(6)], utc=True)})


def test_features_never_depend_on_events_after_t_but_labels_do(tmp_path, original, history):
    uri_a, store_a = original
    uri_b, store_b = _store(tmp_path, _alter_future(history, T))
    ent = _entity([T - timedelta(days=3, hours=5), T - timedelta(seconds=1), T])
    fa = D.retrieve_features(store_a, ent)
    fb = D.retrieve_features(store_b, ent)
    assert list(fa.columns) == model_columns() and len(fa) == len(ent)
    assert fa.notna().any(axis=None)
    pd.testing.assert_frame_equal(fa, fb, check_exact=True)
    # ... while the labels of the rows at t, which look at (t, t+30d], do change
    at_t = ent[ent.event_timestamp == pd.Timestamp(T)]
    la = compute_labels(connect_events(uri_a, UNTIL)[0], at_t)
    lb = compute_labels(connect_events(uri_b, UNTIL)[0], at_t)
    assert lb["ib_calls_14d"].tolist() == [1] * 6 and lb["churn_30d"].iloc[0] == 1
    assert not la[["churn_30d", "ib_calls_14d", "health_score"]].equals(lb[["churn_30d", "ib_calls_14d", "health_score"]])


def test_every_entity_row_is_kept_in_order_with_its_labels_and_features(tmp_path, original):
    uri, store = original
    # build against the original's own feature tables
    features_uri = str(store.repo_path).replace("feast", "features")
    res = D.build_training_set(uri, features_uri, store, tmp_path / "ds", data_end=UNTIL,
                               sampling=SamplingPolicy(cadence_days=2, warmup_days=0, event_rate=0.5, seed=3),
                               split=SplitPolicy(holdout_fraction=0.4), gate=False, progress=False, chunk_rows=8)
    df = pd.read_parquet(tmp_path / "ds" / D.DATASET_FILE)
    meta = json.loads((tmp_path / "ds" / D.METADATA_FILE).read_text())
    assert len(df) == meta["rows"]["total"] == meta["rows"]["sampled"] - meta["rows"]["dropped_in_gaps"]
    assert len(df) == len(res.frame) > 20                      # several retrieval chunks
    assert {"train", "validation", "test"} == set(df["split"])
    # same rows as sampling them directly, in the same order (nothing dropped or reordered by the join)
    con, end_us = connect_events(uri, UNTIL)
    start = activity_start_us(con)
    sampled = sample_entities(con, SamplingPolicy(cadence_days=2, warmup_days=0, event_rate=0.5, seed=3),
                                start, end_us - 30 * DAY_US)
    kept = sampled[assign_splits(sampled, split_boundaries(start, end_us - 30 * DAY_US,
                                                               SplitPolicy(holdout_fraction=0.4)),
                                   SplitPolicy(holdout_fraction=0.4)).notna()].reset_index(drop=True)
    pd.testing.assert_frame_equal(df[["customer_id", "event_timestamp"]], kept[["customer_id", "event_timestamp"]])
    # features agree with retrieving them one row at a time; labels with labelling them one at a time
    for i in (0, len(df) // 2, len(df) - 1):
        one = D.retrieve_features(store, df.iloc[[i]][["customer_id", "event_timestamp"]])
        for c in ("session_count_7d", "days_since_last_login", "tutor_avg_rating_30d", "subscription_tier"):
            a, b = one.iloc[0][c], df.iloc[i][c]
            assert (pd.isna(a) and pd.isna(b)) or a == pytest.approx(b) if not isinstance(a, str) else a == b
        lab = compute_labels(con, df.iloc[[i]][["customer_id", "event_timestamp"]])
        assert lab.iloc[0]["health_score"] == pytest.approx(df.iloc[i]["health_score"])
    assert (df["customer_features__ts"] <= df["event_timestamp"]).all()
    assert json.loads((tmp_path / "ds" / D.SCHEMA_FILE).read_text())["feature_service"] == "churn_model_v1"


def test_cli_dataset_then_train_on_a_small_simulation(tmp_path, capsys):
    from mhp.cli import main

    ws = tmp_path / "ws"
    assert main(["simulate", "--customers", "150", "--days", "80", "--seed", "3", "--out", str(ws),
                 "--no-progress"]) == 0
    assert main(["dataset", "--workspace", str(ws), "--cadence-days", "7", "--oracle-paths", "10",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "quality gate training_set_churn_model_v1: passed" in out and "next: mhp train" in out
    ds = ws / "dataset"
    df = pd.read_parquet(ds / "dataset.parquet")
    meta = json.loads((ds / "metadata.json").read_text())
    assert meta["feature_service"] == "churn_model_v1" and meta["rows"]["total"] == len(df)
    assert meta["split_boundaries"]["train_end"] < meta["split_boundaries"]["holdout_start"]
    hold = df["split"] != "train"
    assert df.loc[hold, "oracle_churn_30d"].notna().all() and df.loc[~hold, "oracle_churn_30d"].isna().all()
    assert ((df["event_timestamp"] + pd.Timedelta(days=30)) <= pd.Timestamp(meta["data_end"])).all()
    # feature tables written by an older catalog (a column missing) are rebuilt, not fed to Feast
    table = ws / "features" / f"{C.CUSTOMER_VIEW}.parquet"
    pd.read_parquet(table).drop(columns=["total_messages_lifetime"]).to_parquet(table)
    assert main(["dataset", "--workspace", str(ws), "--cadence-days", "7", "--oracle-paths", "10",
                 "--no-progress"]) == 0
    assert "predate the catalog (missing total_messages_lifetime)" in capsys.readouterr().out
    assert "total_messages_lifetime" in pd.read_parquet(table).columns
    assert pd.read_parquet(ds / "dataset.parquet").equals(df)
    # a bad argument names the field
    assert main(["dataset", "--workspace", str(ws), "--cadence-days", "0"]) == 2
    assert "--cadence-days" in capsys.readouterr().err
    assert main(["train", "--dataset", str(ds), "--out", str(ws / "model"), "--epochs", "2", "--no-baselines"]) == 0
    out = capsys.readouterr().out
    assert "passed" in out and "churn_risk_30d" in out and (ws / "model" / "model.tar.gz").is_file()
    assert "oracle" in (ws / "model" / "report" / "report.md").read_text()
