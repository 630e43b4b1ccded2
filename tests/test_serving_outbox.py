"""Alerts never block and never vanish (docs/serving.md, "Delivery guarantee").

The real pieces: the embedded Feast store (SQLite), our inference server, SNS + SQS on the moto
server; faults are real sockets on 127.0.0.1 (testing.net_faults): a black hole that accepts and
never answers, a proxy that loses SNS's reply after SNS took the message.

* the hook only records: with the endpoint and SNS black-holed it makes no connection at all;
* the worker keeps the triggers pending while the endpoint is down, keeps the alerts in the outbox
  while SNS is down, and once both are back every alert is delivered, each ``alert_id`` once,
  with the id in the body and as a message attribute;
* a lost SNS reply is a repeat with the same ``alert_id`` (at least once), never a loss;
* a failed online lookup keeps the trigger pending; re-scoring a served trigger emits nothing new;
* rank rules: the daily batch's cut is stored and the stream trigger applies it.
"""
import json
import sqlite3
from datetime import timedelta

import pytest

from core import aws
from serving.config import SPEC_RULES, AlertRule, ServingConfig
from serving.endpoint import RetryPolicy
from serving.hook import ServingScoringHook
from serving.runtime import build_service
from serving.server import InferenceServer
from serving.sinks import SnsSink, sns_client
from testing.net_faults import BlackHole, LostReplyProxy
from testing.toy_model import train_toy_model
from tests.eventlog import local_feature_store, ts
from tests.test_serving_e2e import AS_OF, history

FAST = RetryPolicy(attempts=2, initial_delay=0.01, factor=2.0, max_delay=0.02)
SPEC_TYPES = sorted(r.type for r in SPEC_RULES)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("ws")
    store = local_feature_store(root, history(), AS_OF)
    store.materialize(start_date=ts("2024-12-01T00:00:00Z"), end_date=AS_OF)
    return root, store, train_toy_model(root / "model")


@pytest.fixture
def topic_and_queue(moto_endpoint, request):
    name = request.node.name[:40]
    sns, sqs = aws.boto3_client("sns"), aws.boto3_client("sqs")
    topic = sns.create_topic(Name=f"alerts-{name}")["TopicArn"]
    queue = sqs.create_queue(QueueName=f"readback-{name}")["QueueUrl"]
    qarn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=qarn, Attributes={"RawMessageDelivery": "true"})
    return topic, queue


