"""Arrival order does not matter (hypothesis): any permutation within the allowed lateness, any split
into batches, any duplication, and two ingesters racing on overlapping batches give the final
state and the online rows of one in-order run, and every record is accounted for."""
import base64
import json
import random
import threading

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.state import DAY_US
from ingestion.dead_letters import SQLiteDeadLetters
from ingestion.handler import Ingester, current_states
from ingestion.push import MemoryPusher
from ingestion.records import horizon_key, to_us
from ingestion.replay import StreamReplay
from ingestion.state_store import SQLiteStateStore
from tests.eventlog import RecordCollector, random_history, session

DAYS = 20
MAX_DELAY_S = 26 * 86400          # within the 30-day allowed lateness, whatever the batching


def history(seed):
    """4 customers x 20 days, plus sessions that share a timestamp with another one (ties in
    (timestamp, event_id) order: first-with-rating, primary tutor, latest values)."""
    rng = random.Random(seed)
    evs = random_history(rng, customers=4, days=DAYS)
    twins = [e for e in evs if e.event_type == "session_completed"][:6]
    evs += [session(e.timestamp, rating=rng.choice([None, 2.0, 5.0]), tutor=rng.choice(["t1", "t2", "t3"]),
                    customer_id=e.customer_id) for e in twins]
    evs.sort(key=lambda e: (e.timestamp, e.event_id))
    return [(to_us(e.timestamp), json.dumps(e.to_record()).encode()) for e in evs]


HISTORY = {seed: history(seed) for seed in range(3)}


def records_for(tmp, lines: list[bytes]) -> list[dict]:
    path = tmp / "stream.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    col = RecordCollector()
    StreamReplay(col, path, batch_size=10 ** 9).run_until(None)
    return col.records


def arrival_order(seed, delays, copies):
    """Lines in arrival order: a delayed event arrives ``delay`` after its timestamp, a copy
    ``extra`` after its original (ties: original position)."""
    hist = HISTORY[seed]
    out = [(t + delays.get(i, 0) * 1_000_000, i, 0, line) for i, (t, line) in enumerate(hist)]
    out += [(hist[i][0] + delays.get(i, 0) * 1_000_000 + extra * 1_000_000, i, 1, hist[i][1]) for i, extra in copies]
    return [line for *_, line in sorted(out)]


class Writer:
    def __init__(self, tmp, pusher, name):
        self.ing = Ingester(SQLiteStateStore(tmp / "s.db"), pusher, SQLiteDeadLetters(tmp / f"d{name}.db"))
        self.sent = 0       # records handed to the handler, redeliveries included
        self.retries = 0
        self.failed = 0     # records reported in batchItemFailures (each is redelivered)

    def deliver(self, records, cuts):
        bounds = [0, *sorted(set(c % (len(records) + 1) for c in cuts)), len(records)]
        for a, b in zip(bounds, bounds[1:]):
            batch = records[a:b]
            # As Lambda does: a batch with failures is redelivered from its lowest failed record (a
            # racing writer can make a conditional state write fail: a retryable failure, never a loss).
            for _ in range(100):
                if not batch:
                    break
                self.sent += len(batch)
                failed = {f["itemIdentifier"] for f in self.ing.handle({"Records": batch})["batchItemFailures"]}
                self.failed += len(failed)
                first = next((i for i, r in enumerate(batch) if r["kinesis"]["sequenceNumber"] in failed), None)
                batch = [] if first is None else batch[first:]
                self.retries += first is not None
            assert not batch, "a batch still failed after 100 redeliveries"


