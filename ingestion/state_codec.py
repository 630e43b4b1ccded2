"""The stored form of one customer's ingestion state: :class:`Item` and its compact body.

One item per customer (DynamoDB attribute names in brackets)::

    customer_id   key
    version [v]   int, +1 on every write; a write succeeds only if the stored version is the
                  one that was read (0 = "must not exist yet"), so concurrent writers never
                  lose an update: the loser gets a conflict, re-reads and re-applies
    tick_until [tu]  int, the last UTC day number at which a day tick can still change a window
                  (watermark day + MAX_WINDOW_DAYS); lets the tick scheduler find live customers
    body [b]      the compact encoding of :class:`Item` minus the key/version (:func:`encode`):
                  the features.state dict (bounded: tiles for <= 30 days, totals, first/latest
                  values with their (timestamp, event_id) keys, ...) and the **applied ids**:
                  per UTC day of the allowed-lateness span, the 64-bit digests of the event ids
                  applied on that day (exactly-once by identity, whatever the arrival order)

The stores (``ingestion.state_store``: the protocol and SQLite; ``ingestion.dynamodb_state_store``)
only move these bytes; this module is the one place that knows the format.
"""
from __future__ import annotations

import base64
import hashlib
import json
import struct
import zlib
from dataclasses import dataclass, field

from events.contract import CATEGORIES, CHANNELS, REGIONS, SUBJECTS, TIERS
from features import catalog as C
from features import state as S

# body format 4 = format byte + compact JSON, or + raw deflate(compact JSON, _ZDICT). Still read:
# format 3 (the same framing, bytes 3/5; sequence number + last 16 id digests instead of applied
# ids), format 2 (bytes 2/4, sparse tiles) and format 1 (zlib(JSON dict), no format byte).
_RAW, _ZLIB = b"\x06", b"\x07"
_RAW3, _ZLIB3 = b"\x03", b"\x05"
_RAW2, _ZLIB2 = b"\x02", b"\x04"
# A preset deflate dictionary (part of the format: never change it without a new format byte): the
# contract's categorical values and the body's common fragments. Small bodies (a few hundred bytes)
# compress ~10% better with it; raw deflate drops zlib's 6 header/checksum bytes.
_ZDICT = ("".join(f'"{w}",' for w in (*TIERS, *CHANNELS, *CATEGORIES, *REGIONS, *SUBJECTS))
          + ",000000," * 4 + "[[0,1,1," + ",12,1,14,1]," + ",13,1,14,1],[" + "500000,5,1,6," + "0000000,7,1,").encode()


def _deflate(raw: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15, zdict=_ZDICT)
    return c.compress(raw) + c.flush()


def _inflate(z: bytes) -> bytes:
    d = zlib.decompressobj(-15, zdict=_ZDICT)
    return d.decompress(z) + d.flush()

# feature names <-> small indices for the compact body
_F_INDEX = {f.name: i for i, f in enumerate(C.CUSTOMER_FEATURES)}
_F_NAME = {i: n for n, i in _F_INDEX.items()}


def event_digest(event_id: str) -> int:
    """The 64-bit digest an applied event id is remembered by. A new event is taken for a
    duplicate only if an event of the same customer and UTC day has the same digest: ~n / 2**64
    for n events that day (~1e-18 at 20 a day)."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "big")


def legacy_digest(event_id: str) -> int:
    """The 32-bit digest format 1-3 items kept for their last 16 ids (read only)."""
    return zlib.crc32(event_id.encode())


class DayIds(set):
    """One day's applied-id digests: a set (membership) that also keeps them packed, 8 bytes each
    in insertion order, so encoding a heavy customer's ~600 ids is a join, not a repack."""

    __slots__ = ("packed",)

    def __init__(self, ids=(), packed: bytes | None = None):
        super().__init__(ids)
        self.packed = bytearray(packed if packed is not None else struct.pack(f">{len(self)}Q", *self))

    def add(self, h: int) -> None:
        if h not in self:
            super().add(h)
            self.packed += h.to_bytes(8, "big")


@dataclass
class Legacy:
    """What an item written in format 1-3 knew about its applied events: nothing per id below
    ``floor`` (its watermark then) but the highest sequence number and the last 16 id digests. An
    event at or below the floor is a duplicate if those say so, else too late (it cannot be told
    from a resend). Dropped once the floor's day is out of the allowed-lateness span."""

    floor: list          # [ts_us, event_id]
    seq: int
    recent: list


