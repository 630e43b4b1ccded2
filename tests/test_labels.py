"""Label aggregates are declared once and evaluated by three engines that must agree: the label SQL
generated from the declarations (dataset builder), the vectorised DayEvents evaluation (simulator,
oracle) and the event-filter language's own record test."""
from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

import labels as L
from core.times import DAY_US
from events.contract import EVENT_TYPES, SESSION_STATUSES
from events.filters import Cond, eq, events, lt, present
from labels import AGGREGATES, LabelAggregate
from simulator.day_events import CODE, DayEvents
from training.label_join import label_sql

#: beyond the declared aggregates: the other operators the filters have, a sum without a presence
#: condition (NULLs add nothing), several event types in one filter
EXTRA = (
    LabelAggregate("low_rated_3d", events("session_completed", where=(eq("status", "completed"),
                                                                       lt("student_rating", 2.5))), 3),
    LabelAggregate("high_rated_3d", events("session_completed", where=Cond("student_rating", ">", 4.0)), 3),
    LabelAggregate("rating_sum_any_7d", events("session_completed"), 7, value="student_rating"),
    LabelAggregate("calls_or_cancels_5d", events("inbound_call", "subscription_cancelled"), 5),
)


def _random_day(seed: int, n: int = 4000, customers: int = 30) -> DayEvents:
    rng = np.random.default_rng(seed)
    kinds = ["session_completed", "inbound_call", "payment_failed", "subscription_cancelled", "login"]
    etype = np.array([CODE[k] for k in rng.choice(kinds, n)], np.int8)
    session = etype == CODE["session_completed"]
    status = np.where(session, rng.integers(0, len(SESSION_STATUSES), n), -1).astype(np.int8)
    rating = np.where(session & (rng.random(n) < 0.7), rng.integers(2, 11, n) / 2, np.nan)
    cust = rng.integers(-1, customers, n).astype(np.int32)   # -1: a tutor-keyed event, never a label input
    tod = rng.integers(0, 10 * DAY_US, n)
    return DayEvents.concat([DayEvents.block(k, tod[m], cust=cust[m], status=status[m], rating=rating[m])
                             for k in kinds if (m := etype == CODE[k]).any()])


def _records(day: DayEvents) -> list[dict]:
    return [{"event_type": EVENT_TYPES[int(e)], "status": SESSION_STATUSES[int(s)] if s >= 0 else None,
             "student_rating": None if np.isnan(r) else float(r)}
            for e, s, r in zip(day.etype, day.status, day.rating)]


def test_the_declarations_are_the_labels_inputs():
    assert L.LABELS == ("churn_30d", "ib_calls_14d", "health_score")
    assert len({a.name for a in AGGREGATES}) == len(AGGREGATES)
    # the 30-day cancellations feed churn and health: declared by both, aggregated once
    assert L.CHURN.inputs[0] in L.HEALTH.inputs and sum(a == L.CHURN.inputs[0] for a in AGGREGATES) == 1
    assert (L.CHURN.days, L.IB_CALLS.days, L.HEALTH.days) == (L.CHURN_DAYS, L.CALLS_DAYS, L.HEALTH_DAYS)
    assert L.LABEL_HORIZON_DAYS == max(a.days for a in AGGREGATES) == 30
    values = {a.name: np.array([0, 1, 3]) for a in AGGREGATES}
    got = L.label_values(values)
    assert got["churn_30d"].tolist() == [0, 1, 1] and got["ib_calls_14d"].tolist() == [0, 0, 1]


@pytest.mark.parametrize("seed", [0, 1])
def test_day_events_select_what_the_filter_language_selects(seed):
    day = _random_day(seed)
    records = _records(day)
    for a in AGGREGATES + EXTRA:
        want = np.array([a.source.test(r) for r in records])
        assert want.any(), a.name            # the random day exercises every filter
        np.testing.assert_array_equal(day.matches(a.source), want, err_msg=a.name)


def test_day_events_refuse_a_field_they_do_not_simulate():
    with pytest.raises(ValueError, match="'escalated' is not simulated"):
        _random_day(0, n=10).matches(events("inbound_call", where=eq("escalated", True)))


def test_label_sql_and_day_events_agree_on_every_declared_aggregate():
    """Rows at t: the SQL over (t, t + days] and DayEvents.label_counts over the same kept events."""
    day = _random_day(2)
    aggregates = AGGREGATES + EXTRA
    ev = pd.DataFrame(_records(day)).assign(customer_id=[f"c{c}" if c >= 0 else None for c in day.cust],
                                            tsu=day.tod)
    t_us = 2 * DAY_US + 12345
    rows = pd.DataFrame({"row_id": np.arange(30, dtype=np.int64), "customer_id": [f"c{i}" for i in range(30)],
                         "t_us": t_us})
    con = duckdb.connect()
    con.register("ev", ev)
    con.register("label_rows", rows)
    got = con.execute(label_sql(aggregates)).df()
    assert got["row_id"].tolist() == list(range(30))
    after = day.tod - t_us
    for a in aggregates:
        keep = (after > 0) & (after <= a.days * DAY_US)
        want = day.label_counts(30, keep, [a])[a.name]
        np.testing.assert_array_equal(got[a.name].to_numpy(float), want.astype(float), err_msg=a.name)
        assert want.any(), a.name
    # a customer without future events gets zeros, not NULLs
    con.register("label_rows", pd.DataFrame({"row_id": [0], "customer_id": ["nobody"], "t_us": [t_us]}))
    assert (con.execute(label_sql(aggregates)).df().drop(columns="row_id").to_numpy() == 0).all()
    # and the query is the declarations: an aggregate is a column, its window a bound
    assert all(f'"{a.name}"' in label_sql(aggregates) for a in aggregates)
    assert label_sql((LabelAggregate("x", events("login"), 9),)).count(str(9 * DAY_US)) == 2
    assert present("student_rating").sql() in label_sql()
