"""Two ingesters racing on the same disordered stream (threads, overlapping batches of different
sizes), on SQLite and on DynamoDB (moto): the final state and the online rows equal the single
in-order run's for every customer, each event is applied exactly once, and applied + duplicates +
dead-lettered = records sent."""
import base64
import threading

import pytest

from ingestion.dead_letters import SQLiteDeadLetters
from ingestion.dynamodb_state_store import DynamoDBStateStore
from ingestion.handler import Ingester, current_states
from ingestion.push import MemoryPusher
from ingestion.records import horizon_key
from ingestion.replay import StreamReplay
from ingestion.state_store import SQLiteStateStore
from simulator.config import Disorder, SimConfig
from simulator.run import simulate
from tests.eventlog import RecordCollector

CUSTOMERS, DAYS, SEED = 40, 14, 11


def records_of(root):
    col = RecordCollector()
    StreamReplay(col, root / "stream.jsonl", batch_size=10 ** 9).run_until(None)
    return col.records


@pytest.fixture(scope="module")
def streams(tmp_path_factory):
    """The same world in event-time order and in arrival order (5% late by 1 minute to 2 days, 5% re-sent)."""
    ordered, disordered = tmp_path_factory.mktemp("ordered"), tmp_path_factory.mktemp("disordered")
    cfg = SimConfig(customers=CUSTOMERS, days=DAYS, seed=SEED)
    simulate(cfg, str(ordered))
    stats = simulate(cfg, str(disordered), disorder=Disorder(late_share=0.05, late_min=60, late_max=2 * 86400,
                                                             resend_share=0.05))["stream"]
    return records_of(ordered), records_of(disordered), stats


def deliver(ing, records, batch):
    sent = 0
    for i in range(0, len(records), batch):
        chunk = records[i:i + batch]
        assert ing.handle({"Records": chunk}) == {"batchItemFailures": []}
        sent += len(chunk)
    return sent


def race(make_store, tmp_path, records):
    pusher = MemoryPusher()
    ings = [Ingester(make_store(), pusher, SQLiteDeadLetters(tmp_path / f"dl{i}.db")) for i in range(2)]
    sent = [0, 0]

    def go(i, batch):
        sent[i] = deliver(ings[i], records, batch)
    threads = [threading.Thread(target=go, args=(i, b)) for i, b in enumerate((100, 37))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ings, pusher, sum(sent)


def check(ref_store, ref_pusher, ings, pusher, sent, records, ordered):
    custs = sorted({r["kinesis"]["partitionKey"] for r in ordered if r["kinesis"]["partitionKey"].startswith("c")})
    key = horizon_key(records[0])
    want = current_states(ref_store, custs, key)
    got = current_states(ings[0].store, custs, key)
    assert len(want) == CUSTOMERS
    assert [c for c in custs if got.get(c) != want.get(c)] == []            # 100% of customers
    assert [c for c in custs if pusher.table.get(c) != ref_pusher.table.get(c)] == []
    t = [i.totals for i in ings]
    dead = sum(n for x in t for k, n in x.items() if k.startswith("dead_letter:"))
    handled = sum(x["applied"] + x["duplicates"] + x["tutor_events"] + x["ticks"] + x["tick_noops"] for x in t)
    assert handled + dead == sent == 2 * len(records)
    # the only dead letters: a lagging ingester's copies of events older than the allowed lateness
    # by the time it delivers them (the other one applied them: nothing is lost, see applied below)
    assert {d["reason"] for i in ings for d in i.dead_letters.all()} <= {"too_late"}
    events = [r for r in ordered if r["kinesis"]["partitionKey"].startswith("c")
              and b"day_tick" not in base64.b64decode(r["kinesis"]["data"])]
    assert sum(x["applied"] for x in t) == len(events)                       # each event applied exactly once


def reference(make_store, tmp_path, ordered):
    ing = Ingester(make_store(), MemoryPusher(), SQLiteDeadLetters(tmp_path / "ref_dl.db"))
    deliver(ing, ordered, 100)
    return ing.store, ing.pusher


def test_two_ingesters_racing_on_sqlite(streams, tmp_path):
    ordered, records, stats = streams
    assert stats["late_events"] > 20 and stats["resent_events"] > 20
    ref_store, ref_pusher = reference(lambda: SQLiteStateStore(tmp_path / "ref.db"), tmp_path, ordered)
    ings, pusher, sent = race(lambda: SQLiteStateStore(tmp_path / "race.db"), tmp_path, records)
    check(ref_store, ref_pusher, ings, pusher, sent, records, ordered)
    assert sum(i.totals["conflicts"] + i.totals["repushed"] for i in ings) > 0    # they did race


def test_two_ingesters_racing_on_dynamodb(streams, tmp_path, moto_endpoint):
    ordered, records, _ = streams
    ref_store, ref_pusher = reference(lambda: SQLiteStateStore(tmp_path / "ref.db"), tmp_path, ordered)
    ings, pusher, sent = race(lambda: DynamoDBStateStore("race-state"), tmp_path, records)
    check(ref_store, ref_pusher, ings, pusher, sent, records, ordered)
