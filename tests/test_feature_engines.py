"""The catalog's two engines: hand-computed values, and exact agreement of the
set-based backfill with the incremental state on random histories."""
import random
from datetime import timedelta

import pandas as pd
import pytest

from features import catalog as C
from features import state as S
from features.backfill import run_backfill
from tests.eventlog import ev, random_history, replay, session, ts, us, write_log


def backfill(tmp_path, events, until="2025-06-01T00:00:00Z"):
    res = run_backfill(write_log(events, tmp_path / "events"), str(tmp_path / "features"),
                       until=ts(until) if until else None, progress=False)
    df = pd.read_parquet(res.outputs[C.CUSTOMER_VIEW])
    return res, df


def at(df, when, customer="c1"):
    """The latest row at or before `when` (Feast's as-of rule)."""
    rows = df[(df.customer_id == customer) & (df.event_timestamp <= pd.Timestamp(ts(when)))]
    return rows.sort_values("event_timestamp").iloc[-1]


def test_midnight_event_and_the_seventh_versus_eighth_day(tmp_path):
    events = [ev("login", "2025-01-01T10:00:00Z"), ev("login", "2025-01-08T00:00:00Z")]
    _, df = backfill(tmp_path, events, until="2025-02-01T00:00:00Z")
    # The Jan 1 login is in the 7d window through Jan 7 (7th day back) and out on Jan 8 (8th day).
    assert at(df, "2025-01-07T23:59:59Z")["login_count_7d"] == 1
    jan8 = at(df, "2025-01-08T00:00:00Z")
    assert jan8["login_count_7d"] == 1          # only the midnight login itself, which counts on Jan 8
    assert jan8["login_count_14d"] == 2
    assert jan8["days_active_7d"] == 1 and jan8["days_active_14d"] == 2
    assert at(df, "2025-01-14T23:59:59Z")["login_count_7d"] == 1
    assert at(df, "2025-01-15T00:00:00Z")["login_count_7d"] == 0


def test_windows_decay_to_zero_after_silence_and_rows_stop(tmp_path):
    events = [ev("payment_succeeded", "2025-01-01T12:00:00Z", amount=100.0),
              ev("payment_succeeded", "2025-02-10T12:00:00Z", amount=50.0),
              ev("login", "2025-03-20T12:00:00Z")]
    _, df = backfill(tmp_path, events, until="2025-04-30T00:00:00Z")
    assert at(df, "2025-01-30T23:00:00Z")["payment_amount_30d"] == 100.0
    row = at(df, "2025-01-31T00:00:00Z")
    assert row["payment_amount_30d"] == 0.0 and row["payment_amount_7d"] == 0.0
    # Lifetime totals reach beyond 30 days.
    assert at(df, "2025-02-10T12:00:00Z")["total_spend_lifetime"] == 150.0
    assert at(df, "2025-03-25T00:00:00Z")["total_spend_lifetime"] == 150.0
    # No midnight rows in a silence longer than the longest window, none after the last decay.
    c1 = df[df.customer_id == "c1"].event_timestamp
    assert not ((c1 > pd.Timestamp(ts("2025-01-31T00:00:00Z"))) & (c1 < pd.Timestamp(ts("2025-02-10T00:00:00Z")))).any()
    assert c1.max() == pd.Timestamp(ts("2025-04-19T00:00:00Z"))
    assert at(df, "2025-04-19T00:00:00Z")["login_count_30d"] == 0


def test_averages_over_nothing_are_null_and_rates_with_zero_denominators(tmp_path):
    events = [ev("login", "2025-01-01T09:00:00Z"),
              session("2025-01-02T10:00:00Z", rating=None),
              session("2025-01-03T10:00:00Z", rating=4.0),
              session("2025-01-04T10:00:00Z", status="no_show")]
    _, df = backfill(tmp_path, events)
    first = at(df, "2025-01-01T09:00:00Z")
    for name in ("avg_session_rating_7d", "session_completion_rate_7d", "payment_success_rate_30d",
                 "avg_call_duration_14d", "avg_lifetime_rating", "tutor_consistency_score"):
        assert pd.isna(first[name]), name
    assert pd.isna(first["first_session_was_success"])
    assert first["session_count_7d"] == 0 and first["ib_call_count_30d"] == 0
    unrated = at(df, "2025-01-02T10:00:00Z")
    assert pd.isna(unrated["avg_session_rating_7d"]) and unrated["session_count_7d"] == 1
    row = at(df, "2025-01-04T10:00:00Z")
    assert row["avg_session_rating_7d"] == 4.0
    assert row["session_completion_rate_7d"] == pytest.approx(2 / 3)
    assert row["no_show_rate_7d"] == pytest.approx(1 / 3)
    assert row["first_session_was_success"] is False or row["first_session_was_success"] == False  # noqa: E712
    # The rated session leaves the 7d window on Jan 10: the average is null again, not 0.
    assert pd.isna(at(df, "2025-01-10T00:00:00Z")["avg_session_rating_7d"])
    assert at(df, "2025-01-10T00:00:00Z")["avg_session_rating_14d"] == 4.0


