"""Validation suites and gates: clean data passes, each kind of corruption is caught and named."""
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from testing.validation_frames import make_event_log, make_feature_table, make_training_set
from validation.gate import DataQualityError, run_gate
from validation.specs import ColumnSpec
from validation.suites import event_log_suite, feature_suite, training_set_suite

START = datetime(2025, 1, 1, tzinfo=timezone.utc)
END = datetime(2025, 6, 1, tzinfo=timezone.utc)

SPECS = [
    ColumnSpec("sessions_7d", "count", nullable=False),
    ColumnSpec("cancel_rate_30d", "rate", nullable=True),
    ColumnSpec("avg_rating_30d", "numeric", nullable=True, min=1, max=5),
    ColumnSpec("primary_subject", "categorical", nullable=True, values=("algebra", "physics", "english")),
    ColumnSpec("is_new", "boolean", nullable=False),
    ColumnSpec("last_session__ts", "timestamp", nullable=True),
]


@pytest.fixture(scope="module")
def events():
    return make_event_log(800, seed=1)


@pytest.fixture(scope="module")
def event_suite():
    return event_log_suite(START, END)


def _first(df, event_type, **where):
    m = df["event_type"] == event_type
    for k, v in where.items():
        m &= df[k] == v
    return df.index[m][0]


def _failing(exc_info) -> set[tuple[str, str]]:
    return {(o.expectation_type, o.column) for o in exc_info.value.result.failures}


def test_event_suite_is_generated_from_the_contract(event_suite):
    cfgs = [e.configuration.to_json_dict() for e in event_suite.expectations]
    rating = [c for c in cfgs if c["kwargs"].get("column") == "student_rating"
              and c["type"] == "expect_column_values_to_be_between"]
    assert rating and rating[0]["kwargs"]["min_value"] == 1 and rating[0]["kwargs"]["max_value"] == 5
    avail = [c for c in cfgs if c["kwargs"].get("column") == "available_hours"
             and c["type"] == "expect_column_values_to_be_between"][0]["kwargs"]
    assert avail["strict_min"] is True  # gt=0 -> strict bound
    required = {c["kwargs"]["column"] for c in cfgs if c["type"] == "expect_column_values_to_not_be_null"}
    assert {"sentiment_score", "escalated", "grade_level", "tutor_id"} <= required


@pytest.mark.parametrize("engine", ["gx", "duckdb"])
def test_event_gate_passes_clean_and_catches_corruption(events, event_suite, engine, tmp_path):
    assert run_gate("events", events, event_suite, engine=engine).success
    bad = events.copy()
    bad.loc[_first(bad, "session_completed", status="completed"), "student_rating"] = 7.0
    bad.loc[_first(bad, "inbound_call"), "sentiment_score"] = 2.0
    bad.loc[bad.index[5], "event_id"] = bad.loc[bad.index[4], "event_id"]
    bad.loc[bad.index[6], "event_type"] = "alien_event"
    bad.loc[_first(bad, "login"), "customer_id"] = None
    report = tmp_path / "events.html"
    with pytest.raises(DataQualityError) as exc:
        run_gate("events", bad, event_suite, engine=engine, report_path=report)
    failing = _failing(exc)
    assert failing == {
        ("expect_column_values_to_be_between", "student_rating"),
        ("expect_column_values_to_be_between", "sentiment_score"),
        ("expect_column_values_to_be_unique", "event_id"),
        ("expect_column_values_to_be_in_set", "event_type"),
        ("expect_column_values_to_not_be_null", "customer_id"),
    }
    msg = str(exc.value)
    assert "student_rating" in msg and "7.0" in msg and "alien_event" in msg and "offending row" in msg
    html = report.read_text()
    assert "FAILED" in html and "sample offending rows" in html and "sentiment_score" in html


def test_event_gate_catches_timestamps_out_of_span_and_wrong_types(events, event_suite):
    bad = events.copy()
    bad.loc[bad.index[0], "timestamp"] = pd.Timestamp("2031-01-01", tz="UTC")
    bad["student_rating"] = bad["student_rating"].astype(object)
    bad.loc[_first(bad, "session_completed", status="completed"), "student_rating"] = "5"
    for engine, frame in (("duckdb", bad), ("gx", bad.head(300))):  # GX: ~5 s per event-suite run
        with pytest.raises(DataQualityError) as exc:
            run_gate("events", frame, event_suite, engine=engine)
        failing = _failing(exc)
        assert ("expect_column_values_to_be_between", "timestamp") in failing
        assert ("expect_column_values_to_be_in_type_list", "student_rating") in failing


