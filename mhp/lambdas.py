"""The deployed functions' entry points: deploy/template.yaml names them in each function's
``ImageConfig.Command``. Composition only: each builds its room's objects from the function's
environment (the template's ``Environment.Variables``) once per container and reuses them.

| entry point           | trigger                                    | does |
|-----------------------|--------------------------------------------|------|
| `ingest_handler`      | Kinesis event source mapping               | `ingestion.handler.Ingester` (DynamoDB state, Feast push, SQS dead letters) with the scoring hook (`serving.hook.ServingScoringHook`): scores and alerts exactly as the demo does |
| `tick_handler`        | EventBridge, 00:00 UTC                     | `ingestion.ticks.enqueue_day_ticks`: the day ticks of the customers whose row changes at that midnight go on the stream; the ingester applies them |
| `materialize_handler` | EventBridge, daily                         | loads the last day of the tutor / subject / marketplace views into the online store |
| `batch_score_handler` | EventBridge, daily                         | `serving.batch`: scores every active customer at the day's midnight, so silent customers are caught |

Environment (a missing or bad value raises :class:`EnvError` naming the variable):

* ``MHP_PROFILE``: ``aws`` (deployed) or ``aws-local`` (a moto server and our local inference
  server at ``MHP_ENDPOINT_URL`` standing in for SageMaker runtime: tests and `mhp demo
  --profile aws-local`, which layer these two variables over the stack's environment);
* ``MHP_DATA_URI`` (``s3://<bucket>/data``: registry, event log, feature tables),
  ``MHP_STATE_DIR`` (local scratch), ``MHP_FEAST_TABLE_TEMPLATE`` (Feast's DynamoDB
  ``table_name_template``: the stack's table names);
* ingester: ``MHP_STATE_TABLE``, ``MHP_DLQ_URL``; scoring (ingester, batch scorer):
  ``MHP_ENDPOINT_NAME``, ``MHP_ALERT_TOPIC_ARN``, ``MHP_SERVING_TABLE`` (cooldowns, outbox and
  pending requests: ``serving.dynamodb_state``), ``MHP_IB_CALL_RISK_THRESHOLD``,
  ``MHP_CHURN_RISK_THRESHOLD``, ``MHP_HEALTH_SCORE_THRESHOLD``, ``MHP_ALERT_COOLDOWN_HOURS``;
* ticks: ``MHP_STATE_TABLE``, ``MHP_STREAM_NAME``.

Scheduled handlers take their time from the EventBridge event's ``time`` (the scheduled minute,
UTC) and work at that day's midnight: event time, never the wall clock.

Imports of the rooms are deferred to the builders (``# lazy``): a cold start loads only what its
own function uses, and the ingester image (no torch, no s3fs) never loads the jobs' modules.
"""
from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Mapping

from core import aws
from core.times import from_us, midnight_us, parse_utc_time, to_us

PROFILES = ("aws", "aws-local")
#: alert rule type -> the variable that sets its threshold (serving.config.DEFAULT_RULES)
THRESHOLD_ENV = {"churn_risk_ib_calls": "MHP_IB_CALL_RISK_THRESHOLD",
                 "churn_risk_high": "MHP_CHURN_RISK_THRESHOLD",
                 "health_score_critical": "MHP_HEALTH_SCORE_THRESHOLD"}


class EnvError(ValueError):
    """A function's environment lacks a variable or has a bad value (the message names it)."""


def _need(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "")
    if not value:
        raise EnvError(f"{name}: required by this function, not set")
    return value


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "")
    if text == "":
        return default
    try:
        return float(text)
    except ValueError:
        raise EnvError(f"{name}: expected a number, got {text!r}") from None


def profile(env: Mapping[str, str]) -> str:
    p = env.get("MHP_PROFILE", "aws")
    if p not in PROFILES:
        raise EnvError(f"MHP_PROFILE: expected one of {list(PROFILES)}, got {p!r}")
    return p


def state_dir(env: Mapping[str, str]) -> str:
    return env.get("MHP_STATE_DIR") or "/tmp/mhp"


# ---------------------------------------------------------------------------- builders
def open_feature_store(env: Mapping[str, str]):
    """The Feast store of the stack: registry under MHP_DATA_URI, online tables named by
    MHP_FEAST_TABLE_TEMPLATE (the stack creates them; Feast only finds them)."""
    from features.store import ProfileError, open_store  # lazy: Feast is most of a cold start; only the functions that read features load it

    data_uri = _need(env, "MHP_DATA_URI")
    if not data_uri.startswith("s3://"):
        raise EnvError(f"MHP_DATA_URI: expected s3://bucket/prefix, got {data_uri!r}")
    try:
        return open_store(profile(env), os.path.join(state_dir(env), "feast"), data_uri,
                          table_name_template=_need(env, "MHP_FEAST_TABLE_TEMPLATE"))
    except ProfileError as exc:
        raise EnvError(str(exc)) from None


