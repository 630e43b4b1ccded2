"""The handler on real Kinesis-shaped events: malformed-record corpus, partial batch failures,
tutor events, day ticks, late events, the scoring hook."""
import json
import sqlite3

import pytest

from features import state as S
from ingestion.dead_letters import JsonlDeadLetters, SQLiteDeadLetters
from ingestion.handler import Ingester
from ingestion.push import MemoryPusher
from ingestion.records import REASONS, kinesis_record, tick_record, to_us
from ingestion.state_store import SQLiteStateStore
from tests.eventlog import ev, session, ts

T0 = ts("2025-01-06T10:00:00Z")


class RecordingHook:
    def __init__(self):
        self.calls = []

    def on_high_signal(self, customer_ids, as_of):
        self.calls.append((list(customer_ids), as_of))


def make(tmp_path, **kw):
    hook = RecordingHook()
    ing = Ingester(SQLiteStateStore(tmp_path / "state.db", **kw.pop("store_kw", {})), MemoryPusher(),
                   SQLiteDeadLetters(tmp_path / "dl.db"), hook, **kw)
    return ing, hook


class Stream:
    """Builds Kinesis event records with increasing sequence numbers."""

    def __init__(self):
        self.seq = 0

    def rec(self, obj_or_bytes, key=None, arrival=None, data=None):
        self.seq += 1
        raw = obj_or_bytes if isinstance(obj_or_bytes, bytes) else json.dumps(obj_or_bytes).encode()
        if key is None:
            key = obj_or_bytes.get("customer_id") or obj_or_bytes.get("tutor_id") if isinstance(obj_or_bytes, dict) else "c1"
        if arrival is None:
            arrival = to_us(T0) + 3_600_000_000 * 24 * 30
        r = kinesis_record(raw, key, self.seq, arrival)
        if data is not None:
            r["kinesis"]["data"] = data
        return r


def good(i, cid="c1", at=None):
    return ev("login", at or f"2025-01-0{1 + i % 5}T0{i % 10}:00:00Z", customer_id=cid).to_record()


