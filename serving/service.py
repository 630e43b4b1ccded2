"""Score, decide, alert: the serving side of a trigger, with nothing lost on failure.

``ScoringService.score_and_alert(customer_ids, as_of)``:

1. first, if earlier requests are pending (endpoint was down) and the retry interval has
   passed (monotonic clock), retry them, and redeliver undelivered alerts from the outbox;
2. score the customers (``serving.scoring``); if the endpoint stays unavailable after the
   retries, the (customer, as-of) requests are stored as *pending* and the error is
   reported -- they are scored, and their alerts sent, once the endpoint is back;
   a 4xx (the endpoint rejected our own feature vector: a schema bug) is stored as
   *rejected* and reported, never silently dropped;
3. evaluate the rules; drop candidates still in cooldown (event time);
4. explain the survivors (``serving.attribution``: one batched endpoint call);
5. record them atomically in the outbox + cooldown (``ServingState.record_alerts``), then
   publish with retries (``serving.publisher``); what cannot be published stays in the
   outbox and is reported.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Sequence

from . import attribution
from .alerts import build_alert, firing_rules
from .config import ServingConfig
from .endpoint import EndpointRejected, EndpointUnavailable
from .publisher import AlertPublisher, PublishReport
from .scoring import Scored, Scorer
from .state import ServingState

log = logging.getLogger("mhp.serving.service")


@dataclass
class Outcome:
    scored: list[Scored] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)          # emitted (enqueued) this call
    suppressed: list[tuple[str, str]] = field(default_factory=list)     # (customer_id, type) in cooldown
    publish: PublishReport = field(default_factory=PublishReport)
    pending: list[str] = field(default_factory=list)                    # customers kept for a later retry
    rejected: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def merge(self, other: "Outcome") -> "Outcome":
        self.scored += other.scored
        self.alerts += other.alerts
        self.suppressed += other.suppressed
        self.publish.extend(other.publish)
        self.pending += other.pending
        self.rejected += other.rejected
        self.errors += other.errors
        return self

    def summary(self) -> str:
        return (f"scored {len(self.scored)}, alerts {len(self.alerts)} (delivered {len(self.publish.delivered)}, "
                f"kept in outbox {len(self.publish.failed)}), suppressed {len(self.suppressed)}, "
                f"pending {len(self.pending)}, rejected {len(self.rejected)}"
                + (f"; errors: {'; '.join(self.errors)}" if self.errors else ""))


class ScoringService:
    def __init__(self, scorer: Scorer, publisher: AlertPublisher, state: ServingState, config: ServingConfig,
                 monotonic: Callable[[], float] = time.monotonic):
        self.scorer, self.publisher, self.state, self.config = scorer, publisher, state, config
        self._monotonic = monotonic
        self._next_pending_retry = 0.0

    # --- the trigger entry point -----------------------------------------------------------
    def score_and_alert(self, customer_ids: Sequence[str], as_of: datetime) -> Outcome:
        out = Outcome()
        if self._monotonic() >= self._next_pending_retry and (
                self.state.pending_count() or self.state.undelivered_count()):
            out.merge(self.recover())
        return out.merge(self._score_and_alert(customer_ids, as_of))

    def recover(self) -> Outcome:
        """Retry pending scoring requests (oldest first, grouped by as-of time), redeliver the outbox."""
        out = Outcome()
        out.publish.extend(self.publisher.redeliver())
        by_time: dict[datetime, list[str]] = {}
        for p in self.state.pending():
            by_time.setdefault(p.as_of, []).append(p.customer_id)
        for as_of, ids in sorted(by_time.items()):
            res = self._score_and_alert(ids, as_of)
            out.merge(res)
            if res.pending:   # still down: stop here, keep the rest
                break
        return out

    def _score_and_alert(self, customer_ids: Sequence[str], as_of: datetime) -> Outcome:
        out = Outcome()
        ids = list(dict.fromkeys(customer_ids))
        if not ids:
            return out
        try:
            scored = self.scorer.score(ids, as_of)
        except EndpointUnavailable as exc:
            self.state.add_pending(ids, as_of, str(exc))
            self._next_pending_retry = self._monotonic() + self.config.pending_retry_interval
            out.pending, out.errors = ids, [f"endpoint unavailable, {len(ids)} request(s) kept as pending: {exc}"]
            log.warning(out.errors[0])
            return out
        except EndpointRejected as exc:
            self.state.add_pending(ids, as_of, str(exc), state="rejected")
            out.rejected, out.errors = ids, [f"endpoint rejected the feature vectors: {exc}"]
            log.error(out.errors[0])
            return out
        self.state.remove_pending(ids, as_of)
        self._next_pending_retry = 0.0
        out.scored = scored
        cd = self.config.cooldown_us
        todo: list[tuple[Scored, list]] = []
        for s in scored:
            rules = []
            for r in firing_rules(s.prediction, self.config.rules):
                if self.state.in_cooldown(s.customer_id, r.type, as_of, cd):
                    out.suppressed.append((s.customer_id, r.type))
                else:
                    rules.append(r)
            if rules:
                todo.append((s, rules))
        if not todo:
            return out
        try:
            explained = self._explain(todo)
        except EndpointUnavailable as exc:
            # alerts without reasons are not the contract: keep the requests and redo them later
            alerting = [s.customer_id for s, _ in todo]
            self.state.add_pending(alerting, as_of, f"attribution: {exc}")
            self._next_pending_retry = self._monotonic() + self.config.pending_retry_interval
            out.pending = alerting
            out.errors.append(f"endpoint unavailable during attribution, {len(alerting)} kept as pending: {exc}")
            return out
        candidates = [build_alert(r, s.customer_id, as_of, s.prediction, explained[i].get(r.head, []))
                      for i, (s, rules) in enumerate(todo) for r in rules]
        emitted = self.state.record_alerts(candidates, cd)
        emitted_ids = {a["alert_id"] for a in emitted}
        out.suppressed += [(a["customer_id"], a["type"]) for a in candidates if a["alert_id"] not in emitted_ids]
        out.alerts = emitted
        out.publish = self.publisher.publish(emitted)
        if out.publish.failed:
            out.errors.append(f"{len(out.publish.failed)} alert(s) not published, kept in the outbox: "
                              f"{out.publish.failed[0][1]}")
        return out

    def _explain(self, todo) -> list[dict[str, list]]:
        if not self.config.attribution or self.config.top_features == 0:
            return [{} for _ in todo]
        return attribution.explain(
            [s.features for s, _ in todo], [s.prediction for s, _ in todo],
            [[(r.head, r.direction) for r in rules] for _, rules in todo],
            self.scorer.columns, self.scorer.invoke, self.config.top_features)
