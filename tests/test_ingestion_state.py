"""State store: version-checked writes never lose an update (SQLite threads, DynamoDB on moto),
and the per-customer state stays bounded."""
import json
import random
import threading
from datetime import timedelta

from features import state as S
from ingestion.dead_letters import SQLiteDeadLetters
from ingestion.dynamodb_state_store import DynamoDBStateStore
from ingestion.engine import apply_records
from ingestion.handler import Ingester
from ingestion.push import MemoryPusher
from ingestion.records import Decoded, kinesis_record, to_us
from ingestion.state_codec import Item, encode
from ingestion.state_store import SQLiteStateStore
from tests.eventlog import ev, session, ts


def increment(store, cid, n, retries):
    """Read-modify-write with the version check: retry on conflict."""
    for _ in range(n):
        while True:
            item = store.load_many([cid]).get(cid) or Item(cid)
            item.state["totals"][0] += 1
            if not store.save_many([item]):
                break
            retries.append(1)


def interleaved(store):
    a = store.load_many(["c1"]).get("c1") or Item("c1")
    b = store.load_many(["c1"]).get("c1") or Item("c1")
    a.state["totals"][0] += 1
    b.state["totals"][1] += 1
    assert store.save_many([a]) == set()
    assert store.save_many([b]) == {"c1"}          # b read the old version: rejected, nothing lost
    b = store.load_many(["c1"])["c1"]
    b.state["totals"][1] += 1
    assert store.save_many([b]) == set()
    final = store.load_many(["c1"])["c1"]
    assert final.state["totals"][:2] == [1, 1] and final.version == 2


def test_sqlite_interleaved_writers_conflict(tmp_path):
    interleaved(SQLiteStateStore(tmp_path / "s.db"))


