"""Rule quality against ground truth (serving.rule_quality), on a hand-checkable case."""
from datetime import datetime, timedelta, timezone

import pytest

from serving.config import AlertRule
from serving.rule_quality import CALLS, CHURN, format_rule_quality, rule_quality

D0 = datetime(2025, 3, 1, tzinfo=timezone.utc)
CHURN_RULE = AlertRule("churn_risk_high", "high", "churn_risk_30d", ">", 0.6)
CALLS_RULE = AlertRule("churn_risk_ib_calls", "critical", "ib_call_risk_14d", ">", 0.7)
QUIET_RULE = AlertRule("health_score_critical", "high", "customer_health_score", "<", 40.0)


def d(days):
    return D0 + timedelta(days=days)


def alert(kind, customer, days):
    return {"type": kind, "customer_id": customer, "as_of": d(days).isoformat().replace("+00:00", "Z")}


ALERTS = [
    alert("churn_risk_high", "A", 1), alert("churn_risk_high", "A", 2),   # A cancels on day 5: two hits
    alert("churn_risk_high", "B", 2),      # B cancels on day 35: outside (2, 32]: a miss
    alert("churn_risk_high", "C", 8),      # C never cancels: a miss
    alert("churn_risk_high", "C", 12),     # outside the window [0, 10]: ignored
    alert("churn_risk_ib_calls", "A", 2),  # A calls on days 3 and 6: >= 2 calls in (2, 16]: a hit
    alert("churn_risk_ib_calls", "E", 0.5),  # E calls on days 1 and 20: one call in (0.5, 14.5]: a miss
]
CANCELS = {"A": [d(5)], "B": [d(35)], "D": [d(3)]}     # D cancels unalerted
CALLS_ = {"A": [d(3), d(6)], "E": [d(1), d(20)]}


def test_precision_recall_lead_time_by_hand():
    rows = {r.rule: r for r in rule_quality(ALERTS, CANCELS, CALLS_, [CHURN_RULE, CALLS_RULE, QUIET_RULE],
                                            d(0), d(10), observed_until=d(40))}
    churn = rows["churn_risk_high"]
    assert churn.target == CHURN.name and churn.alerts == 4 and churn.alerts_per_day == pytest.approx(0.4)
    assert churn.customers == 3 and churn.precision == pytest.approx(2 / 4) and churn.censored == 0
    # churners in (0, 40]: A (day 5, caught by the day-1 alert: 4 days ahead), B (day 35: its alert was
    # 33 days before, past the horizon), D (never alerted)
    assert (churn.events, churn.caught) == (3, 1) and churn.recall == pytest.approx(1 / 3)
    assert churn.median_lead_days == pytest.approx(4.0)
    calls = rows["churn_risk_ib_calls"]
    assert calls.target == CALLS.name and calls.precision == pytest.approx(0.5)
    # E's calls are 19 days apart: no event; A's second call (day 6) comes 4 days after the alert
    assert (calls.events, calls.caught, calls.median_lead_days) == (1, 1, pytest.approx(4.0))
    quiet = rows["health_score_critical"]
    assert quiet.alerts == 0 and quiet.precision != quiet.precision and quiet.recall == 0.0
    table = format_rule_quality(list(rows.values()))
    assert "churn_risk_high" in table and "33.3%" in table and "1/3" in table


def test_censored_alerts_and_oracle_precision():
    oracle = {("A", ALERTS[0]["as_of"], CHURN.name): 0.9, ("A", ALERTS[1]["as_of"], CHURN.name): 0.7,
              ("B", ALERTS[2]["as_of"], CHURN.name): 0.2, ("C", ALERTS[3]["as_of"], CHURN.name): 0.2}
    (churn,) = rule_quality(ALERTS, CANCELS, CALLS_, [CHURN_RULE], d(0), d(10), observed_until=d(35),
                            oracle=oracle)
    # C's alert on day 8 looks 30 days ahead, to day 38 > 35: censored; B's cancellation (day 35) is seen
    assert churn.censored == 1 and churn.precision == pytest.approx(0.5)
    assert churn.oracle_precision == pytest.approx(0.5)
    with pytest.raises(ValueError, match="window must not be empty"):
        rule_quality(ALERTS, CANCELS, CALLS_, [CHURN_RULE], d(10), d(10), observed_until=d(35))
