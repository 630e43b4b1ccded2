"""The offline edges: rows past the backfill horizon are refused (or, backfilled further, decay
exactly as online does); a customer with no events at or before t is null on both paths."""
from __future__ import annotations

import pandas as pd
import pytest

from features import catalog as C
from features import retrieval as R
from features import store as FS
from features.backfill import read_horizon, run_backfill
from tests.eventlog import ev, replay, session, ts, us, write_log

EVENTS = [
    ev("customer_signup", "2025-01-01T09:00:00Z", customer_id="c1", tier="premium", acquisition_channel="paid",
       grade_level=7, subject_category="STEM", primary_subject="algebra", region="west"),
    ev("login", "2025-01-02T10:00:00Z", customer_id="c1"),
    session("2025-01-03T15:00:00Z", rating=5.0, customer_id="c1"),
    ev("login", "2025-01-05T08:00:00Z", customer_id="c1"),
    ev("customer_signup", "2025-01-04T09:00:00Z", customer_id="c2", tier="budget", acquisition_channel="organic",
       grade_level=5, subject_category="STEM", primary_subject="algebra", region="midwest"),
]
COUNTS = ["login_count_7d", "session_count_7d", "login_count_30d", "session_count_30d"]


def _store(root, until=None):
    res = run_backfill(write_log(EVENTS, root / "events"), str(root / "features"), until=until, progress=False)
    store = FS.open_store("local", root / "feast")
    FS.apply(store, str(root / "features"))
    return store, res


def _hist(store, rows):
    return R.historical_features(store, pd.DataFrame({
        "customer_id": [c for c, _ in rows], "event_timestamp": pd.to_datetime([t for _, t in rows], utc=True, format="ISO8601")}))


def test_rows_past_the_horizon_are_refused_with_the_horizon_named(tmp_path):
    store, res = _store(tmp_path)
    assert res.until == ts("2025-01-06T00:00:00Z")                       # the midnight after the last event
    h = read_horizon(str(tmp_path / "features"))
    assert h == R.horizon(store) and h.until == res.until
    assert h.valid_before == ts("2025-01-07T00:00:00Z")                  # the next decay; no later event in the log
    ok = _hist(store, [("c1", "2025-01-06T00:00:00Z"), ("c1", "2025-01-06T23:59:59.999999Z")])
    assert ok["login_count_7d"].tolist() == [2, 2]
    with pytest.raises(R.BeyondHorizonError, match=(
            r"1 row\(s\) past the feature horizon: the tables are backfilled until 2025-01-06T00:00:00\+00:00 and "
            r"exact only before 2025-01-07T00:00:00\+00:00; the latest row is at 2025-01-07T00:00:00\+00:00")):
        _hist(store, [("c1", "2025-01-05T00:00:00Z"), ("c1", "2025-01-07T00:00:00Z")])


def test_an_until_that_cuts_events_off_is_exact_only_up_to_until(tmp_path):
    store, _ = _store(tmp_path, until=ts("2025-01-04T12:00:00Z"))      # c1's login of Jan 5 is left out
    assert R.horizon(store).valid_before == ts("2025-01-04T12:00:00.000001Z")
    assert _hist(store, [("c1", "2025-01-04T12:00:00Z")])["login_count_7d"].tolist() == [1]
    with pytest.raises(R.BeyondHorizonError, match="exact only before 2025-01-04T12:00:00.000001"):
        _hist(store, [("c1", "2025-01-05T09:00:00Z")])


def test_backfilled_further_the_windows_decay_as_online(tmp_path):
    """With a later ``until`` the offline value at t equals the incremental engine's (the online
    state) at t, days after the last event: the 7-day windows empty, the 30-day ones do not."""
    until = ts("2025-01-20T00:00:00Z")
    store, _ = _store(tmp_path, until=until)
    times = ["2025-01-08T12:00:00Z", "2025-01-09T00:00:00Z", "2025-01-11T06:00:00Z", "2025-01-20T00:00:00Z"]
    got = _hist(store, [("c1", t) for t in times])
    snaps = replay(EVENTS, until)["c1"]
    for i, t in enumerate(times):
        online = snaps[max(k for k in snaps if k <= us(ts(t)))]
        assert {f: got[f][i] for f in COUNTS} == {f: online[f] for f in COUNTS}, t
    assert got["login_count_7d"].tolist() == [2, 1, 1, 0] and got["login_count_30d"].tolist() == [2, 2, 2, 2]


def test_no_events_at_or_before_t_is_null_on_both_paths_and_zero_once_known(tmp_path):
    store, _ = _store(tmp_path)
    # c2 signs up on 2025-01-04; "nobody" never appears
    hist = _hist(store, [("c2", "2025-01-03T00:00:00Z"), ("nobody", "2025-01-05T00:00:00Z"),
                         ("c2", "2025-01-05T00:00:00Z")])
    model = [c for c in R.model_columns() if c in set(f.name for f in C.CUSTOMER_FEATURES)]
    assert hist.loc[:1, model].isna().all().all()                       # unknown at t: every feature null
    assert hist.loc[2, COUNTS].tolist() == [0, 0, 0, 0]                  # known at t: counts are 0, not null
    store.materialize(start_date=ts("2024-12-01T00:00:00Z"), end_date=ts("2025-01-06T00:00:00Z"))
    online = R.online_features(store, ["nobody", "c2"], pd.Timestamp("2025-01-05T00:00:00Z"))
    assert online.loc[0, COUNTS].isna().all()                            # the same null online
    assert online.loc[1, COUNTS].tolist() == [0, 0, 0, 0]