def test_primary_tutor_consistency_and_distinct_tutors(tmp_path):
    events = [session("2025-01-01T10:00:00Z", tutor="t1"), session("2025-01-02T10:00:00Z", tutor="t2"),
              session("2025-01-03T10:00:00Z", tutor="t2"), session("2025-01-20T10:00:00Z", tutor="t1"),
              session("2025-02-15T10:00:00Z", tutor="t3")]
    _, df = backfill(tmp_path, events)
    assert at(df, "2025-01-01T10:00:00Z")["primary_tutor_id"] == "t1"
    assert at(df, "2025-01-02T10:00:00Z")["primary_tutor_id"] == "t2"   # tie: the latest to reach the top
    assert at(df, "2025-01-03T10:00:00Z")["tutor_consistency_score"] == pytest.approx(2 / 3)
    assert at(df, "2025-01-20T10:00:00Z")["primary_tutor_id"] == "t1"   # 2-2 again, t1 reached it last
    assert at(df, "2025-01-20T10:00:00Z")["tutor_switch_count_30d"] == 2
    assert at(df, "2025-02-01T23:00:00Z")["tutor_switch_count_30d"] == 2
    assert at(df, "2025-02-02T00:00:00Z")["tutor_switch_count_30d"] == 1  # t2 (Jan 3) left the window
    assert at(df, "2025-02-15T10:00:00Z")["tutor_switch_count_30d"] == 2  # t1 (Jan 20) and t3
    assert at(df, "2025-02-19T00:00:00Z")["tutor_switch_count_30d"] == 1


def test_an_event_after_t_never_leaks_into_t(tmp_path):
    rng = random.Random(7)
    events = random_history(rng, customers=6, days=40)
    cutoff = "2025-01-25T13:37:00Z"
    _, full = backfill(tmp_path / "full", events, until="2025-02-20T00:00:00Z")
    _, cut = backfill(tmp_path / "cut", events, until=cutoff)
    assert cut.event_timestamp.max() <= pd.Timestamp(ts(cutoff))
    early = full[full.event_timestamp <= pd.Timestamp(ts(cutoff))].reset_index(drop=True)
    pd.testing.assert_frame_equal(early, cut.reset_index(drop=True))


def test_invalid_until_and_empty_log(tmp_path):
    with pytest.raises(ValueError, match="timezone-aware"):
        run_backfill(write_log([ev("login", "2025-01-01T00:00:00Z")], tmp_path / "e"), str(tmp_path / "o"),
                     until=ts("2025-01-01T00:00:00Z").replace(tzinfo=None), progress=False)


def _same(a, b):
    """Bit-for-bit: both engines accumulate integers (fractions in fixed point) and divide alike."""
    if b is None:
        return a is None or pd.isna(a)
    return a == b


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_backfill_equals_incremental_state_at_every_instant(tmp_path, seed):
    rng = random.Random(seed)
    events = random_history(rng, customers=12, days=50)
    until = ts("2025-03-10T00:00:00Z")
    _, df = backfill(tmp_path, events, until="2025-03-10T00:00:00Z")
    expected = replay(events, until)
    assert len(df) == sum(len(v) for v in expected.values())
    compared = 0
    for row in df.itertuples(index=False):
        snap = expected[row.customer_id][us(row.event_timestamp.to_pydatetime())]
        for f in C.CUSTOMER_FEATURES:
            want = snap[f.name]
            got = getattr(row, f.name)
            assert _same(got, want), (row.customer_id, row.event_timestamp, f.name, got, want)
            compared += 1
    assert compared > 10_000


def test_state_is_bounded(tmp_path):
    """100x the events over the same span: the state has the same shape and size class."""
    rng = random.Random(5)
    import json

    def state_after(n_per_day):
        st = S.new_state()
        t0 = us(ts("2025-01-01T00:00:00Z"))
        i = 0
        for day in range(120):
            for k in range(n_per_day):
                e = session(ts("2025-01-01T00:00:00Z") + timedelta(days=day, seconds=k + 1), rating=4.5,
                            tutor=f"t{rng.randint(1, 3)}")
                S.apply_event(st, e.model_dump(), t0 + day * S.DAY_US + (k + 1) * 1_000_000, e.event_id)
                i += 1
        return st

    small, big = state_after(1), state_after(100)
    assert len(small["tiles"]) == len(big["tiles"]) == C.MAX_WINDOW_DAYS
    assert len(json.dumps(big)) < 1.2 * len(json.dumps(small)) + 200


