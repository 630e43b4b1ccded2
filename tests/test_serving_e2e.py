"""End to end on aws-local (moto): a customer goes bad in the event log -> backfill -> Feast
(S3 offline, DynamoDB online) -> the scoring hook -> our inference server over HTTP -> rules
-> an alert with the right type and reasons on SNS, read back through SQS, exactly once
within the cooldown. Then the endpoint goes down: requests are kept, nothing is lost, and
the alerts arrive once it is back; an unreachable SNS keeps alerts in the outbox."""
from datetime import timedelta

import pandas as pd
import pytest

from core import aws, local_aws
from serving.batch import active_customers, score_all
from serving.config import SPEC_RULES, ServingConfig
from serving.hook import ServingScoringHook
from serving.runtime import build_service
from serving.server import InferenceServer
from serving.sinks import SnsSink
from testing.toy_model import train_toy_model
from tests.eventlog import aws_local_feature_store, ev, session, ts, write_log

T0 = ts("2025-01-01T00:00:00Z")
AS_OF = ts("2025-03-01T12:00:00Z")


def signup(cid, at):
    return ev("customer_signup", at, customer_id=cid, tier="budget", acquisition_channel="paid", grade_level=9,
              subject_category="STEM", primary_subject="algebra", region="west")


def history():
    out = []
    for cid in ("good", "bad", "calm"):
        out.append(signup(cid, T0 + timedelta(hours=2)))
    for d in range(0, 59):  # the good customer: sessions, logins, payments all along
        day = T0 + timedelta(days=d, hours=15)
        if d % 2 == 0:
            out.append(session(day, rating=4.5, customer_id="good"))
        out.append(ev("login", day + timedelta(minutes=5), customer_id="good"))
        if d % 14 == 0:
            out.append(ev("payment_succeeded", day, customer_id="good", amount=80.0))
    for d in range(0, 30):  # the bad one starts fine ...
        day = T0 + timedelta(days=d, hours=16)
        if d % 3 == 0:
            out.append(session(day, rating=4.0, customer_id="bad"))
            out.append(ev("login", day, customer_id="bad"))
    for d in range(40, 59):  # ... then: angry calls, failed payments, no sessions, no logins
        day = T0 + timedelta(days=d, hours=10)
        out.append(ev("inbound_call", day, customer_id="bad", duration_seconds=900.0, sentiment_score=-0.9,
                      issue_category="billing", escalated=True))
        if d % 4 == 0:
            out.append(ev("payment_failed", day + timedelta(hours=1), customer_id="bad", amount=80.0))
    for d in range(0, 59, 3):
        out.append(session(T0 + timedelta(days=d, hours=12), rating=4.0, customer_id="calm"))
        out.append(ev("login", T0 + timedelta(days=d, hours=12), customer_id="calm"))
    for w in range(10):
        out.append(ev("tutor_availability", T0 + timedelta(days=7 * w, hours=3), tutor_id="t1", subject="algebra",
                      available_hours=10.0))
    return out


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return train_toy_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def feast_world(moto_server_url, tmp_path_factory):
    """One Feast world on moto for the module (apply + materialize cost most of the time)."""
    tmp = tmp_path_factory.mktemp("feast")
    with local_aws.patched_env(local_aws.moto_env(moto_server_url)):
        bucket = "mhp-serving"
        aws.ensure_bucket(bucket)
        data = f"s3://{bucket}/ws"
        # the backfill runs on the local copy of the log (the same code reads s3:// too, but ~60 small
        # objects through moto cost ~50 s); its feature tables go to S3 where Feast reads them
        events = write_log(history(), tmp / "events")
        store = aws_local_feature_store(tmp, events, AS_OF, data)
        store.materialize(start_date=ts("2024-12-01T00:00:00Z"), end_date=AS_OF)
        try:
            yield store, data, events
        finally:
            local_aws.reset_moto(moto_server_url)


@pytest.fixture
def world(feast_world, moto_server_url, tmp_path, model_path, request):
    store, data, events = feast_world
    with local_aws.patched_env(local_aws.moto_env(moto_server_url)):
        name = request.node.name[:40].replace("[", "-").replace("]", "")
        sns, sqs = aws.boto3_client("sns"), aws.boto3_client("sqs")
        topic = sns.create_topic(Name=f"alerts-{name}")["TopicArn"]
        queue = sqs.create_queue(QueueName=f"readback-{name}")["QueueUrl"]
        qarn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=qarn, Attributes={"RawMessageDelivery": "true"})
        server = InferenceServer(model_path, port=0).start()
        config = ServingConfig(profile="aws-local", endpoint_url=server.url, topic_arn=topic, cooldown_hours=24,
                               pending_retry_interval=0.0, rules=SPEC_RULES)
        service = build_service(config, store, tmp_path / "serving")
        w = {"store": store, "service": service, "server": server, "queue": queue, "sqs": sqs, "data": data, "events": events,
             "config": config, "tmp": tmp_path, "model": model_path, "topic": topic}
        yield w
        w["server"].stop()


