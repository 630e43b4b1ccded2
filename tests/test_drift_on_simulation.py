"""Drift detection on the real pipeline: a subject loses half its tutors -> its supply features
drift; a fresh sample of the same period stays quiet; the demo's `mhp drift` table flags nothing when
serving and reference come from the same period and finds an injected shift, and only it."""
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features import catalog as C
from features.backfill import run_backfill
from mhp.cli import main
from validation.drift import drift_report


def marketplace_sample(table: pd.DataFrame, times: pd.Series) -> pd.DataFrame:
    """The marketplace columns as served at each time (latest daily row at or before it)."""
    us = pd.Timedelta(microseconds=1)
    left = pd.DataFrame({"t": ((times - pd.Timestamp(0, tz="UTC")) // us).sort_values().to_numpy()})
    right = table.assign(t=(table.event_timestamp - pd.Timestamp(0, tz="UTC")) // us).sort_values("t")
    return pd.merge_asof(left, right, on="t").drop(columns=["t"])


def test_subject_losing_half_its_tutors_drifts_and_a_fresh_sample_does_not(tmp_path):
    ws = tmp_path / "sim"
    assert main(["simulate", "--customers", "400", "--days", "60", "--seed", "5", "--out", str(ws),
                 "--no-progress"]) == 0
    events = pq.read_table(ws / "events").to_pandas()
    avail = events[events.event_type == "tutor_availability"]
    subject = avail.subject.value_counts().index[0]
    tutors = sorted(avail[avail.subject == subject].tutor_id.unique())
    gone = set(tutors[: len(tutors) // 2])
    shifted = events[~((events.event_type == "tutor_availability") & events.tutor_id.isin(gone))]
    (tmp_path / "shifted" / "date=all").mkdir(parents=True)
    table = pa.Table.from_pandas(shifted.drop(columns=["date"]), preserve_index=False)
    pq.write_table(table, tmp_path / "shifted" / "date=all" / "part-0.parquet")

    base = run_backfill(str(ws / "events"), str(tmp_path / "f0"), progress=False)
    moved = run_backfill(str(tmp_path / "shifted"), str(tmp_path / "f1"), progress=False)
    m0 = pd.read_parquet(base.outputs[C.MARKETPLACE_VIEW])
    m1 = pd.read_parquet(moved.outputs[C.MARKETPLACE_VIEW])

    rng = np.random.default_rng(0)
    start = pd.Timestamp("2025-01-15", tz="UTC")
    def times(n):
        return pd.Series(start + pd.to_timedelta(rng.integers(0, 40 * 86400, n), unit="s"))

    reference = marketplace_sample(m0, times(2000))
    fresh = marketplace_sample(m0, times(2000))
    served_after_shift = marketplace_sample(m1, times(2000))
    features = [c for c, _, s in C.subject_columns() if s == subject]

    quiet, _ = drift_report(reference, fresh, features)
    assert (quiet.psi < 0.1).all(), quiet[["feature", "psi"]]
    fired, _ = drift_report(reference, served_after_shift, features)
    top = fired.set_index("feature")
    assert top.loc[f"tutor_count_{subject}", "status"] == "drift"
    assert top.loc[f"supply_demand_ratio_{subject}", "psi"] > 0.25


# ---------------------------------------------------------------- the demo's drift table (`mhp drift`)
# A real point-in-time training set split by customer: the reference half and a served half from
# the same period, the served half written by the scoring path's own JSONL writer.

@pytest.fixture(scope="module")
def same_period(tmp_path_factory):
    from serving.scoring import model_columns

    root = tmp_path_factory.mktemp("drift_same_period")
    ws = root / "ws"
    assert main(["simulate", "--customers", "150", "--days", "80", "--seed", "3", "--out", str(ws),
                 "--no-progress"]) == 0
    assert main(["dataset", "--workspace", str(ws), "--cadence-days", "1", "--no-oracle", "--no-progress"]) == 0
    ds = pd.read_parquet(ws / "dataset" / "dataset.parquet")
    ids = ds.customer_id.unique()
    served_ids = set(np.random.default_rng(0).choice(ids, len(ids) // 2, replace=False))
    reference, served = ds[~ds.customer_id.isin(served_ids)], ds[ds.customer_id.isin(served_ids)]
    reference.to_parquet(root / "reference.parquet")
    return root, reference, served, model_columns()


def _served_log(path, served, columns):
    from serving.scoring import frame_to_rows
    from serving.served_log import ServedLog

    ServedLog(path).write([{"customer_id": c, "request_time": t.isoformat(), "model_version": "m1", **r}
                           for c, t, r in zip(served.customer_id, served.event_timestamp,
                                              frame_to_rows(served, columns))])
    return path


def _drift_table(root, log, name):
    assert main(["drift", "--reference", str(root / "reference.parquet"), "--serving", str(log),
                 "--out", str(root / name)]) == 0
    return pd.read_csv(root / name / "drift.csv")


def test_same_period_flags_nothing(same_period, capsys):
    root, reference, served, columns = same_period
    table = _drift_table(root, _served_log(root / "same.jsonl", served, columns), "same")
    out = capsys.readouterr().out
    assert len(table) == len(columns) and " 0 drifted" in out.splitlines()[0]
    assert (table.verdict != "drifted").all(), table[table.verdict == "drifted"]
    roles = table.set_index("feature").role
    assert roles["tutor_count_algebra"] == "daily" and roles["total_sessions_lifetime"] == "tenure"
    assert roles["first_session_was_success"] == "entity"
    # the boolean with nulls read as booleans: nothing in "(unseen)"
    assert table.set_index("feature").loc["first_session_was_success", "psi"] < 0.1


@pytest.mark.parametrize("feature, shift", [
    ("avg_session_rating_30d", lambda s: s - 1.5),       # a customer feature, row-weighted
    (f"tutor_count_{C.subject_columns()[0][2]}", lambda s: s * 0.4),  # a marketplace-wide daily value
])
def test_an_injected_shift_is_found_and_only_it(same_period, feature, shift):
    root, reference, served, columns = same_period
    moved = served.assign(**{feature: shift(served[feature])})
    table = _drift_table(root, _served_log(root / f"{feature}.jsonl", moved, columns), feature)
    assert list(table.loc[table.verdict == "drifted", "feature"]) == [feature]
