"""The incremental engine: one customer's bounded aggregation state.

Derived from the catalog with no per-feature code. State is O(windows x
metrics): daily tiles for the last MAX_WINDOW_DAYS days, lifetime totals,
first/latest values, last-seen timestamps, a tutor -> count map for the
primary tutor and a tutor -> last-day map for distinct-in-window counts
(pruned to the window). Never a list of raw events.

Events must be applied in (timestamp, event_id) order per customer (the
stream's per-partition order); the ingester enforces that with ``watermark``.
``snapshot()`` equals the offline backfill's row at ``clock`` exactly.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from . import catalog as C

DAY_US = 86_400_000_000
_METRIC_INDEX = {m.name: i for i, m in enumerate(C.METRICS)}


def day_of(ts_us: int) -> int:
    return ts_us // DAY_US


def new_state() -> dict[str, Any]:
    """A JSON-serialisable state (tile keys are day numbers as strings for JSON/DynamoDB)."""
    return {
        "clock": None,          # latest time applied (event or day tick), epoch microseconds
        "watermark": None,      # [ts_us, event_id] of the latest applied event
        "tiles": {},            # str(day) -> [metric values]
        "totals": [0] * len(C.METRICS),
        "first": {},            # feature -> value
        "latest": {},           # feature -> value
        "last_seen": {},        # feature -> ts_us
        "primary": {},          # feature -> {"counts": {key: n}, "key": k, "top": n}
        "distinct": {},         # feature -> {key: last day}
    }


def fixed_point(value: float, scale: int) -> int:
    """The integer a fractional value is accumulated as (the backfill's FLOOR(v * scale + 0.5))."""
    return math.floor(value * scale + 0.5)


def _metric_contribution(metric: C.Metric, record: Mapping[str, Any]):
    if not metric.source.test(record):
        return None
    if metric.value is None:
        return 1
    v = record.get(metric.value)
    return None if v is None else fixed_point(v, metric.scale)


def apply_event(state: dict, record: Mapping[str, Any], ts_us: int, event_id: str) -> None:
    """Fold one customer event into the state (caller guarantees ordering and de-duplication)."""
    advance(state, ts_us)
    day = day_of(ts_us)
    tile = state["tiles"].setdefault(str(day), [0] * len(C.METRICS))
    totals = state["totals"]
    for i, m in enumerate(C.METRICS):
        v = _metric_contribution(m, record)
        if v is None:
            continue
        if m.per_day == "any":
            if tile[i] == 0:
                tile[i] = 1
                totals[i] += 1
        else:
            tile[i] += v
            totals[i] += v
    for f in C.CUSTOMER_FEATURES:
        if isinstance(f, (C.FirstAbove, C.LatestValue, C.LastSeen, C.PrimaryKey, C.DistinctInWindow)):
            if not f.source.test(record):
                continue
        if isinstance(f, C.FirstAbove):
            if f.name not in state["first"] and record.get(f.field) is not None:
                state["first"][f.name] = record[f.field]
        elif isinstance(f, C.LatestValue):
            if record.get(f.field) is not None:
                state["latest"][f.name] = record[f.field]
        elif isinstance(f, C.LastSeen):
            state["last_seen"][f.name] = ts_us
        elif isinstance(f, C.PrimaryKey):
            p = state["primary"].setdefault(f.name, {"counts": {}, "key": None, "top": 0})
            key = record[f.field]
            n = p["counts"].get(key, 0) + 1
            p["counts"][key] = n
            if n >= p["top"]:
                p["key"], p["top"] = key, n
        elif isinstance(f, C.DistinctInWindow):
            state["distinct"].setdefault(f.name, {})[record[f.field]] = day
    state["watermark"] = [ts_us, event_id]


def advance(state: dict, ts_us: int) -> None:
    """Move the clock forward (a day tick or an event) and drop tiles that left every window."""
    if state["clock"] is not None and ts_us <= state["clock"]:
        return
    state["clock"] = ts_us
    oldest = day_of(ts_us) - (C.MAX_WINDOW_DAYS - 1)
    for d in [d for d in state["tiles"] if int(d) < oldest]:
        del state["tiles"][d]
    for f in C.CUSTOMER_FEATURES:
        if isinstance(f, C.DistinctInWindow) and f.name in state["distinct"]:
            keep_from = day_of(ts_us) - (f.days - 1)
            m = state["distinct"][f.name]
            for k in [k for k, d in m.items() if d < keep_from]:
                del m[k]


def needs_tick(state: dict, midnight_us: int) -> bool:
    """Whether a day-boundary tick at ``midnight_us`` can still change a window feature.

    True from the day after the customer's first event until MAX_WINDOW_DAYS after the last
    one: exactly the midnights at which the backfill writes a snapshot.
    """
    if state["watermark"] is None or (state["clock"] is not None and midnight_us <= state["clock"]):
        return False
    return day_of(state["watermark"][0]) >= day_of(midnight_us) - C.MAX_WINDOW_DAYS


def _window_sum(state: dict, metric: str, days: int, today: int):
    i = _METRIC_INDEX[metric]
    tiles = state["tiles"]
    prior = 0
    for d in range(today - (days - 1), today):  # earlier days first, then today: the backfill's order
        t = tiles.get(str(d))
        if t is not None:
            prior += t[i]
    t = tiles.get(str(today))
    return prior + (t[i] if t is not None else 0)


def _value(metric: str, raw: int):
    """A metric's accumulated integer in its own unit (both engines divide the same way)."""
    scale = C.METRIC_BY_NAME[metric].scale
    return raw if scale == 1 else raw / scale


def _ratio(num, den):
    return float(num) / float(den) if den else None


def snapshot(state: dict) -> dict[str, Any]:
    """Every customer-view feature as of ``state['clock']``."""
    today = day_of(state["clock"])
    totals = state["totals"]
    out: dict[str, Any] = {}
    for f in C.CUSTOMER_FEATURES:
        if isinstance(f, C.WindowSum):
            v = _value(f.metric, _window_sum(state, f.metric, f.days, today))
            out[f.name] = v / f.days if f.per_day else (int(v) if f.dtype == "int64" else float(v))
        elif isinstance(f, C.WindowRatio):
            out[f.name] = _ratio(_value(f.num, _window_sum(state, f.num, f.days, today)),
                                 _value(f.den, _window_sum(state, f.den, f.days, today)))
        elif isinstance(f, C.LifetimeSum):
            v = _value(f.metric, totals[_METRIC_INDEX[f.metric]])
            out[f.name] = int(v) if f.dtype == "int64" else float(v)
        elif isinstance(f, C.LifetimeRatio):
            out[f.name] = _ratio(_value(f.num, totals[_METRIC_INDEX[f.num]]),
                                 _value(f.den, totals[_METRIC_INDEX[f.den]]))
        elif isinstance(f, C.FirstAbove):
            v = state["first"].get(f.name)
            out[f.name] = None if v is None else bool(v > f.threshold)
        elif isinstance(f, C.LatestValue):
            out[f.name] = state["latest"].get(f.name)
        elif isinstance(f, C.LastSeen):
            out[f.name] = state["last_seen"].get(f.name)
        elif isinstance(f, C.PrimaryKey):
            out[f.name] = state["primary"].get(f.name, {}).get("key")
        elif isinstance(f, C.PrimaryShare):
            top = state["primary"].get(f.primary, {}).get("top", 0)
            out[f.name] = _ratio(top, totals[_METRIC_INDEX[f.total_metric]])
        elif isinstance(f, C.DistinctInWindow):
            keep_from = today - (f.days - 1)
            out[f.name] = sum(1 for d in state["distinct"].get(f.name, {}).values() if d >= keep_from)
        else:  # pragma: no cover - a new kind must be taught to both engines
            raise TypeError(f"no incremental rule for {type(f).__name__}")
    return out
