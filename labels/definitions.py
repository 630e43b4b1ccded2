"""Label definitions: functions of a customer's behaviour strictly after t.

For an example at time t, labels use events with timestamp in (t, t + horizon]
(docs/model.md#labels). Each label is declared once here, as a function of
per-customer aggregates of that future window (``LabelAggregate``: which events,
with the event-filter language the features use, over how many days, counted or
summed). The dataset builder renders the aggregates to SQL over the real event
log and the simulator evaluates them on simulated futures, so both compute the
very same quantity.

health_score (0-100), over the next HEALTH_DAYS days:
    engagement   = min(completed_sessions / 8, 1)
    satisfaction = (mean rating - 1) / 4, or 0.5 when no session was rated
    friction     = min((inbound_calls + 2 * failed_payments + no_shows) / 6, 1)
    retained     = 0 if the subscription was cancelled in the window, else 1
    health_score = 100 * (0.35 * engagement + 0.25 * satisfaction
                          + 0.20 * (1 - friction) + 0.20 * retained)
A customer who cancels stops producing events, so engagement falls with it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from events.filters import EventFilter, eq, events, present

CHURN_DAYS = 30
CALLS_DAYS = 14
CALLS_THRESHOLD = 2
HEALTH_DAYS = 30


# --------------------------------------------------------------------------- label functions

def churn_label(cancelled_within_30d) -> np.ndarray:
    """1 if the subscription was cancelled in the window (a flag or a count of cancellations)."""
    return (np.asarray(cancelled_within_30d) > 0).astype(np.int8)


def ib_calls_label(inbound_calls_within_14d) -> np.ndarray:
    return (np.asarray(inbound_calls_within_14d) >= CALLS_THRESHOLD).astype(np.int8)


def health_score(completed_sessions, rating_sum, rating_n, inbound_calls, failed_payments, no_shows,
                 cancelled) -> np.ndarray:
    """All arguments are counts/sums over (t, t + HEALTH_DAYS] (``cancelled``: a flag or a count);
    vectorised over customers."""
    completed = np.asarray(completed_sessions, dtype=float)
    rating_n = np.asarray(rating_n, dtype=float)
    rating_sum = np.asarray(rating_sum, dtype=float)
    engagement = np.minimum(completed / 8.0, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        satisfaction = np.where(rating_n > 0, (rating_sum / np.maximum(rating_n, 1) - 1.0) / 4.0, 0.5)
    friction = np.minimum(
        (np.asarray(inbound_calls, float) + 2 * np.asarray(failed_payments, float) + np.asarray(no_shows, float)) / 6.0,
        1.0,
    )
    retained = 1.0 - (np.asarray(cancelled, dtype=float) > 0)
    return 100.0 * (0.35 * engagement + 0.25 * satisfaction + 0.20 * (1.0 - friction) + 0.20 * retained)


# --------------------------------------------------------------------------- declarations

@dataclass(frozen=True)
class LabelAggregate:
    """A per-customer quantity over the future window (t, t + days]: the number of events matching
    ``source``, or the sum of their ``value`` field when ``value`` is set (0 when there are none)."""

    name: str
    source: EventFilter
    days: int
    value: str | None = None

    def describe(self) -> str:
        what = f"sum of `{self.value}`" if self.value else "number"
        return f"{what} of events {self.source.describe()} in (t, t+{self.days}d]"


@dataclass(frozen=True)
class Label:
    """A label: ``fn`` of its ``inputs``' values, passed positionally in the declared order."""

    name: str
    inputs: tuple[LabelAggregate, ...]
    fn: Callable[..., np.ndarray]

    @property
    def days(self) -> int:
        """The label's horizon: the longest window it reads."""
        return max(a.days for a in self.inputs)

    def __call__(self, values: Mapping[str, Any]) -> np.ndarray:
        """The label from a mapping aggregate name -> per-row values."""
        return self.fn(*(values[a.name] for a in self.inputs))


def _cancellations(days: int) -> LabelAggregate:
    return LabelAggregate(f"cancelled_{days}d", events("subscription_cancelled"), days)


def _inbound_calls(days: int) -> LabelAggregate:
    return LabelAggregate(f"inbound_calls_{days}d", events("inbound_call"), days)


_completed = eq("status", "completed")
_rated = (_completed, present("student_rating"))

CHURN = Label("churn_30d", (_cancellations(CHURN_DAYS),), churn_label)
IB_CALLS = Label("ib_calls_14d", (_inbound_calls(CALLS_DAYS),), ib_calls_label)
HEALTH = Label("health_score", (   # in health_score's argument order
    LabelAggregate(f"completed_sessions_{HEALTH_DAYS}d", events("session_completed", where=_completed), HEALTH_DAYS),
    LabelAggregate(f"rating_sum_{HEALTH_DAYS}d", events("session_completed", where=_rated), HEALTH_DAYS,
                   value="student_rating"),
    LabelAggregate(f"rating_n_{HEALTH_DAYS}d", events("session_completed", where=_rated), HEALTH_DAYS),
    _inbound_calls(HEALTH_DAYS),
    LabelAggregate(f"failed_payments_{HEALTH_DAYS}d", events("payment_failed"), HEALTH_DAYS),
    LabelAggregate(f"no_shows_{HEALTH_DAYS}d", events("session_completed", where=eq("status", "no_show")),
                   HEALTH_DAYS),
    _cancellations(HEALTH_DAYS),
), health_score)

LABEL_DEFINITIONS: tuple[Label, ...] = (CHURN, IB_CALLS, HEALTH)
LABELS = tuple(lab.name for lab in LABEL_DEFINITIONS)
#: every future-window aggregate the labels read, once (labels may share one: the 30-day cancellations)
AGGREGATES: tuple[LabelAggregate, ...] = tuple(dict.fromkeys(a for lab in LABEL_DEFINITIONS for a in lab.inputs))
LABEL_HORIZON_DAYS = max(lab.days for lab in LABEL_DEFINITIONS)

if len({a.name for a in AGGREGATES}) != len(AGGREGATES):
    raise ValueError(f"label aggregates: one name declared twice with different definitions: {AGGREGATES}")


def label_values(values: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Every label from a mapping aggregate name -> per-row values (see ``AGGREGATES``)."""
    return {lab.name: lab(values) for lab in LABEL_DEFINITIONS}