def read_queue(queue):
    """(body, alert_id message attribute) of every message waiting, each deleted once read."""
    sqs, out = aws.boto3_client("sqs"), []
    while msgs := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                      MessageAttributeNames=["All"]).get("Messages", []):
        for m in msgs:
            out.append((json.loads(m["Body"]), m["MessageAttributes"]["alert_id"]["StringValue"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
    return out


def config(endpoint_url, topic, **kw):
    return ServingConfig(profile="aws-local", endpoint_url=endpoint_url, topic_arn=topic, connect_timeout=0.2,
                         read_timeout=0.2, invoke_retry=FAST, publish_retry=FAST, pending_retry_interval=0.0,
                         rules=kw.pop("rules", SPEC_RULES), **kw)


def test_hook_never_touches_the_network_and_everything_is_delivered_after(world, topic_and_queue, tmp_path):
    root, store, model = world
    topic, queue = topic_and_queue
    endpoint_hole, sns_hole = BlackHole(), BlackHole()
    sink = SnsSink(topic, client=sns_client(connect_timeout=0.2, read_timeout=0.2, endpoint_url=sns_hole.url))
    service = build_service(config(endpoint_hole.url, topic), store, tmp_path, sink=sink)
    hook = ServingScoringHook(service)
    times = [AS_OF + timedelta(minutes=i) for i in range(20)]
    for t in times:
        hook.on_high_signal(["bad", "good", "calm"], t)
    # recorded, nothing else: no connection to the endpoint or to SNS
    assert endpoint_hole.connections == 0 and sns_hole.connections == 0
    assert service.state.pending_count() == 60 and hook.last is None

    # the worker while the endpoint is down: it tried, the triggers stay pending, nothing raised
    out = hook.drain()
    assert endpoint_hole.connections > 0 and out.pending == ["bad", "calm", "good"]
    assert "endpoint unavailable" in out.errors[0] and service.state.pending_count() == 60

    # the endpoint comes back on the same port; SNS is still a black hole: alerts wait in the outbox
    endpoint_hole.close()
    with InferenceServer(model, port=endpoint_hole.port):
        out = hook.drain()
        assert service.state.pending_count() == 0 and len(out.scored) == 60
        assert sorted(a["type"] for a in out.alerts) == SPEC_TYPES        # the cooldown keeps one per type
        assert sns_hole.connections > 0 and out.publish.delivered == [] and len(out.publish.failed) == 3
        assert service.state.outbox_counts() == {"delivered": 0, "undelivered": 3}
        assert read_queue(queue) == []
    sns_hole.close()

    # SNS is back (the same topic, reached directly): the next drain delivers every alert, once
    service.publisher.sink = SnsSink(topic, client=sns_client())
    out = hook.drain()
    assert len(out.publish.delivered) == 3 and not out.errors
    got = read_queue(queue)
    ids = [body["alert_id"] for body, _ in got]
    assert sorted(ids) == sorted(a["alert_id"] for a in out.publish.delivered) and len(set(ids)) == 3
    assert all(body["alert_id"] == attr for body, attr in got)             # in the body and as an attribute
    assert {body["as_of"] for body, _ in got} == {"2025-03-01T12:00:00Z"}   # the first trigger's event time
    assert service.state.outbox_counts() == {"delivered": 3, "undelivered": 0}
    assert hook.drain().publish.delivered == [] and read_queue(queue) == []


def test_lost_reply_is_a_repeat_with_the_same_alert_id(world, topic_and_queue, moto_endpoint, tmp_path):
    root, store, model = world
    topic, queue = topic_and_queue
    host, port = moto_endpoint.split("//")[1].split(":")
    with InferenceServer(model, port=0) as srv, LostReplyProxy(host, int(port), drop=1) as proxy:
        sink = SnsSink(topic, client=sns_client(endpoint_url=proxy.url))
        service = build_service(config(srv.url, topic), store, tmp_path, sink=sink)
        hook = ServingScoringHook(service)
        hook.on_high_signal(["bad"], AS_OF)
        out = hook.drain()
    assert proxy.dropped == 1 and len(out.publish.delivered) == 3 and not out.errors
    got = read_queue(queue)
    ids = [body["alert_id"] for body, _ in got]
    assert len(got) == 4 and len(set(ids)) == 3          # one alert twice: the lost reply's retry
    assert sorted(set(ids)) == sorted(a["alert_id"] for a in out.publish.delivered)


def _rename_customer_table(db, to_away: bool):
    name = "marketplace_health_customer_features"
    a, b = (name, name + "_away") if to_away else (name + "_away", name)
    with sqlite3.connect(db) as con:
        con.execute(f"ALTER TABLE {a} RENAME TO {b}")


def test_failed_online_lookup_stays_pending_and_rescoring_is_idempotent(world, tmp_path):
    root, store, model = world
    db = root / "feast" / "online.db"
    with InferenceServer(model, port=0) as srv:
        cfg = config(srv.url, "").with_(profile="local")
        service = build_service(cfg, store, tmp_path)
        hook = ServingScoringHook(service)
        _rename_customer_table(db, to_away=True)
        try:
            hook.on_high_signal(["bad", "good"], AS_OF)
            out = hook.drain()
            assert out.pending == ["bad", "good"] and "online lookup failed" in out.errors[0]
            assert service.state.pending_count() == 2 and service.state.pending()[0].attempts == 1
        finally:
            _rename_customer_table(db, to_away=False)
        out = hook.drain()
        assert service.state.pending_count() == 0 and sorted(a["type"] for a in out.alerts) == SPEC_TYPES
        first_ids = sorted(a["alert_id"] for a in out.alerts)
        # a crash after the outbox write but before the pending row was removed: the same trigger again
        hook.on_high_signal(["bad"], AS_OF)
        again = hook.drain()
        assert again.alerts == [] and len(again.suppressed) == 3
        assert service.state.outbox_counts() == {"delivered": 3, "undelivered": 0}
        log = [json.loads(x) for x in (tmp_path / cfg.alert_log).read_text().splitlines()]
        assert sorted(a["alert_id"] for a in log) == first_ids


def test_rank_rule_cut_from_the_daily_batch_applies_to_stream_triggers(world, tmp_path):
    root, store, model = world
    top = AlertRule("churn_top_third", "high", "churn_risk_30d", "top", 0.34)     # 2 of 3 customers
    with InferenceServer(model, port=0) as srv:
        cfg = config(srv.url, "", rules=(top,)).with_(profile="local", cooldown_hours=1.0)
        service = build_service(cfg, store, tmp_path)
        day = service.score_day(["bad", "good", "calm"], AS_OF)
        risk = {s.customer_id: s.prediction["churn_risk_30d"] for s in day.scored}
        ranked = sorted(risk, key=risk.get, reverse=True)
        cut = service.state.rank_threshold("churn_top_third")
        assert cut == pytest.approx(risk[ranked[1]])
        assert sorted(a["customer_id"] for a in day.alerts) == sorted(ranked[:2])
        assert all(a["rule"]["cut"] == pytest.approx(cut) for a in day.alerts)
        # a stream trigger two hours later (past the cooldown) is judged against the stored cut
        hook = ServingScoringHook(service)
        hook.on_high_signal(ranked, AS_OF + timedelta(hours=2))
        out = hook.drain()
        later = {s.customer_id: s.prediction["churn_risk_30d"] for s in out.scored}
        assert sorted(a["customer_id"] for a in out.alerts) == sorted(c for c in later if later[c] >= cut)
