"""Folding one customer's records of a batch into its stored item, exactly once, in any arrival order.

Records are applied in (timestamp, ticks first, event_id) order within the batch; across batches
they may arrive in any order. For an event of UTC day d, with the state's clock on day c:

* d <= c - allowed lateness (days), or d is before the day the item's applied ids start
  (``Item.ids_from``): **too late**: dead-lettered (reason ``too_late``), nothing changes. The
  bounded state no longer holds that day's tile, so it could not be applied exactly; it may also
  be a resend of an event applied long ago (its id is forgotten with its day);
* its event_id's digest is among the ids applied on day d (``Item.applied``): a **duplicate**
  (a Kinesis redelivery, a producer resend, another ingester's delivery), nothing changes;
* otherwise it is applied with ``features.state.apply_event``, which gives the in-order result
  whatever the order (also when ts < clock: a late event, or one that arrived after a day tick
  passed its time), and its id joins day d's set. After a late event the state is caught up to
  the shard's tick horizon again: a window its day has left since (a tick that was a no-op when it
  was sent, before this event was known) is decayed now.

Sequence numbers play no part: the identity of an event is its event_id, so overlapping
deliveries from several instances, shards or reshards are all exactly once.

A day tick at midnight m calls ``features.state.advance`` iff ``needs_tick(state, m)``;
otherwise it is a no-op (ticks are idempotent). Ticks change the feature row (pushed) but not
the stored item: before its records, a loaded state is caught up to its shard's tick horizon
(the latest tick midnight processed; ``features.state.catch_up``), which replays the effect
of every tick it has been sent. So an item is written only when events were applied.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from core.times import DAY_US, from_us
from features import catalog as C
from features import state as S

from .hooks import HIGH_SIGNAL_TYPES
from .records import Decoded
from .state_codec import DayIds, Item, event_digest, legacy_digest

#: the default allowed lateness: the longest window (the tiles hold exactly that many days)
ALLOWED_LATENESS_DAYS = C.MAX_WINDOW_DAYS


def check_lateness(days: int) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= C.MAX_WINDOW_DAYS:
        raise ValueError(f"allowed lateness: expected a whole number of days in [1, {C.MAX_WINDOW_DAYS}] (the state "
                         f"holds {C.MAX_WINDOW_DAYS} days of tiles, the longest window), got {days!r}")
    return days


@dataclass
class Outcome:
    applied: int = 0
    late_applied: int = 0              # applied although older than the clock (arrived late)
    duplicates: int = 0
    ticks: int = 0
    tick_noops: int = 0
    too_late: list = field(default_factory=list)     # (Decoded, detail)
    high_signal_ts: int | None = None
    max_tick: int | None = None        # latest tick midnight among the records (applied or not)
    caught_up: bool = False            # the state was advanced to the shard's tick horizon

    @property
    def changed(self) -> bool:
        """The feature row changed (events applied, or the clock moved by ticks)."""
        return bool(self.applied or self.ticks or self.caught_up)

    @property
    def must_save(self) -> bool:
        """The stored item changed: only applied events count (ticks are lazy, see catch_up)."""
        return bool(self.applied)

    @property
    def must_push(self) -> bool:
        """The row changed, or the batch re-delivered applied events: the run that applied them may
        have stopped between its save and its push, so the current row is pushed again."""
        return self.changed or bool(self.duplicates)


def _order(r: Decoded):
    return (r.ts_us, r.kind != "tick", r.event_id or "")


def apply_records(item: Item, records: list[Decoded], horizon_us: int | None = None,
                  lateness_days: int = ALLOWED_LATENESS_DAYS) -> Outcome:
    """Apply one customer's records; first catch the state up to the shard's tick horizon."""
    out = Outcome()
    st = item.state
    out.caught_up = S.catch_up(st, horizon_us)
    applied = item.applied
    for r in sorted(records, key=_order):
        if r.kind == "tick":
            if out.max_tick is None or r.ts_us > out.max_tick:
                out.max_tick = r.ts_us
            if S.needs_tick(st, r.ts_us):
                S.advance(st, r.ts_us)
                out.ticks += 1
            else:
                out.tick_noops += 1
            continue
        day = r.ts_us // DAY_US
        clock = st["clock"]
        if clock is not None and day <= clock // DAY_US - lateness_days:
            out.too_late.append((r, f"its day is {clock // DAY_US - day} days before the customer's clock "
                                    f"({from_us(clock).isoformat()}); the allowed lateness is {lateness_days} days"))
            continue
        if item.ids_from is not None and day < item.ids_from:
            out.too_late.append((r, f"its day is before {from_us(item.ids_from * DAY_US).date()}, the first day "
                                    "whose applied event ids the item still holds"))
            continue
        h = event_digest(r.event_id)
        ids = applied.get(day)
        if ids is not None and h in ids:
            out.duplicates += 1
            continue
        leg = item.legacy
        if leg is not None and [r.ts_us, r.event_id] <= leg.floor:
            if r.seq <= leg.seq or legacy_digest(r.event_id) in leg.recent or [r.ts_us, r.event_id] == leg.floor:
                out.duplicates += 1
            else:
                out.too_late.append((r, "at or before the watermark of an item written before applied event ids "
                                        "were kept: a late event cannot be told from a resend"))
            continue
        if clock is not None and r.ts_us < clock:
            out.late_applied += 1
        S.apply_event(st, r.record, r.ts_us, r.event_id)
        if ids is None:
            ids = applied[day] = DayIds()
        ids.add(h)
        out.applied += 1
        if r.event_type in HIGH_SIGNAL_TYPES and (out.high_signal_ts is None or r.ts_us > out.high_signal_ts):
            out.high_signal_ts = r.ts_us
    if out.late_applied:
        out.caught_up |= S.catch_up(st, horizon_us)
    _forget(item, lateness_days)
    return out


def _forget(item: Item, lateness_days: int) -> None:
    """Drop the applied ids (and a legacy floor) of days beyond the allowed lateness: an event of
    such a day is too late whether or not it was applied."""
    clock = item.state["clock"]
    if clock is None:
        return
    start = clock // DAY_US - lateness_days + 1
    if item.ids_from is None or start > item.ids_from:
        item.ids_from = start
        for d in [d for d in item.applied if d < start]:
            del item.applied[d]
    if item.legacy is not None and item.legacy.floor[0] // DAY_US < start:
        item.legacy = None
