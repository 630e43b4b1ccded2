"""AWS plumbing shared by every room: a local moto server and endpoint-aware clients.

The `aws-local` profile (DESIGN §3) runs every AWS call against a moto server
on 127.0.0.1; `aws` differs only by configuration. All code reaches AWS through
:func:`boto3_client` / :func:`boto3_resource` (or :mod:`mhp.storage` for S3
files), which honour the endpoint from the environment, so nothing is mocked
inside our own code.

Environment variables consulted / set (see :data:`MOTO_ENV`):

* ``AWS_ENDPOINT_URL``        boto3/botocore >= 1.28 and aiobotocore (s3fs) use it
                              for every service; pyarrow's S3FileSystem too.
* ``FEAST_S3_ENDPOINT_URL``   Feast's S3 registry store reads only this one.
* ``MHP_AWS_ENDPOINT_URL``    our own explicit name, used in feature_store.yaml
                              as ``${MHP_AWS_ENDPOINT_URL}``.
* ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_DEFAULT_REGION`` /
  ``AWS_REGION``              dummy credentials and region for moto.
* ``AWS_SESSION_TOKEN`` / ``AWS_PROFILE`` / ``AWS_SECURITY_TOKEN`` are removed and
  ``AWS_CONFIG_FILE`` / ``AWS_SHARED_CREDENTIALS_FILE`` point to a non-existent
  file, so a developer's real ~/.aws never leaks into a local run;
  ``AWS_EC2_METADATA_DISABLED=true`` avoids a slow IMDS probe.
"""
from __future__ import annotations

import contextlib
import os
import urllib.request
from typing import Any, Iterator

DEFAULT_REGION = "us-east-1"

#: env var names whose values point at the endpoint
ENDPOINT_ENV_VARS = ("AWS_ENDPOINT_URL", "FEAST_S3_ENDPOINT_URL", "MHP_AWS_ENDPOINT_URL")

_REMOVED_ENV_VARS = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE")


def moto_env(endpoint: str, region: str = DEFAULT_REGION) -> dict[str, str | None]:
    """The environment for talking to a moto server at ``endpoint`` (None = unset)."""
    env: dict[str, str | None] = {name: endpoint for name in ENDPOINT_ENV_VARS}
    env.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull + ".mhp-no-aws-config",
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull + ".mhp-no-aws-credentials",
        }
    )
    env.update({name: None for name in _REMOVED_ENV_VARS})
    return env


@contextlib.contextmanager
def patched_env(values: dict[str, str | None]) -> Iterator[None]:
    """Set (value) or unset (None) env vars; restore the previous values on exit."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def reset_moto(endpoint: str) -> None:
    """Drop every resource on the moto server (POST /moto-api/reset)."""
    req = urllib.request.Request(f"{endpoint}/moto-api/reset", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:  # 127.0.0.1 only
        resp.read()


@contextlib.contextmanager
def moto_server(
    port: int = 0, region: str = DEFAULT_REGION, set_env: bool = True
) -> Iterator[str]:
    """Start a moto server on 127.0.0.1 (free port by default) and yield its URL.

    With ``set_env`` (default) the AWS env vars of :func:`moto_env` are set for the
    duration and restored on exit. Caveat: moto keeps its state in process-wide
    backends, so two servers in one process share state; this context manager
    resets that state on exit.
    """
    import logging

    from moto.server import ThreadedMotoServer

    # werkzeug logs every request at INFO; keep test output readable
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, real_port = server.get_host_and_port()
    endpoint = f"http://{host}:{real_port}"
    try:
        with patched_env(moto_env(endpoint, region)) if set_env else contextlib.nullcontext():
            yield endpoint
    finally:
        try:
            reset_moto(endpoint)
        finally:
            server.stop()
        _clear_endpoint_caches()


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
    import json

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


def _clear_endpoint_caches() -> None:
    """Forget clients/filesystems bound to a stopped endpoint."""
    try:
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
    except Exception:  # noqa: BLE001
        pass
    try:
        from mhp import storage

        storage._reset_caches()
    except Exception:  # noqa: BLE001
        pass
