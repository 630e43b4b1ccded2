"""The serving state's two stores behave the same: SQLite (embedded) and DynamoDB (deployed, moto)."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from serving.alerts import alert_id, iso
from serving.dynamodb_state import DynamoDBServingState
from serving.state import ServingState

T0 = datetime(2025, 3, 1, tzinfo=timezone.utc)
HOUR_US = 3_600_000_000
COOLDOWN = 24 * HOUR_US


def _alert(customer: str, kind: str, at: datetime) -> dict:
    return {"customer_id": customer, "type": kind, "severity": "high", "as_of": iso(at),
            "alert_id": alert_id(customer, kind, at, "m1"), "model_version": "m1"}


@pytest.fixture(params=["sqlite", "dynamodb"])
def state(request, tmp_path):
    if request.param == "sqlite":
        yield ServingState(tmp_path / "s.sqlite")
    else:
        request.getfixturevalue("moto_endpoint")
        DynamoDBServingState.create_table("mhp-test-serving-state")
        yield DynamoDBServingState("mhp-test-serving-state")


def test_cooldown_outbox_and_delivery(state):
    a1, a2 = _alert("c1", "churn_risk_high", T0), _alert("c2", "churn_risk_high", T0 + timedelta(hours=1))
    assert [a["alert_id"] for a in state.record_alerts([a2, a1], COOLDOWN)] == [a2["alert_id"], a1["alert_id"]]
    # within the cooldown (either side, event time) and a redelivered alert: suppressed
    assert state.record_alerts([_alert("c1", "churn_risk_high", T0 + timedelta(hours=23)),
                                _alert("c1", "churn_risk_high", T0 - timedelta(hours=23)), a1], COOLDOWN) == []
    assert state.in_cooldown("c1", "churn_risk_high", T0 + timedelta(hours=5), COOLDOWN)
    assert not state.in_cooldown("c1", "churn_risk_high", T0 + timedelta(hours=24), COOLDOWN)
    assert not state.in_cooldown("c1", "health_score_critical", T0, COOLDOWN)
    # undelivered oldest event time first; failures counted; delivery removes it
    assert [p["alert_id"] for p, _, _ in state.undelivered()] == [a1["alert_id"], a2["alert_id"]]
    state.mark_failed(a1["alert_id"], "sink down")
    assert state.undelivered()[0][1:] == (1, "sink down")
    state.mark_delivered(a1["alert_id"])
    assert [p["alert_id"] for p, _, _ in state.undelivered()] == [a2["alert_id"]]
    assert state.outbox_counts() == {"delivered": 1, "undelivered": 1} and state.undelivered_count() == 1
    # after the cooldown a new alert is emitted
    later = _alert("c1", "churn_risk_high", T0 + timedelta(hours=25))
    assert state.record_alerts([later], COOLDOWN) == [later]


def test_pending_requests(state):
    state.add_pending(["c1", "c2"], T0, "endpoint down")
    state.add_pending(["c1"], T0, "still down")
    state.add_pending(["c3"], T0 - timedelta(hours=1), "bad vector", state="rejected")
    assert [(p.customer_id, p.attempts, p.last_error) for p in state.pending()] == [
        ("c1", 2, "still down"), ("c2", 1, "endpoint down")]
    assert state.pending_count() == 2 and state.pending_count("rejected") == 1
    assert state.pending("rejected")[0].as_of == T0 - timedelta(hours=1)
    state.remove_pending(["c1", "c9"], T0)
    assert [p.customer_id for p in state.pending()] == ["c2"]


def test_concurrent_triggers_emit_one_alert(state):
    """Two writers racing on one customer's alert type: exactly one alert is enqueued."""
    results: list[list] = []
    candidates = [_alert("c1", "churn_risk_high", T0 + timedelta(minutes=i)) for i in range(2)]
    barrier = threading.Barrier(2)

    def run(a):
        barrier.wait()
        results.append(state.record_alerts([a], COOLDOWN))

    threads = [threading.Thread(target=run, args=(a,)) for a in candidates]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(len(r) for r in results) == 1
    assert state.undelivered_count() == 1


def test_recorded_triggers_and_rank_cuts(state):
    # the hook's record: attempts 0, no error; recording again (a redelivered batch) changes nothing
    state.add_triggers(["c1", "c2"], T0)
    state.add_triggers(["c1"], T0)
    assert [(p.customer_id, p.attempts, p.last_error) for p in state.pending()] == [("c1", 0, None), ("c2", 0, None)]
    state.add_pending(["c1"], T0, "online lookup failed")      # the worker's failed attempt
    state.add_triggers(["c1"], T0)                                # recorded again: the failure count stays
    assert [(p.customer_id, p.attempts) for p in state.pending()] == [("c1", 1), ("c2", 0)]
    state.remove_pending(["c1", "c2"], T0)
    assert state.pending_count() == 0
    # rank rules' cuts: the latest day's wins, an older day's never overwrites it
    assert state.rank_threshold("churn_risk_top5pct") is None
    state.set_rank_threshold("churn_risk_top5pct", 0.42, T0)
    state.set_rank_threshold("churn_risk_top5pct", 0.40, T0 - timedelta(days=1))
    assert state.rank_threshold("churn_risk_top5pct") == pytest.approx(0.42)
    state.set_rank_threshold("churn_risk_top5pct", 0.37, T0 + timedelta(days=1))
    assert state.rank_threshold("churn_risk_top5pct") == pytest.approx(0.37)
