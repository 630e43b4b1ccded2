"""Publishing alerts with retries, backoff and the outbox: an alert is never lost.

``publish(alerts)``: each alert is already in the outbox (``ServingState.record_alerts``);
it is sent with exponential backoff (monotonic clock) and marked delivered, or left in the
outbox with its error. ``redeliver()`` sends what the outbox still holds (oldest first);
the service calls it before new work and on demand (``mhp score --redeliver``).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .endpoint import RetryPolicy
from .sinks import AlertSink
from .state import ServingState

log = logging.getLogger("mhp.serving.publisher")


@dataclass
class PublishReport:
    delivered: list[dict[str, Any]] = field(default_factory=list)
    failed: list[tuple[dict[str, Any], str]] = field(default_factory=list)   # (alert, last error), kept in the outbox

    def extend(self, other: "PublishReport") -> None:
        self.delivered += other.delivered
        self.failed += other.failed


class AlertPublisher:
    def __init__(self, sink: AlertSink, state: ServingState, retry: RetryPolicy = RetryPolicy(),
                 sleep: Callable[[float], None] = time.sleep):
        self.sink, self.state, self.retry, self._sleep = sink, state, retry, sleep

    def _send(self, alert: dict[str, Any]) -> str | None:
        delays = self.retry.delays()
        while True:
            try:
                self.sink.publish(alert)
                return None
            except Exception as exc:  # noqa: BLE001 - any sink failure is retried, then kept
                err = f"{type(exc).__name__}: {exc}"
                d = next(delays, None)
                if d is None:
                    return err
                self._sleep(d)

    def publish(self, alerts: list[dict[str, Any]]) -> PublishReport:
        report = PublishReport()
        for i, alert in enumerate(alerts):
            err = self._send(alert)
            if err is None:
                self.state.mark_delivered(alert["alert_id"])
                report.delivered.append(alert)
            else:
                # the sink is down: don't spend a full retry budget per alert; keep the rest for later
                for rest in alerts[i:]:
                    self.state.mark_failed(rest["alert_id"], err)
                    report.failed.append((rest, err))
                log.warning("alert sink %s failed (%s); %d alert(s) kept in the outbox",
                            self.sink.name, err, len(alerts) - i)
                break
        return report

    def redeliver(self, limit: int = 1000) -> PublishReport:
        pending = [a for a, _, _ in self.state.undelivered(limit)]
        return self.publish(pending) if pending else PublishReport()
