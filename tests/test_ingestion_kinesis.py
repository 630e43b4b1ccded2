"""AWS path on a moto server: Kinesis poller (batches, retries, bisect, checkpoints), DynamoDB state,
SQS dead letters, and the scheduled day-tick job."""
import json

from core import aws
from features import state as S
from ingestion.dead_letters import SQSDeadLetters
from ingestion.handler import Ingester, current_states
from ingestion.kinesis_poller import KinesisPoller, put_stream_lines
from ingestion.push import MemoryPusher
from ingestion.records import to_us
from ingestion.dynamodb_state_store import DynamoDBStateStore
from ingestion.ticks import enqueue_day_ticks
from tests.eventlog import ev, session, ts


def lines():
    out = []
    for c in ("c1", "c2", "c3"):
        out.append(session("2025-01-02T09:00:00Z", rating=5.0, customer_id=c).to_record())
        out.append(ev("login", "2025-01-02T10:00:00Z", customer_id=c).to_record())
    out.append(ev("tutor_availability", "2025-01-02T03:00:00Z", tutor_id="t1", subject="algebra",
                  available_hours=3.0).to_record())
    data = [json.dumps(o).encode() for o in out]
    data.insert(3, b'{"broken": ')
    return data


def test_poller_with_dynamodb_state_and_sqs_dead_letters(moto_endpoint):
    kin = aws.boto3_client("kinesis")
    kin.create_stream(StreamName="events", ShardCount=2)
    kin.get_waiter("stream_exists").wait(StreamName="events", WaiterConfig={"Delay": 0.1})
    store = DynamoDBStateStore("mhp-state")
    dlq = SQSDeadLetters.create("mhp-dlq")
    ing = Ingester(store, MemoryPusher(), dlq)
    put_stream_lines(kin, "events", lines())
    poller = KinesisPoller(ing, kin, "events", store, batch_size=3)
    assert poller.poll() == 8
    assert ing.totals["applied"] == 6 and ing.totals["tutor_events"] == 1
    assert [d["reason"] for d in dlq.all()] == ["bad_json"]
    items = store.load_many(["c1", "c2", "c3"])
    assert all(it.state["totals"][S._METRIC_INDEX["completed"]] == 1 for it in items.values())
    # checkpoints: a second poll delivers nothing new; a fresh poller resumes after them
    assert poller.poll() == 0
    assert KinesisPoller(ing, kin, "events", store).poll() == 0
    put_stream_lines(kin, "events", [json.dumps(ev("login", "2025-01-03T10:00:00Z", customer_id="c1").to_record()).encode()])
    assert KinesisPoller(ing, kin, "events", store).poll() == 1
    assert ing.totals["applied"] == 7 and ing.totals["duplicates"] == 0

    # the scheduled job: ticks through the same stream for the customers whose row changes at a
    # midnight: on 01-09 the events of 01-02 leave the 7-day windows; on 01-12 nothing leaves a window
    assert enqueue_day_ticks(kin, "events", store, to_us(ts("2025-01-12T00:00:00Z"))) == 0
    m = to_us(ts("2025-01-09T00:00:00Z"))
    assert enqueue_day_ticks(kin, "events", store, m) == 3
    poller = KinesisPoller(ing, kin, "events", store)
    poller.poll()
    assert ing.totals["ticks"] == 3
    # ticks are pushed, not written: the shard's tick horizon moved, and a load catches the states up to it
    assert all(it.state["clock"] < m for it in store.load_many(["c1", "c2", "c3"]).values())
    keys = [f"{poller.arn}/{sh['ShardId']}" for sh in kin.list_shards(StreamName="events")["Shards"]]
    assert set(store.get_tick_horizons(keys).values()) == {m}
    states = {}
    for k in store.get_tick_horizons(keys):
        states.update(current_states(store, ["c1", "c2", "c3"], k))
    assert all(st["clock"] == m for st in states.values()) and len(states) == 3
    assert ing.pusher.table["c2"][1]["login_count_7d"] == 0 and ing.pusher.table["c2"][1]["login_count_14d"] == 1
    assert ing.pusher.table["c1"][1]["login_count_7d"] == 1 and ing.pusher.table["c1"][1]["login_count_14d"] == 2
    assert enqueue_day_ticks(kin, "events", store, to_us(ts("2025-03-01T00:00:00Z"))) == 0   # windows are dead


def test_poller_retries_reported_failures_from_the_lowest_one(moto_endpoint):
    kin = aws.boto3_client("kinesis")
    kin.create_stream(StreamName="ev2", ShardCount=1)
    kin.get_waiter("stream_exists").wait(StreamName="ev2", WaiterConfig={"Delay": 0.1})
    store = DynamoDBStateStore("mhp-state2")

    class FlakyDLQ:          # the dead-letter destination fails twice, then works
        def __init__(self):
            self.fails, self.letters = 2, []

        def put_many(self, letters):
            if letters and self.fails:
                self.fails -= 1
                raise ConnectionError("sqs unavailable")
            self.letters += letters

    dlq = FlakyDLQ()
    ing = Ingester(store, MemoryPusher(), dlq)
    put_stream_lines(kin, "ev2", lines())
    poller = KinesisPoller(ing, kin, "ev2", store, batch_size=10, max_retries=3)
    poller.poll()
    assert poller.stats.retries == 2
    assert [d["reason"] for d in dlq.letters] == ["bad_json"]
    assert ing.totals["applied"] == 6     # retried records that had been applied are duplicates, not re-applied

