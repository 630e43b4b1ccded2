"""Wiring a ScoringService for a profile (docs/architecture.md, "Profiles"): configuration only, one code path.

| profile   | endpoint                         | alert sink                     |
|-----------|----------------------------------|--------------------------------|
| local     | our inference server (HTTP)      | local alert log (JSONL)        |
| aws-local | our inference server (HTTP)      | SNS on the moto server         |
| aws       | SageMaker InvokeEndpoint (boto3) | SNS                            |

The Feast store comes from ``features.store.open_store`` for the same profile.
"""
from __future__ import annotations

from pathlib import Path

from .config import ServingConfig
from .endpoint import HttpEndpoint, SageMakerEndpoint
from .publisher import AlertPublisher
from .scoring import Scorer
from .served_log import ServedLog
from .service import ScoringService
from .sinks import LocalAlertLog, SnsSink, ensure_topic
from .state import ServingState


def make_endpoint(config: ServingConfig):
    if config.profile == "aws":
        return SageMakerEndpoint(config.endpoint_name, read_timeout=config.read_timeout,
                                 connect_timeout=config.connect_timeout)
    return HttpEndpoint(config.endpoint_url, connect_timeout=config.connect_timeout, read_timeout=config.read_timeout)


def make_sink(config: ServingConfig, state_dir: Path):
    if config.profile == "local":
        return LocalAlertLog(Path(state_dir) / config.alert_log)
    return SnsSink(config.topic_arn or ensure_topic(config.topic_name))


def build_service(config: ServingConfig, store, state_dir, endpoint=None, sink=None, state=None) -> ScoringService:
    """``state``: the cooldown/outbox/pending store (default: SQLite under ``state_dir``; the deployed
    functions pass ``serving.dynamodb_state.DynamoDBServingState``, which outlives a container)."""
    state_dir = Path(state_dir)
    state = state if state is not None else ServingState(state_dir / config.state_db)
    scorer = Scorer(store, endpoint or make_endpoint(config), ServedLog(state_dir / config.served_log),
                    retry=config.invoke_retry)
    publisher = AlertPublisher(sink or make_sink(config, state_dir), state, config.publish_retry)
    return ScoringService(scorer, publisher, state, config)
