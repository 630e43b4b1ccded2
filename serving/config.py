"""Serving configuration: endpoint, alert rules and thresholds, cooldown, retries, sinks.

Load from JSON (``ServingConfig.load(path)``) or a dict (``ServingConfig.from_dict``); every
bad value raises :class:`ConfigError` naming the field and what was expected. Unset fields
take the defaults below; paths are relative to the workspace state folder.

Example (all optional)::

    {"profile": "aws-local", "endpoint_url": "http://127.0.0.1:8080",
     "cooldown_hours": 24, "top_features": 5, "topic_name": "mhp-alerts",
     "rules": [{"type": "churn_risk_high", "severity": "high", "head": "churn_risk_30d",
                "op": ">", "threshold": 0.6}]}
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

from .endpoint import RetryPolicy

HEADS = ("churn_risk_30d", "ib_call_risk_14d", "customer_health_score")
PROFILES = ("local", "aws-local", "aws")
THRESHOLD_OPS = (">", "<")
RANK_OPS = ("top", "bottom")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class AlertRule:
    """Fire ``type`` at ``severity`` when ``prediction[head] <op> threshold``.

    Threshold rules: op ``>`` or ``<``. Rank rules: op ``top`` (largest values) or ``bottom``
    (smallest), ``threshold`` = the fraction of the day's scored population to alert (0.05 = the
    riskiest 5%). A rank rule fires against a *cut*: the daily batch computes it from everyone it
    scored that day and stores it; stream-triggered scoring uses the latest stored cut (none
    stored yet: the rule does not fire).
    """

    type: str
    severity: str
    head: str
    op: str
    threshold: float

    @property
    def is_rank(self) -> bool:
        return self.op in RANK_OPS

    def fires(self, value: float, cut: float | None = None) -> bool:
        if self.op == ">":
            return value > self.threshold
        if self.op == "<":
            return value < self.threshold
        if cut is None:
            return False
        return value >= cut if self.op == "top" else value <= cut

    def cut_of(self, values) -> float | None:
        """The rank rule's cut over a day's values: the k-th largest (top) / smallest (bottom),
        k = ceil(fraction x n), at least 1."""
        vals = sorted(float(v) for v in values)
        if not vals:
            return None
        k = max(1, math.ceil(self.threshold * len(vals) - 1e-9))
        return vals[-k] if self.op == "top" else vals[k - 1]

    @property
    def direction(self) -> int:
        """+1 if a larger head value is worse (risk), -1 if smaller is worse (health)."""
        return 1 if self.op in (">", "top") else -1


#: the spec's three rules (feature-engineering-spec.md, check_alert_thresholds)
SPEC_RULES: tuple[AlertRule, ...] = (
    AlertRule("churn_risk_ib_calls", "critical", "ib_call_risk_14d", ">", 0.7),
    AlertRule("churn_risk_high", "high", "churn_risk_30d", ">", 0.6),
    AlertRule("health_score_critical", "high", "customer_health_score", "<", 40.0),
)
#: the defaults: the spec's rules plus one rank rule
DEFAULT_RULES: tuple[AlertRule, ...] = SPEC_RULES + (
    # rank rule: the calibrated churn probability rarely passes 0.6, so the spec's rule alone may
    # never fire; the riskiest 5% of each day's scored customers always yields a daily list
    AlertRule("churn_risk_top5pct", "high", "churn_risk_30d", "top", 0.05),
)


@dataclass(frozen=True)
class ServingConfig:
    profile: str = "local"
    #: local / aws-local: our inference server; aws: the SageMaker endpoint name
    endpoint_url: str = "http://127.0.0.1:8080"
    endpoint_name: str = "mhp-churn"
    connect_timeout: float = 1.0
    read_timeout: float = 5.0
    invoke_retry: RetryPolicy = RetryPolicy(attempts=3, initial_delay=0.05, factor=2.0, max_delay=0.5)
    rules: tuple[AlertRule, ...] = DEFAULT_RULES
    #: event time: a second alert of the same type for the same customer within this window is suppressed
    cooldown_hours: float = 24.0
    top_features: int = 5
    attribution: bool = True
    publish_retry: RetryPolicy = RetryPolicy(attempts=4, initial_delay=0.05, factor=2.0, max_delay=1.0)
    #: pending scoring requests are retried no more often than this (monotonic seconds)
    pending_retry_interval: float = 1.0
    alert_log: str = "alerts/alerts.jsonl"          # local sink
    topic_name: str = "mhp-alerts"                  # SNS sink (aws-local / aws)
    topic_arn: str = ""                             # overrides topic_name when set
    state_db: str = "serving/state.sqlite"          # cooldown, outbox, pending requests
    served_log: str = "serving/served.jsonl"        # served feature vectors for drift

    @property
    def cooldown_us(self) -> int:
        return int(round(self.cooldown_hours * 3600 * 1_000_000))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ServingConfig":
        if not isinstance(data, Mapping):
            raise ConfigError(f"serving config: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"serving config: unknown field(s) {unknown}; expected some of {sorted(known)}")
        kw: dict[str, Any] = {}
        for name, value in data.items():
            if name == "rules":
                kw[name] = _rules(value)
            elif name in ("invoke_retry", "publish_retry"):
                kw[name] = _retry(name, value)
            elif name == "profile":
                if value not in PROFILES:
                    raise ConfigError(f"profile: expected one of {list(PROFILES)}, got {value!r}")
                kw[name] = value
            elif name in ("connect_timeout", "read_timeout", "cooldown_hours", "pending_retry_interval"):
                kw[name] = _number(name, value, minimum=0.0)
            elif name == "top_features":
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ConfigError(f"top_features: expected a non-negative integer, got {value!r}")
                kw[name] = value
            elif name == "attribution":
                if not isinstance(value, bool):
                    raise ConfigError(f"attribution: expected true or false, got {value!r}")
                kw[name] = value
            else:
                if not isinstance(value, str):
                    raise ConfigError(f"{name}: expected a string, got {value!r}")
                kw[name] = value
        return cls(**kw)

    @classmethod
    def load(cls, path) -> "ServingConfig":
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"serving config: no file {path}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"serving config {path}: not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def with_(self, **changes) -> "ServingConfig":
        return replace(self, **changes)


def _number(name: str, value: Any, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}: expected a number >= {minimum}, got {value!r}")
    return float(value)


def _retry(name: str, value: Any) -> RetryPolicy:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name}: expected an object with attempts/initial_delay/factor/max_delay, got {value!r}")
    allowed = {"attempts", "initial_delay", "factor", "max_delay"}
    bad = sorted(set(value) - allowed)
    if bad:
        raise ConfigError(f"{name}: unknown field(s) {bad}; expected some of {sorted(allowed)}")
    kw = {k: _number(f"{name}.{k}", v, minimum=0.0) for k, v in value.items()}
    if "attempts" in kw:
        if kw["attempts"] < 1 or kw["attempts"] != int(kw["attempts"]):
            raise ConfigError(f"{name}.attempts: expected an integer >= 1, got {value['attempts']!r}")
        kw["attempts"] = int(kw["attempts"])
    return RetryPolicy(**kw)


def _rules(value: Any) -> tuple[AlertRule, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"rules: expected a non-empty list of rule objects, got {value!r}")
    out = []
    for i, r in enumerate(value):
        where = f"rules[{i}]"
        if not isinstance(r, Mapping):
            raise ConfigError(f"{where}: expected an object, got {r!r}")
        need = {"type", "severity", "head", "op", "threshold"}
        missing, extra = sorted(need - set(r)), sorted(set(r) - need)
        if missing or extra:
            raise ConfigError(f"{where}: missing {missing} / unknown {extra}; expected exactly {sorted(need)}")
        if r["head"] not in HEADS:
            raise ConfigError(f"{where}.head: expected one of {list(HEADS)}, got {r['head']!r}")
        if r["op"] not in THRESHOLD_OPS + RANK_OPS:
            raise ConfigError(f"{where}.op: expected one of {list(THRESHOLD_OPS + RANK_OPS)}, got {r['op']!r}")
        if r["op"] in RANK_OPS and (isinstance(r["threshold"], bool) or not isinstance(r["threshold"], (int, float))
                                    or not 0 < r["threshold"] <= 1):
            raise ConfigError(f"{where}.threshold: a '{r['op']}' rule takes the fraction of the day's customers "
                              f"to alert, in (0, 1], got {r['threshold']!r}")
        for k in ("type", "severity"):
            if not isinstance(r[k], str) or not r[k]:
                raise ConfigError(f"{where}.{k}: expected a non-empty string, got {r[k]!r}")
        out.append(AlertRule(r["type"], r["severity"], r["head"], r["op"], _number(f"{where}.threshold", r["threshold"])))
    types = [r.type for r in out]
    if len(set(types)) != len(types):
        raise ConfigError(f"rules: alert types must be unique, got {types}")
    return tuple(out)


