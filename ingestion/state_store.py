"""Per-customer aggregation state with optimistic concurrency (embedded: SQLite; AWS: DynamoDB).

One item per customer::

    customer_id   key
    version       int, +1 on every write; a write succeeds only if the stored version is the
                  one that was read (0 = "must not exist yet"), so concurrent writers never
                  lose an update: the loser gets a conflict, re-reads and re-applies
    tick_until    int, the last UTC day number at which a day tick can still change a window
                  (watermark day + MAX_WINDOW_DAYS); lets the tick scheduler find live customers
    body          zlib(compact JSON) of :class:`Item` minus the key/version:
                  s = the features.state dict (bounded: tiles for <= 30 days, totals, ...)
                  q = highest Kinesis sequence number applied (redeliveries are <= q)
                  r = the last RECENT_IDS applied event ids (producer-side duplicates)
                  p = pushed_clock, the state clock whose feature row is already online

Shard checkpoints of the Kinesis poller live in the same store under keys that cannot be
customer ids (``#checkpoint:<stream>:<shard>``; ``#`` is not allowed in contract ids).
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Protocol

from features import catalog as C
from features import state as S

RECENT_IDS = 16
CHECKPOINT_PREFIX = "#checkpoint:"


@dataclass
class Item:
    customer_id: str
    version: int = 0                          # 0: not stored yet
    state: dict = field(default_factory=S.new_state)
    seq: int = -1
    recent: list = field(default_factory=list)
    pushed_clock: int | None = None

    @property
    def tick_until(self) -> int | None:
        wm = self.state.get("watermark")
        return None if wm is None else S.day_of(wm[0]) + C.MAX_WINDOW_DAYS


def encode(item: Item) -> bytes:
    body = {"s": item.state, "q": item.seq, "r": item.recent, "p": item.pushed_clock}
    return zlib.compress(json.dumps(body, separators=(",", ":")).encode(), 6)


def decode(customer_id: str, version: int, blob: bytes) -> Item:
    body = json.loads(zlib.decompress(blob))
    return Item(customer_id, version, body["s"], body["q"], body["r"], body["p"])


class StateStore(Protocol):
    def load_many(self, customer_ids: Iterable[str]) -> dict[str, Item]:
        """Stored items by customer id (absent customers are missing from the result)."""

    def save_many(self, items: list[Item]) -> set[str]:
        """Write each item if its stored version is still ``item.version`` (then bump it).
        Returns the customer ids that conflicted (nothing written for them)."""

    def get_checkpoint(self, stream: str, shard: str) -> str | None: ...

    def put_checkpoint(self, stream: str, shard: str, sequence_number: str) -> None: ...

    def live_customers(self, day: int) -> list[str]:
        """Customers whose ``tick_until`` >= day (candidates for a day tick at that midnight)."""


# --------------------------------------------------------------------------- SQLite
class SQLiteStateStore:
    """Embedded store: one SQLite file (WAL); each instance has its own connection."""

    def __init__(self, path: str | os.PathLike, timeout: float = 30.0):
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

    def load_many(self, customer_ids: Iterable[str]) -> dict[str, Item]:
        ids = list(customer_ids)
        out: dict[str, Item] = {}
        with self._lock:
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                q = f"SELECT customer_id, version, body FROM customer_state WHERE customer_id IN ({','.join('?' * len(chunk))})"
                for cid, version, body in self.con.execute(q, chunk):
                    out[cid] = decode(cid, version, body)
        return out

    def save_many(self, items: list[Item]) -> set[str]:
        conflicts: set[str] = set()
        with self._lock:
            cur = self.con.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for it in items:
                    blob = encode(it)
                    if it.version == 0:
                        cur.execute("INSERT OR IGNORE INTO customer_state VALUES (?, 1, ?, ?)",
                                    (it.customer_id, it.tick_until, blob))
                    else:
                        cur.execute("UPDATE customer_state SET version = version + 1, tick_until = ?, body = ? "
                                    "WHERE customer_id = ? AND version = ?",
                                    (it.tick_until, blob, it.customer_id, it.version))
                    if cur.rowcount == 1:
                        it.version += 1
                        self.bytes_written += len(blob)
                        self.writes += 1
                    else:
                        conflicts.add(it.customer_id)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return conflicts

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

    def close(self) -> None:
        self.con.close()


# --------------------------------------------------------------------------- DynamoDB
class DynamoDBStateStore:
    """AWS store: one DynamoDB table (on-demand), key ``customer_id``.

    Reads: BatchGetItem (100 keys, strongly consistent). Writes: TransactWriteItems of up to
    100 conditional Puts (one request per 100 customers); when a transaction is cancelled by
    a failed condition, the cancellation reasons name the conflicting items and the others are
    retried in a new transaction.
    """

    def __init__(self, table: str, client=None, create: bool = True):
        from mhp import aws

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
                    out[cid] = decode(cid, int(it["version"]["N"]), it["body"]["B"])
                req = resp.get("UnprocessedKeys") or None
        return out

    def _put(self, it: Item) -> dict:
        item = {"customer_id": {"S": it.customer_id}, "version": {"N": str(it.version + 1)},
                "body": {"B": encode(it)}}
        if it.tick_until is not None:
            item["tick_until"] = {"N": str(it.tick_until)}
        put = {"TableName": self.table, "Item": item}
        if it.version == 0:
            put["ConditionExpression"] = "attribute_not_exists(customer_id)"
        else:
            put["ConditionExpression"] = "version = :v"
            put["ExpressionAttributeValues"] = {":v": {"N": str(it.version)}}
        return put

    def save_many(self, items: list[Item]) -> set[str]:
        conflicts: set[str] = set()
        for i in range(0, len(items), 100):
            pending = items[i:i + 100]
            while pending:
                if len(pending) == 1:
                    try:
                        self.ddb.put_item(**self._put(pending[0]))
                        pending[0].version += 1
                    except self.ddb.exceptions.ConditionalCheckFailedException:
                        conflicts.add(pending[0].customer_id)
                    break
                try:
                    self.ddb.transact_write_items(TransactItems=[{"Put": self._put(it)} for it in pending])
                    for it in pending:
                        it.version += 1
                    break
                except self.ddb.exceptions.TransactionCanceledException as exc:
                    reasons = exc.response.get("CancellationReasons") or []
                    failed = {j for j, r in enumerate(reasons) if r.get("Code") == "ConditionalCheckFailed"}
                    if not failed:
                        raise
                    conflicts.update(pending[j].customer_id for j in failed)
                    pending = [it for j, it in enumerate(pending) if j not in failed]
        return conflicts

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
                  "FilterExpression": "tick_until >= :d", "ExpressionAttributeValues": {":d": {"N": str(day)}}}
        while True:
            resp = self.ddb.scan(**kwargs)
            out += [it["customer_id"]["S"] for it in resp.get("Items", [])]
            if "LastEvaluatedKey" not in resp:
                return sorted(out)
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
