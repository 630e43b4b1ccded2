"""Drift detection on the real pipeline: a subject loses half its tutors -> its supply
features drift; a fresh sample of the same period stays quiet."""
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

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
