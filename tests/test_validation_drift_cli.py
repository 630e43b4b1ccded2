"""Serving drift (PSI) and the `mhp validate` / `mhp drift` commands."""
import json

import numpy as np
import pandas as pd
import pytest

from mhp.cli import main
from testing.validation_frames import make_event_log, make_training_set
from validation.drift import drift_report, plot_drift
from validation.specs import ColumnSpec

SUBJECTS = ["algebra", "physics", "english", "chemistry"]


def _served(n, seed, rating_shift=0.0, subject_p=(0.4, 0.3, 0.2, 0.1)):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(n)],
        "request_time": pd.Timestamp("2025-03-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 86400, n), unit="s"),
        "avg_rating_30d": np.where(rng.random(n) < 0.1, np.nan, np.clip(rng.normal(4.2 - rating_shift, 0.5, n), 1, 5)),
        "sessions_7d": rng.poisson(3, n),
        "primary_subject": rng.choice(SUBJECTS, n, p=list(subject_p)),
    })


@pytest.fixture(scope="module")
def reference():
    return _served(20000, 0)


def test_drift_quiet_on_fresh_sample(reference):
    table, _ = drift_report(reference, _served(5000, 1))
    assert set(table["feature"]) == {"avg_rating_30d", "sessions_7d", "primary_subject"}  # keys excluded
    assert (table["psi"] < 0.1).all() and (table["status"] == "stable").all()


def test_drift_fires_on_shift(reference, tmp_path):
    shifted = _served(5000, 2, rating_shift=0.5)
    table, detail = drift_report(reference, shifted)
    assert table.iloc[0]["feature"] == "avg_rating_30d" and table.iloc[0]["status"] == "drift"
    png = plot_drift(detail, table, tmp_path / "d.png")
    assert png.stat().st_size > 1000


def test_drift_fires_when_a_category_loses_half_its_mass(reference):
    # a subject losing half its tutors: half its bookings go elsewhere
    table, _ = drift_report(reference, _served(5000, 3, subject_p=(0.2, 0.4, 0.27, 0.13)))
    row = table.set_index("feature").loc["primary_subject"]
    assert row["psi"] >= 0.1 and row["status"] in ("moderate", "drift")
    assert table.iloc[0]["feature"] == "primary_subject"


def test_drift_counts_a_feature_going_missing(reference):
    srv = _served(5000, 4)
    srv.loc[srv.index[:2500], "sessions_7d"] = np.nan
    table, _ = drift_report(reference, srv)
    assert table.set_index("feature").loc["sessions_7d", "status"] == "drift"


# ---------------------------------------------------------------- CLI

def test_cli_validate_events(tmp_path, capsys):
    log = make_event_log(500, seed=2)
    log.to_parquet(tmp_path / "events.parquet")
    report = tmp_path / "r.html"
    assert main(["validate", "events", "--input", str(tmp_path / "events.parquet"), "--report", str(report),
                 "--start", "2025-01-01T00:00:00Z", "--end", "2025-12-31T00:00:00Z", "--engine", "duckdb"]) == 0
    assert "passed" in capsys.readouterr().out and report.exists()
    log.loc[log.index[3], "event_id"] = log.loc[log.index[2], "event_id"]
    log.to_parquet(tmp_path / "bad.parquet")
    assert main(["validate", "events", "--input", str(tmp_path / "bad.parquet"), "--report", str(report),
                 "--engine", "duckdb"]) == 1
    err = capsys.readouterr().err
    assert "expect_column_values_to_be_unique" in err and "event_id" in err


def test_cli_validate_features_and_dataset(tmp_path, capsys):
    specs = [ColumnSpec("sessions_7d", "count", nullable=False), ColumnSpec("last_session__ts", "timestamp")]
    (tmp_path / "specs.json").write_text(json.dumps([{"name": "sessions_7d", "kind": "count", "nullable": False},
                                                     {"name": "last_session__ts", "kind": "timestamp"}]))
    ds = make_training_set(specs, 600, seed=1)
    ds.to_parquet(tmp_path / "ds.parquet")
    common = ["--report", str(tmp_path / "r.html")]
    assert main(["validate", "features", "--input", str(tmp_path / "ds.parquet"),
                 "--specs", str(tmp_path / "specs.json"), *common]) == 0
    assert main(["validate", "dataset", "--input", str(tmp_path / "ds.parquet"), "--min-rows", "train=100",
                 "--label-rate", "churn_30d=0.01:0.5", *common]) == 0
    assert main(["validate", "dataset", "--input", str(tmp_path / "ds.parquet"), "--min-rows", "train=100000",
                 *common]) == 1
    assert "expect_table_row_count_to_be_between" in capsys.readouterr().err