def serving_config(env: Mapping[str, str]):
    """The serving configuration the template gives a scoring function (thresholds, cooldown,
    endpoint, topic); the rules are serving.config.DEFAULT_RULES with the stack's thresholds."""
    from serving.config import DEFAULT_RULES, ServingConfig  # lazy: only the scoring functions need serving

    p = profile(env)
    rules = tuple(replace(r, threshold=_number(env, THRESHOLD_ENV[r.type], r.threshold)) if r.type in THRESHOLD_ENV
                  else r for r in DEFAULT_RULES)
    cooldown = _number(env, "MHP_ALERT_COOLDOWN_HOURS", ServingConfig.cooldown_hours)
    if cooldown < 0:
        raise EnvError(f"MHP_ALERT_COOLDOWN_HOURS: expected a number >= 0, got {cooldown}")
    config = ServingConfig(profile=p, rules=rules, cooldown_hours=cooldown,
                           endpoint_name=_need(env, "MHP_ENDPOINT_NAME"),
                           topic_arn=_need(env, "MHP_ALERT_TOPIC_ARN"))
    if p == "aws-local":   # our inference server stands in for SageMaker runtime
        config = config.with_(endpoint_url=_need(env, "MHP_ENDPOINT_URL"))
    return config


def build_scoring_service(env: Mapping[str, str], store):
    from serving.dynamodb_state import DynamoDBServingState  # lazy: only the scoring functions need serving
    from serving.runtime import build_service  # lazy: as above

    return build_service(serving_config(env), store, state_dir(env),
                         state=DynamoDBServingState(_need(env, "MHP_SERVING_TABLE")))


def build_ingester(env: Mapping[str, str]):
    """The deployed ingester: DynamoDB state, Feast push, SQS dead letters, and the scoring hook."""
    from ingestion.dead_letters import SQSDeadLetters  # lazy: the ingester's modules, not the jobs'
    from ingestion.dynamodb_state_store import DynamoDBStateStore  # lazy: as above
    from ingestion.handler import Ingester  # lazy: as above
    from ingestion.push import FeastPusher  # lazy: as above
    from serving.hook import DrainAfterBatch, ServingScoringHook  # lazy: as above

    store = open_feature_store(env)
    hook = ServingScoringHook(build_scoring_service(env, store))
    # the hook only records the triggers; the same invocation then serves them and delivers the outbox
    return DrainAfterBatch(Ingester(DynamoDBStateStore(_need(env, "MHP_STATE_TABLE"), create=False),
                                    FeastPusher(store), SQSDeadLetters(_need(env, "MHP_DLQ_URL")), hook=hook,
                                    emit_metrics=True), hook)


# ---------------------------------------------------------------------------- entry points
_CACHE: dict[str, Any] = {}


def reset() -> None:
    """Forget the objects built for this container (a test switching stacks)."""
    _CACHE.clear()


def built(name: str):
    """An object this container has built ("ingester", "store", "service"), or None."""
    return _CACHE.get(name)


def _cached(name: str, build):
    if name not in _CACHE:
        _CACHE[name] = build(os.environ)
    return _CACHE[name]


def ingest_handler(event: dict, context: Any = None) -> dict:
    """Kinesis event source mapping -> ``{"batchItemFailures": [...]}``."""
    return _cached("ingester", build_ingester).handle(event, context)


def scheduled_midnight(event: Mapping[str, Any]) -> datetime:
    """The UTC midnight that starts the day of a scheduled event's ``time``."""
    if not isinstance(event, Mapping) or not isinstance(event.get("time"), str):
        raise EnvError(f"event.time: expected the EventBridge scheduled event's ISO UTC time, got {event!r}")
    return from_us(midnight_us(to_us(parse_utc_time(event["time"], "event.time"))))


def tick_handler(event: dict, context: Any = None) -> dict:
    """00:00 UTC: put the day ticks due at this midnight on the stream."""
    from ingestion.dynamodb_state_store import DynamoDBStateStore  # lazy: each handler loads only its own modules
    from ingestion.ticks import enqueue_day_ticks  # lazy: as above

    midnight = scheduled_midnight(event)
    env = os.environ
    state = DynamoDBStateStore(_need(env, "MHP_STATE_TABLE"), create=False)
    n = enqueue_day_ticks(aws.boto3_client("kinesis"), _need(env, "MHP_STREAM_NAME"), state, to_us(midnight))
    return {"midnight": midnight.isoformat(), "ticks": n}


def materialize_handler(event: dict, context: Any = None) -> dict:
    """Daily: load the batch views' rows of the day that ended at this midnight into the online store."""
    from features import catalog as C  # lazy: each handler loads only its own modules

    midnight = scheduled_midnight(event)
    store = _cached("store", open_feature_store)
    views = list(C.BATCH_VIEWS)
    store.materialize(start_date=midnight - timedelta(days=1), end_date=midnight, feature_views=views)
    return {"midnight": midnight.isoformat(), "views": views}


def batch_score_handler(event: dict, context: Any = None) -> dict:
    """Daily: score every active customer at this midnight (silence triggers no event, decay does)."""
    from serving.batch import active_customers, score_all  # lazy: each handler loads only its own modules

    midnight = scheduled_midnight(event)
    service = _cached("service", lambda env: build_scoring_service(env, _cached("store", open_feature_store)))
    ids = active_customers(_need(os.environ, "MHP_DATA_URI").rstrip("/") + "/events", midnight)
    out = score_all(service, ids, midnight)
    return {"midnight": midnight.isoformat(), "active": len(ids), "scored": len(out.scored),
            "alerts": len(out.alerts), "delivered": len(out.publish.delivered), "pending": len(out.pending),
            "errors": out.errors}
