"""Score, decide, alert: the serving side of a trigger, with nothing lost on failure.

Three entry points, one pipeline:

* ``record_triggers(customer_ids, as_of)`` (the stream hook): only writes the requests to the
  state's *pending* table and returns; no network call to the endpoint or the sink.
* ``drain()`` (the worker: after each ingest batch in process, or a scheduled function): serves
  the pending requests, oldest as-of first, then delivers the outbox. After a failure, scoring and
  delivery each wait before trying again (monotonic): ``pending_retry_interval``, doubling per
  consecutive failure up to ``MAX_BACKOFF``, so a down endpoint costs one bounded attempt per wait.
* ``score_day(customer_ids, at)`` (the daily batch) and ``score_and_alert`` (one-off): score now.

The pipeline for one (customers, as-of) group:

1. score (``serving.scoring``); if the online lookup fails or the endpoint stays unavailable after
   its retries, the requests stay *pending* (retried later); a 4xx (the endpoint rejected our own
   feature vector: a schema bug) is stored as *rejected* and reported, never silently dropped;
2. evaluate the rules (rank rules against the day's stored cut); drop candidates in cooldown;
3. explain the survivors (``serving.attribution``: one batched endpoint call);
4. record them atomically in the outbox + cooldown (``ServingState.record_alerts``), and only
   then drop the pending request; a crash in between re-scores it into the same ``alert_id``s,
   which the outbox ignores;
5. publish from the outbox (``serving.publisher``, one retry policy); what cannot be published
   stays there and is reported. At least once: a publish whose reply is lost is sent again with
   the same ``alert_id``.
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
from .scoring import OnlineLookupFailed, Scored, Scorer
from .state import ServingState

log = logging.getLogger("mhp.serving.service")

#: the longest wait (seconds, monotonic) between the worker's attempts at a down endpoint or sink
MAX_BACKOFF = 60.0
#: occluded rows per attribution call: ~6.4 KB of JSON per row, so ~6.5 MB, well inside the
#: server's 16 MiB body limit (a larger body is refused before it is read: the call never succeeds)
ATTRIBUTION_ROWS_PER_CALL = 1000


@dataclass
class Outcome:
    scored: list[Scored] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)          # emitted (enqueued) this call
    suppressed: list[tuple[str, str]] = field(default_factory=list)     # (customer_id, type) in cooldown
    publish: PublishReport = field(default_factory=PublishReport)
    pending: list[str] = field(default_factory=list)                    # customers kept for a later retry
    rejected: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def merge(self, other: "Outcome", scored: bool = True) -> "Outcome":
        if scored:
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
        self._next_delivery = 0.0
        self._scoring_failures = 0      # consecutive: the wait doubles, up to MAX_BACKOFF
        self._delivery_failures = 0

    # --- the stream hook: record only -------------------------------------------------------
    def record_triggers(self, customer_ids: Sequence[str], as_of: datetime) -> None:
        self.state.add_triggers(list(dict.fromkeys(customer_ids)), as_of)

    # --- the worker -------------------------------------------------------------------------
    def drain(self, force: bool = False) -> Outcome:
        """Serve pending requests (grouped by as-of, oldest first), then deliver the outbox."""
        out = Outcome()
        if force or self._monotonic() >= self._next_pending_retry:
            by_time: dict[datetime, list[str]] = {}
            for p in self.state.pending():
                by_time.setdefault(p.as_of, []).append(p.customer_id)
            for as_of, ids in sorted(by_time.items()):
                res = self._score_and_alert(ids, as_of, publish=False)
                out.merge(res)
                if res.pending:   # still down: stop here, keep the rest
                    break
        report = self.deliver(force)
        out.publish.extend(report)
        if report.failed:
            out.errors.append(f"{len(report.failed)} alert(s) not published, kept in the outbox: {report.failed[0][1]}")
        return out

    def deliver(self, force: bool = False) -> PublishReport:
        """Publish what the outbox holds, oldest first; after a failure wait before the next pass."""
        if not force and self._monotonic() < self._next_delivery:
            return PublishReport()
        report = self.publisher.redeliver()
        if report.failed:
            self._delivery_failed()
        else:
            self._delivery_failures, self._next_delivery = 0, 0.0
        return report

    def _backoff(self, failures: int) -> float:
        return min(self.config.pending_retry_interval * 2 ** min(failures, 16), MAX_BACKOFF)

    def _scoring_failed(self) -> None:
        self._next_pending_retry = self._monotonic() + self._backoff(self._scoring_failures)
        self._scoring_failures += 1

    def _delivery_failed(self) -> None:
        self._next_delivery = self._monotonic() + self._backoff(self._delivery_failures)
        self._delivery_failures += 1

    def recover(self) -> Outcome:
        """Retry pending scoring requests and redeliver the outbox now (``mhp score --recover``)."""
        return self.drain(force=True)

    # --- direct scoring (one-off, daily batch) ----------------------------------------------
    def score_and_alert(self, customer_ids: Sequence[str], as_of: datetime) -> Outcome:
        out = Outcome()
        if self._monotonic() >= self._next_pending_retry and (
                self.state.pending_count() or self.state.undelivered_count()):
            out.merge(self.drain())
        return out.merge(self._score_and_alert(customer_ids, as_of))

    def score_day(self, customer_ids: Sequence[str], at: datetime, chunk: int = 256) -> Outcome:
        """The daily batch: score everyone (chunks), store each rank rule's cut over the scored
        population, then decide, record and publish. Chunks whose scoring fails stay pending
        (the cut is then over the customers that were scored)."""
        out = self.drain()
        ids = list(dict.fromkeys(customer_ids))
        scored: list[Scored] = []
        for start in range(0, len(ids), chunk):
            res = self._score(ids[start:start + chunk], at)
            scored += res.scored
            out.merge(res)
        for r in self.config.rules:
            if r.is_rank and scored:
                cut = r.cut_of(float(s.prediction[r.head]) for s in scored if r.head in s.prediction)
                if cut is not None:
                    self.state.set_rank_threshold(r.type, cut, at)
        for start in range(0, len(scored), chunk):
            out.merge(self._decide(scored[start:start + chunk], at, publish=False), scored=False)
        report = self.deliver(force=True)
        out.publish.extend(report)
        if report.failed:
            out.errors.append(f"{len(report.failed)} alert(s) not published, kept in the outbox: {report.failed[0][1]}")
        return out

    # --- the pipeline -----------------------------------------------------------------------
    def _score(self, customer_ids: Sequence[str], as_of: datetime) -> Outcome:
        out = Outcome()
        ids = list(dict.fromkeys(customer_ids))
        if not ids:
            return out
        try:
            scored = self.scorer.score(ids, as_of)
        except (EndpointUnavailable, OnlineLookupFailed) as exc:
            what = "online lookup failed" if isinstance(exc, OnlineLookupFailed) else "endpoint unavailable"
            self.state.add_pending(ids, as_of, str(exc))
            self._scoring_failed()
            out.pending, out.errors = ids, [f"{what}, {len(ids)} request(s) kept as pending: {exc}"]
            log.warning(out.errors[0])
            return out
        except EndpointRejected as exc:
            self.state.add_pending(ids, as_of, str(exc), state="rejected")
            out.rejected, out.errors = ids, [f"endpoint rejected the feature vectors: {exc}"]
            log.error(out.errors[0])
            return out
        self._scoring_failures, self._next_pending_retry = 0, 0.0
        out.scored = scored
        return out

    def _score_and_alert(self, customer_ids: Sequence[str], as_of: datetime, publish: bool = True) -> Outcome:
        out = self._score(customer_ids, as_of)
        if out.scored:
            out.merge(self._decide(out.scored, as_of, publish), scored=False)
        return out

    def _decide(self, scored: list[Scored], as_of: datetime, publish: bool) -> Outcome:
        """Rules -> cooldown -> attribution -> outbox (then pending removed) -> publish."""
        out = Outcome()
        ids = [s.customer_id for s in scored]
        cd = self.config.cooldown_us
        cuts = {r.type: self.state.rank_threshold(r.type) for r in self.config.rules if r.is_rank}
        todo: list[tuple[Scored, list]] = []
        for s in scored:
            rules = []
            for r in firing_rules(s.prediction, self.config.rules, cuts):
                if self.state.in_cooldown(s.customer_id, r.type, as_of, cd):
                    out.suppressed.append((s.customer_id, r.type))
                else:
                    rules.append(r)
            if rules:
                todo.append((s, rules))
        if not todo:
            self.state.remove_pending(ids, as_of)
            return out
        try:
            explained = self._explain(todo)
        except EndpointUnavailable as exc:
            # alerts without reasons are not the contract: keep the requests and redo them later
            alerting = [s.customer_id for s, _ in todo]
            self.state.remove_pending([c for c in ids if c not in set(alerting)], as_of)
            self.state.add_pending(alerting, as_of, f"attribution: {exc}")
            self._scoring_failed()
            out.pending = alerting
            out.errors.append(f"endpoint unavailable during attribution, {len(alerting)} kept as pending: {exc}")
            return out
        candidates = [build_alert(r, s.customer_id, as_of, s.prediction, explained[i].get(r.head, []),
                                  cuts.get(r.type))
                      for i, (s, rules) in enumerate(todo) for r in rules]
        emitted = self.state.record_alerts(candidates, cd)
        self.state.remove_pending(ids, as_of)     # only now: the outbox holds the alerts
        emitted_ids = {a["alert_id"] for a in emitted}
        out.suppressed += [(a["customer_id"], a["type"]) for a in candidates if a["alert_id"] not in emitted_ids]
        out.alerts = emitted
        if publish and emitted:
            out.publish = self.publisher.publish(emitted)
            if out.publish.failed:
                self._delivery_failed()
                out.errors.append(f"{len(out.publish.failed)} alert(s) not published, kept in the outbox: "
                                  f"{out.publish.failed[0][1]}")
        return out

    def _explain(self, todo) -> list[dict[str, list]]:
        if not self.config.attribution or self.config.top_features == 0:
            return [{} for _ in todo]
        return attribution.explain(
            [s.features for s, _ in todo], [s.prediction for s, _ in todo],
            [[(r.head, r.direction) for r in rules] for _, rules in todo],
            self.scorer.columns, self.scorer.invoke, self.config.top_features,
            max_rows_per_call=ATTRIBUTION_ROWS_PER_CALL)
