"""The inference trigger: the handler calls a scoring hook for customers with high-signal events.

The serving path implements :class:`ScoringHook`; the ingester takes one by injection
(``Ingester(hook=...)``) and calls ``on_high_signal`` once per invocation, after the changed
rows are online and the state is saved, with the customers that had at least one newly applied
event of a type in :data:`HIGH_SIGNAL_TYPES` (duplicates and dead letters never trigger) and
``as_of`` = the latest event time among those events (event time, never the wall clock).
A hook that raises is logged and counted (``ScoringHookErrors``) but does not fail the batch:
the features are already stored, and re-delivering the records would not re-trigger it.
"""
from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

HIGH_SIGNAL_TYPES = frozenset({"session_completed", "inbound_call", "payment_failed", "subscription_cancelled",
                               "booking_request"})


@runtime_checkable
class ScoringHook(Protocol):
    def on_high_signal(self, customer_ids: list[str], as_of: datetime) -> None:
        """Score these customers (their online features are current as of ``as_of``)."""


class NoOpScoringHook:
    """The default until the serving path provides one."""

    def on_high_signal(self, customer_ids: list[str], as_of: datetime) -> None:
        return None
