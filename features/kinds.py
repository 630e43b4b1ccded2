"""The feature kinds: what a declaration in ``features.declarations`` can say.

A kind knows its dtype, its null rule, its validation kind and how to describe
itself in docs/features.md. How a kind is computed lives in the two engines
(``features.backfill``, ``features.state``), each with one rule per kind and
none per feature.

A customer feature references its metrics as objects, so a declaration that
names a metric which does not exist fails at import; the engines read the
metric names through ``metric`` / ``num`` / ``den`` / ``total_metric``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from events.filters import EventFilter

FIXED_POINT = 1_000_000


# --------------------------------------------------------------------------- metrics
@dataclass(frozen=True)
class Metric:
    """A per-customer quantity accumulated from events into daily tiles.

    ``value`` is the summed field (None counts events). ``per_day="any"``
    makes the daily tile 1 if any matching event happened that day, else 0.
    """

    name: str
    source: EventFilter
    value: str | None = None
    per_day: str = "sum"
    integer: bool = True

    @property
    def scale(self) -> int:
        """Fractional values are accumulated as integers in millionths (fixed point): both engines
        then sum exact integers, so they agree bit for bit and an emptied window is exactly 0."""
        return 1 if self.integer else FIXED_POINT

    def describe(self) -> str:
        what = f"sum of `{self.value}`" if self.value else "number"
        if self.per_day == "any":
            return f"number of distinct UTC days with at least one event among {self.source.describe()}"
        return f"{what} of events {self.source.describe()}"


# --------------------------------------------------------------------------- customer features
# Every customer kind answers ``model_input`` (False: stored and served, not fed to the model) and
# ``key_of`` (the batch view this column is the lookup key of, or None; a key is not a model input).
class _CustomerFeature:
    """Defaults every customer feature kind shares: a model input, not a lookup key (a kind or a
    declaration overrides them)."""

    model_input = True
    key_of = None
    grows_with_tenure = False  # True: rises with the customer's age by construction (drift compares it at matched tenure)


@dataclass(frozen=True)
class WindowSum(_CustomerFeature):
    """Sum of a metric over the ``days`` window (divided by ``days`` for a per-day frequency)."""

    name: str
    of: Metric
    days: int
    per_day: bool = False
    category: str = "window"

    @property
    def metric(self) -> str:
        return self.of.name

    @property
    def dtype(self) -> str:
        return "int64" if self.of.integer and not self.per_day else "float64"

    nullable = False
    kind = "count"

    def describe(self) -> str:
        s = f"{self.of.describe()}, over the last {self.days} UTC days (today included)"
        return (s + f", divided by {self.days}") if self.per_day else s


class _Ratio(_CustomerFeature):
    """The engines address a ratio's metrics by name."""

    @property
    def num(self) -> str:
        return self.numerator.name

    @property
    def den(self) -> str:
        return self.denominator.name


@dataclass(frozen=True)
class WindowRatio(_Ratio):
    """numerator / denominator over the window; null when the denominator is 0 (no data is not zero)."""

    name: str
    numerator: Metric
    denominator: Metric
    days: int
    category: str = "window"
    dtype = "float64"
    nullable = True
    bounded: bool = False  # True for rates in [0, 1]

    @property
    def kind(self) -> str:
        return "rate" if self.bounded else "numeric"

    def describe(self) -> str:
        return (f"({self.numerator.describe()}) / ({self.denominator.describe()}), "
                f"both over the last {self.days} UTC days (today included); null when the denominator is 0")


@dataclass(frozen=True)
class LifetimeSum(_CustomerFeature):
    """``model_input=False``: stored and served to the on-demand views only (a count that grows with
    tenure: under a time split the test rows' values lie beyond the training rows', docs/model.md)."""

    name: str
    of: Metric
    category: str = "lifetime"
    model_input: bool = True
    nullable = False
    kind = "count"
    grows_with_tenure = True

    @property
    def metric(self) -> str:
        return self.of.name

    @property
    def dtype(self) -> str:
        return "int64" if self.of.integer else "float64"

    def describe(self) -> str:
        return f"{self.of.describe()}, over the customer's whole history up to t"


@dataclass(frozen=True)
class LifetimeRatio(_Ratio):
    name: str
    numerator: Metric
    denominator: Metric
    category: str = "lifetime"
    dtype = "float64"
    nullable = True
    kind = "numeric"

    def describe(self) -> str:
        return (f"({self.numerator.describe()}) / ({self.denominator.describe()}), "
                "over the whole history up to t; null when the denominator is 0")


@dataclass(frozen=True)
class FirstAbove(_CustomerFeature):
    """Whether the first non-null ``field`` among matching events exceeds ``threshold``; null before one."""

    name: str
    source: EventFilter
    field: str
    threshold: float
    category: str = "lifetime"
    dtype = "bool"
    nullable = True
    kind = "boolean"

    def describe(self) -> str:
        return (f"true if `{self.field}` of the first event {self.source.describe()} with `{self.field}` present "
                f"(earliest timestamp, then smallest event_id) is > {self.threshold}; null until there is one")


@dataclass(frozen=True)
class LatestValue(_CustomerFeature):
    """The latest non-null ``field`` among matching events (ties: largest event_id).

    ``ordinal``: the categories are ordered (the model encodes the rank, not one-hot);
    ``key_of``: the batch view this value is the lookup key of (not a model input).
    """

    name: str
    source: EventFilter
    field: str
    dtype: str = "string"
    categories: tuple = ()
    category: str = "segment"
    ordinal: bool = False
    key_of: str | None = None
    nullable = True

    @property
    def kind(self) -> str:
        return "categorical" if self.dtype == "string" else "numeric"

    def describe(self) -> str:
        return f"`{self.field}` of the latest event {self.source.describe()}; null until there is one"


