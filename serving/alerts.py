"""Alert rules -> alert payloads.

The payload per alert type (docs/serving.md, section 3, "Alerts"):

* ``churn_risk_ib_calls`` (critical): ``details`` = "High likelihood of >=2 IB calls in 14 days"
* ``churn_risk_high`` (high): ``churn_probability``
* ``health_score_critical`` (high): ``score``

plus, on every alert: ``alert_id`` (deterministic: customer, type, as-of, model version), ``as_of``
(the event time the score is for), ``model_version``, ``rule`` (head, op, threshold),
``value`` (the head's prediction; a rank rule's ``rule`` also carries the ``cut`` it applied), ``predictions`` (all three heads) and ``top_features``
(the features that pushed this head towards the alert most; see ``serving.attribution``).
"""
from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Mapping, Sequence

from core.times import isoformat_z

from .config import HEADS, AlertRule

SPEC_DETAILS = {"churn_risk_ib_calls": "High likelihood of \u22652 IB calls in 14 days"}


iso = isoformat_z  # the alerts' time spelling


def firing_rules(prediction: Mapping[str, Any], rules: Sequence[AlertRule],
                 cuts: Mapping[str, float | None] | None = None) -> list[AlertRule]:
    """The rules this prediction fires; ``cuts``: rank rules' cuts by alert type (absent: no fire)."""
    cuts = cuts or {}
    return [r for r in rules if r.head in prediction and r.fires(float(prediction[r.head]), cuts.get(r.type))]


def alert_id(customer_id: str, alert_type: str, as_of: datetime, model_version: str) -> str:
    key = f"{customer_id}\x1f{alert_type}\x1f{iso(as_of)}\x1f{model_version}"
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def build_alert(rule: AlertRule, customer_id: str, as_of: datetime, prediction: Mapping[str, Any],
                top_features: list[dict[str, Any]], cut: float | None = None) -> dict[str, Any]:
    value = float(prediction[rule.head])
    alert: dict[str, Any] = {"type": rule.type, "severity": rule.severity, "customer_id": customer_id}
    if rule.head == "ib_call_risk_14d":
        alert["details"] = SPEC_DETAILS.get(rule.type, f"{rule.head} {rule.op} {rule.threshold}")
    elif rule.head == "churn_risk_30d":
        alert["churn_probability"] = value
    else:
        alert["score"] = value
    version = str(prediction.get("model_version", ""))
    alert.update({
        "alert_id": alert_id(customer_id, rule.type, as_of, version),
        "as_of": iso(as_of),
        "model_version": version,
        "rule": {"head": rule.head, "op": rule.op, "threshold": rule.threshold,
                 **({"cut": cut} if rule.is_rank else {})},
        "value": value,
        "predictions": {h: float(prediction[h]) for h in HEADS if h in prediction},
        "top_features": top_features,
    })
    return alert