@pytest.mark.parametrize("argv, needle", [
    (["validate", "events", "--input", "/no/such/file.parquet"], "--input"),
    (["validate", "events", "--input", "{log}", "--start", "yesterday"], "--start"),
    (["validate", "events", "--input", "{log}", "--start", "2025-01-01T00:00:00"], "timezone"),
    (["validate", "dataset", "--input", "{log}", "--label-rate", "churn_30d=0.5:0.1"], "--label-rate"),
    (["validate", "dataset", "--input", "{log}", "--min-rows", "holdout=5"], "holdout"),
    (["validate", "features", "--input", "{log}", "--specs", "/no/specs.json"], "--specs"),
    (["drift", "--reference", "{log}", "--serving", "/no/log.jsonl"], "--serving"),
])
def test_cli_bad_arguments_exit_2(tmp_path, capsys, argv, needle):
    log = tmp_path / "x.parquet"
    make_event_log(20).to_parquet(log)
    assert main([a.replace("{log}", str(log)) for a in argv]) == 2
    assert needle in capsys.readouterr().err


def test_cli_features_without_specs_names_the_catalog(tmp_path, capsys):
    make_event_log(20).to_parquet(tmp_path / "x.parquet")
    rc = main(["validate", "features", "--input", str(tmp_path / "x.parquet"), "--report", str(tmp_path / "r.html")])
    err = capsys.readouterr().err
    if rc == 2:
        assert "catalog" in err and "--specs" in err


def test_cli_drift(tmp_path, capsys, reference):
    reference.to_parquet(tmp_path / "ref.parquet")
    served = _served(3000, 5, rating_shift=0.6)
    served.assign(request_time=served["request_time"].astype(str)).to_json(
        tmp_path / "serving.jsonl", orient="records", lines=True)
    assert main(["drift", "--reference", str(tmp_path / "ref.parquet"), "--serving", str(tmp_path / "serving.jsonl"),
                 "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "1 drifted" in lines[0] and lines[1] == "drifted (worst 1):" and "avg_rating_30d" in lines[2]
    assert (tmp_path / "out" / "drift.png").exists() and (tmp_path / "out" / "drift.csv").exists()


# ---------------------------------------------------------------- types through the JSONL path, roles

def _every_kind(n, seed):
    rng = np.random.default_rng(seed)
    flag = rng.random(n) < 0.6
    return pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(n)],
        "event_timestamp": pd.Timestamp("2025-03-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 20, n), unit="D"),
        "rate": np.where(rng.random(n) < 0.2, np.nan, rng.random(n)),
        "count": rng.poisson(4, n).astype("int64"),
        "count_with_nulls": pd.array(np.where(rng.random(n) < 0.3, None, rng.poisson(2, n)), dtype="Int64"),
        "flag_with_nulls": pd.array(np.where(rng.random(n) < 0.25, None, flag), dtype=object),
        "flag": flag,
        "tier": np.where(rng.random(n) < 0.1, None, rng.choice(["basic", "premium", "family"], n)),
    })


def test_identical_rows_through_the_served_jsonl_have_zero_psi_for_every_kind(tmp_path):
    from serving.scoring import frame_to_rows
    from serving.served_log import ServedLog
    from validation.drift import load_serving_log

    reference = _every_kind(3000, 7)
    served = reference.sample(frac=1.0, random_state=1)  # the same rows, another order
    cols = [c for c in reference.columns if c not in ("customer_id", "event_timestamp")]
    log = ServedLog(tmp_path / "served.jsonl")
    log.write([{"customer_id": c, "request_time": t.isoformat(), **r} for c, t, r in
               zip(served.customer_id, served.event_timestamp, frame_to_rows(served, cols))])
    loaded = load_serving_log(tmp_path / "served.jsonl", reference)
    table, detail = drift_report(reference, loaded, cols)
    assert set(table.feature) == set(cols)
    assert (table.psi < 0.01).all(), table[["feature", "psi"]]
    assert (table.verdict == "stable").all()
    # the boolean with nulls keeps its categories: no served value lands in "(unseen)"
    d = detail["flag_with_nulls"]
    assert d.buckets == ["False", "True", "(unseen)", "(null)"] and d.serving[2] == 0
    assert 0.2 < d.serving[3] < 0.3


