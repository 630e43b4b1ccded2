"""The ingester's ScoringHook (ingestion/hooks.py): record the trigger, return; a worker serves it.

The stream ingester calls ``on_high_signal(customer_ids, as_of)`` after each batch with the
customers whose high-signal events it just applied to the online store. The hook only writes
the (customer, as-of) requests to the serving state's pending table (one local SQLite
transaction, or DynamoDB writes on the deployed functions) and returns: no online lookup, no
endpoint call, no publish, so a down endpoint or SNS cannot hold the ingester.

``drain()`` is the worker: it scores the pending requests at their as-of time, applies the rules,
records the alerts in the outbox and delivers it (``ScoringService.drain``). The local profile
runs it after each ingest batch (``DrainAfterBatch``); the deployed ingest function runs it after
its batch, and the daily batch scoring delivers too. ``last`` holds the last drain's ``Outcome``.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from .service import Outcome, ScoringService

log = logging.getLogger("mhp.serving.hook")


class ServingScoringHook:
    def __init__(self, service: ScoringService):
        self.service = service
        self.last: Outcome | None = None

    def on_high_signal(self, customer_ids: list[str], as_of: datetime) -> None:
        if customer_ids:
            self.service.record_triggers(customer_ids, as_of)

    def drain(self, force: bool = False) -> Outcome:
        self.last = self.service.drain(force)
        if self.last.errors:
            log.warning("scoring worker: %s", self.last.summary())
        return self.last


class DrainAfterBatch:
    """An ingester whose every ``handle`` is followed by the hook's drain (the in-process worker).

    The drain's failures are kept (pending / outbox) and reported on ``serving_hook.last``; they never
    fail the ingest batch. Other attributes are the wrapped ingester's."""

    def __init__(self, ingester: Any, hook: ServingScoringHook):
        self._ingester, self.serving_hook = ingester, hook

    def handle(self, event: dict, context: Any = None) -> dict:
        resp = self._ingester.handle(event, context)
        try:
            self.serving_hook.drain()
        except Exception:  # noqa: BLE001 - e.g. the state store unreachable: the requests stay pending
            log.exception("scoring worker failed after the ingest batch; pending requests are kept")
        return resp

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ingester, name)