def corpus(s: Stream):
    ok = session("2025-01-05T09:00:00Z", rating=4.5, customer_id="c2").to_record()
    signup = ev("customer_signup", "2025-01-01T08:00:00Z", customer_id="c3", tier="premium", acquisition_channel="paid",
                grade_level=5, subject_category="STEM", primary_subject="algebra", region="west").to_record()
    missing = dict(good(0, "c4"))
    del missing["customer_id"]
    wrong = session("2025-01-05T09:00:00Z", rating=4.5, customer_id="c4").to_record()
    wrong["student_rating"] = "5"
    naive = dict(good(1, "c4"))
    naive["timestamp"] = "2025-01-02T01:00:00"
    future = dict(good(2, "c4"))
    future["timestamp"] = "2031-01-01T00:00:00Z"
    big = dict(good(3, "c4"))
    big["padding"] = "x" * 40_000
    bad_tick = tick_record("c4", to_us(ts("2025-01-03T00:00:00Z")))
    bad_tick["timestamp"] = "2025-01-03T00:00:01Z"
    return [
        ("good", s.rec(good(0, "c1"))),
        ("bad_base64", s.rec(good(0, "c4"), data="!!!not base64!!!")),
        ("good", s.rec(ok)),
        ("bad_json", s.rec(b'{"event_type": "login", ', key="c4")),
        ("bad_json", s.rec(b"[1, 2, 3]", key="c4")),
        ("bad_json", s.rec(b"\xff\xfe\x00garbage", key="c4")),
        ("unknown_type", s.rec({**good(4, "c4"), "event_type": "teleported"})),
        ("unknown_type", s.rec({"record_type": "time_travel", "customer_id": "c4"}, key="c4")),
        ("missing_field", s.rec(missing, key="c4")),
        ("invalid_field", s.rec(wrong)),
        ("invalid_field", s.rec({**good(5, "c4"), "surprise": 1})),
        ("naive_timestamp", s.rec(naive)),
        ("far_future", s.rec(future, arrival=to_us(ts("2025-01-06T00:00:00Z")))),
        ("oversized", s.rec(big)),
        ("bad_tick", s.rec(bad_tick)),
        ("partition_key_mismatch", s.rec(good(6, "c4"), key="c9")),
        ("good", s.rec(signup)),
        ("good", s.rec(good(7, "c1", at="2025-01-05T23:00:00Z"))),
        # hostile: nesting that breaks a recursive decoder, other encodings, odd envelope types
        ("bad_json", s.rec(b'{"event_type": "login", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", key="c4")),
        ("bad_json", s.rec(b"[" * 5000 + b"]" * 5000, key="c4")),
        ("bad_json", s.rec(json.dumps(good(8, "c4")).encode("utf-16"), key="c4")),        # with its BOM
        ("bad_json", s.rec(json.dumps(good(8, "c4")).encode("utf-16-le"), key="c4")),     # without
        ("bad_json", s.rec(b"\xef\xbb\xbf" + json.dumps(good(8, "c4")).encode(), key="c4")),
        ("bad_json", s.rec(json.dumps(good(8, "c4")).encode("utf-32"), key="c4")),
        ("bad_envelope", envelope(s.rec(good(8, "c4")), approximateArrivalTimestamp="1735689600")),
        ("bad_envelope", envelope(s.rec(good(8, "c4")), approximateArrivalTimestamp=True)),
        ("bad_envelope", envelope(s.rec(good(8, "c4")), approximateArrivalTimestamp=float("nan"))),
        ("bad_envelope", envelope(s.rec(good(8, "c4")), approximateArrivalTimestamp=None)),
        ("bad_envelope", envelope(s.rec(good(8, "c4")), sequenceNumber=12)),
        ("bad_envelope", envelope(s.rec(good(8, "c4")), data=["not", "a", "string"])),
        ("partition_key_mismatch", envelope(s.rec(good(8, "c4")), partitionKey=4)),
    ]


def envelope(rec, **fields):
    """The record with envelope fields replaced by odd values (None: removed)."""
    for k, v in fields.items():
        if v is None:
            rec["kinesis"].pop(k)
        else:
            rec["kinesis"][k] = v
    return rec


def test_malformed_corpus_is_dead_lettered_with_reasons_and_good_records_apply(tmp_path):
    ing, hook = make(tmp_path)
    s = Stream()
    cases = corpus(s)
    resp = ing.handle({"Records": [r for _, r in cases]})
    assert resp == {"batchItemFailures": []}            # permanent failures are acknowledged, not retried
    letters = ing.dead_letters.all()
    expected = [(kind, str(r["kinesis"]["sequenceNumber"])) for kind, r in cases if kind != "good"]
    assert [(d["reason"], d["sequence_number"]) for d in letters] == expected
    assert all(d["reason"] in REASONS and d["detail"] for d in letters)
    assert all(d["letter_id"] == f'{r["eventSourceARN"]}/{r["eventID"]}' for d, (k, r) in
               zip(letters, [c for c in cases if c[0] != "good"]))
    details = [d["detail"] for d in letters if d["reason"] == "bad_json"]
    assert any("nested too deeply" in d for d in details) and any("byte-order mark" in d for d in details)
    assert any("not UTF-8" in d or "could not decode" in d for d in details)
    # Lambda redelivers the whole batch: nothing is retried, nothing applied twice, no letter written twice
    assert ing.handle({"Records": [r for _, r in cases]}) == {"batchItemFailures": []}
    assert len(ing.dead_letters.all()) == len(letters)
    assert ing.totals["dead_letters_repeated"] == len(letters)
    assert ing.totals["applied"] == 4 and ing.totals["duplicates"] == 4
    assert "student_rating" in next(d["detail"] for d in letters if d["reason"] == "invalid_field")
    assert ing.totals["dead_letter:oversized"] == 2
    items = ing.store.load_many(["c1", "c2", "c3", "c4"])
    assert set(items) == {"c1", "c2", "c3"}             # c4 only had bad records
    assert items["c1"].state["totals"][S._METRIC_INDEX["logins"]] == 2
    assert ing.pusher.table["c2"][1]["total_sessions_lifetime"] == 1
    assert ing.pusher.table["c3"][1]["subscription_tier"] == "premium"
    assert hook.calls == [(["c2"], ts("2025-01-05T09:00:00Z"))]   # session_completed is high-signal; logins are not


def test_transient_store_failure_is_reported_not_dead_lettered(tmp_path):
    ing, _ = make(tmp_path, store_kw={"timeout": 0.05})
    s = Stream()
    blocker = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")                  # another writer holds the database
    recs = [s.rec(good(0, "c1")), s.rec(b"nope", key="c1"), s.rec(good(1, "c2"))]
    resp = ing.handle({"Records": recs})
    failed = [f["itemIdentifier"] for f in resp["batchItemFailures"]]
    assert failed == [recs[0]["kinesis"]["sequenceNumber"], recs[2]["kinesis"]["sequenceNumber"]]
    assert [d["reason"] for d in ing.dead_letters.all()] == ["bad_json"]
    blocker.execute("ROLLBACK")
    resp = ing.handle({"Records": recs})                # Lambda's retry: now it works, exactly once
    assert resp == {"batchItemFailures": []}
    assert ing.totals["applied"] == 2
    assert [d["reason"] for d in ing.dead_letters.all()] == ["bad_json", "bad_json"]


def test_dead_letter_destination_failure_retries_those_records(tmp_path):
    s = Stream()
    (tmp_path / "dl").mkdir()
    ing = Ingester(SQLiteStateStore(tmp_path / "state.db"), MemoryPusher(), JsonlDeadLetters(tmp_path / "dl"))  # a directory: unwritable
    recs = [s.rec(good(0, "c1")), s.rec(b"nope", key="c1")]
    resp = ing.handle({"Records": recs})
    assert [f["itemIdentifier"] for f in resp["batchItemFailures"]] == [recs[1]["kinesis"]["sequenceNumber"]]
    assert ing.totals["applied"] == 1


def test_duplicates_late_events_tutor_events_and_ticks(tmp_path):
    ing, hook = make(tmp_path)
    s = Stream()
    e1 = ev("inbound_call", "2025-01-02T10:00:00Z", customer_id="c1", duration_seconds=60.0, sentiment_score=-0.5,
            issue_category="billing", escalated=False).to_record()
    e2 = good(0, "c1", at="2025-01-03T10:00:00Z")
    tutor = ev("tutor_availability", "2025-01-02T03:00:00Z", tutor_id="t1", subject="algebra",
               available_hours=5.0).to_record()
    r1, r2, rt = s.rec(e1), s.rec(e2), s.rec(tutor)
    assert ing.handle({"Records": [r1, r2, rt]}) == {"batchItemFailures": []}
    assert ing.totals["tutor_events"] == 1
    v1 = ing.store.load_many(["c1"])["c1"]
    # redelivery of the same records (same sequence numbers) and a producer resend (new sequence number)
    assert ing.handle({"Records": [r1, r2, s.rec(e2)]}) == {"batchItemFailures": []}
    assert ing.totals["duplicates"] == 3 and ing.totals["applied"] == 2
    assert ing.store.load_many(["c1"])["c1"].state == v1.state
    # a late event (older than the watermark, never seen) is applied exactly, and pushed at the clock
    late = good(1, "c1", at="2025-01-02T12:00:00Z")
    assert ing.handle({"Records": [s.rec(late)]}) == {"batchItemFailures": []}
    assert not ing.dead_letters.all() and ing.totals["late_applied"] == 1
    st = ing.store.load_many(["c1"])["c1"].state
    assert st["clock"] == v1.state["clock"] and st["totals"][S._METRIC_INDEX["logins"]] == 2
    clock, row = ing.pusher.table["c1"]
    assert clock == v1.state["clock"] and row["login_count_7d"] == 2
    # beyond the allowed lateness: dead-lettered as too_late, counted; its redelivery is not written twice
    too_late = s.rec(good(2, "c1", at="2024-12-01T12:00:00Z"))
    for _ in range(2):
        assert ing.handle({"Records": [too_late]}) == {"batchItemFailures": []}
    assert [d["reason"] for d in ing.dead_letters.all()] == ["too_late"]
    assert "allowed lateness is 30 days" in ing.dead_letters.all()[0]["detail"]
    assert ing.totals["dead_letter:too_late"] == 2 and ing.totals["dead_letters_repeated"] == 1
    assert ing.store.load_many(["c1"])["c1"].state == st
    # ticks: decay at midnights, idempotent, no-op before the first event and for unknown customers
    m = to_us(ts("2025-01-10T00:00:00Z"))
    ticks = [s.rec(tick_record("c1", m)), s.rec(tick_record("c1", m)), s.rec(tick_record("nobody", m))]
    assert ing.handle({"Records": ticks}) == {"batchItemFailures": []}
    assert ing.totals["ticks"] == 1 and ing.totals["tick_noops"] == 2
    clock, row = ing.pusher.table["c1"]
    assert clock == m and row["ib_call_count_7d"] == 0 and row["ib_call_count_14d"] == 1
    assert hook.calls == [(["c1"], ts("2025-01-02T10:00:00Z"))]
    assert "nobody" not in ing.pusher.table


def test_records_of_one_customer_in_a_batch_are_applied_in_time_order(tmp_path):
    ing, _ = make(tmp_path)
    s = Stream()
    a, b = good(0, "c1", at="2025-01-03T10:00:00Z"), good(1, "c1", at="2025-01-02T10:00:00Z")
    ing.handle({"Records": [s.rec(a), s.rec(b)]})
    assert ing.totals["applied"] == 2 and not ing.dead_letters.all()


def test_hook_errors_do_not_fail_the_batch(tmp_path):
    class Broken:
        def on_high_signal(self, customer_ids, as_of):
            raise RuntimeError("endpoint down")

    ing = Ingester(SQLiteStateStore(tmp_path / "s.db"), MemoryPusher(), SQLiteDeadLetters(tmp_path / "d.db"), Broken())
    s = Stream()
    resp = ing.handle({"Records": [s.rec(session("2025-01-05T09:00:00Z", customer_id="c1").to_record())]})
    assert resp == {"batchItemFailures": []} and ing.totals["scoring_hook_errors"] == 1


def test_not_a_kinesis_event_is_rejected(tmp_path):
    ing, _ = make(tmp_path)
    with pytest.raises(Exception):
        ing.handle({"nothing": []})


def test_ticks_are_pushed_not_written_and_a_late_event_after_a_tick_keeps_the_decay(tmp_path):
    """A tick only moves the clock: its decayed row goes online, the item is not rewritten. A later
    load catches the state up to the shard's tick horizon, so an event older than the tick (but newer
    than the watermark) arriving afterwards is applied and pushed at the tick's clock, never older."""
    ing, _ = make(tmp_path)
    s = Stream()
    call = ev("inbound_call", "2025-01-02T10:00:00Z", customer_id="c1", duration_seconds=60.0, sentiment_score=-0.5,
              issue_category="billing", escalated=False).to_record()
    assert ing.handle({"Records": [s.rec(call)]}) == {"batchItemFailures": []}
    stored = ing.store.load_many(["c1"])["c1"]
    writes = ing.store.writes
    m = to_us(ts("2025-01-09T00:00:00Z"))
    assert ing.handle({"Records": [s.rec(tick_record("c1", m))]}) == {"batchItemFailures": []}
    assert ing.store.writes == writes                                  # nothing written for the tick
    assert ing.store.load_many(["c1"])["c1"].version == stored.version
    clock, row = ing.pusher.table["c1"]
    assert clock == m and row["ib_call_count_7d"] == 0 and row["ib_call_count_14d"] == 1   # decayed online
    # late after the tick: 2025-01-08 (> watermark, < tick); the row stays at the tick's clock
    late = good(0, "c1", at="2025-01-08T12:00:00Z")
    assert ing.handle({"Records": [s.rec(late, arrival=m + 1)]}) == {"batchItemFailures": []}
    clock, row = ing.pusher.table["c1"]
    assert clock == m and row["ib_call_count_7d"] == 0 and row["login_count_7d"] == 1
    assert ing.totals["caught_up"] == 1 and ing.totals["applied"] == 2
    # a redelivered tick is a no-op and pushes the same row
    assert ing.handle({"Records": [s.rec(tick_record("c1", m))]}) == {"batchItemFailures": []}
    assert ing.pusher.table["c1"] == (clock, row)


@pytest.mark.parametrize("data", [
    json.dumps(tick_record("c1", to_us(ts("2025-01-03T00:00:00Z")))).encode(),
    json.dumps(tick_record("c1", to_us(ts("2025-01-03T00:00:00Z"))), separators=(",", ":")).encode(),
    b'{"record_type": "day_tick", "customer_id": "c1", "timestamp": "2025-02-30T00:00:00.000000Z"}',
    b'{"record_type": "day_tick", "customer_id": "c1", "timestamp": "2025-02-03T00:00:00+00:00"}',
    b'{"record_type": "day_tick", "customer_id": "c2", "timestamp": "2025-02-03T00:00:00Z"}',
    b'{"record_type": "day_tick", "customer_id": "c1", "timestamp": "2025-02-03T00:00:01Z"}',
    b'{"record_type": "day_tick", "customer_id": "", "timestamp": "2025-02-03T00:00:00Z"}',
    b'{"record_type": "day_tick", "customer_id": "c1", "timestamp": "0001-01-01T00:00:00Z"}',
    b'{"record_type": "day_tick", "customer_id": "c1", "timestamp": "2025-02-03T00:00:00Z", "x": 1}',
])
def test_fast_tick_decoding_equals_the_full_path(data):
    from ingestion import records as R

    def outcome(f):
        try:
            return f(data, "c1", 7)
        except R.DeadLetter as dl:
            return dl.reason, dl.detail
    assert outcome(lambda d, k, s: R.decode_payload(d, k, s, None)) == outcome(R._decode_slow)