def test_bad_customer_alerts_once_on_sns(world):
    service, queue = world["service"], world["queue"]
    hook = ServingScoringHook(service)
    hook.on_high_signal(["bad", "good", "calm"], AS_OF)
    out = hook.drain()
    assert not out.errors and len(out.scored) == 3
    preds = {s.customer_id: s.prediction for s in out.scored}
    assert preds["bad"]["ib_call_risk_14d"] > 0.7 and preds["bad"]["churn_risk_30d"] > 0.6
    assert preds["bad"]["customer_health_score"] < 40
    msgs = aws.drain_queue(queue)
    by_type = {m["type"]: m for m in msgs}
    assert sorted(by_type) == ["churn_risk_high", "churn_risk_ib_calls", "health_score_critical"]
    assert {m["customer_id"] for m in msgs} == {"bad"}
    ib = by_type["churn_risk_ib_calls"]
    assert ib["severity"] == "critical" and ib["details"].startswith("High likelihood")
    assert ib["model_version"] == world["server"].model_version and ib["as_of"] == "2025-03-01T12:00:00Z"
    assert by_type["churn_risk_high"]["churn_probability"] == pytest.approx(preds["bad"]["churn_risk_30d"])
    assert by_type["health_score_critical"]["score"] == pytest.approx(preds["bad"]["customer_health_score"])
    # the reasons: the call-centre features drove the IB-call risk
    reasons = [f["feature"] for f in ib["top_features"]]
    assert reasons and all(f["contribution"] > 0 for f in ib["top_features"])
    assert any(r.startswith(("ib_call_count_", "negative_sentiment_calls_", "escalation_count_", "avg_call_duration_"))
               for r in reasons[:3]), reasons
    # the scorer reads rows without a DataFrame: the same values as the DataFrame API
    from features.retrieval import online_features
    from serving.scoring import frame_to_rows

    scorer = service.scorer
    ids = ["bad", "good", "calm", "nobody"]
    assert scorer.features(ids, AS_OF) == frame_to_rows(online_features(world["store"], ids, pd.Timestamp(AS_OF)),
                                                         scorer.columns)
    # the served vector was logged for drift
    served = pd.read_json(world["tmp"] / "serving" / world["config"].served_log, lines=True)
    assert set(served["customer_id"]) == {"bad", "good", "calm"} and "ib_call_count_14d" in served.columns

    # within the cooldown: the hook again (later the same day) and the daily batch -> nothing new
    hook.on_high_signal(["bad"], AS_OF + timedelta(hours=3))
    assert hook.drain().alerts == [] and len(hook.last.suppressed) == 3
    active = active_customers(world["events"], AS_OF + timedelta(hours=12))
    assert active == ["bad", "calm", "good"]
    batch = score_all(service, active, AS_OF + timedelta(hours=12))
    assert batch.alerts == [] and len(batch.scored) == 3
    assert aws.drain_queue(queue) == []
    # after the cooldown (event time), the daily batch alerts again
    later = score_all(service, active, AS_OF + timedelta(days=1, hours=1))
    assert sorted(a["type"] for a in later.alerts) == sorted(by_type)
    assert len(aws.drain_queue(queue)) == 3


def test_endpoint_down_then_back_nothing_lost(world):
    service, server, queue = world["service"], world["server"], world["queue"]
    port = server.port
    server.stop()
    hook = ServingScoringHook(service)
    hook.on_high_signal(["bad", "good"], AS_OF)                 # records only
    out = hook.drain()                                          # the worker: never raises
    assert out.pending == ["bad", "good"] and "endpoint unavailable" in out.errors[0]
    assert "unreachable" in out.errors[0]
    assert service.state.pending_count() == 2
    hook.on_high_signal(["calm"], AS_OF + timedelta(minutes=5))  # still down: kept too
    hook.drain()
    assert service.state.pending_count() == 3
    assert aws.drain_queue(queue) == []
    # back on the same port: the next drain serves what was pending
    world["server"] = InferenceServer(world["model"], port=port).start()
    hook.on_high_signal(["good"], AS_OF + timedelta(minutes=10))
    hook.drain()
    assert service.state.pending_count() == 0
    msgs = aws.drain_queue(queue)
    assert sorted(m["type"] for m in msgs) == ["churn_risk_high", "churn_risk_ib_calls", "health_score_critical"]
    assert {m["as_of"] for m in msgs} == {"2025-03-01T12:00:00Z"}   # scored at the original event time


def test_sns_down_alerts_kept_in_outbox_and_redelivered(world):
    service, sqs, queue = world["service"], world["sqs"], world["queue"]
    # publish to a topic that does not exist yet: every attempt fails
    missing = world["topic"] + "-late"
    service.publisher.sink = SnsSink(missing)
    out = service.score_and_alert(["bad"], AS_OF)
    assert len(out.alerts) == 3 and len(out.publish.failed) == 3 and out.publish.delivered == []
    assert "not published" in out.errors[-1] and "NotFound" in out.publish.failed[0][1]
    assert service.state.outbox_counts() == {"delivered": 0, "undelivered": 3}
    # the topic appears (subscribed to the same queue); the next trigger redelivers first
    sns = aws.boto3_client("sns")
    sns.create_topic(Name=missing.rsplit(":", 1)[1])
    qarn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=missing, Protocol="sqs", Endpoint=qarn, Attributes={"RawMessageDelivery": "true"})
    again = service.score_and_alert(["bad"], AS_OF + timedelta(hours=1))   # in cooldown: no new alerts
    assert again.alerts == [] and len(again.publish.delivered) == 3
    assert service.state.outbox_counts() == {"delivered": 3, "undelivered": 0}
    assert sorted(m["type"] for m in aws.drain_queue(queue)) == ["churn_risk_high", "churn_risk_ib_calls",
                                                            "health_score_critical"]
