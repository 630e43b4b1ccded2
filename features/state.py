"""The incremental engine: one customer's bounded aggregation state.

Derived from the catalog with no per-feature code. State is O(windows x
metrics): daily tiles for the last MAX_WINDOW_DAYS days, lifetime totals,
first/latest values, last-seen timestamps, a tutor -> count map for the
primary tutor and a tutor -> last-day map for distinct-in-window counts
(pruned to the window), and the window sums kept incrementally (derived from
the tiles; storage keeps the tiles only). Never a list of raw events.

Events may be applied in any order, each at most once (the ingester de-duplicates by
event_id): the result is the same as applying them in (timestamp, event_id) order, as long as
each event's day is still held by the tiles (the ingester's allowed lateness, at most
MAX_WINDOW_DAYS: ``ingestion.engine``). Everything order-dependent
is kept with the (timestamp, event_id) key that decides it: the first and latest values, the
primary key's per-key last event (its tie-break), last-seen timestamps (a max) and distinct
keys' last days (a max). ``snapshot()`` equals the offline backfill's row at ``clock`` exactly.

The catalog is compiled once at import into per-event-type update plans
(``_PLANS``: the metrics and features an event of that type can change, with
their conditions) and a snapshot plan (``_SNAPSHOT``, turned into straight-line
code by ``_snapshot_source``), so applying an event touches only what it can change. The plans are derived mechanically from the
declarations (still no per-feature code); the semantics are those of the
declarations (``EventFilter.test``), which the parity tests check bit for bit.
"""
from __future__ import annotations

import linecache
import math
from typing import Any, Mapping

from core.times import DAY_US

from . import catalog as C

_METRIC_INDEX = {m.name: i for i, m in enumerate(C.METRICS)}
_N_METRICS = len(C.METRICS)


def day_of(ts_us: int) -> int:
    return ts_us // DAY_US


def new_state() -> dict[str, Any]:
    """A JSON-serialisable state (tile keys are day numbers as strings for JSON/DynamoDB)."""
    return {
        "clock": None,          # latest time applied (event or day tick), epoch microseconds
        "watermark": None,      # [ts_us, event_id] of the latest applied event
        "tiles": {},            # str(day) -> [metric values]
        "totals": [0] * _N_METRICS,
        "first": {},            # feature -> value
        "first_key": {},        # feature -> [ts_us, event_id] of the event that set ``first`` (the smallest)
        "latest": {},           # feature -> value
        "latest_key": {},       # feature -> [ts_us, event_id] of the event that set ``latest`` (the largest)
        "last_seen": {},        # feature -> ts_us
        # feature -> {"counts": {key: n}, "key": leader, "top": n, "last": {key: [ts_us, event_id] of its latest event}}
        "primary": {},
        "distinct": {},         # feature -> {key: last day}
        "wsums": [[0] * _N_METRICS for _ in _WIN_DAYS],   # derived: window_sums at the clock's day
    }


# --------------------------------------------------------------------------- compiled plans
_FIRST, _LATEST, _LAST_SEEN, _PRIMARY, _DISTINCT = range(5)


def _compile_plans() -> dict[str, tuple[tuple, tuple]]:
    """event_type -> (metric updates, feature updates) an event of that type can fire.

    metric update: (index, value field or None, scale, any_per_day, conditions)
    feature update: (kind, feature name, field, conditions)
    Conditions are the filter's ``where`` (the event type is already matched by the lookup).
    A day gets a tile only when some metric fires on it (an all-zero tile is no tile).
    """
    types = {t for m in C.METRICS for t in m.source.event_types}
    types |= {t for f in C.CUSTOMER_FEATURES if hasattr(f, "source") for t in f.source.event_types}
    plans = {}
    for t in sorted(types):
        metrics = tuple((i, m.value, m.scale, m.per_day == "any", m.source.where)
                        for i, m in enumerate(C.METRICS) if t in m.source.event_types)
        feats = []
        for f in C.CUSTOMER_FEATURES:
            src = getattr(f, "source", None)
            if src is None or t not in src.event_types:
                continue
            kind = {C.FirstAbove: _FIRST, C.LatestValue: _LATEST, C.LastSeen: _LAST_SEEN,
                    C.PrimaryKey: _PRIMARY, C.DistinctInWindow: _DISTINCT}[type(f)]
            feats.append((kind, f.name, getattr(f, "field", None), src.where))
        plans[t] = (metrics, tuple(feats))
    return plans