def test_event_gate_catches_cross_field_and_forbidden_fields(events, event_suite):
    bad = events.copy()
    bad.loc[_first(bad, "session_completed", status="cancelled"), "cancelled_by"] = None
    bad.loc[_first(bad, "login"), "amount"] = 10.0  # logins carry no amount (extra=forbid)
    with pytest.raises(DataQualityError) as exc:
        run_gate("events", bad, event_suite, engine="duckdb")
    assert _failing(exc) == {("expect_column_values_to_not_be_null", "cancelled_by"),
                             ("expect_column_values_to_be_null", "amount")}


@pytest.fixture(scope="module")
def features():
    return make_feature_table(SPECS, 2000, seed=3)


@pytest.mark.parametrize("engine", ["gx", "duckdb"])
def test_feature_gate(features, engine):
    suite = feature_suite(SPECS, entity_key="customer_id")
    assert run_gate("features", features, suite, engine=engine).success
    bad = features.copy()
    bad.loc[bad.index[0], "cancel_rate_30d"] = 1.5
    bad.loc[bad.index[1], "sessions_7d"] = -1
    bad["is_new"] = bad["is_new"].astype(object)
    bad.loc[bad.index[2], "is_new"] = None
    bad.loc[bad.index[3], "avg_rating_30d"] = 7.0
    bad.loc[bad.index[4], "last_session__ts"] = bad.loc[bad.index[4], "event_timestamp"] + pd.Timedelta(hours=1)
    bad.loc[bad.index[6], ["customer_id", "event_timestamp"]] = bad.loc[bad.index[5], ["customer_id", "event_timestamp"]].values
    bad.loc[bad.index[7], "primary_subject"] = "alchemy"
    with pytest.raises(DataQualityError) as exc:
        run_gate("features", bad, suite, engine=engine)
    assert _failing(exc) == {
        ("expect_column_values_to_be_between", "cancel_rate_30d"),
        ("expect_column_values_to_be_between", "sessions_7d"),
        ("expect_column_values_to_not_be_null", "is_new"),
        ("expect_column_values_to_be_between", "avg_rating_30d"),
        ("expect_column_pair_values_a_to_be_greater_than_b", "event_timestamp, last_session__ts"),
        ("expect_compound_columns_to_be_unique", "customer_id, event_timestamp"),
        ("expect_column_values_to_be_in_set", "primary_subject"),
    }
    assert "last_session__ts" in str(exc.value)


def test_column_spec_rejects_bad_declarations():
    with pytest.raises(ValueError, match="kind"):
        ColumnSpec("x", "percentage")
    with pytest.raises(ValueError, match="min"):
        ColumnSpec("x", "numeric", min=3, max=1)


@pytest.fixture(scope="module")
def dataset():
    return make_training_set(SPECS, 3000, seed=5)


@pytest.mark.parametrize("engine", ["gx", "duckdb"])
def test_training_set_gate(dataset, engine):
    kw = dict(label_rates={"churn_30d": (0.02, 0.3), "ib_calls_14d": (0.02, 0.4)},
              min_rows_per_split={"train": 1000, "validation": 200, "test": 200})
    suite = training_set_suite(dataset.columns, **kw)
    assert run_gate("dataset", dataset, suite, engine=engine).success
    bad = dataset.copy()
    bad.loc[bad.index[0], "last_session__ts"] = bad.loc[bad.index[0], "event_timestamp"] + pd.Timedelta(days=1)
    bad.loc[bad.index[1], "health_score"] = 101.0
    bad.loc[bad.index[2], "ib_calls_14d"] = np.nan
    bad.loc[bad.index[3], "split"] = "holdout"
    bad["churn_30d"] = 1  # label rate out of bounds
    bad = bad[~((bad["split"] == "test") & (bad.index > 10))]  # test split below its minimum
    with pytest.raises(DataQualityError) as exc:
        run_gate("dataset", bad, training_set_suite(bad.columns, **kw), engine=engine)
    failing = _failing(exc)
    assert failing == {
        ("expect_column_pair_values_a_to_be_greater_than_b", "event_timestamp, last_session__ts"),
        ("expect_column_values_to_be_between", "health_score"),
        ("expect_column_values_to_not_be_null", "ib_calls_14d"),
        ("expect_column_values_to_be_in_set", "split"),
        ("expect_column_mean_to_be_between", "churn_30d"),
        ("expect_table_row_count_to_be_between", None),
    }
    assert "split == 'test'" in str(exc.value)