def test_sqlite_concurrent_threads_never_lose_an_update(tmp_path):
    stores = [SQLiteStateStore(tmp_path / "s.db") for _ in range(2)]   # two connections, like two Lambdas
    retries = []
    threads = [threading.Thread(target=increment, args=(s, "c1", 60, retries)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stores[0].load_many(["c1"])["c1"].state["totals"][0] == 120


def test_dynamodb_interleaved_and_concurrent_writers(moto_endpoint):
    store = DynamoDBStateStore("state-test")
    interleaved(store)
    retries = []
    threads = [threading.Thread(target=increment, args=(DynamoDBStateStore("state-test"), "c2", 15, retries))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.load_many(["c2"])["c2"].state["totals"][0] == 30
    # a multi-item write where one item conflicts: the others are written (transaction retried without it)
    items = store.load_many(["c1", "c2"])
    stale = Item("c1", version=1)
    assert store.save_many([stale, items["c2"], Item("c3")]) == {"c1"}
    assert set(store.load_many(["c1", "c2", "c3"])) == {"c1", "c2", "c3"}
    assert store.load_many(["c2"])["c2"].version == items["c2"].version


def test_handler_on_two_writers_same_customer_loses_nothing(tmp_path):
    """Two handlers (separate connections) race on one customer's disjoint, time-ordered days."""
    evs = [ev("login", ts("2025-01-01T00:00:00Z") + timedelta(hours=h), customer_id="c1") for h in range(80)]
    recs = [kinesis_record(json.dumps(e.to_record()).encode(), "c1", i + 1, to_us(e.timestamp)) for i, e in enumerate(evs)]
    ings = [Ingester(SQLiteStateStore(tmp_path / "s.db"), MemoryPusher(), SQLiteDeadLetters(tmp_path / "d.db"))
            for _ in range(2)]
    # writer 0 delivers everything in order; writer 1 concurrently redelivers the same batches
    def go(ing):
        for i in range(0, len(recs), 8):
            assert ing.handle({"Records": recs[i:i + 8]}) == {"batchItemFailures": []}
    threads = [threading.Thread(target=go, args=(i,)) for i in ings]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    st = ings[0].store.load_many(["c1"])["c1"].state
    assert st["totals"][S._METRIC_INDEX["logins"]] == 80
    assert sum(i.totals["applied"] for i in ings) == 80


def grow(n_events, rng, days=365):
    """One customer's item after n_events over ``days`` days, through the engine (applied ids kept)."""
    item = Item("c1")
    t0 = ts("2024-01-01T00:00:00Z")
    recs = []
    for i in range(n_events):
        t = t0 + timedelta(seconds=i * days * 86400 / n_events)
        kind = rng.random()
        if kind < 0.5:
            e = session(t, rating=rng.choice([None, 3.0, 5.0]), tutor=f"t{rng.randrange(5)}", customer_id="c1")
        elif kind < 0.8:
            e = ev("login", t, customer_id="c1")
        else:
            e = ev("payment_succeeded", t, customer_id="c1", amount=round(rng.uniform(5, 200), 2))
        recs.append(Decoded("event", "c1", to_us(e.timestamp), i, e.event_id, e.event_type, e.model_dump()))
    for i in range(0, len(recs), 50):
        apply_records(item, recs[i:i + 50])
    return item


def test_state_size_is_bounded_by_the_lateness_span():
    """The item holds the last 30 days' applied ids (8 bytes each) on top of a bounded state: the
    same year with 100x the events grows by the ids of those 30 days only."""
    rng = random.Random(1)
    small, large = grow(200, rng), grow(20_000, rng)
    ids = lambda it: sum(len(v) for v in it.applied.values())  # noqa: E731
    assert ids(small) < 30 and 1_600 < ids(large) < 1_700       # ~55 events/day x 30 days
    without = lambda it: len(encode(Item("c1", state=it.state)))  # noqa: E731
    assert without(large) < 2 * without(small) + 512, (without(small), without(large))
    assert len(encode(large)) - without(large) < 8.5 * ids(large)   # 8 bytes per id, base64 then deflated
    assert len(encode(large)) < 20_000                  # far below DynamoDB's 400 KB item limit


def test_compact_body_round_trips_and_reads_formats_1_to_3():
    import base64
    import struct
    import zlib

    from ingestion.state_codec import decode, legacy_digest

    rng = random.Random(2)
    item = grow(300, rng, days=90)
    assert item.applied and item.ids_from is not None and item.state["primary"]
    for body in (encode(item), encode(item, deflate=False)):      # DynamoDB / the embedded store
        back = decode("c1", 3, body)
        assert (back.state, back.applied, back.ids_from, back.legacy) == (item.state, item.applied, item.ids_from, None)
    assert len(encode(item)) < len(encode(item, deflate=False)) / 1.5
    assert S.snapshot(back.state) == S.snapshot(item.state)
    assert decode("c2", 1, encode(Item("c2"))).state == S.new_state()
    # older formats: the state without the order keys, and a legacy floor at the watermark
    plain = {k: v for k, v in item.state.items() if k not in ("first_key", "latest_key", "wsums")}
    plain["primary"] = {k: {kk: vv for kk, vv in p.items() if kk != "last"} for k, p in plain["primary"].items()}
    old = zlib.compress(json.dumps({"s": plain, "q": 77, "r": ["e1", "e2"], "p": None}).encode())
    legacy = decode("c1", 3, old)
    assert S.snapshot(legacy.state) == S.snapshot(item.state)
    assert legacy.legacy.floor == item.state["watermark"] and legacy.legacy.seq == 77
    assert legacy.legacy.recent == [legacy_digest("e1"), legacy_digest("e2")]
    # format 3 (framing byte 3) and 2 (sparse tiles), same body layout otherwise
    body4 = json.loads(encode(item, deflate=False)[1:])
    fi = lambda xs: [x for j in range(0, len(xs), 3) for x in xs[j:j + 2]]  # noqa: E731 - drop key indices
    prim = [[i, k, top, [x for j in range(0, len(c), 3) for x in c[j:j + 2]]] for i, k, top, c in body4[7]]
    recent = base64.b64encode(struct.pack(">2I", legacy_digest("e1"), legacy_digest("e2"))).decode()
    body3 = [*body4[:4], fi(body4[4]), fi(body4[5]), body4[6], prim, body4[8], 77, recent, None]
    for head, tiles in ((b"\x03", body3[2]), (b"\x02", [[t[0], *[x for i, v in enumerate(t[1:]) if v for x in (i, v)]]
                                                        for t in body3[2]])):
        got = decode("c1", 3, head + json.dumps([*body3[:2], tiles, *body3[3:]]).encode())
        assert S.snapshot(got.state) == S.snapshot(item.state) and got.legacy.recent == legacy.legacy.recent


def test_a_legacy_item_keeps_duplicates_and_rejects_what_it_cannot_tell_apart():
    """Below a format-3 item's floor: a known redelivery (sequence number, recent digest) is a
    duplicate; anything else is too late (it cannot be told from a resend), never applied twice."""
    from ingestion.state_codec import Legacy

    item = grow(40, random.Random(3), days=10)
    e_old = ev("login", ts("2024-01-03T00:00:00Z"), customer_id="c1")
    floor = list(item.state["watermark"])
    item.legacy, item.applied, item.ids_from = Legacy(floor, 5, []), {}, None
    recs = [Decoded("event", "c1", to_us(e_old.timestamp), 9, e_old.event_id, "login", e_old.model_dump()),
            Decoded("event", "c1", to_us(e_old.timestamp), 4, "other", "login", e_old.model_dump())]
    out = apply_records(item, recs)
    assert out.applied == 0 and out.duplicates == 1 and len(out.too_late) == 1


def test_two_threads_opening_a_new_sqlite_file_at_once(tmp_path):
    """Switching a new file to WAL takes a lock SQLite does not wait for: openers take turns."""
    from ingestion.dead_letters import SQLiteDeadLetters

    for round_ in range(40):
        errors = []
        barrier = threading.Barrier(4)

        def open_one(kind, path, barrier=barrier, errors=errors):
            barrier.wait()
            try:
                (SQLiteStateStore if kind == "s" else SQLiteDeadLetters)(path)
            except Exception as exc:  # noqa: BLE001 - collected, asserted below
                errors.append(exc)
        threads = [threading.Thread(target=open_one, args=(k, tmp_path / f"{round_}{k}.db")) for k in "ssdd"]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
