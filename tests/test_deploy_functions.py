"""The deployed functions (mhp.lambdas) on the stack deploy/template.yaml creates on a moto server.

moto runs no Lambda code (no Docker), so each handler is invoked in-process with the environment
the stack gave its function (read back with GetFunctionConfiguration), plus the two variables
of the aws-local profile: ``MHP_PROFILE=aws-local`` and ``MHP_ENDPOINT_URL`` (our inference
server with the toy model stands in for SageMaker runtime, whose moto version answers
placeholders), and ``MHP_STATE_DIR`` (a temporary folder instead of the container's /tmp/mhp).

The story, in event time: three customers' events go on the stack's Kinesis stream; the ingester
gets them back as Lambda delivers them (base64 records, one invocation per day's slice) and the
customer who turns bad is scored by the endpoint and alerted on SNS (read back through an SQS
subscription the test makes: moto's CloudFormation cannot create subscriptions). At the next
midnight the tick function puts the due day ticks on the stream and the ingester applies them
(a silent customer's 7-day counts decay), the materializer loads the batch views, and the batch
scorer alerts on the silent customer, whom no event triggers.
"""
from __future__ import annotations

import base64
import json
import time
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from core import aws, local_aws, storage
from events.contract import format_timestamp
from features.backfill import run_backfill
from features.store import apply
from mhp import lambdas
from serving.server import InferenceServer
from testing.toy_model import train_toy_model
from tests.eventlog import ev, session, ts, write_log
from tests.test_deploy_template import ACCOUNT, PARAMS, REGION, _create_stack

pytestmark = [pytest.mark.aws, pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")]

STAGE = "fn"
BUCKET = f"mhp-{STAGE}-data-{ACCOUNT}-{REGION}"
T0 = ts("2025-01-01T00:00:00Z")
LAST_DAY = 28                                 # the last day with events
MIDNIGHT = T0 + timedelta(days=LAST_DAY + 1)  # the scheduled jobs' midnight
SILENT_LAST_DAY = 22                          # 22 + 7 = 29: the silent customer's 7-day window empties at MIDNIGHT
FUNCTIONS = {"ingest": "ingester", "tick": "day-ticks", "materialize": "materialize", "batch": "batch-score"}


def signup(cid):
    return ev("customer_signup", T0 + timedelta(hours=2), customer_id=cid, tier="budget", acquisition_channel="paid",
              grade_level=9, subject_category="STEM", primary_subject="algebra", region="west")


def angry_day(cid, d):
    day = T0 + timedelta(days=d, hours=10)
    out = [ev("inbound_call", day, customer_id=cid, duration_seconds=900.0, sentiment_score=-0.9,
              issue_category="billing", escalated=True)]
    if d % 4 == 0:
        out.append(ev("payment_failed", day + timedelta(hours=1), customer_id=cid, amount=80.0))
    return out


def history():
    out = [signup(c) for c in ("good", "bad", "silent")]
    for d in range(0, LAST_DAY + 1, 2):   # a good customer all along
        out.append(session(T0 + timedelta(days=d, hours=15), rating=4.5, customer_id="good"))
        out.append(ev("login", T0 + timedelta(days=d, hours=15, minutes=5), customer_id="good"))
    for d in range(0, 6, 3):              # both others start with a session ...
        out += [session(T0 + timedelta(days=d, hours=16), rating=4.0, customer_id=c) for c in ("bad", "silent")]
    for d in range(8, SILENT_LAST_DAY + 1):   # ... then angry calls and failed payments; one goes silent
        out += angry_day("silent", d)
    for d in range(12, LAST_DAY + 1):
        out += angry_day("bad", d)
    for w in range(5):
        out.append(ev("tutor_availability", T0 + timedelta(days=7 * w, hours=3), tutor_id="t1", subject="algebra",
                      available_hours=10.0))
    return sorted(out, key=lambda e: (e.timestamp, e.event_id))


def _line(e) -> bytes:
    d = e.model_dump(exclude_none=True)
    d["timestamp"] = format_timestamp(e.timestamp)
    return json.dumps(d, separators=(",", ":")).encode()


class Stream:
    """The stack's stream: a producer's PutRecords, and GetRecords into the event Lambda delivers."""

    def __init__(self, name: str, arn: str):
        self.name, self.arn = name, arn
        self.kinesis = aws.boto3_client("kinesis")
        (self.shard,) = [s["ShardId"] for s in self.kinesis.list_shards(StreamName=name)["Shards"]]
        self.iterator = self.kinesis.get_shard_iterator(StreamName=name, ShardId=self.shard,
                                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]

    def put(self, lines: list[tuple[bytes, str]]) -> None:
        for i in range(0, len(lines), 500):
            resp = self.kinesis.put_records(StreamName=self.name, Records=[{"Data": d, "PartitionKey": k}
                                                                           for d, k in lines[i:i + 500]])
            assert not resp.get("FailedRecordCount")

    def read(self) -> list[dict]:
        out = []
        while True:
            resp = self.kinesis.get_records(ShardIterator=self.iterator, Limit=10000)
            self.iterator = resp["NextShardIterator"]
            out += resp["Records"]
            if not resp["Records"]:
                return out

    def lambda_event(self, records: list[dict]) -> dict:
        """A Kinesis event exactly as the event source mapping invokes the function with it."""
        return {"Records": [{
            "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": r["PartitionKey"],
                        "sequenceNumber": r["SequenceNumber"], "data": base64.b64encode(r["Data"]).decode(),
                        "approximateArrivalTimestamp": r["ApproximateArrivalTimestamp"].timestamp()},
            "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": f"{self.shard}:{r['SequenceNumber']}",
            "eventName": "aws:kinesis:record", "awsRegion": REGION, "eventSourceARN": self.arn,
            "invokeIdentityArn": f"arn:aws:iam::{ACCOUNT}:role/mhp-{STAGE}-ingester"} for r in records]}


