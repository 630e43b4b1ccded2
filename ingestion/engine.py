"""Folding one customer's records of a batch into its stored item, exactly once.

Records are applied in (timestamp, ticks first, event_id) order. For an event with key
k = (ts_us, event_id) and the state's watermark w (the key of the latest applied event):

* k > w: applied with ``features.state.apply_event`` (also when ts < clock, i.e. it arrived
  after a day tick passed its time: the state then equals "all events <= clock" again);
* k <= w and it is a known delivery -- its sequence number is <= the highest one applied
  (a Kinesis redelivery / replay), or its event_id is among the last RECENT_IDS applied (a
  producer-side resend), or k == w: a **duplicate**, nothing changes;
* k <= w otherwise: **late** (an older event that was never applied, arriving after newer
  ones): dead-lettered with reason "late", nothing changes. Applying it would need the raw
  events the bounded state does not keep.

A day tick at midnight m calls ``features.state.advance`` iff ``needs_tick(state, m)``;
otherwise it is a no-op (ticks are idempotent). Ticks change the feature row (pushed) but not
the stored item: before its records, a loaded state is caught up to its shard's tick horizon
(the latest tick midnight processed; ``features.state.catch_up``), which replays the effect
of every tick it has been sent. So an item is written only when events were applied.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from features import state as S

from .hooks import HIGH_SIGNAL_TYPES
from .records import Decoded
from .state_codec import RECENT_IDS, Item, id_digest


@dataclass
class Outcome:
    applied: int = 0
    duplicates: int = 0
    ticks: int = 0
    tick_noops: int = 0
    late: list = field(default_factory=list)
    high_signal_ts: int | None = None
    max_tick: int | None = None        # latest tick midnight among the records (applied or not)
    caught_up: bool = False            # the loaded state was advanced to the shard's tick horizon

    @property
    def changed(self) -> bool:
        """The feature row changed (events applied, or the clock moved by ticks)."""
        return bool(self.applied or self.ticks or self.caught_up)

    @property
    def must_save(self) -> bool:
        """The stored item changed: only applied events count (ticks are lazy, see catch_up)."""
        return bool(self.applied)


def _order(r: Decoded):
    return (r.ts_us, r.kind != "tick", r.event_id or "")


def apply_records(item: Item, records: list[Decoded], horizon_us: int | None = None) -> Outcome:
    """Apply one customer's records; first catch the state up to the shard's tick horizon."""
    out = Outcome()
    st = item.state
    out.caught_up = S.catch_up(st, horizon_us)
    recent = item.recent
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
        wm = st["watermark"]
        if wm is None or (r.ts_us, r.event_id) > (wm[0], wm[1]):
            S.apply_event(st, r.record, r.ts_us, r.event_id)
            recent.append(id_digest(r.event_id))
            if len(recent) > RECENT_IDS:
                del recent[0]
            if r.seq > item.seq:
                item.seq = r.seq
            out.applied += 1
            if r.event_type in HIGH_SIGNAL_TYPES and (out.high_signal_ts is None or r.ts_us > out.high_signal_ts):
                out.high_signal_ts = r.ts_us
        elif r.seq <= item.seq or id_digest(r.event_id) in recent or (r.ts_us == wm[0] and r.event_id == wm[1]):
            out.duplicates += 1
        else:
            out.late.append(r)
    return out


def needs_push(item: Item) -> bool:
    clock = item.state["clock"]
    return clock is not None and (item.pushed_clock is None or clock > item.pushed_clock)