_PLANS = _compile_plans()
_DISTINCT_DAYS = tuple((f.name, f.days) for f in C.CUSTOMER_FEATURES if isinstance(f, C.DistinctInWindow))
_DISTINCT_WINDOW = dict(_DISTINCT_DAYS)
# the windows of the tile features (ascending); ``state["wsums"][j]`` holds window _WIN_DAYS[j]
_WIN_DAYS = tuple(sorted({f.days for f in C.CUSTOMER_FEATURES if isinstance(f, (C.WindowSum, C.WindowRatio))}))
# the ages (days after a tile's or a distinct entry's day) at which that day leaves a window
TICK_AGES = frozenset(_WIN_DAYS) | frozenset(days for _, days in _DISTINCT_DAYS)
assert max(TICK_AGES) <= C.MAX_WINDOW_DAYS


def _all(conds, record) -> bool:
    for c in conds:
        if not c.test(record):
            return False
    return True


def apply_event(state: dict, record: Mapping[str, Any], ts_us: int, event_id: str) -> None:
    """Fold one customer event into the state, in any order relative to the others (the caller
    de-duplicates and keeps it within the allowed lateness, ``ingestion.engine``): the result
    equals the in-order one."""
    advance(state, ts_us)
    plan = _PLANS.get(record.get("event_type"))
    if plan is not None:
        metrics, feats = plan
        day = ts_us // DAY_US
        tile = None
        totals = state["totals"]
        age = state["clock"] // DAY_US - day        # > 0 for an event older than a tick already applied
        held_by = [ws for w, ws in zip(_WIN_DAYS, state["wsums"]) if age < w]
        for i, field, scale, any_per_day, conds in metrics:
            if conds and not _all(conds, record):
                continue
            if field is None:
                v = 1
            else:
                v = record.get(field)
                if v is None:
                    continue
                v = math.floor(v * scale + 0.5)  # fixed point, as the backfill's FLOOR(v * scale + 0.5)
            if tile is None:
                tile = state["tiles"].setdefault(str(day), [0] * _N_METRICS)
            if any_per_day:
                if tile[i]:
                    continue
                tile[i] = v = 1
            else:
                tile[i] += v
            totals[i] += v
            for ws in held_by:
                ws[i] += v
        k = [ts_us, event_id]     # the event's place in (timestamp, event_id) order
        for kind, name, field, conds in feats:
            if conds and not _all(conds, record):
                continue
            if kind == _FIRST:
                if record.get(field) is not None:
                    old = state["first_key"].get(name)
                    if old is None or k < old:
                        state["first"][name] = record[field]
                        state["first_key"][name] = k
            elif kind == _LATEST:
                if record.get(field) is not None:
                    old = state["latest_key"].get(name)
                    if old is None or k > old:
                        state["latest"][name] = record[field]
                        state["latest_key"][name] = k
            elif kind == _LAST_SEEN:
                if ts_us > state["last_seen"].get(name, ts_us - 1):
                    state["last_seen"][name] = ts_us
            elif kind == _PRIMARY:
                p = state["primary"].setdefault(name, {"counts": {}, "key": None, "top": 0, "last": {}})
                key = record[field]
                n = p["counts"].get(key, 0) + 1
                p["counts"][key] = n
                last = p["last"]
                if key not in last or k > last[key]:
                    last[key] = k
                # the leader: the most events; among equals, the one whose latest event is latest
                # (in order this is "the one that reached the top count most recently")
                if n > p["top"] or (n == p["top"] and key != p["key"] and last[key] > last[p["key"]]):
                    p["key"], p["top"] = key, n
            else:  # _DISTINCT: a key's last day (a late event never moves it back, nor revives an expired key)
                m = state["distinct"].setdefault(name, {})
                d = ts_us // DAY_US
                if d > m.get(record[field], d - 1) and d > state["clock"] // DAY_US - _DISTINCT_WINDOW[name]:
                    m[record[field]] = d
    wm = state["watermark"]
    if wm is None or [ts_us, event_id] > wm:
        state["watermark"] = [ts_us, event_id]