@dataclass
class Item:
    customer_id: str
    version: int = 0                          # 0: not stored yet
    state: dict = field(default_factory=S.new_state)
    # UTC day -> 64-bit digests of the event ids applied with a timestamp on that day (the
    # allowed-lateness span only: older days are dropped, their events are too late anyway)
    applied: dict = field(default_factory=dict)
    ids_from: int | None = None               # applied ids are complete from this day on (None: all)
    legacy: Legacy | None = None

    @property
    def tick_until(self) -> int | None:
        wm = self.state.get("watermark")
        return None if wm is None else S.day_of(wm[0]) + C.MAX_WINDOW_DAYS


def _pack(applied: dict, base: int) -> list:
    """[[day offset, count, ...], base64 of every day's digests, one day after the other]: one
    string for all days (no per-day quoting and base64 padding)."""
    return [[x for d, v in applied.items() for x in (base - d, len(v))],
            base64.b64encode(b"".join(v.packed for v in applied.values())).decode()]


def _unpack(packed: list, base: int) -> dict:
    counts, b64 = packed
    raw = base64.b64decode(b64)
    ids = struct.unpack(f">{len(raw) // 8}Q", raw)
    out, i = {}, 0
    for j in range(0, len(counts), 2):
        n = counts[j + 1]
        out[base - counts[j]] = DayIds(ids[i:i + n], raw[8 * i:8 * (i + n)])
        i += n
    return out


def encode(item: Item, deflate: bool = True) -> bytes:
    """The compact body (format 4): tiles (days relative to the clock's day), feature names as
    indices, timestamps relative to the clock, the (timestamp, event_id) keys of first/latest values
    and primary keys once each in a key table, applied-id digests in one base64 string (with
    per-day counts); JSON without
    spaces, deflated (preset dictionary) when ``deflate`` and that is smaller."""
    st = item.state
    clock = st["clock"]
    base = 0 if clock is None else clock // S.DAY_US
    cl = 0 if clock is None else clock
    keys: dict[tuple, int] = {}

    def key(k) -> int:          # index of a [ts_us, event_id] key in the key table
        t = (k[0], k[1])
        i = keys.get(t)
        if i is None:
            i = keys[t] = len(keys)
        return i

    # dense tiles: serialised at C speed; deflated, within ~5% of a sparse index/value list
    tiles = [[base - int(d), *tile] for d, tile in st["tiles"].items()]
    wm = st["watermark"]
    fk, lk = st["first_key"], st["latest_key"]
    body = [
        clock, None if wm is None else [cl - wm[0], wm[1]], tiles,
        st["totals"],
        [x for k, v in st["first"].items() for x in (_F_INDEX[k], v, key(fk[k]))],
        [x for k, v in st["latest"].items() for x in (_F_INDEX[k], v, key(lk[k]))],
        [x for k, v in st["last_seen"].items() for x in (_F_INDEX[k], cl - v)],
        [[_F_INDEX[k], p["key"], p["top"], [x for kk, n in p["counts"].items() for x in (kk, n, key(p["last"][kk]))]]
         for k, p in st["primary"].items()],
        [[_F_INDEX[k], [x for kk, d in m.items() for x in (kk, base - d)]] for k, m in st["distinct"].items()],
        None,      # the key table, filled below (after every key is indexed)
        _pack(item.applied, base),
        None if item.ids_from is None else base - item.ids_from,
        None if item.legacy is None else [cl - item.legacy.floor[0], item.legacy.floor[1], item.legacy.seq,
                                          base64.b64encode(struct.pack(f">{len(item.legacy.recent)}I",
                                                                       *item.legacy.recent)).decode()],
    ]
    body[9] = [[cl - t, e] for t, e in keys]
    raw = json.dumps(body, separators=(",", ":")).encode()
    if not deflate:
        return _RAW + raw
    z = _deflate(raw)
    return _ZLIB + z if len(z) < len(raw) else _RAW + raw