def test_a_served_value_of_the_wrong_type_names_the_column(tmp_path):
    from validation.drift import load_serving_log

    reference = _every_kind(50, 1)
    (tmp_path / "s.jsonl").write_text(json.dumps({"customer_id": "c1", "flag_with_nulls": "maybe"}) + "\n")
    with pytest.raises(ValueError, match="'flag_with_nulls'.*'maybe'"):
        load_serving_log(tmp_path / "s.jsonl", reference)
    (tmp_path / "s.jsonl").write_text('{"customer_id": "c1"}\n{not json\n')
    with pytest.raises(ValueError, match="line 2"):
        load_serving_log(tmp_path / "s.jsonl", reference)


def _days(n_days, seed, level=100.0, customers_per_day=200, start="2025-01-01"):
    """A marketplace-wide column (one value per day, a random walk) served to every customer of the day."""
    rng = np.random.default_rng(seed)
    values = level + np.cumsum(rng.normal(0, 1, n_days))
    day = pd.Timestamp(start, tz="UTC") + pd.to_timedelta(np.repeat(np.arange(n_days), customers_per_day), unit="D")
    return pd.DataFrame({"event_timestamp": day, "request_time": day,
                         "market": np.repeat(values, customers_per_day),
                         "sessions": rng.poisson(3, n_days * customers_per_day)})


def test_a_daily_column_is_judged_over_days_not_rows():
    ref = _days(70, 0)
    week = ref[ref.event_timestamp >= ref.event_timestamp.max() - pd.Timedelta(days=7)]
    roles = {"market": "daily"}
    row_weighted, _ = drift_report(ref, week, ["market"])
    assert row_weighted.loc[0, "status"] == "drift"  # one week vs seventy days, row-weighted: "a different week"
    by_days, _ = drift_report(ref, week, ["market"], roles=roles)
    assert by_days.loc[0, "verdict"] == "stable" and by_days.loc[0, "score"] == 0
    shifted = week.assign(market=week.market * 0.5)
    moved, _ = drift_report(ref, shifted, ["market", "sessions"], roles=roles)
    assert moved.set_index("feature").verdict.to_dict() == {"market": "drifted", "sessions": "stable"}


def test_a_feature_growing_with_tenure_is_compared_at_matching_tenure():
    rng = np.random.default_rng(3)

    def customers(n, mean_tenure, spend_per_day=2.0):
        tenure = rng.exponential(mean_tenure, n).round()
        return pd.DataFrame({"tenure": tenure, "spend_total": rng.poisson(spend_per_day * (tenure + 1)),
                             "rating": rng.normal(4, 0.5, n)})

    ref, older = customers(5000, 60), customers(3000, 120)
    roles = {"tenure": "tenure", "spend_total": "tenure"}
    table, _ = drift_report(ref, older, roles=roles, tenure_column="tenure")
    t = table.set_index("feature")
    assert t.loc["spend_total", "psi"] > 0.25  # row-weighted it looks like drift ...
    assert t.loc["spend_total", "verdict"] == "expected to move"  # ... tenure explains it
    assert t.loc["tenure", "verdict"] == "expected to move" and t.loc["rating", "verdict"] == "stable"
    richer = customers(3000, 120, spend_per_day=4.0)
    t = drift_report(ref, richer, roles=roles, tenure_column="tenure")[0].set_index("feature")
    assert t.loc["spend_total", "verdict"] == "drifted"  # twice the spend at the same tenure is drift
    unmatched = drift_report(ref, older, roles=roles)[0].set_index("feature")
    assert unmatched.loc["spend_total", "verdict"] == "expected to move"


def test_an_unknown_role_is_refused(reference):
    with pytest.raises(ValueError, match="unknown drift role"):
        drift_report(reference, reference, roles={"sessions_7d": "weekly"})