def run(tmp, records, cuts_per_writer):
    pusher = MemoryPusher()
    writers = [Writer(tmp, pusher, i) for i in range(len(cuts_per_writer))]
    threads = [threading.Thread(target=w.deliver, args=(records, cuts)) for w, cuts in zip(writers, cuts_per_writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    custs = sorted({r["kinesis"]["partitionKey"] for r in records})
    return current_states(writers[0].ing.store, custs, horizon_key(records[0])), pusher.table, writers


REFERENCE = {}


def reference(tmp_path_factory, seed):
    if seed not in REFERENCE:
        tmp = tmp_path_factory.mktemp("ref")
        recs = records_for(tmp, [line for _, line in HISTORY[seed]])
        REFERENCE[seed] = run(tmp, recs, [[]])[:2]
    return REFERENCE[seed]


@st.composite
def disorder(draw):
    seed = draw(st.sampled_from(sorted(HISTORY)))
    n = len(HISTORY[seed])
    delays = draw(st.dictionaries(st.integers(0, n - 1), st.integers(1, MAX_DELAY_S), max_size=25))
    copies = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, 3 * 86400)), max_size=10))
    return seed, delays, copies


_settings = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def check(ref, got, writers, records):
    state, online = got[:2]
    assert state == ref[0]
    assert online == ref[1]
    tot = [w.ing.totals for w in writers]
    events = sum(w.sent - w.failed for w in writers) - sum(t["ticks"] + t["tick_noops"] for t in tot)
    dead = sum(n for t in tot for k, n in t.items() if k.startswith("dead_letter:"))
    assert sum(t["applied"] + t["duplicates"] + t["tutor_events"] for t in tot) + dead == events
    assert dead == 0                                   # nothing is too late within the allowed lateness
    assert sum(t["applied"] for t in tot) == sum(1 for _, line in HISTORY_OF[id(records)]
                                                  if b'"customer_id"' in line and b"tutor_availability" not in line)


HISTORY_OF = {}


@_settings
@given(disorder(), st.lists(st.integers(0, 10 ** 6), max_size=8))
def test_any_arrival_order_batching_and_duplication_give_the_in_order_result(tmp_path_factory, sc, cuts):
    seed, delays, copies = sc
    ref = reference(tmp_path_factory, seed)
    tmp = tmp_path_factory.mktemp("x")
    records = records_for(tmp, arrival_order(seed, delays, copies))
    HISTORY_OF[id(records)] = HISTORY[seed]
    got = run(tmp, records, [cuts])
    check(ref, got, got[2], records)


@_settings
@given(disorder(), st.lists(st.integers(0, 10 ** 6), max_size=8), st.lists(st.integers(0, 10 ** 6), max_size=8))
def test_two_ingesters_racing_on_overlapping_batches_give_the_in_order_result(tmp_path_factory, sc, cuts_a, cuts_b):
    seed, delays, copies = sc
    ref = reference(tmp_path_factory, seed)
    tmp = tmp_path_factory.mktemp("r")
    records = records_for(tmp, arrival_order(seed, delays, copies))
    HISTORY_OF[id(records)] = HISTORY[seed]
    got = run(tmp, records, [cuts_a, cuts_b])      # both deliver every record: overlapping batches
    check(ref, got, got[2], records)


def test_an_event_delayed_past_the_allowed_lateness_is_dead_lettered_not_applied(tmp_path):
    """With an allowed lateness of 3 days, an event that arrives after its customer's events of 6+
    days later is too late: a dead letter ``too_late`` with the event, counted, nothing applied."""
    seed = 0
    hist = HISTORY[seed]
    cid = json.loads(hist[-1][1])["customer_id"]
    mine = [i for i, (_, line) in enumerate(hist) if json.loads(line).get("customer_id") == cid]
    early, later = mine[1], mine[-1]
    assert hist[later][0] - hist[early][0] > 6 * DAY_US
    records = records_for(tmp_path, [line for i, (_, line) in enumerate(hist) if i != early] + [hist[early][1]])
    ing = Ingester(SQLiteStateStore(tmp_path / "s.db"), MemoryPusher(), SQLiteDeadLetters(tmp_path / "d.db"),
                   allowed_lateness_days=3)
    for i in range(0, len(records), 10):
        assert ing.handle({"Records": records[i:i + 10]}) == {"batchItemFailures": []}
    letters = ing.dead_letters.all()
    assert [d["reason"] for d in letters] == ["too_late"] and ing.totals["dead_letter:too_late"] == 1
    assert "allowed lateness is 3 days" in letters[0]["detail"]
    assert json.loads(base64.b64decode(letters[0]["data"]))["event_id"] == json.loads(hist[early][1])["event_id"]