def test_auto_engine_and_no_raise(features):
    r = run_gate("features", features, feature_suite(SPECS), raise_on_failure=False)
    assert r.engine == "gx" and r.success and "passed" in r.summary()


# ---------------------------------------------------------------- GX project: stored suites, checkpoints, Data Docs

def _page_text(path) -> str:
    import re

    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", path.read_text(encoding="utf-8")))


def test_checkpoint_and_duckdb_give_the_same_verdicts_and_both_land_in_data_docs(events, tmp_path):
    suite = event_log_suite(START, END, name="event_log_small")
    bad = events.head(300).copy()
    bad.loc[bad.index[3], "event_id"] = bad.loc[bad.index[2], "event_id"]
    bad.loc[_first(bad, "session_completed"), "student_rating"] = 9
    verdicts = {}
    for engine in ("gx", "duckdb"):
        r = run_gate("events", bad, suite, engine=engine, raise_on_failure=False, data_docs_dir=tmp_path)
        verdicts[engine] = [(o.expectation_type, o.column, o.condition, o.success) for o in r.outcomes]
        assert r.data_docs_path == str(tmp_path.resolve() / "gx/uncommitted/data_docs/local_site/index.html")
    assert sorted(verdicts["gx"], key=repr) == sorted(verdicts["duckdb"], key=repr)   # the order differs: DuckDB groups scans
    assert {(t, c) for t, c, _, ok in verdicts["gx"] if not ok} >= {
        ("expect_column_values_to_be_unique", "event_id"), ("expect_column_values_to_be_between", "student_rating")}
    gx_dir = tmp_path / "gx"
    assert (gx_dir / "expectations" / "event_log_small.json").exists()      # the stored suite
    assert (gx_dir / "checkpoints" / "event_log_small.json").exists()       # the stored checkpoint
    runs = sorted((gx_dir / "uncommitted/data_docs/local_site/validations/event_log_small").rglob("*.html"))
    assert len(runs) == 2 and any("duckdb" in str(p) for p in runs)
    for page in runs:
        assert "values must be greater than or equal to" in _page_text(page)
    assert run_gate("events", events.head(300), suite, engine="gx", data_docs_dir=tmp_path).success


def test_mhp_validate_events_writes_data_docs_showing_the_failure(events, tmp_path, capsys):
    from mhp.cli import main

    bad = events.head(200).copy()
    bad.loc[bad.index[3], "event_id"] = bad.loc[bad.index[2], "event_id"]
    bad.to_parquet(tmp_path / "bad.parquet")
    docs = tmp_path / "docs"
    assert main(["validate", "events", "--input", str(tmp_path / "bad.parquet"), "--report", str(tmp_path / "r.html"),
                 "--data-docs", str(docs), "--engine", "gx"]) == 1
    err = capsys.readouterr().err
    index = docs.resolve() / "gx/uncommitted/data_docs/local_site/index.html"
    assert f"data docs: {index}" in err and index.exists()
    assert "event_log" in index.read_text() and "Failed" in index.read_text()
    (page,) = (docs / "gx/uncommitted/data_docs/local_site/validations/event_log").rglob("*.html")
    text = _page_text(page)
    assert "values must be unique" in text and "Unsuccessful Expectations" in text
    good = events.head(200)
    good.to_parquet(tmp_path / "good.parquet")
    assert main(["validate", "events", "--input", str(tmp_path / "good.parquet"), "--report", str(tmp_path / "r.html"),
                 "--engine", "gx"]) == 0
    assert f"data docs: {(tmp_path / 'gx/uncommitted/data_docs/local_site/index.html').resolve()}" in capsys.readouterr().out
