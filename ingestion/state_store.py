"""Per-customer aggregation state with optimistic concurrency (embedded: SQLite; AWS: DynamoDB).

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

Day ticks are not written to items: a tick only moves the clock, and ``advance`` is a pure
function of it. Instead each shard keeps a **tick horizon** (the latest tick midnight it has
processed, one tiny record per shard, raised at most once per day); the handler catches a
loaded state up to it (``features.state.catch_up``) before applying records.

Shard checkpoints of the Kinesis poller and tick horizons live in the same store under keys
that cannot be customer ids (``#checkpoint:<stream>:<shard>``, ``#ticks:<shard key>``; ``#`` is
not allowed in contract ids).
"""
from __future__ import annotations

import base64
import json
import os
import sqlite3
import struct
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Protocol

from core import aws
from events.contract import CATEGORIES, CHANNELS, REGIONS, SUBJECTS, TIERS
from features import catalog as C
from features import state as S

RECENT_IDS = 16
CHECKPOINT_PREFIX = "#checkpoint:"
HORIZON_PREFIX = "#ticks:"       # per-shard tick horizon (latest day-tick midnight processed)
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


class StateStore(Protocol):
    def load_many(self, customer_ids: Iterable[str]) -> dict[str, Item]:
        """Stored items by customer id (absent customers are missing from the result)."""

    def save_many(self, items: list[Item]) -> set[str]:
        """Write each item if its stored version is still ``item.version`` (then bump it).
        Returns the customer ids that conflicted (nothing written for them)."""

    def release(self, items: list[Item]) -> None:
        """Hand back loaded items that were not saved: their only changes are day ticks (lazy: a
        load catches the stored item up to them anyway) and ``pushed_clock``. A store may keep
        them to skip the next decode."""

    def get_checkpoint(self, stream: str, shard: str) -> str | None: ...

    def put_checkpoint(self, stream: str, shard: str, sequence_number: str) -> None: ...

    def live_customers(self, day: int) -> list[str]:
        """Customers whose ``tick_until`` >= day (candidates for a day tick at that midnight)."""

    def get_tick_horizons(self, keys: Iterable[str]) -> dict[str, int]:
        """The latest day-tick midnight (us) processed per shard key (absent: none yet)."""

    def raise_tick_horizon(self, key: str, midnight_us: int) -> None:
        """Set the shard's tick horizon to ``midnight_us`` unless it is already at or past it."""


