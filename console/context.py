"""What the console keeps loaded: the scoring path (Feast store + endpoint, the same ``Scorer`` that
``mhp score`` uses), the alert feed, the acknowledgements, the served-log index, the event log and the
reports. Built once per process, so a page costs an online lookup and rendering, not a model load.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from core.workspace import Workspace
from features import catalog as C
from features.retrieval import NO_SUBJECT, NO_TUTOR, online_feature_dict
from serving.config import HEADS, ServingConfig
from serving.scoring import Scored, Scorer

from .acks import AckStore
from .alert_feed import AlertFeed
from .event_log import EventLog
from .reports import Reports
from .served_history import ServedHistory

#: the views computed at request time (their features have no stored update time)
ON_DEMAND_VIEWS = frozenset(f.view for f in C.ON_DEMAND)
#: the direction that makes a head worse: churn and IB-call risk up, health down
HEAD_DIRECTION = {"churn_risk_30d": 1, "ib_call_risk_14d": 1, "customer_health_score": -1}
HEAD_RANGE = {"churn_risk_30d": (0.0, 1.0), "ib_call_risk_14d": (0.0, 1.0), "customer_health_score": (0.0, 100.0)}
#: the spec's seven categories, in its order
CATEGORIES = ("window", "recency", "lifetime", "tutor", "subject", "segment", "trend")
ACK_DB = "console/acks.sqlite"


def feature_categories() -> dict[str, str]:
    """Model feature -> its spec category (tutor/subject/marketplace views: tutor / subject)."""
    out = {f.name: f.category for f in C.CUSTOMER_FEATURES + C.ON_DEMAND}
    by_view = {C.TUTOR_VIEW: "tutor", C.SUBJECT_VIEW: "subject", C.MARKETPLACE_VIEW: "subject"}
    return {m["name"]: out.get(m["name"]) or by_view.get(m["view"], "other") for m in C.model_features()}


@dataclass
class Console:
    workspace: Workspace
    store: Any
    scorer: Scorer
    config: ServingConfig
    default_at: Callable[[], datetime]
    alerts: AlertFeed = field(init=False)
    acks: AckStore = field(init=False)
    history: ServedHistory = field(init=False)
    events: EventLog = field(init=False)
    reports: Reports = field(init=False)
    categories: dict[str, str] = field(init=False)
    views: dict[str, str] = field(init=False)

    def __post_init__(self):
        state = Path(self.workspace.state)
        self.alerts = AlertFeed(state, self.config.state_db, self.config.alert_log)
        self.acks = AckStore(state / ACK_DB)
        self.history = ServedHistory(state / self.config.served_log)
        self.events = EventLog(self.workspace.events)
        self.reports = Reports(state)
        self.categories = feature_categories()
        self.views = {m["name"]: m["view"] for m in C.model_features()}
        self._population: dict[str, list[float]] | None = None
        self._population_size = -1

    # ------------------------------------------------------------------ scores
    def score(self, customer_id: str, at: datetime) -> Scored:
        """The live scoring path, as ``mhp score --customer ID --at T --no-alerts`` (no served-log write:
        the console is read-only)."""
        return self.scorer.score([customer_id], at)[0]

    def invoke(self, rows: list[dict]) -> list[dict]:
        return self.scorer.invoke(rows) if rows else []

    def view_timestamps(self, customer_id: str, at: datetime) -> dict[str, str | None]:
        """Each stored view's last write for this customer (its tutor, subject, the marketplace), UTC;
        on-demand views are computed at the request time."""
        keys = online_feature_dict(self.store, [customer_id], at)
        tutor, subject = keys.get("tutor_id", [None])[0], keys.get("subject", [None])[0]
        probe = {C.CUSTOMER_VIEW: C.LOOKUP_KEYS[C.TUTOR_VIEW]}
        for name, view in self.views.items():
            if view in (C.TUTOR_VIEW, C.SUBJECT_VIEW, C.MARKETPLACE_VIEW) and view not in probe:
                probe[view] = name
        refs = [f"{view}:{name}" for view, name in probe.items()]
        row = {"customer_id": customer_id, "tutor_id": tutor or NO_TUTOR, "subject": subject or NO_SUBJECT,
               "marketplace_id": C.MARKETPLACE_KEY}
        got = self.store.get_online_features(features=refs, entity_rows=[row], full_feature_names=True) \
            .to_dict(include_event_timestamps=True)
        out: dict[str, str | None] = {}
        for view, name in probe.items():
            ts = next((v[0] for k, v in got.items() if k.startswith(f"{view}__{name}") and k != f"{view}__{name}"),
                      None)
            out[view] = datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else None
        return out

    # ------------------------------------------------------------------ population
    def population_scores(self) -> dict[str, list[float]]:
        """Each head's scores over the population's latest served vectors (re-scored once, then cached
        until the served log grows)."""
        self.history.refresh()
        latest = self.history.latest_vectors()
        if self._population is None or len(latest) != self._population_size:
            rows = [{c: v.get(c) for c in self.scorer.columns} for v in latest]
            preds: list[dict] = []
            for start in range(0, len(rows), 2000):
                preds.extend(self.invoke(rows[start:start + 2000]))
            self._population = {h: [float(p[h]) for p in preds] for h in HEADS}
            self._population_size = len(latest)
        return self._population

    def close(self) -> None:
        self.acks.close()
        self.events.close()
