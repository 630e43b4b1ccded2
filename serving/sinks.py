"""Where alerts go: a local alert log (embedded profile) or an SNS topic (aws-local / aws).

A sink's ``publish(alert)`` either delivers the alert or raises; retries, backoff and the
outbox are the publisher's job (``serving.publisher``).
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Protocol

from core import aws


class AlertSink(Protocol):
    name: str

    def publish(self, alert: dict[str, Any]) -> None: ...


class LocalAlertLog:
    """Append one JSON line per alert to ``path`` (flushed per alert)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.name = f"file:{self.path}"
        self._lock = threading.Lock()

    def publish(self, alert: dict[str, Any]) -> None:
        line = json.dumps(alert, sort_keys=True) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(line)

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]


def subject(alert: dict[str, Any]) -> str:
    """SNS subjects: ASCII, no newlines, < 100 characters."""
    s = f"[{alert.get('severity', '').upper()}] {alert.get('type', 'alert')} {alert.get('customer_id', '')}"
    return s.encode("ascii", "replace").decode()[:99]


def sns_client(connect_timeout: float = 1.0, read_timeout: float = 2.0, endpoint_url: str | None = None):
    """An SNS client whose one attempt is bounded: botocore's own retries off (the publisher's
    retry policy is the only one), short connect/read timeouts."""
    from botocore.config import Config

    extra = {"endpoint_url": endpoint_url} if endpoint_url else {}
    return aws.boto3_client("sns", config=Config(connect_timeout=connect_timeout, read_timeout=read_timeout,
                                                 retries={"total_max_attempts": 1, "mode": "standard"}), **extra)


class SnsSink:
    """Publish each alert as a JSON message to an SNS topic, with filterable attributes.

    ``alert_id`` is both in the body and a message attribute: delivery is at least once (a publish
    whose reply is lost is sent again), so consumers drop repeats by it."""

    def __init__(self, topic_arn: str, client=None):
        self.topic_arn = topic_arn
        self.name = f"sns:{topic_arn}"
        self._client = client or sns_client()

    def publish(self, alert: dict[str, Any]) -> None:
        attrs = {k: {"DataType": "String", "StringValue": str(alert[k])}
                 for k in ("type", "severity", "customer_id", "alert_id", "model_version") if alert.get(k)}
        self._client.publish(TopicArn=self.topic_arn, Subject=subject(alert),
                             Message=json.dumps(alert, sort_keys=True), MessageAttributes=attrs)


def ensure_topic(name: str, client=None) -> str:
    """Create (idempotent) the SNS topic ``name``; returns its ARN."""

    client = client or aws.boto3_client("sns")
    return client.create_topic(Name=name)["TopicArn"]
