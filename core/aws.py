"""Endpoint-aware AWS clients: every room reaches AWS through these.

The `aws-local` profile runs every AWS call against a moto server on 127.0.0.1
(:mod:`core.local_aws`); `aws` differs only by configuration. All code reaches
AWS through :func:`boto3_client` / :func:`boto3_resource` (or :mod:`core.storage`
for S3 files), which honour the endpoint override from the environment, so
nothing is mocked inside our own code.

Environment variables consulted:

* ``AWS_ENDPOINT_URL``        boto3/botocore >= 1.28 and aiobotocore (s3fs) use it
                              for every service; pyarrow's S3FileSystem too.
* ``FEAST_S3_ENDPOINT_URL``   Feast's S3 registry store reads only this one.
* ``MHP_AWS_ENDPOINT_URL``    our own explicit name.
* ``AWS_REGION`` / ``AWS_DEFAULT_REGION``.
"""
from __future__ import annotations

import json
import os
from typing import Any

DEFAULT_REGION = "us-east-1"

#: env var names whose values point at the endpoint
ENDPOINT_ENV_VARS = ("AWS_ENDPOINT_URL", "FEAST_S3_ENDPOINT_URL", "MHP_AWS_ENDPOINT_URL")


def endpoint_url() -> str | None:
    """The AWS endpoint override in effect (None = real AWS)."""
    for name in ENDPOINT_ENV_VARS:
        if os.environ.get(name):
            return os.environ[name]
    return None


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def _client_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    kwargs = dict(kwargs)
    kwargs.setdefault("region_name", region())
    ep = endpoint_url()
    if ep:
        kwargs.setdefault("endpoint_url", ep)
    return kwargs


def boto3_client(service: str, **kwargs: Any):
    """``boto3.client(service)`` with the endpoint override and region from the env."""
    import boto3

    return boto3.client(service, **_client_kwargs(kwargs))


def boto3_resource(service: str, **kwargs: Any):
    """``boto3.resource(service)`` with the endpoint override and region from the env."""
    import boto3

    return boto3.resource(service, **_client_kwargs(kwargs))


def drain_queue(queue_url: str) -> list[dict]:
    """Every JSON message body waiting on an SQS queue (each deleted once read), in arrival order."""
    sqs, out = boto3_client("sqs"), []
    while True:
        msgs = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not msgs:
            return out
        for m in msgs:
            out.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])


def ensure_bucket(bucket: str) -> None:
    """Create an S3 bucket if it does not exist (idempotent)."""
    s3 = boto3_client("s3")
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception:  # noqa: BLE001 - 404/403 both mean "create it"
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if region() != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region()}
        s3.create_bucket(**kwargs)
