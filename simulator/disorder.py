"""Arrival disorder for the replay stream: late deliveries and re-sent duplicates.

Real streams order records by arrival, not by event time: mobile clients buffer
(an event arrives minutes to days after it happened) and producers retry (the
same event arrives twice, hours apart). ``simulator.config.Disorder`` says how much of that the
stream file gets; ``ArrivalOrder`` turns each day's lines, in event-time order,
into stream lines in arrival order. Event timestamps and the lines' bytes are
untouched (a re-sent line is a byte copy: same event_id); only their order and
count change. The event log (Parquet) is not affected: each event once.

Arrival time of an event = its timestamp, or timestamp + a delay for the late
share; a re-send arrives a further delay after the first copy. Delays are
log-uniform in [min, max] seconds (every factor of ten of delay equally likely, so
minutes and days both occur), drawn from the simulation's seed (spawn key ``RNG_DISORDER``, per
day), so the same seed and disorder give the same bytes and the rest of the
simulation's randomness is unchanged. Lines are released day by day: only
lines arriving after the current day's midnight wait, so memory is the delayed
share of the delay span, not the run.
"""
from __future__ import annotations

import math

import numpy as np

from .config import Disorder
from .world import rng_for

RNG_DISORDER = 4  # spawn key; 0-3 are the world, initial state, market and customers (run.py)
_US = 1_000_000


def _log_uniform_us(rng: np.random.Generator, n: int, low_s: float, high_s: float) -> np.ndarray:
    return np.round(np.exp(rng.uniform(math.log(low_s), math.log(high_s), n)) * _US).astype(np.int64)


class ArrivalOrder:
    """Buffers delayed lines and releases every line in (arrival time, original position, copy) order.

    ``day(date_end_us, ts_us, lines)`` takes one day's lines in event-time order (the stream's
    original order) and returns the bytes that arrive before ``date_end_us`` (the next
    midnight): no later day's event can arrive earlier than that, since arrival >= timestamp.
    ``flush()`` returns the rest (deliveries after the simulation's last day are still written,
    so every event is in the stream at least once).
    """

    def __init__(self, disorder: Disorder, seed: int):
        self.disorder = disorder
        self.seed = seed
        self._calls = 0
        self._next_pos = 0  # position in the original (timestamp, event_id) order, across days
        self._arrival = np.empty(0, np.int64)
        self._pos = np.empty(0, np.int64)
        self._copy = np.empty(0, np.int8)
        self._lines = np.empty(0, object)
        self.late = 0
        self.resent = 0

    def day(self, date_end_us: int, ts_us: np.ndarray, lines: list[bytes]) -> bytes:
        n = len(lines)
        d = self.disorder
        rng = rng_for(self.seed, RNG_DISORDER, self._calls)
        self._calls += 1
        late = rng.random(n) < d.late_share
        arrival = ts_us.astype(np.int64).copy()
        arrival[late] += _log_uniform_us(rng, int(late.sum()), d.late_min, d.late_max)
        resend = np.flatnonzero(rng.random(n) < d.resend_share)
        resend_arrival = arrival[resend] + _log_uniform_us(rng, resend.size, d.resend_min, d.resend_max)
        self.late += int(late.sum())
        self.resent += int(resend.size)
        pos = np.arange(self._next_pos, self._next_pos + n, dtype=np.int64)
        self._next_pos += n
        body = np.empty(n, object)
        body[:] = lines
        self._arrival = np.concatenate([self._arrival, arrival, resend_arrival])
        self._pos = np.concatenate([self._pos, pos, pos[resend]])
        self._copy = np.concatenate([self._copy, np.zeros(n, np.int8), np.ones(resend.size, np.int8)])
        self._lines = np.concatenate([self._lines, body, body[resend]])
        return self._release(self._arrival < date_end_us)

    def flush(self) -> bytes:
        return self._release(np.ones(self._arrival.size, bool))

    def _release(self, now: np.ndarray) -> bytes:
        idx = np.flatnonzero(now)
        idx = idx[np.lexsort((self._copy[idx], self._pos[idx], self._arrival[idx]))]
        out = b"".join(self._lines[idx])
        keep = ~now
        self._arrival, self._pos = self._arrival[keep], self._pos[keep]
        self._copy, self._lines = self._copy[keep], self._lines[keep]
        return out

    def stats(self) -> dict:
        return {"disorder": self.disorder.to_dict(), "late_events": self.late, "resent_events": self.resent}