@pytest.mark.parametrize("seed", [3, 4])
def test_incremental_window_sums_equal_a_recount_after_every_event_and_tick(seed):
    """The state keeps its window sums incrementally (events in, tiles out at day changes, events
    older than a tick): after every step they equal a recount from the tiles."""
    rng = random.Random(seed)
    events = sorted(random_history(rng, customers=12, days=70), key=lambda e: (e.timestamp, e.event_id))
    states: dict[str, dict] = {}
    steps = 0
    for e in events:
        cid = getattr(e, "customer_id", None)
        if cid is None:
            continue
        st = states.setdefault(cid, S.new_state())
        t = us(e.timestamp)
        if st["clock"] is not None and rng.random() < 0.3:      # a tick (or a jump) before the event
            m = (t // S.DAY_US) * S.DAY_US
            S.advance(st, m + rng.choice([0, S.DAY_US]) if rng.random() < 0.3 else m)
        if st["watermark"] is None or (t, e.event_id) > tuple(st["watermark"]):
            S.apply_event(st, e.model_dump(), t, e.event_id)
        assert st["wsums"] == S.window_sums(st, st["clock"] // S.DAY_US)
        steps += 1
    for st in states.values():                                   # silence: every day until the windows are empty
        for _ in range(C.MAX_WINDOW_DAYS + 1):
            S.advance(st, (st["clock"] // S.DAY_US + 1) * S.DAY_US)
            assert st["wsums"] == S.window_sums(st, st["clock"] // S.DAY_US)
        assert not any(map(any, st["wsums"]))
    assert steps > 100


def test_tutor_and_marketplace_snapshots(tmp_path):
    events = [session("2025-01-02T10:00:00Z", rating=5.0, tutor="t1"),
              session("2025-01-03T10:00:00Z", status="cancelled", cancelled_by="tutor", tutor="t1"),
              ev("tutor_response", "2025-01-03T11:00:00Z", tutor_id="t1", response_time_minutes=30.0),
              ev("tutor_availability", "2025-01-01T08:00:00Z", tutor_id="t1", subject="algebra", available_hours=10.0),
              ev("tutor_availability", "2025-01-02T08:00:00Z", tutor_id="t2", subject="algebra", available_hours=5.0),
              ev("booking_request", "2025-01-02T09:00:00Z", request_id="r1", subject="algebra"),
              ev("booking_matched", "2025-01-02T09:30:00Z", request_id="r1", subject="algebra", tutor_id="t1",
                 time_to_match_minutes=30.0)]
    res, _ = backfill(tmp_path, events, until="2025-01-20T00:00:00Z")
    tutors = pd.read_parquet(res.outputs[C.TUTOR_VIEW]).set_index(["tutor_id", "event_timestamp"])
    jan3 = tutors.loc[("t1", pd.Timestamp(ts("2025-01-03T00:00:00Z")))]
    assert jan3["tutor_avg_rating_30d"] == 5.0 and jan3["tutor_cancellation_rate_30d"] == 0.0
    assert pd.isna(jan3["tutor_avg_response_minutes_30d"])       # the response comes later that day
    jan4 = tutors.loc[("t1", pd.Timestamp(ts("2025-01-04T00:00:00Z")))]
    assert jan4["tutor_cancellation_rate_30d"] == 0.5 and jan4["tutor_avg_response_minutes_30d"] == 30.0
    market = pd.read_parquet(res.outputs[C.MARKETPLACE_VIEW]).set_index("event_timestamp")
    assert (market.marketplace_id == C.MARKETPLACE_KEY).all()
    jan3m = market.loc[pd.Timestamp(ts("2025-01-03T00:00:00Z"))]
    assert jan3m["tutor_count_algebra"] == 2 and jan3m["supply_demand_ratio_algebra"] == 2.0
    assert jan3m["avg_match_time_algebra"] == 30.0 and jan3m["utilization_rate_algebra"] == pytest.approx(1 / 15)
    assert pd.isna(jan3m["supply_demand_ratio_physics"]) and jan3m["tutor_count_physics"] == 0
    # 7 complete days: Jan 1's availability leaves on Jan 9, Jan 2's on Jan 10.
    assert market.loc[pd.Timestamp(ts("2025-01-09T00:00:00Z"))]["tutor_count_algebra"] == 1
    assert market.loc[pd.Timestamp(ts("2025-01-10T00:00:00Z"))]["tutor_count_algebra"] == 0
