"""The stored form of one customer's ingestion state: :class:`Item` and its compact body.

One item per customer (DynamoDB attribute names in brackets)::

    customer_id   key
    version [v]   int, +1 on every write; a write succeeds only if the stored version is the
                  one that was read (0 = "must not exist yet"), so concurrent writers never
                  lose an update: the loser gets a conflict, re-reads and re-applies
    tick_until [tu]  int, the last UTC day number at which a day tick can still change a window
                  (watermark day + MAX_WINDOW_DAYS); lets the tick scheduler find live customers
    body [b]      the compact encoding of :class:`Item` minus the key/version (:func:`encode`):
                  the features.state dict (bounded: sparse tiles for <= 30 days, totals, ...),
                  q = highest Kinesis sequence number applied (redeliveries are <= q),
                  r = digests of the last RECENT_IDS applied event ids (producer-side duplicates),
                  p = pushed_clock, the state clock whose feature row is already online

The stores (``ingestion.state_store``: the protocol and SQLite; ``ingestion.dynamodb_state_store``)
only move these bytes; this module is the one place that knows the format.
"""
from __future__ import annotations

import base64
import json
import struct
import zlib
from dataclasses import dataclass, field

from events.contract import CATEGORIES, CHANNELS, REGIONS, SUBJECTS, TIERS
from features import catalog as C
from features import state as S

RECENT_IDS = 16
# body format 3 = format byte + compact JSON, or + raw deflate(compact JSON, _ZDICT); format 1 was
# zlib(JSON dict) with no format byte, format 2 had sparse tiles
_RAW, _ZLIB = b"\x03", b"\x05"
_RAW2, _ZLIB2 = b"\x02", b"\x04"   # format 2, still read
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


def id_digest(event_id: str) -> int:
    """A 32-bit digest of an event id for the recent-ids set. A collision can only make a late
    event (never applied either way) count as a duplicate instead of being dead-lettered."""
    return zlib.crc32(event_id.encode())


@dataclass
class Item:
    customer_id: str
    version: int = 0                          # 0: not stored yet
    state: dict = field(default_factory=S.new_state)
    seq: int = -1
    recent: list = field(default_factory=list)   # id_digest of the last RECENT_IDS applied event ids
    pushed_clock: int | None = None

    @property
    def tick_until(self) -> int | None:
        wm = self.state.get("watermark")
        return None if wm is None else S.day_of(wm[0]) + C.MAX_WINDOW_DAYS


def _digests(recent: list) -> bytes:
    return struct.pack(f">{len(recent)}I", *recent)


def encode(item: Item, deflate: bool = True) -> bytes:
    """The compact body: tiles (days relative to the clock's day), feature names as indices,
    timestamps relative to the clock, 4-byte id digests; JSON without spaces, deflated (preset
    dictionary) when ``deflate`` and that is smaller."""
    st = item.state
    clock = st["clock"]
    base = 0 if clock is None else clock // S.DAY_US
    cl = 0 if clock is None else clock
    # dense tiles: serialised at C speed; deflated, within ~5% of a sparse index/value list
    tiles = [[base - int(d), *tile] for d, tile in st["tiles"].items()]
    wm = st["watermark"]
    body = [
        clock, None if wm is None else [cl - wm[0], wm[1]], tiles,
        st["totals"],
        [x for k, v in st["first"].items() for x in (_F_INDEX[k], v)],
        [x for k, v in st["latest"].items() for x in (_F_INDEX[k], v)],
        [x for k, v in st["last_seen"].items() for x in (_F_INDEX[k], cl - v)],
        [[_F_INDEX[k], p["key"], p["top"], [x for kk, n in p["counts"].items() for x in (kk, n)]]
         for k, p in st["primary"].items()],
        [[_F_INDEX[k], [x for kk, d in m.items() for x in (kk, base - d)]] for k, m in st["distinct"].items()],
        item.seq, base64.b64encode(_digests(item.recent)).decode(),
        None if item.pushed_clock is None else cl - item.pushed_clock,
    ]
    raw = json.dumps(body, separators=(",", ":")).encode()
    if not deflate:
        return _RAW + raw
    z = _deflate(raw)
    return _ZLIB + z if len(z) < len(raw) else _RAW + raw


def decode(customer_id: str, version: int, blob: bytes) -> Item:
    blob = bytes(blob)
    head = blob[:1]
    if head not in (_RAW, _ZLIB, _RAW2, _ZLIB2):       # format 1 (zlib of a JSON dict)
        body = json.loads(zlib.decompress(blob))
        return Item(customer_id, version, S.with_window_sums(body["s"]), body["q"], [id_digest(x) for x in body["r"]],
                    body["p"])
    raw = blob[1:] if head in (_RAW, _RAW2) else _inflate(blob[1:])
    clock, wm, tiles, totals, first, latest, last_seen, primary, distinct, seq, recent, pushed = json.loads(raw)
    base = 0 if clock is None else clock // S.DAY_US
    cl = 0 if clock is None else clock
    if head in (_RAW, _ZLIB):
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
    rec = list(struct.unpack(f">{len(rb) // 4}I", rb))
    return Item(customer_id, version, S.with_window_sums(st), seq, rec, None if pushed is None else cl - pushed)
