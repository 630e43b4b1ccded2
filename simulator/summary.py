"""Label base rates measured on the simulated events, with memory bounded by the open windows.

A window starts every WINDOW_EVERY days at 00:00 UTC of an anchor day and covers
whole days (anchor .. anchor + horizon - 1) for the customers subscribed at
that midnight; the labels are labels' functions of the declared aggregates
(``labels.AGGREGATES``) over those days.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from events.contract import EVENT_TYPES
from labels import AGGREGATES, CHURN, HEALTH, IB_CALLS, LABEL_HORIZON_DAYS

from .day_events import CODE, DayEvents

WINDOW_EVERY = 7


@dataclass
class _Window:
    anchor: int
    members: np.ndarray            # customer indices subscribed at the anchor midnight
    decile: np.ndarray             # latent-health decile (0 = least healthy) at the anchor
    counts: dict = field(default_factory=dict)


class BaseRates:
    def __init__(self, n_customers: int, n_days: int):
        self.n, self.days = n_customers, n_days
        self.open: list[_Window] = []
        self.event_counts = np.zeros(len(EVENT_TYPES), np.int64)
        self.active_customer_days = 0
        self.cancellations = 0
        self.calls_labels: list[float] = [0.0, 0.0]        # sum, n
        self.churn_labels = [0.0, 0.0]
        self.health_scores = [0.0, 0.0]
        self.churn_by_decile = np.zeros((10, 2))             # churned, windows

    def start_day(self, day: int, health: np.ndarray, active: np.ndarray) -> None:
        """Call at 00:00 of ``day`` with every customer's latent health and subscription flag."""
        self.active_customer_days += int(active.sum())
        if day % WINDOW_EVERY == 0 and day + IB_CALLS.days <= self.days:
            members = np.flatnonzero(active)
            rank = np.argsort(np.argsort(health[members], kind="stable"), kind="stable")
            decile = (rank * 10 // max(members.size, 1)).astype(np.int8)
            self.open.append(_Window(day, members, decile, {a.name: np.zeros(members.size) for a in AGGREGATES}))

    def add_day(self, day: int, events: DayEvents) -> None:
        self.event_counts += np.bincount(events.etype, minlength=len(EVENT_TYPES))
        counts = events.label_counts(self.n, np.ones(len(events), bool), AGGREGATES)
        self.cancellations += int(np.count_nonzero((events.etype == CODE["subscription_cancelled"]) & (events.cust >= 0)))
        still_open = []
        for w in self.open:
            age = day - w.anchor + 1  # whole days covered so far
            for a in AGGREGATES:
                if age <= a.days:
                    w.counts[a.name] += counts[a.name][w.members]
            if age == IB_CALLS.days:
                self.calls_labels[0] += IB_CALLS(w.counts).sum()
                self.calls_labels[1] += w.members.size
            if age == CHURN.days:
                churned = CHURN(w.counts)
                self.churn_labels[0] += churned.sum()
                self.churn_labels[1] += churned.size
                self.churn_by_decile[:, 0] += np.bincount(w.decile, churned, minlength=10)
                self.churn_by_decile[:, 1] += np.bincount(w.decile, minlength=10)
            if age == HEALTH.days:
                hs = HEALTH(w.counts)
                self.health_scores[0] += hs.sum()
                self.health_scores[1] += hs.size
            if age < LABEL_HORIZON_DAYS and day + 1 < self.days:
                still_open.append(w)
        self.open = still_open

    def result(self) -> dict:
        def ratio(pair):
            return float(pair[0] / pair[1]) if pair[1] else None

        by_decile = [float(c / n) if n else None for c, n in self.churn_by_decile]
        lo, hi = by_decile[0], by_decile[-1]
        return {
            "events_by_type": {t: int(c) for t, c in zip(EVENT_TYPES, self.event_counts)},
            "events_total": int(self.event_counts.sum()),
            "churn_30d_rate": ratio(self.churn_labels),
            "churn_per_30_customer_days": (30.0 * self.cancellations / self.active_customer_days
                                           if self.active_customer_days else None),
            "ib_calls_14d_rate": ratio(self.calls_labels),
            "health_score_mean": ratio(self.health_scores),
            "churn_30d_by_health_decile": by_decile,
            # None when undefined (no windows, or no churn at all in the healthiest decile)
            "churn_decile_ratio": lo / hi if lo is not None and hi else None,
            "customer_windows": {"churn": int(self.churn_labels[1]), "ib_calls": int(self.calls_labels[1])},
        }
