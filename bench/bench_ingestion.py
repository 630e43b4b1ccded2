"""Stream ingester throughput and DynamoDB cost, beside the spec's reference Lambda design.

Reference design (``bench/reference_ingester.py``, the seed spec's "Implementation: Lambda
Aggregator"): per event, read the customer's whole item, append the event, prune, write it back.
Ours: ingestion.handler (batch per invocation, bounded tiles, one read and one conditional write
per customer per batch).

Rows: events/s per core (CPU time of this process) on the embedded stores (SQLite state; the
online write measured separately with Feast's SQLite store), and DynamoDB requests and item bytes
written per event on a moto server.
"""
from __future__ import annotations

import json
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench.reference_ingester import (
    SPEC_LISTS,
    Reference,
    dynamodb_reference,
    sqlite_reference,
)
from core.times import DAY_US, from_us, to_us
from events.contract import TUTOR_KEYED_TYPES
from ingestion.dead_letters import SQLiteDeadLetters
from ingestion.dynamodb_state_store import DynamoDBStateStore
from ingestion.handler import Ingester
from ingestion.push import MemoryPusher
from ingestion.records import kinesis_record, tick_record
from ingestion.state_store import SQLiteStateStore
from ingestion.ticks import TickPlanner

BATCH = 1000


def make_records(root: Path, customers: int, days: int) -> tuple[list[dict], int]:
    from simulator.config import SimConfig
    from simulator.run import simulate

    simulate(SimConfig(customers=customers, days=days, seed=11), str(root))
    recs, planner, seq, midnight, events = [], TickPlanner(), 0, None, 0
    for line in (root / "stream.jsonl").read_bytes().splitlines():
        obj = json.loads(line)
        t = to_us(datetime.fromisoformat(obj["timestamp"].replace("Z", "+00:00")))
        while midnight is not None and midnight <= t:
            for c in planner.due(midnight):
                seq += 1
                recs.append(kinesis_record(json.dumps(tick_record(c, midnight)).encode(), c, seq, midnight))
            midnight += DAY_US
        midnight = midnight or (t // DAY_US + 1) * DAY_US
        key = obj["tutor_id"] if obj["event_type"] in TUTOR_KEYED_TYPES else obj["customer_id"]
        if obj["event_type"] not in TUTOR_KEYED_TYPES:
            planner.saw(key, t)
        seq += 1
        events += 1
        recs.append(kinesis_record(line, key, seq, t))
    return recs, events


class DecodeOnly(Ingester):
    """The handler's per-record phase alone (Powertools batch processing, base64, JSON, contract
    validation), no state read or written, nothing pushed: a floor for any handler that validates
    its records this way."""

    def _commit(self, results):
        return {}


# --------------------------------------------------------------------------- DynamoDB accounting
def _size(v: dict) -> int:
    """DynamoDB's item-size rules (approximately): bytes of names and values, +overheads. A number
    is 1 byte per two significant digits + 1 (leading and trailing zeros are trimmed, so 45.0 and
    45 -- as DynamoDB returns it -- have the same size)."""
    (t, x), = v.items()
    if t == "S":
        return len(x.encode())
    if t == "N":
        return (len(x.lstrip("-").replace(".", "").strip("0")) + 1) // 2 + 1
    if t == "B":
        return len(x)
    if t in ("BOOL", "NULL"):
        return 1
    if t == "L":
        return 3 + sum(1 + _size(e) for e in x)
    if t == "M":
        return 3 + sum(len(k.encode()) + 1 + _size(e) for k, e in x.items())
    return len(json.dumps(x))


def item_size(item: dict) -> int:
    return sum(len(k.encode()) + _size(v) for k, v in item.items())


class Meter:
    def __init__(self, client):
        self.requests, self.bytes, self.wcu = 0, 0, 0
        client.meta.events.register("provide-client-params.dynamodb.*", self._count)

    def _count(self, params, model, **_):
        self.requests += 1
        items = []
        if model.name == "PutItem":
            items = [params["Item"]]
        elif model.name == "TransactWriteItems":
            items = [t["Put"]["Item"] for t in params["TransactItems"] if "Put" in t]
        for it in items:
            n = item_size(it)
            self.bytes += n
            self.wcu += -(-n // 1024) * (2 if model.name == "TransactWriteItems" else 1)


def _batches(recs, size=BATCH):
    for i in range(0, len(recs), size):
        yield {"Records": recs[i:i + size]}


def _is_event(rec: dict) -> bool:
    import base64

    return b'"event_type"' in base64.b64decode(rec["kinesis"]["data"])


def heavy_customer(per_day: int, days: int, seed: int = 3, cid: str = "c9999999") -> list[dict]:
    """One customer with ``per_day`` events every day (sessions, logins, messages, calls, payments,
    bookings) and a day tick at every midnight, as Kinesis records in stream order."""
    import random

    from events.contract import EVENT_MODELS

    rng = random.Random(seed)
    t0 = to_us(datetime.fromisoformat("2025-01-01T00:00:00+00:00"))
    out, seq = [], 0
    for day in range(days):
        if day:
            seq += 1
            out.append(kinesis_record(json.dumps(tick_record(cid, t0 + day * DAY_US)).encode(), cid, seq, t0 + day * DAY_US))
        for j, off in enumerate(sorted(rng.randrange(DAY_US) for _ in range(per_day))):
            t = t0 + day * DAY_US + off
            kind = rng.choices(["session_completed", "login", "message_sent", "inbound_call", "payment_succeeded",
                                "booking_request"], [30, 30, 15, 10, 10, 5])[0]
            extra = {
                "session_completed": dict(session_id=f"s{day}-{j}", tutor_id=f"t{rng.randrange(4)}", subject="algebra",
                                          status="completed", student_rating=rng.choice([None, 3.5, 4.0, 5.0]),
                                          duration_minutes=rng.choice([30.0, 45.0, 60.0])),
                "login": {}, "message_sent": dict(tutor_id=f"t{rng.randrange(4)}"),
                "inbound_call": dict(duration_seconds=round(rng.uniform(30, 900), 1),
                                     sentiment_score=round(rng.uniform(-1, 1), 3), issue_category="billing",
                                     escalated=rng.random() < 0.2),
                "payment_succeeded": dict(amount=round(rng.uniform(20, 200), 2)),
                "booking_request": dict(request_id=f"r{day}-{j}", subject="algebra"),
            }[kind]

            e = EVENT_MODELS[kind](event_id=f"ev-{cid}-{day:03d}-{j:03d}", timestamp=from_us(t), customer_id=cid, **extra)
            seq += 1
            out.append(kinesis_record(json.dumps(e.to_record(), separators=(",", ":")).encode(), cid, seq, t))
    return out


def _per_customer_batches(recs: list[dict], k: int):
    """Batches that each hold k events of the customer (ticks travel with the next events)."""
    batch, n = [], 0
    for r in recs:
        batch.append(r)
        if _is_event(r):
            n += 1
            if n == k:
                yield {"Records": batch}
                batch, n = [], 0
    if batch:
        yield {"Records": batch}


def _interleave(streams: list[list[dict]]) -> list[dict]:
    """Several customers' record streams merged in time order on one shard (new sequence numbers)."""
    import base64

    merged = sorted((r for st in streams for r in st),
                    key=lambda r: (r["kinesis"]["approximateArrivalTimestamp"], r["kinesis"]["partitionKey"]))
    return [kinesis_record(base64.b64decode(r["kinesis"]["data"]), r["kinesis"]["partitionKey"], i + 1,
                           round(r["kinesis"]["approximateArrivalTimestamp"] * 1_000_000)) for i, r in enumerate(merged)]


class _Phases:
    """Meter readings (requests, bytes, wcu, events so far) at a split point and at the end."""

    def __init__(self, meter: Meter, split_at: int | None):
        self.meter, self.split_at, self.events, self.marks = meter, split_at, 0, []

    def after(self, batch: dict) -> None:
        before = self.events
        self.events += sum(1 for r in batch["Records"] if _is_event(r))
        if self.split_at is not None and before < self.split_at <= self.events:
            self.marks.append((self.meter.requests, self.meter.bytes, self.meter.wcu, self.events))

    def end(self) -> list[tuple]:
        return self.marks + [(self.meter.requests, self.meter.bytes, self.meter.wcu, self.events)]


def _dynamo_ours(aws, tmp: Path, batches, name: str, split_at: int | None = None):
    ddb = aws.boto3_client("dynamodb")
    store = DynamoDBStateStore(f"{name}-ours", client=ddb, max_workers=1)   # sequential: exact metering
    ph = _Phases(Meter(ddb), split_at)
    ing = Ingester(store, MemoryPusher(), SQLiteDeadLetters(tmp / f"{name}-dl.db"))
    for b in batches:
        ing.handle(b)
        ph.after(b)
    return ph.end()


class MeteredMemoryTable:
    """The reference's DynamoDB calls against an in-process table, metered like :class:`Meter`: the same
    serialisation (boto3 TypeSerializer, floats as Decimal) and the same item-size rules, so the same
    requests and bytes as on moto -- which needs ~0.2 s per request once items reach tens of KB."""

    def __init__(self):
        from boto3.dynamodb.types import TypeSerializer

        self.ser = TypeSerializer()
        self.items: dict[str, str] = {}
        self.requests, self.bytes, self.wcu = 0, 0, 0

    def get(self, cid):
        self.requests += 1
        body = self.items.get(cid)
        return None if body is None else json.loads(body)

    def put(self, cid, state):
        from decimal import Decimal

        self.requests += 1
        body = json.dumps(state)
        item = {k: self.ser.serialize(v) for k, v in json.loads(body, parse_float=Decimal).items()}
        n = item_size(item)
        self.bytes += n
        self.wcu += -(-n // 1024)
        self.items[cid] = body


def _dynamo_ref(aws, recs: list[dict], name: str, lists=None, split_at: int | None = None, moto: bool = True):
    """The reference processes records one by one: its requests and bytes do not depend on batching."""
    if moto:
        ddb = aws.boto3_client("dynamodb")
        ref = dynamodb_reference(ddb, f"{name}-ref", lists)
        ph = _Phases(Meter(ddb), split_at)
    else:
        table = MeteredMemoryTable()
        ref = Reference(table.get, table.put, lists)
        ph = _Phases(table, split_at)
    step = BATCH if split_at is None else 1     # record by record either way; finer meter readings
    for i in range(0, len(recs), step):
        b = {"Records": recs[i:i + step]}
        ref.handle(b)
        ph.after(b)
    return ph.end()


def run(quick: bool) -> list[dict]:
    import os

    from core import aws, local_aws

    customers, days = (200, 20) if quick else (1000, 45)
    load = "load avg {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        recs, n_events = make_records(tmp / "sim", customers, days)

        print(f"  {len(recs):,} records ({n_events:,} events); embedded throughput ...", flush=True)
        # embedded: ours (SQLite state, in-process online table) vs the reference (SQLite items).
        # CPU time of this process (time.process_time), single thread; best of 3 passes on fresh stores.
        ours_cpu, ref_cpu, floor_cpu = [], [], []
        for rep in range(3):
            floor = DecodeOnly(SQLiteStateStore(tmp / f"floor{rep}.db"), MemoryPusher(), SQLiteDeadLetters(tmp / f"fdl{rep}.db"))
            c0 = time.process_time()
            for b in _batches(recs):
                floor.handle(b)
            floor_cpu.append(time.process_time() - c0)
            ours = Ingester(SQLiteStateStore(tmp / f"state{rep}.db"), MemoryPusher(), SQLiteDeadLetters(tmp / f"dl{rep}.db"))
            c0 = time.process_time()
            for b in _batches(recs):
                ours.handle(b)
            ours_cpu.append(time.process_time() - c0)
            ref = sqlite_reference(tmp / f"ref{rep}.db")
            c0 = time.process_time()
            for b in _batches(recs):
                ref.handle(b)
            ref_cpu.append(time.process_time() - c0)
        ours_eps, ref_eps = n_events / min(ours_cpu), n_events / min(ref_cpu)
        n_ticks = len(recs) - n_events
        rows += [
            {"benchmark": "ingestion", "metric": f"events/s per core, handler -> SQLite state (batch {BATCH}, "
                                                 f"{customers} customers x {days} d, {n_events:,} events + {n_ticks:,} "
                                                 f"ticks, best of 3; {load})",
             "value": round(ours_eps), "unit": "events/s", "goal": ">= 10,000", "ok": ours_eps >= 10_000},
            {"benchmark": "ingestion", "metric": "events/s per core, reference design -> SQLite items (same records)",
             "value": round(ref_eps), "unit": "events/s"},
            {"benchmark": "ingestion", "metric": "throughput ratio ours / reference (embedded)",
             "value": round(ours_eps / ref_eps, 2), "unit": "x", "goal": ">= 10", "ok": ours_eps / ref_eps >= 10},
            {"benchmark": "ingestion", "metric": "CPU per event: ours / reference / the per-record phase alone (Powertools "
                                                 "batch processing + decoding + contract validation, no state)",
             "value": " / ".join(f"{min(c) / n_events * 1e6:.1f}" for c in (ours_cpu, ref_cpu, floor_cpu)),
             "unit": "us/event"},
            {"benchmark": "ingestion", "metric": "throughput ratio a handler could reach if reading, updating, writing and "
                                                 "pushing state were free (reference / per-record phase alone)",
             "value": round(min(ref_cpu) / min(floor_cpu), 1), "unit": "x"},
            {"benchmark": "ingestion", "metric": "online rows pushed per event (ours; one row per changed customer "
                                                 "per invocation, ticks included)",
             "value": round(ours.totals["pushed_rows"] / n_events, 3), "unit": "rows/event"},
            {"benchmark": "ingestion", "metric": "state items written per event (ours; ticks are pushed, not written)",
             "value": round(ours.totals["saved"] / n_events, 3), "unit": "writes/event"},
        ]

        # embedded throughput with heavy customers (20 events/day each, 40 days, one shard, time order):
        # the reference's item holds 30 days of raw events and is parsed and rewritten per event
        n_heavy = 10 if quick else 25
        hrecs = _interleave([heavy_customer(20, 40, seed=i, cid=f"h{i:07d}") for i in range(n_heavy)])
        h_events = sum(1 for r in hrecs if _is_event(r))
        for size in (BATCH, 100):
            ing = Ingester(SQLiteStateStore(tmp / f"h{size}.db"), MemoryPusher(), SQLiteDeadLetters(tmp / f"hdl{size}.db"))
            c0 = time.process_time()
            for b in _batches(hrecs, size):
                ing.handle(b)
            o_cpu = time.process_time() - c0
            ref = sqlite_reference(tmp / f"href{size}.db")
            c0 = time.process_time()
            for b in _batches(hrecs, size):
                ref.handle(b)
            r_cpu = time.process_time() - c0
            per = h_events / (len(hrecs) / size) / n_heavy
            tag = (f"{n_heavy} heavy customers x 20 events/day x 40 d, batch {size} records "
                   f"(~{per:.0f} events per customer per batch)")
            rows += [
                {"benchmark": "ingestion", "metric": f"events/s per core, ours / reference -> SQLite: {tag}",
                 "value": f"{h_events / o_cpu:,.0f} / {h_events / r_cpu:,.0f}", "unit": "events/s"},
                {"benchmark": "ingestion", "metric": f"throughput ratio ours / reference: {tag}",
                 "value": round(r_cpu / o_cpu, 1), "unit": "x", "goal": ">= 10", "ok": r_cpu / o_cpu >= 10},
            ]

        print("  Feast push ...", flush=True)
        # end to end with the Feast online write (SQLite online store, the pusher's direct batched path)
        try:
            from features import store as FS
            from features.backfill import run_backfill
            from ingestion.push import FeastPusher

            run_backfill(str(tmp / "sim" / "events"), str(tmp / "features"), progress=False)
            store = FS.open_store("local", tmp / "feast")
            FS.apply(store, str(tmp / "features"))
            feast_ing = Ingester(SQLiteStateStore(tmp / "state-feast.db"), FeastPusher(store), SQLiteDeadLetters(tmp / "dl-f.db"))
            sub = recs[: 10_000 if quick else 40_000]
            sub_events = sum(1 for r in sub if _is_event(r))
            c0 = time.process_time()
            for b in _batches(sub):
                feast_ing.handle(b)
            cpu = time.process_time() - c0
            eps = sub_events / cpu
            rows += [{"benchmark": "ingestion", "metric": "events/s per core end to end: handler -> SQLite state -> Feast "
                                                          f"online store (SQLite; {len(sub):,} records; {load})",
                      "value": round(eps), "unit": "events/s", "goal": ">= 5,000", "ok": eps >= 5000},
                     {"benchmark": "ingestion", "metric": "CPU per pushed customer row, handler and push included",
                      "value": round(cpu / max(feast_ing.totals["pushed_rows"], 1) * 1000, 3), "unit": "ms CPU/row"}]
        except Exception as exc:  # noqa: BLE001
            rows.append({"benchmark": "ingestion", "metric": f"Feast push measurement failed: {exc}", "value": "",
                         "ok": False})

        print("  DynamoDB (moto) ...", flush=True)
        # DynamoDB on moto: requests and item bytes written per event, the same records for both
        sub = recs if quick else recs[-20_000:]   # full: the last records (histories built up)
        with local_aws.moto_server():
            # the reference's requests and bytes, metered in process (moto takes ~25 ms per request here);
            # checked against moto on a prefix of the same records
            (r,) = _dynamo_ref(aws, sub, "sim", moto=False)
            prefix = sub[:1500]
            on_moto, in_proc = _dynamo_ref(aws, prefix, "check"), _dynamo_ref(aws, prefix, "check", moto=False)
            rows.append({"benchmark": "ingestion", "metric": "reference metering: moto and in-process agree on "
                                                             f"the first {len(prefix):,} records (requests, bytes, WCU)",
                         "value": "yes" if on_moto == in_proc else f"NO {on_moto} != {in_proc}",
                         "ok": on_moto == in_proc})
            for size in (BATCH, 100):
                (o,) = _dynamo_ours(aws, tmp, _batches(sub, size), f"sim{size}")
                ev_n = o[3]
                tag = f"simulated marketplace ({customers} customers, {ev_n:,} events), batch {size} records"
                rows += [
                    {"benchmark": "ingestion", "metric": f"DynamoDB requests per event, ours / reference: {tag}",
                     "value": f"{o[0] / ev_n:.3f} / {r[0] / ev_n:.3f}", "unit": "requests/event"},
                    {"benchmark": "ingestion", "metric": f"DynamoDB item bytes written per event, ours / reference: {tag}",
                     "value": f"{o[1] / ev_n:.1f} / {r[1] / ev_n:.1f}", "unit": "bytes/event"},
                    {"benchmark": "ingestion", "metric": f"bytes written ratio ours / reference: {tag}",
                     "value": round(o[1] / r[1], 3), "unit": "x", "goal": "<= 0.1", "ok": o[1] / r[1] <= 0.1},
                    {"benchmark": "ingestion", "metric": f"DynamoDB write units per event, ours / reference: {tag}",
                     "value": f"{o[2] / ev_n:.3f} / {r[2] / ev_n:.3f}", "unit": "WCU/event"},
                ]
            # the spec's sketch as written (only sessions and calls kept): a smaller item, far fewer features
            (sk,) = _dynamo_ref(aws, sub, "sketch", SPEC_LISTS, moto=False)
            rows.append({"benchmark": "ingestion", "metric": "DynamoDB item bytes written per event, the spec's sketch "
                                                             "verbatim (sessions + calls lists only): simulated marketplace",
                         "value": round(sk[1] / sk[3], 1), "unit": "bytes/event"})

            # a heavy customer: 20 events/day (history full after day 30), k of its events per batch
            hdays = 35 if quick else 40
            heavy = heavy_customer(20, hdays)
            r30, rall = _dynamo_ref(aws, heavy, "heavy", split_at=20 * 30, moto=False)
            steady_r = (rall[1] - r30[1]) / (rall[3] - r30[3])
            for k in ((1, 20) if quick else (1, 10, 100)):
                o30, oall = _dynamo_ours(aws, tmp, _per_customer_batches(heavy, k), f"heavy{k}", split_at=20 * 30)
                steady_o = (oall[1] - o30[1]) / (oall[3] - o30[3])
                tag = f"heavy customer (20 events/day x {hdays} d), {k} of its events per batch"
                rows += [
                    {"benchmark": "ingestion", "metric": f"DynamoDB item bytes written per event, ours / reference: "
                                                         f"{tag}, all days",
                     "value": f"{oall[1] / oall[3]:.1f} / {rall[1] / rall[3]:.1f}", "unit": "bytes/event"},
                    {"benchmark": "ingestion", "metric": f"DynamoDB item bytes written per event, ours / reference: "
                                                         f"{tag}, days 31+ (30 days of history)",
                     "value": f"{steady_o:.1f} / {steady_r:.1f}", "unit": "bytes/event"},
                    {"benchmark": "ingestion", "metric": f"bytes written ratio ours / reference: {tag}, all days",
                     "value": round(oall[1] / rall[1], 4), "unit": "x", "goal": "<= 0.1", "ok": oall[1] / rall[1] <= 0.1},
                ]
    return rows


if __name__ == "__main__":
    for r in run(quick=True):
        print(r)