def decode(customer_id: str, version: int, blob: bytes) -> Item:
    blob = bytes(blob)
    head = blob[:1]
    if head in (_RAW, _ZLIB):
        raw = blob[1:] if head == _RAW else _inflate(blob[1:])
        (clock, wm, tiles, totals, first, latest, last_seen, primary, distinct, keys, applied, ids_from,
         legacy) = json.loads(raw)
        base = 0 if clock is None else clock // S.DAY_US
        cl = 0 if clock is None else clock
        ks = [[cl - t, e] for t, e in keys]
        st = {
            "clock": clock,
            "watermark": None if wm is None else [cl - wm[0], wm[1]],
            "tiles": {str(base - t[0]): t[1:] for t in tiles},
            "totals": totals,
            "first": {_F_NAME[first[j]]: first[j + 1] for j in range(0, len(first), 3)},
            "first_key": {_F_NAME[first[j]]: list(ks[first[j + 2]]) for j in range(0, len(first), 3)},
            "latest": {_F_NAME[latest[j]]: latest[j + 1] for j in range(0, len(latest), 3)},
            "latest_key": {_F_NAME[latest[j]]: list(ks[latest[j + 2]]) for j in range(0, len(latest), 3)},
            "last_seen": {_F_NAME[last_seen[j]]: cl - last_seen[j + 1] for j in range(0, len(last_seen), 2)},
            "primary": {_F_NAME[i]: {"counts": {c[j]: c[j + 1] for j in range(0, len(c), 3)}, "key": pk, "top": top,
                                     "last": {c[j]: list(ks[c[j + 2]]) for j in range(0, len(c), 3)}}
                        for i, pk, top, c in primary},
            "distinct": {_F_NAME[i]: {m[j]: base - m[j + 1] for j in range(0, len(m), 2)} for i, m in distinct},
        }
        leg = None
        if legacy is not None:
            rb = base64.b64decode(legacy[3])
            leg = Legacy([cl - legacy[0], legacy[1]], legacy[2], list(struct.unpack(f">{len(rb) // 4}I", rb)))
        return Item(customer_id, version, S.with_window_sums(st), _unpack(applied, base),
                    None if ids_from is None else base - ids_from, leg)
    return _decode_legacy(customer_id, version, blob, head)


def _decode_legacy(customer_id: str, version: int, blob: bytes, head: bytes) -> Item:
    """Formats 1-3: the state without order keys (every applied event is at or below the
    watermark, so first values keep the lowest key, latest values and the primary leader the
    watermark's), and a :class:`Legacy` floor instead of applied ids."""
    if head not in (_RAW3, _ZLIB3, _RAW2, _ZLIB2):       # format 1 (zlib of a JSON dict)
        body = json.loads(zlib.decompress(blob))
        st, seq, recent = body["s"], body["q"], [legacy_digest(x) for x in body["r"]]
    else:
        raw = blob[1:] if head in (_RAW3, _RAW2) else _inflate(blob[1:])
        clock, wm, tiles, totals, first, latest, last_seen, primary, distinct, seq, recent, _pushed = json.loads(raw)
        base = 0 if clock is None else clock // S.DAY_US
        cl = 0 if clock is None else clock
        if head in (_RAW3, _ZLIB3):
            dense = {str(base - t[0]): t[1:] for t in tiles}
        else:                               # format 2: [day, index, value, index, value, ...]
            dense = {}
            for t in tiles:
                tile = [0] * len(C.METRICS)
                for j in range(1, len(t), 2):
                    tile[t[j]] = t[j + 1]
                dense[str(base - t[0])] = tile
        st = {
            "clock": clock,
            "watermark": None if wm is None else [cl - wm[0], wm[1]],
            "tiles": dense,
            "totals": totals,
            "first": {_F_NAME[first[j]]: first[j + 1] for j in range(0, len(first), 2)},
            "latest": {_F_NAME[latest[j]]: latest[j + 1] for j in range(0, len(latest), 2)},
            "last_seen": {_F_NAME[last_seen[j]]: cl - last_seen[j + 1] for j in range(0, len(last_seen), 2)},
            "primary": {_F_NAME[i]: {"counts": {c[j]: c[j + 1] for j in range(0, len(c), 2)}, "key": key, "top": top}
                        for i, key, top, c in primary},
            "distinct": {_F_NAME[i]: {m[j]: base - m[j + 1] for j in range(0, len(m), 2)} for i, m in distinct},
        }
        rb = base64.b64decode(recent)
        recent = list(struct.unpack(f">{len(rb) // 4}I", rb))
    floor = st["watermark"]
    lowest = [-1, ""]
    st["first_key"] = {k: list(lowest) for k in st["first"]}
    st["latest_key"] = {k: list(floor) for k in st["latest"]}
    for p in st["primary"].values():
        p["last"] = {k: list(floor) if k == p["key"] else list(lowest) for k in p["counts"]}
    legacy = None if floor is None else Legacy(list(floor), seq, recent)
    return Item(customer_id, version, S.with_window_sums(st), {}, None, legacy)