@pytest.fixture(scope="module")
def deployed(moto_server_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("functions")
    model = train_toy_model(tmp / "model")
    server = InferenceServer(str(model), port=0).start()
    with local_aws.patched_env(local_aws.moto_env(moto_server_url, REGION)):
        try:
            cf, lam = aws.boto3_client("cloudformation"), aws.boto3_client("lambda")
            # no event source mapping: moto would try to run the image per put record and fail (the
            # test delivers the batches itself, as the mapping does)
            params = dict(PARAMS, Stage=STAGE, ShardCount="1", IngesterEventSource="none",
                          ModelDataUrl=f"s3://{BUCKET}/models/churn_model_v1-0123456789ab/model.tar.gz")
            stack = _create_stack(cf, f"mhp-{STAGE}", params)
            outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
            overlay = {"MHP_PROFILE": "aws-local", "MHP_ENDPOINT_URL": server.url, "MHP_STATE_DIR": str(tmp / "state")}
            # (moto hands Number parameters back as JSON numbers; Lambda's environment is strings)
            envs = {k: {**{n: str(v) for n, v in lam.get_function_configuration(
                FunctionName=f"mhp-{STAGE}-{suffix}")["Environment"]["Variables"].items()}, **overlay}
                for k, suffix in FUNCTIONS.items()}
            # the read-back queue for the alert topic
            sns, sqs = aws.boto3_client("sns"), aws.boto3_client("sqs")
            queue = sqs.create_queue(QueueName=f"mhp-{STAGE}-alerts-readback")["QueueUrl"]
            qarn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            sns.subscribe(TopicArn=outputs["AlertTopicArn"], Protocol="sqs", Endpoint=qarn,
                          Attributes={"RawMessageDelivery": "true"})
            # what a deployer does before the functions run: the event log, the feature tables, `mhp apply`
            events = history()
            local_log = write_log(events, tmp / "events")
            data = outputs["DataUri"]
            for f in sorted(Path(local_log).rglob("*.parquet")):
                storage.write_parquet(pq.read_table(f), storage.join(data, "events", str(f.relative_to(local_log))))
            res = run_backfill(local_log, str(tmp / "features"), until=MIDNIGHT, progress=False)
            for uri in res.outputs.values():
                storage.write_parquet(pq.read_table(uri), storage.join(data, "features", Path(uri).name))
            with local_aws.patched_env(envs["ingest"]):
                apply(lambdas.open_feature_store(envs["ingest"]), storage.join(data, "features"))
            lambdas.reset()
            yield {"envs": envs, "outputs": outputs, "queue": queue, "events": events, "server": server,
                   "stream": Stream(outputs["StreamName"], outputs["StreamArn"])}
        finally:
            lambdas.reset()
            server.stop()
            local_aws.reset_moto(moto_server_url)


def _invoke(deployed, name: str, handler, event):
    with local_aws.patched_env(deployed["envs"][name]):
        return handler(event, None)


def _online(deployed, customer: str, feature: str):
    with local_aws.patched_env(deployed["envs"]["ingest"]):
        store = lambdas.open_feature_store(deployed["envs"]["ingest"])
        return store.get_online_features(features=[f"customer_features:{feature}"],
                                         entity_rows=[{"customer_id": customer}]).to_dict()[feature][0]


@pytest.fixture(scope="module")
def ingested(deployed):
    """Every event through Kinesis and the ingester, one invocation per day's slice of the stream."""
    stream, events = deployed["stream"], deployed["events"]
    stream.put([(_line(e), e.tutor_id if e.event_type == "tutor_availability" else e.customer_id) for e in events])
    records = stream.read()
    assert len(records) == len(events)
    by_day: dict[str, list] = {}
    for r in records:
        by_day.setdefault(json.loads(r["Data"])["timestamp"][:10], []).append(r)
    t0, results = time.perf_counter(), []
    for day in sorted(by_day):
        results.append(_invoke(deployed, "ingest", lambdas.ingest_handler, stream.lambda_event(by_day[day])))
    return {"results": results, "seconds": time.perf_counter() - t0, "alerts": aws.drain_queue(deployed["queue"])}


def test_the_ingester_scores_and_alerts_through_the_endpoint_and_sns(deployed, ingested):
    assert all(r == {"batchItemFailures": []} for r in ingested["results"])
    alerts = ingested["alerts"]
    assert alerts and {a["customer_id"] for a in alerts} <= {"bad", "silent"}
    bad = [a for a in alerts if a["customer_id"] == "bad"]
    assert {a["type"] for a in bad} >= {"churn_risk_ib_calls"}
    # the score came from the endpoint (our inference server, the toy model) at the event time
    assert {a["model_version"] for a in alerts} == {deployed["server"].model_version}
    assert all(T0 + timedelta(days=12) <= ts(a["as_of"]) < MIDNIGHT for a in bad), [(a["type"], a["as_of"]) for a in bad]
    ib = next(a for a in bad if a["type"] == "churn_risk_ib_calls")
    assert ib["severity"] == "critical" and ib["value"] > 0.7 and ib["top_features"]
    # cooldown 24 h (the stack's AlertCooldownHours) in event time: at most one alert per type and day
    days = [(a["type"], a["as_of"][:10]) for a in bad]
    assert len(days) == len(set(days))
    # the state is in the stack's tables: DynamoDB state, Feast's customer table, the serving state
    ddb = aws.boto3_client("dynamodb")
    outs = deployed["outputs"]
    assert ddb.get_item(TableName=outs["StateTableName"], Key={"customer_id": {"S": "bad"}}).get("Item")
    assert _online(deployed, "bad", "ib_call_count_7d") == 7
    served = ddb.scan(TableName=outs["ServingStateTableName"], Select="COUNT", FilterExpression="begins_with(pk, :a)",
                      ExpressionAttributeValues={":a": {"S": "alert#"}})["Count"]
    assert served == len(alerts)


def test_a_bad_record_is_a_dead_letter_on_the_stack_queue(deployed, ingested):
    stream = deployed["stream"]
    stream.put([(b'{"event_type": "login", "customer_id": "bad"}', "bad")])
    (rec,) = stream.read()
    assert _invoke(deployed, "ingest", lambdas.ingest_handler, stream.lambda_event([rec])) == {"batchItemFailures": []}
    (letter,) = aws.drain_queue(deployed["outputs"]["IngestDeadLetterQueueUrl"])
    assert letter["reason"] == "missing_field"


def test_midnight_ticks_materialize_and_batch_score(deployed, ingested):
    stream = deployed["stream"]
    before = _online(deployed, "silent", "ib_call_count_7d")
    assert before and before > 0
    # 00:00 UTC: the tick function puts the due ticks on the stream; the ingester applies them
    out = _invoke(deployed, "tick", lambdas.tick_handler, {"time": format_timestamp(MIDNIGHT)[:19] + "Z",
                                                            "detail-type": "Scheduled Event"})
    assert out["midnight"] == MIDNIGHT.isoformat() and out["ticks"] >= 1
    ticks = stream.read()
    assert len(ticks) == out["ticks"]
    assert {json.loads(r["Data"])["record_type"] for r in ticks} == {"day_tick"}
    assert "silent" in {r["PartitionKey"] for r in ticks}
    assert _invoke(deployed, "ingest", lambdas.ingest_handler, stream.lambda_event(ticks)) == {"batchItemFailures": []}
    assert _online(deployed, "silent", "ib_call_count_7d") == 0          # decayed: its last call left the window
    assert before == 7 and _online(deployed, "silent", "ib_call_count_14d") == 7   # days 16..22 still in it
    # 00:15: the batch views' last day into the online store
    ddb, outs = aws.boto3_client("dynamodb"), deployed["outputs"]
    table = outs["FeastTableNameTemplate"].format(project="marketplace_health", table_name="tutor_features")
    assert ddb.scan(TableName=table, Select="COUNT")["Count"] == 0
    out = _invoke(deployed, "materialize", lambdas.materialize_handler, {"time": "2025-01-30T00:15:00Z"})
    assert out["midnight"] == MIDNIGHT.isoformat()
    assert ddb.get_item(TableName=table, Key={"entity_id": {"S": _tutor_key()}}).get("Item")
    # 00:45: batch scoring of every active customer; the silent one alerts though no event came
    out = _invoke(deployed, "batch", lambdas.batch_score_handler, {"time": "2025-01-30T00:45:00Z"})
    assert out["active"] == 3 and out["scored"] == 3 and out["errors"] == []
    alerts = aws.drain_queue(deployed["queue"])
    silent = [a for a in alerts if a["customer_id"] == "silent"]
    assert silent and all(a["as_of"] == "2025-01-30T00:00:00Z" for a in alerts)
    assert "good" not in {a["customer_id"] for a in alerts}


def _tutor_key() -> str:
    """Feast's DynamoDB entity_id of tutor t1 (its serialized entity key, hex)."""
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.infra.online_stores.helpers import compute_entity_id

    return compute_entity_id(EntityKey(join_keys=["tutor_id"], entity_values=[Value(string_val="t1")]),
                             entity_key_serialization_version=3)


def test_a_scheduled_handler_names_a_bad_event_field():
    with pytest.raises(lambdas.EnvError, match="event.time"):
        lambdas.scheduled_midnight({"detail-type": "Scheduled Event"})
    with pytest.raises(lambdas.EnvError, match="MHP_CHURN_RISK_THRESHOLD"):
        lambdas.serving_config({"MHP_ENDPOINT_NAME": "e", "MHP_ALERT_TOPIC_ARN": "arn", "MHP_CHURN_RISK_THRESHOLD": "high"})
    with pytest.raises(lambdas.EnvError, match="MHP_ENDPOINT_URL"):
        lambdas.serving_config({"MHP_PROFILE": "aws-local", "MHP_ENDPOINT_NAME": "e", "MHP_ALERT_TOPIC_ARN": "arn"})
    with pytest.raises(lambdas.EnvError, match="MHP_PROFILE"):
        lambdas.profile({"MHP_PROFILE": "prod"})