@dataclass(frozen=True)
class LastSeen(_CustomerFeature):
    """Timestamp of the latest matching event: the input of a time-since feature (computed at
    request time), so never a model input itself.

    Stored as integer microseconds since the epoch: Feast's online timestamp type keeps whole
    seconds only, which would break exact online/offline parity of the time-since features.
    """

    name: str
    source: EventFilter
    category: str = "recency"
    dtype = "int64"
    nullable = True
    kind = "timestamp_us"
    model_input = False
    grows_with_tenure = True

    def describe(self) -> str:
        return (f"timestamp of the latest event {self.source.describe()}, as microseconds since the epoch (UTC); "
                "null until there is one")


@dataclass(frozen=True)
class PrimaryKey(_CustomerFeature):
    """The ``field`` value with the most matching events over the whole history.

    Ties go to the value that most recently reached the top count, so the
    incremental rule is: count[v] += 1; if count[v] >= top: primary = v.
    ``key_of``: the batch view this value is the lookup key of (not a model input).
    """

    name: str
    source: EventFilter
    field: str
    category: str = "tutor"
    key_of: str | None = None
    dtype = "string"
    nullable = True
    kind = "categorical"

    def describe(self) -> str:
        return (f"the `{self.field}` with the most events {self.source.describe()} over the whole history; "
                "ties go to the one that reached the top count most recently; null before the first")


@dataclass(frozen=True)
class PrimaryShare(_CustomerFeature):
    """Events of the primary value / all matching events (the same source as the PrimaryKey)."""

    name: str
    primary: str
    total: Metric
    category: str = "tutor"
    dtype = "float64"
    nullable = True
    kind = "rate"

    @property
    def total_metric(self) -> str:
        return self.total.name

    def describe(self) -> str:
        return (f"number of events counted for `{self.primary}` (the primary's count) divided by "
                f"{self.total.describe()} over the whole history; null when 0")


@dataclass(frozen=True)
class DistinctInWindow(_CustomerFeature):
    name: str
    source: EventFilter
    field: str
    days: int
    category: str = "tutor"
    dtype = "int64"
    nullable = False
    kind = "count"

    def describe(self) -> str:
        return (f"number of distinct `{self.field}` values among events {self.source.describe()} "
                f"in the last {self.days} UTC days (today included)")


CustomerFeature = Union[WindowSum, WindowRatio, LifetimeSum, LifetimeRatio, FirstAbove, LatestValue,
                        LastSeen, PrimaryKey, PrimaryShare, DistinctInWindow]


# --------------------------------------------------------------------------- batch (tutor, subject) features
@dataclass(frozen=True)
class GroupMetric:
    """A per-group (tutor or subject) quantity over a window of complete days.

    ``value``: summed field (None counts events); ``distinct``: count distinct values of that field.
    """

    name: str
    source: EventFilter
    group_by: str
    value: str | None = None
    distinct: str | None = None

    def describe(self) -> str:
        if self.distinct:
            return f"number of distinct `{self.distinct}` among events {self.source.describe()}"
        return (f"sum of `{self.value}`" if self.value else "number") + f" of events {self.source.describe()}"


@dataclass(frozen=True)
class GroupFeature:
    """numerator (or numerator / denominator, null when the denominator is 0), times ``scale``, over
    the ``days`` complete UTC days before the snapshot."""

    name: str
    numerator: GroupMetric
    days: int
    denominator: GroupMetric | None = None
    scale: float = 1.0
    doc: str = ""
    nullable: bool = True
    bounded: bool = False

    @property
    def num(self) -> str:
        return self.numerator.name

    @property
    def den(self) -> str | None:
        return None if self.denominator is None else self.denominator.name

    @property
    def dtype(self) -> str:
        return "int64" if self.denominator is None and self.scale == 1.0 else "float64"

    @property
    def kind(self) -> str:
        return "count" if self.denominator is None else ("rate" if self.bounded else "numeric")


# --------------------------------------------------------------------------- request-time features
@dataclass(frozen=True)
class OnDemand:
    """Computed at request time by a Feast on-demand view (``features.on_demand``).

    ``op``: ``days_since`` / ``whole_days_since`` (request time - a stored timestamp, in days),
    ``per_tenure_day`` (inputs[0] / (whole days since the timestamp inputs[-1], plus 1: the signup
    day counts); with three inputs (inputs[0] - inputs[1]) / that), ``per_day_change``
    (inputs[0] / divisors[0] - inputs[1] / divisors[1]) or ``difference`` (inputs[0] - inputs[1]).
    A missing input gives null.
    """

    name: str
    view: str
    op: str
    inputs: tuple[str, ...]
    category: str
    divisors: tuple[int, ...] = ()
    dtype: str = "float64"
    nullable: bool = True
    kind: str = "numeric"
    grows_with_tenure: bool = False

    @property
    def formula(self) -> str:
        a = self.inputs[0]
        if self.op == "days_since":
            return f"(request time - {a}) in days"
        if self.op == "whole_days_since":
            return f"floor((request time - {a}) in days)"
        b = self.inputs[1]
        if self.op == "per_tenure_day":
            num = a if len(self.inputs) == 2 else f"({a} - {b})"
            return f"{num} / (floor((request time - {self.inputs[-1]}) in days) + 1)"
        if self.op == "per_day_change":
            return f"{a} / {self.divisors[0]} - {b} / {self.divisors[1]}"
        return f"{a} - {b} (null if either is)"