# --------------------------------------------------------------------------- SQLite
class SQLiteStateStore:
    """Embedded store: one SQLite file (WAL); each instance has its own connection.

    The items this instance last saved or had released are kept decoded (up to ``cache_items``),
    so reloading them costs no decode: a load reads the versions first and takes a kept item only
    if its version is the stored one (no other writer since), handing it out (it leaves the cache:
    the caller mutates it) until it is saved or released again. Anything else is read and decoded
    from the table. Bodies are written without deflate by default (``deflate=False``): on a local
    file CPU matters more than bytes (DynamoDB, which bills bytes, always deflates).
    """

    def __init__(self, path: str | os.PathLike, timeout: float = 30.0, cache_items: int = 200_000,
                 deflate: bool = False):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self._lock = threading.Lock()
        self.con = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=NORMAL")
        self.con.execute("CREATE TABLE IF NOT EXISTS customer_state (customer_id TEXT PRIMARY KEY, "
                         "version INTEGER NOT NULL, tick_until INTEGER, body BLOB NOT NULL)")
        self.con.execute("CREATE TABLE IF NOT EXISTS checkpoints (shard TEXT PRIMARY KEY, seq TEXT NOT NULL)")
        self.bytes_written = 0
        self.writes = 0
        self.cache_items = cache_items
        self.deflate = deflate      # a local file: ~3x the bytes of a deflated body, ~15% less CPU per event
        self._cache: dict[str, Item] = {}     # customer_id -> the item as last saved

    def load_many(self, customer_ids: Iterable[str]) -> dict[str, Item]:
        ids = list(customer_ids)
        out: dict[str, Item] = {}
        with self._lock:
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                stale = []
                for cid, version in self.con.execute(
                        f"SELECT customer_id, version FROM customer_state WHERE customer_id IN ({','.join('?' * len(chunk))})",
                        chunk):
                    kept = self._cache.pop(cid, None)
                    if kept is not None and kept.version == version:
                        out[cid] = kept
                    else:
                        stale.append(cid)
                if stale:
                    q = f"SELECT customer_id, version, body FROM customer_state WHERE customer_id IN ({','.join('?' * len(stale))})"
                    for cid, version, body in self.con.execute(q, stale):
                        out[cid] = decode(cid, version, body)
        return out

    def save_many(self, items: list[Item]) -> set[str]:
        conflicts: set[str] = set()
        with self._lock:
            cur = self.con.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for it in items:
                    blob = encode(it, deflate=self.deflate)
                    if it.version == 0:
                        cur.execute("INSERT OR IGNORE INTO customer_state VALUES (?, 1, ?, ?)",
                                    (it.customer_id, it.tick_until, blob))
                    else:
                        cur.execute("UPDATE customer_state SET version = version + 1, tick_until = ?, body = ? "
                                    "WHERE customer_id = ? AND version = ?",
                                    (it.tick_until, blob, it.customer_id, it.version))
                    if cur.rowcount == 1:
                        self.bytes_written += len(blob)
                        self.writes += 1
                    else:
                        conflicts.add(it.customer_id)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            for it in items:      # only once committed: the new versions, kept decoded
                if it.customer_id not in conflicts:
                    it.version += 1
                    self._keep(it)
        return conflicts

    def release(self, items: list[Item]) -> None:
        with self._lock:
            for it in items:
                self._keep(it)

    def _keep(self, item: Item) -> None:
        if len(self._cache) >= self.cache_items:
            del self._cache[next(iter(self._cache))]     # the oldest entry
        self._cache[item.customer_id] = item

    def get_checkpoint(self, stream: str, shard: str) -> str | None:
        with self._lock:
            row = self.con.execute("SELECT seq FROM checkpoints WHERE shard = ?", (f"{stream}:{shard}",)).fetchone()
        return None if row is None else row[0]

    def put_checkpoint(self, stream: str, shard: str, sequence_number: str) -> None:
        with self._lock:
            self.con.execute("INSERT INTO checkpoints VALUES (?, ?) ON CONFLICT(shard) DO UPDATE SET seq = excluded.seq",
                             (f"{stream}:{shard}", sequence_number))

    def live_customers(self, day: int) -> list[str]:
        with self._lock:
            return [r[0] for r in self.con.execute(
                "SELECT customer_id FROM customer_state WHERE tick_until >= ? ORDER BY customer_id", (day,))]

    def get_tick_horizons(self, keys: Iterable[str]) -> dict[str, int]:
        out = {}
        with self._lock:
            for k in keys:
                row = self.con.execute("SELECT seq FROM checkpoints WHERE shard = ?", (HORIZON_PREFIX + k,)).fetchone()
                if row is not None:
                    out[k] = int(row[0])
        return out

    def raise_tick_horizon(self, key: str, midnight_us: int) -> None:
        with self._lock:
            self.con.execute("INSERT INTO checkpoints VALUES (?, ?) ON CONFLICT(shard) DO UPDATE SET seq = excluded.seq "
                             "WHERE CAST(excluded.seq AS INTEGER) > CAST(checkpoints.seq AS INTEGER)",
                             (HORIZON_PREFIX + key, str(midnight_us)))

    def close(self) -> None:
        self.con.close()