def advance(state: dict, ts_us: int) -> None:
    """Move the clock forward (a day tick or an event): take the tiles that left a window out of
    its sums and drop the tiles that left every window."""
    clock = state["clock"]
    if clock is not None and ts_us <= clock:
        return
    state["clock"] = ts_us
    today = ts_us // DAY_US
    if clock is None:
        return
    before = clock // DAY_US
    if before == today:
        return              # the same day: nothing left a window
    tiles = state["tiles"]
    wsums = state["wsums"]
    held_from = before - (C.MAX_WINDOW_DAYS - 1)     # the oldest day a tile can still be counted in
    for w, ws in zip(_WIN_DAYS, wsums):  # take the tiles that leave a window (age reaches w) out of its sums
        for d in range(max(before - w + 1, held_from), min(today - w, before) + 1):
            tile = tiles.get(str(d))
            if tile is not None:
                for i, v in enumerate(tile):
                    if v:
                        ws[i] -= v
    oldest = today - (C.MAX_WINDOW_DAYS - 1)
    for d in [d for d in tiles if int(d) < oldest]:
        del tiles[d]
    distinct = state["distinct"]
    for name, days in _DISTINCT_DAYS:
        m = distinct.get(name)
        if m:
            keep_from = today - (days - 1)
            for k in [k for k, d in m.items() if d < keep_from]:
                del m[k]


def _changes_on(state: dict, day: int) -> bool:
    """Whether some day of this state (a tile or a distinct entry) leaves a window at ``day``'s
    midnight: the only midnights at which the feature row changes without an event."""
    tiles = state["tiles"]
    for a in _WIN_DAYS:
        if str(day - a) in tiles:
            return True
    for name, days in _DISTINCT_DAYS:
        m = state["distinct"].get(name)
        if m and day - days in m.values():
            return True
    return False


