"""The ingester's ScoringHook (ingestion/hooks.py), served by ``ScoringService``.

The stream ingester calls ``on_high_signal(customer_ids, as_of)`` after each batch with
the customers whose high-signal events it just applied to the online store. The hook
scores them at ``as_of`` (the batch's event time, never the wall clock), applies the alert
rules and publishes. It never raises because the endpoint or the alert sink is down:
those requests and alerts are kept (pending / outbox) and retried on later calls, so a
failing endpoint does not make Kinesis redeliver the batch. Anything else (a bug)
propagates.
"""
from __future__ import annotations

import logging
from datetime import datetime

from .service import Outcome, ScoringService

log = logging.getLogger("mhp.serving.hook")


class ServingScoringHook:
    def __init__(self, service: ScoringService):
        self.service = service
        self.last: Outcome | None = None

    def on_high_signal(self, customer_ids: list[str], as_of: datetime) -> None:
        if not customer_ids:
            return
        self.last = self.service.score_and_alert(customer_ids, as_of)
        if self.last.errors:
            log.warning("scoring hook at %s: %s", as_of.isoformat(), self.last.summary())
