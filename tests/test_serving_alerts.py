"""Alert rules, config validation, event-time cooldown, outbox and attribution, in isolation."""
from datetime import timedelta

import pytest

from features.catalog import model_input_schema
from serving.alerts import build_alert, firing_rules
from serving.attribution import explain
from serving.config import DEFAULT_RULES, ConfigError, ServingConfig
from serving.state import ServingState
from testing.toy_model import train_toy_model
from tests.eventlog import ts
from training.artifact import load_artifact

T = ts("2025-03-01T12:00:00Z")


def test_spec_rules_and_payload():
    pred = {"churn_risk_30d": 0.61, "ib_call_risk_14d": 0.7, "customer_health_score": 39.9, "model_version": "m-1"}
    fired = firing_rules(pred, DEFAULT_RULES)
    assert [r.type for r in fired] == ["churn_risk_high", "health_score_critical"]   # 0.7 is not > 0.7
    a = build_alert(fired[0], "c1", T, pred, [])
    assert a["churn_probability"] == 0.61 and a["severity"] == "high" and a["model_version"] == "m-1"
    assert a["as_of"] == "2025-03-01T12:00:00Z" and a["rule"] == {"head": "churn_risk_30d", "op": ">", "threshold": 0.6}
    assert build_alert(fired[1], "c1", T, pred, [])["score"] == 39.9
    assert build_alert(fired[0], "c1", T, pred, [])["alert_id"] == a["alert_id"]        # deterministic


def test_thresholds_from_config_and_errors_name_the_field():
    cfg = ServingConfig.from_dict({"rules": [{"type": "churn_risk_high", "severity": "high", "head": "churn_risk_30d",
                                              "op": ">", "threshold": 0.2}], "cooldown_hours": 2})
    assert cfg.rules[0].threshold == 0.2 and cfg.cooldown_us == 2 * 3600 * 10**6
    for bad, needle in [({"cooldown_hours": "x"}, "cooldown_hours"), ({"nope": 1}, "unknown field"),
                        ({"rules": [{"type": "t", "severity": "s", "head": "h", "op": ">", "threshold": 1}]}, "rules[0].head"),
                        ({"rules": [{"type": "t", "severity": "s", "head": "churn_risk_30d", "op": ">="}]}, "rules[0]"),
                        ({"invoke_retry": {"attempts": 0}}, "invoke_retry.attempts"), ({"profile": "gcp"}, "profile")]:
        with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")):
            ServingConfig.from_dict(bad)


def test_cooldown_is_event_time_both_sides_and_outbox_keeps_alerts(tmp_path):
    st = ServingState(tmp_path / "s.sqlite")
    cd = 24 * 3600 * 10**6
    pred = {"churn_risk_30d": 0.9, "ib_call_risk_14d": 0.1, "customer_health_score": 50, "model_version": "m"}
    rule = DEFAULT_RULES[1]
    mk = lambda t: build_alert(rule, "c1", t, pred, [])  # noqa: E731
    assert len(st.record_alerts([mk(T)], cd)) == 1
    assert st.record_alerts([mk(T + timedelta(hours=23))], cd) == []       # later, within
    assert st.record_alerts([mk(T - timedelta(hours=23))], cd) == []       # a late (older) trigger
    assert st.in_cooldown("c1", rule.type, T + timedelta(hours=1), cd)
    assert len(st.record_alerts([mk(T + timedelta(hours=24))], cd)) == 1   # after the cooldown
    assert st.outbox_counts() == {"delivered": 0, "undelivered": 2}
    st.mark_delivered(mk(T)["alert_id"])
    assert [a["as_of"] for a, _, _ in st.undelivered()] == ["2025-03-02T12:00:00Z"]
    st.close()
    assert ServingState(tmp_path / "s.sqlite").outbox_counts() == {"delivered": 1, "undelivered": 1}  # durable


def test_attribution_is_the_occlusion_difference(tmp_path):
    art = load_artifact(train_toy_model(tmp_path))
    names = [f["name"] for f in model_input_schema()["features"]]
    row = {n: None for n in names}
    row.update(ib_call_count_14d=12.0, negative_sentiment_calls_14d=10.0, session_count_30d=9.0)
    base = art.predict_records([row])
    calls = []

    def invoke(rows):
        calls.append(len(rows))
        return art.predict_records(rows)

    out = explain([row], base, [[("ib_call_risk_14d", 1), ("customer_health_score", -1)]], names, invoke, top_k=5)
    assert calls == [3]                                      # one batched call, one row per non-null feature
    for head, d in (("ib_call_risk_14d", 1), ("customer_health_score", -1)):
        for f in out[0][head]:
            occl = art.predict_records([{**row, f["feature"]: None}])[0][head]
            assert f["contribution"] == pytest.approx(d * (base[0][head] - occl), abs=1e-5) and f["contribution"] > 0
    assert out[0]["ib_call_risk_14d"][0]["feature"] in ("ib_call_count_14d", "negative_sentiment_calls_14d")


def test_rank_rules_cut_and_config():
    from serving.alerts import firing_rules
    from serving.config import SPEC_RULES, AlertRule

    top = AlertRule("churn_top_20pct", "high", "churn_risk_30d", "top", 0.2)
    bottom = AlertRule("health_bottom_half", "high", "customer_health_score", "bottom", 0.5)
    values = [0.1, 0.5, 0.3, 0.9, 0.7]
    assert top.cut_of(values) == 0.9                   # ceil(0.2 x 5) = 1 customer: the riskiest
    assert bottom.cut_of([80, 20, 50, 30]) == 30       # 2 of 4, the least healthy
    assert top.cut_of([]) is None and top.direction == 1 and bottom.direction == -1
    pred = {"churn_risk_30d": 0.9, "ib_call_risk_14d": 0.1, "customer_health_score": 90.0}
    assert firing_rules(pred, [top]) == []                          # no cut stored yet: no fire
    assert firing_rules(pred, [top], {"churn_top_20pct": 0.9}) == [top]
    assert firing_rules({**pred, "churn_risk_30d": 0.89}, [top], {"churn_top_20pct": 0.9}) == []
    assert DEFAULT_RULES[:3] == SPEC_RULES and any(r.is_rank for r in DEFAULT_RULES)
    cfg = ServingConfig.from_dict({"rules": [{"type": "t", "severity": "high", "head": "churn_risk_30d",
                                              "op": "top", "threshold": 0.05}]})
    assert cfg.rules[0].is_rank and cfg.rules[0].threshold == 0.05
    for bad in (0, 1.5, True):
        with pytest.raises(ConfigError, match=r"rules\[0\]\.threshold: a 'top' rule takes the fraction"):
            ServingConfig.from_dict({"rules": [{"type": "t", "severity": "high", "head": "churn_risk_30d",
                                                "op": "top", "threshold": bad}]})
    with pytest.raises(ConfigError, match=r"rules\[0\]\.op: expected one of"):
        ServingConfig.from_dict({"rules": [{"type": "t", "severity": "high", "head": "churn_risk_30d",
                                            "op": ">=", "threshold": 0.5}]})