def needs_tick(state: dict, midnight_us: int) -> bool:
    """Whether a day tick at ``midnight_us`` changes the feature row: it is after the clock and a
    day with a tile or a distinct entry leaves a window there. Other ticks are no-ops, so the row's
    clock (its event_timestamp online) is the last such midnight whichever ticks were sent."""
    clock = state["clock"]
    if clock is None or midnight_us <= clock or midnight_us % DAY_US:
        return False
    return _changes_on(state, midnight_us // DAY_US)


def last_tick_before(state: dict, horizon_us: int) -> int | None:
    """The latest midnight in (clock, ``horizon_us``] at which a day tick changes this state, or None."""
    clock = state["clock"]
    if clock is None:
        return None
    lo = clock // DAY_US
    # every day of the state is <= lo, so nothing leaves a window after lo + MAX_WINDOW_DAYS
    for day in range(min(horizon_us // DAY_US, lo + C.MAX_WINDOW_DAYS), lo, -1):
        if _changes_on(state, day):
            return day * DAY_US
    return None


def catch_up(state: dict, horizon_us: int | None) -> bool:
    """Apply, lazily, the day ticks up to ``horizon_us`` this state has been ticked to
    (``advance`` is a pure function of the clock, so one advance to the last relevant midnight
    equals the sequence of ticks). Returns whether the clock moved."""
    if horizon_us is None:
        return False
    m = last_tick_before(state, horizon_us)
    if m is None:
        return False
    advance(state, m)
    return True


# snapshot plan: one entry per feature, in catalog order
_WSUM, _WRATIO, _LSUM, _LRATIO, _SFIRST, _SLATEST, _SLAST, _SPKEY, _SPSHARE, _SDISTINCT = range(10)
_WIN_INDEX = {w: j for j, w in enumerate(_WIN_DAYS)}


def _compile_snapshot() -> tuple:
    out = []
    mi, scale = _METRIC_INDEX, (lambda m: C.METRIC_BY_NAME[m].scale)
    for f in C.CUSTOMER_FEATURES:
        if isinstance(f, C.WindowSum):
            out.append((_WSUM, f.name, (_WIN_INDEX[f.days], mi[f.metric], scale(f.metric), f.days if f.per_day else 0,
                                        f.dtype == "int64")))
        elif isinstance(f, C.WindowRatio):
            out.append((_WRATIO, f.name, (_WIN_INDEX[f.days], mi[f.num], scale(f.num), mi[f.den], scale(f.den))))
        elif isinstance(f, C.LifetimeSum):
            out.append((_LSUM, f.name, (mi[f.metric], scale(f.metric), f.dtype == "int64")))
        elif isinstance(f, C.LifetimeRatio):
            out.append((_LRATIO, f.name, (mi[f.num], scale(f.num), mi[f.den], scale(f.den))))
        elif isinstance(f, C.FirstAbove):
            out.append((_SFIRST, f.name, f.threshold))
        elif isinstance(f, C.LatestValue):
            out.append((_SLATEST, f.name, None))
        elif isinstance(f, C.LastSeen):
            out.append((_SLAST, f.name, None))
        elif isinstance(f, C.PrimaryKey):
            out.append((_SPKEY, f.name, None))
        elif isinstance(f, C.PrimaryShare):
            out.append((_SPSHARE, f.name, (f.primary, mi[f.total_metric])))
        elif isinstance(f, C.DistinctInWindow):
            out.append((_SDISTINCT, f.name, f.days))
        else:  # pragma: no cover - a new kind must be taught to both engines
            raise TypeError(f"no incremental rule for {type(f).__name__}")
    return tuple(out)


_SNAPSHOT = _compile_snapshot()


def window_sums(state: dict, today: int) -> list[list[int]]:
    """For each window of ``_WIN_DAYS`` (ascending), the per-metric sums of its tiles (exact integers:
    the order of the additions does not matter). ``state["wsums"]`` keeps them at the clock's day
    incrementally; this recounts them (a decoded state, tests)."""
    sums = []
    for w in _WIN_DAYS:
        held = [t for d, t in state["tiles"].items() if 0 <= today - int(d) < w]
        sums.append(list(map(sum, zip(*held))) if held else [0] * _N_METRICS)
    return sums


def with_window_sums(state: dict) -> dict:
    """A state read back from storage (which keeps only the tiles) with its derived window sums."""
    clock = state["clock"]
    state["wsums"] = (window_sums(state, clock // DAY_US) if clock is not None
                      else [[0] * _N_METRICS for _ in _WIN_DAYS])
    return state


def _scaled(expr: str, scale: int) -> str:
    return expr if scale == 1 else f"{expr} / {scale}"


_SNAPSHOT_FILE = "<generated: features.state.snapshot>"
_WIN_OF = {j: w for w, j in _WIN_INDEX.items()}


def _snapshot_source() -> str:
    """The body of ``snapshot``, one line per feature, generated from the catalog's declarations
    (``_SNAPSHOT``): the same arithmetic as the backfill, without a per-feature dispatch at run time.

    Each metric a feature reads is first bound to a local named after it (``completed_7d`` is the
    ``completed`` metric's 7-day window sum, ``completed_lifetime`` its total), so the generated
    code (shown in tracebacks, see ``_SNAPSHOT_FILE``) reads like the declarations."""
    metric_name = {i: m for m, i in _METRIC_INDEX.items()}
    reads: dict[str, tuple] = {}   # local -> (window index or len(_WIN_DAYS) for lifetime, metric index, expr)

    def local(i: int, j: int | None = None) -> str:
        m = metric_name[i]
        name = f"{m}_lifetime" if j is None else f"{m}_{_WIN_OF[j]}d"
        if not name.isidentifier():
            raise ValueError(f"metric {m!r}: not a Python identifier, cannot name it in the generated snapshot")
        reads[name] = (len(_WIN_DAYS), i, f"totals[{i}]") if j is None else (j, i, f"ws[{j}][{i}]")
        return name

    lines = []
    for kind, name, a in _SNAPSHOT:
        note = ""
        if kind == _WSUM:
            j, i, sc, per_day, is_int = a
            v = _scaled(local(i, j), sc)
            expr = f"{v} / {per_day}" if per_day else (f"int({v})" if is_int else f"float({v})")
        elif kind == _WRATIO:
            j, i, sc, k, sk = a
            num, den = local(i, j), local(k, j)
            expr = f"float({_scaled(num, sc)}) / float({_scaled(den, sk)}) if {den} else None"
        elif kind == _LSUM:
            i, sc, is_int = a
            v = _scaled(local(i), sc)
            expr = f"int({v})" if is_int else f"float({v})"
        elif kind == _LRATIO:
            i, sc, k, sk = a
            num, den = local(i), local(k)
            expr = f"float({_scaled(num, sc)}) / float({_scaled(den, sk)}) if {den} else None"
        elif kind == _SFIRST:
            expr = f"None if (v := first.get({name!r})) is None else bool(v > {a!r})"
        elif kind == _SLATEST:
            expr = f"latest.get({name!r})"
        elif kind == _SLAST:
            expr = f"last_seen.get({name!r})"
        elif kind == _SPKEY:
            expr = f"primary.get({name!r}, {{}}).get('key')"
        elif kind == _SPSHARE:
            p, i = a
            total = local(i)
            expr = f"float(primary.get({p!r}, {{}}).get('top', 0)) / float({total}) if {total} else None"
        else:  # _SDISTINCT
            expr = f"sum(1 for d in distinct.get({name!r}, {{}}).values() if d >= today - {a - 1})"
            note = f"  # entries of the last {a} days"
        lines.append(f"        {name!r}: {expr},{note}")
    return "\n".join([
        "def snapshot(state):",
        "    today = state['clock'] // DAY_US",
        "    totals, first, latest = state['totals'], state['first'], state['latest']",
        "    last_seen, primary, distinct = state['last_seen'], state['primary'], state['distinct']",
        f"    ws = state['wsums']  # per-metric sums of the {', '.join(f'{w}d' for w in _WIN_DAYS)} windows",
        "    # the metrics the features read: <metric>_<N>d is its sum over the N-day window, <metric>_lifetime its total",
        *(f"    {n} = {e}" for n, (_, _, e) in sorted(reads.items(), key=lambda r: r[1][:2])),
        "    return {", *lines, "    }"])


_SNAPSHOT_SOURCE = _snapshot_source()
# Registered with linecache (mtime None: checkcache keeps it) so a traceback through ``snapshot``
# shows the generated line that failed.
linecache.cache[_SNAPSHOT_FILE] = (len(_SNAPSHOT_SOURCE), None, _SNAPSHOT_SOURCE.splitlines(True), _SNAPSHOT_FILE)
_namespace = {"DAY_US": DAY_US}
exec(compile(_SNAPSHOT_SOURCE, _SNAPSHOT_FILE, "exec"), _namespace)
snapshot = _namespace["snapshot"]
snapshot.__doc__ = """Every customer-view feature as of ``state['clock']`` (generated: ``_snapshot_source``)."""
