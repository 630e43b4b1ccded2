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
    assert "avg_rating_30d" in out.splitlines()[1] and "drift" in out
    assert (tmp_path / "out" / "drift.png").exists() and (tmp_path / "out" / "drift.csv").exists()