# --------------------------------------------------------------------------- DynamoDB
class DynamoDBStateStore:
    """AWS store: one DynamoDB table (on-demand), key ``customer_id``.

    Reads: BatchGetItem (100 keys, strongly consistent). Writes: one conditional PutItem per
    changed customer (in parallel); a failed condition is that customer's conflict.
    """

    def __init__(self, table: str, client=None, create: bool = True, max_workers: int = 16):

        self.max_workers = max_workers
        self.table = table
        self.ddb = client or aws.boto3_client("dynamodb")
        if create:
            self.ensure_table()

    def ensure_table(self) -> None:
        try:
            self.ddb.describe_table(TableName=self.table)
        except self.ddb.exceptions.ResourceNotFoundException:
            self.ddb.create_table(TableName=self.table, BillingMode="PAY_PER_REQUEST",
                                  KeySchema=[{"AttributeName": "customer_id", "KeyType": "HASH"}],
                                  AttributeDefinitions=[{"AttributeName": "customer_id", "AttributeType": "S"}])
            self.ddb.get_waiter("table_exists").wait(TableName=self.table, WaiterConfig={"Delay": 0.1})

    def load_many(self, customer_ids: Iterable[str]) -> dict[str, Item]:
        ids = list(dict.fromkeys(customer_ids))
        out: dict[str, Item] = {}
        for i in range(0, len(ids), 100):
            req = {self.table: {"Keys": [{"customer_id": {"S": c}} for c in ids[i:i + 100]], "ConsistentRead": True}}
            while req:
                resp = self.ddb.batch_get_item(RequestItems=req)
                for it in resp["Responses"].get(self.table, []):
                    cid = it["customer_id"]["S"]
                    out[cid] = decode(cid, int(it["v"]["N"]), it["b"]["B"])
                req = resp.get("UnprocessedKeys") or None
        return out

    def _put(self, it: Item) -> dict:
        item = {"customer_id": {"S": it.customer_id}, "v": {"N": str(it.version + 1)}, "b": {"B": encode(it)}}
        if it.tick_until is not None:
            item["tu"] = {"N": str(it.tick_until)}
        put = {"TableName": self.table, "Item": item}
        if it.version == 0:
            put["ConditionExpression"] = "attribute_not_exists(customer_id)"
        else:
            put["ConditionExpression"] = "#v = :v"
            put["ExpressionAttributeNames"] = {"#v": "v"}
            put["ExpressionAttributeValues"] = {":v": {"N": str(it.version)}}
        return put

    def save_many(self, items: list[Item]) -> set[str]:
        """One conditional PutItem per item, up to ``max_workers`` in flight. Not a transaction:
        each customer's write is independently atomic and conditional (all exactly-once needs),
        and TransactWriteItems would bill 2 write units per KB instead of 1."""
        conflicts: set[str] = set()

        def put(it: Item) -> bool:
            try:
                self.ddb.put_item(**self._put(it))
                return True
            except self.ddb.exceptions.ConditionalCheckFailedException:
                return False

        if len(items) <= 1:
            results = [put(it) for it in items]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(self.max_workers, len(items))) as pool:
                results = list(pool.map(put, items))
        for it, ok in zip(items, results):
            if ok:
                it.version += 1
            else:
                conflicts.add(it.customer_id)
        return conflicts

    def release(self, items: list[Item]) -> None:
        """Nothing kept: a Lambda invocation reads its items fresh."""

    def get_checkpoint(self, stream: str, shard: str) -> str | None:
        resp = self.ddb.get_item(TableName=self.table, ConsistentRead=True,
                                 Key={"customer_id": {"S": f"{CHECKPOINT_PREFIX}{stream}:{shard}"}})
        it = resp.get("Item")
        return None if it is None else it["seq"]["S"]

    def put_checkpoint(self, stream: str, shard: str, sequence_number: str) -> None:
        self.ddb.put_item(TableName=self.table, Item={"customer_id": {"S": f"{CHECKPOINT_PREFIX}{stream}:{shard}"},
                                                      "seq": {"S": sequence_number}})

    def live_customers(self, day: int) -> list[str]:
        out: list[str] = []
        kwargs = {"TableName": self.table, "ProjectionExpression": "customer_id",
                  "FilterExpression": "#tu >= :d", "ExpressionAttributeNames": {"#tu": "tu"}, "ExpressionAttributeValues": {":d": {"N": str(day)}}}
        while True:
            resp = self.ddb.scan(**kwargs)
            out += [it["customer_id"]["S"] for it in resp.get("Items", [])]
            if "LastEvaluatedKey" not in resp:
                return sorted(out)
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def get_tick_horizons(self, keys: Iterable[str]) -> dict[str, int]:
        out = {}
        for k in keys:
            it = self.ddb.get_item(TableName=self.table, ConsistentRead=True,
                                   Key={"customer_id": {"S": HORIZON_PREFIX + k}}).get("Item")
            if it is not None:
                out[k] = int(it["h"]["N"])
        return out

    def raise_tick_horizon(self, key: str, midnight_us: int) -> None:
        try:
            self.ddb.update_item(TableName=self.table, Key={"customer_id": {"S": HORIZON_PREFIX + key}},
                                 UpdateExpression="SET #h = :m", ConditionExpression="attribute_not_exists(#h) OR #h < :m",
                                 ExpressionAttributeNames={"#h": "h"},
                                 ExpressionAttributeValues={":m": {"N": str(midnight_us)}})
        except self.ddb.exceptions.ConditionalCheckFailedException:
            pass
