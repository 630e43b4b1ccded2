"""The customer's reference Lambda design, the baseline of the ingestion benchmark.

The seed spec's "Implementation: Lambda Aggregator" sketch, implemented here only (never in
the product): per event, read the customer's whole item, append the event to a per-type list,
prune entries older than 30 days (event time), put the item back; on a high-signal event, read
it again and compute features from the lists. ``bench/bench_ingestion.py`` runs it beside
``ingestion.handler`` on the same records (SQLite items embedded, DynamoDB items on moto or an
in-process metered table).
"""
from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

from events.contract import TUTOR_KEYED_TYPES
from ingestion.hooks import HIGH_SIGNAL_TYPES

# The seed spec's entries, exactly: session_completed -> "sessions", inbound_call -> "ib_calls".
SPEC_LISTS = {
    "session_completed": ("sessions", {"rating": "student_rating", "duration": "duration_minutes",
                                       "tutor_id": "tutor_id", "status": "status"}),
    "inbound_call": ("ib_calls", {"duration": "duration_seconds", "sentiment": "sentiment_score",
                                  "category": "issue_category"}),
}


def _catalog_fields() -> dict[str, tuple[str, ...]]:
    """Per other event type, the fields the catalog's customer features read (the same idea as the
    spec's entries: timestamp + what the features need), so the reference can serve the same features."""
    from features import catalog as C

    out: dict[str, set] = {}
    srcs = [(m.source, m.value) for m in C.METRICS]
    srcs += [(f.source, getattr(f, "field", None)) for f in C.CUSTOMER_FEATURES if hasattr(f, "source")]
    for src, value in srcs:
        for t in src.event_types:
            fs = out.setdefault(t, set())
            fs.update(c.field for c in src.where)
            if value:
                fs.add(value)
    return {t: tuple(sorted(fs)) for t, fs in out.items() if t not in SPEC_LISTS}


# the sketch's entries plus what the catalog needs beyond them (escalated), and the other event types
REFERENCE_LISTS = {**SPEC_LISTS, "inbound_call": ("ib_calls", {**SPEC_LISTS["inbound_call"][1], "escalated": "escalated"}),
                   **{t: (t, {f: f for f in fs}) for t, fs in _catalog_fields().items()}}


class Reference:
    """The spec's "Implementation: Lambda Aggregator", per record: get_item, append the event to its
    list, prune entries older than 30 days, put_item; on a high-signal event, compute_features (which
    reads the item again). Differences from the sketch, all neutral or in its favour: event time
    instead of datetime.now() (replayable), tutor-keyed events and day ticks are skipped (the sketch
    has no customer for them and no decay), unrated sessions are left out of the rating average
    (the sketch would raise on None), no SageMaker call (ours calls a no-op hook).

    ``lists``: SPEC_LISTS (the sketch: sessions and calls only, so it serves a handful of features)
    or REFERENCE_LISTS (also the other event types the catalog reads, to serve the same features).
    """

    def __init__(self, get, put, lists=None):
        self.get, self.put = get, put
        self.lists = REFERENCE_LISTS if lists is None else lists
        self.features_computed = 0

    def handle(self, event: dict) -> None:
        import base64

        for r in event["Records"]:
            payload = json.loads(base64.b64decode(r["kinesis"]["data"]))
            etype = payload.get("event_type")
            if etype is None or etype in TUTOR_KEYED_TYPES:
                continue
            cid = payload.get("customer_id")
            t = datetime.fromisoformat(payload["timestamp"].replace("Z", "+00:00"))
            self.update_feature_state(cid, etype, payload, t)
            if etype in HIGH_SIGNAL_TYPES:
                self.compute_features(self.get(cid), t)
                self.features_computed += 1

    def update_feature_state(self, cid: str, etype: str, payload: dict, t: datetime) -> None:
        state = self.get(cid) or {"customer_id": cid, "sessions": [], "ib_calls": []}
        spec = self.lists.get(etype)
        if spec is not None:
            name, fields = spec
            entry = {"timestamp": t.isoformat(), **{k: payload.get(f) for k, f in fields.items()}}
            state.setdefault(name, []).append(entry)
        cutoff = (t - timedelta(days=30)).isoformat()
        for k, v in state.items():
            if isinstance(v, list):
                state[k] = [e for e in v if e["timestamp"] > cutoff]
        self.put(cid, state)

    @staticmethod
    def compute_features(state: dict, now: datetime) -> dict:
        from collections import defaultdict

        f = {}
        sessions, calls = state.get("sessions", []), state.get("ib_calls", [])
        for w in (7, 14, 30):
            cutoff = (now - timedelta(days=w)).isoformat()
            s = [e for e in sessions if e["timestamp"] > cutoff]
            f[f"session_count_{w}d"] = len(s)
            f[f"session_frequency_{w}d"] = len(s) / w
            rated = [e["rating"] for e in s if e.get("rating") is not None]
            f[f"avg_rating_{w}d"] = sum(rated) / len(rated) if rated else 0
            c = [e for e in calls if e["timestamp"] > cutoff]
            f[f"ib_call_count_{w}d"] = len(c)
            f[f"negative_calls_{w}d"] = sum(1 for e in c if e["sentiment"] < -0.3)
        last = max(sessions, key=lambda e: e["timestamp"]) if sessions else None
        f["days_since_last_session"] = (now - datetime.fromisoformat(last["timestamp"])).days if last else 999
        if sessions:
            counts = defaultdict(int)
            for e in sessions[-20:]:
                counts[e["tutor_id"]] += 1
            f["tutor_consistency"] = max(counts.values()) / len(sessions[-20:])
        return f


def sqlite_reference(path: Path, lists=None) -> Reference:
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("CREATE TABLE items (customer_id TEXT PRIMARY KEY, body TEXT)")

    def get(cid):
        row = con.execute("SELECT body FROM items WHERE customer_id = ?", (cid,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(cid, state):
        con.execute("INSERT OR REPLACE INTO items VALUES (?, ?)", (cid, json.dumps(state)))
    return Reference(get, put, lists)


def dynamodb_reference(ddb, table: str, lists=None) -> Reference:
    from decimal import Decimal

    from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

    ser, de = TypeSerializer(), TypeDeserializer()
    ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "customer_id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "customer_id", "AttributeType": "S"}])

    def get(cid):
        it = ddb.get_item(TableName=table, Key={"customer_id": {"S": cid}}).get("Item")
        # numbers back as they were written: Decimal("12") -> 12, Decimal("45.0") -> 45.0 (the resource API
        # would keep the Decimals; re-serialising them gives the same N strings)
        num = lambda d: int(d) if d.as_tuple().exponent >= 0 else float(d)  # noqa: E731
        return None if it is None else json.loads(json.dumps({k: de.deserialize(v) for k, v in it.items()}, default=num))

    def put(cid, state):
        item = json.loads(json.dumps(state), parse_float=Decimal)
        ddb.put_item(TableName=table, Item={k: ser.serialize(v) for k, v in item.items()})
    return Reference(get, put, lists)
