"""The `aws-local` profile's AWS: a moto server on 127.0.0.1, started by the command or test
that needs it, and the environment that points every client at it.

Besides the endpoint variables of :mod:`core.aws`, :func:`moto_env` sets dummy
credentials and region, removes ``AWS_SESSION_TOKEN`` / ``AWS_PROFILE`` /
``AWS_SECURITY_TOKEN`` and points ``AWS_CONFIG_FILE`` / ``AWS_SHARED_CREDENTIALS_FILE``
at a non-existent file, so a developer's real ~/.aws never leaks into a local run;
``AWS_EC2_METADATA_DISABLED=true`` avoids a slow IMDS probe.
"""
from __future__ import annotations

import contextlib
import logging
import os
import urllib.request
from typing import Iterator

from core import storage
from core.aws import DEFAULT_REGION, ENDPOINT_ENV_VARS

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


def _clear_endpoint_caches() -> None:
    """Forget clients/filesystems bound to a stopped endpoint."""
    try:
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
    except Exception:  # noqa: BLE001
        pass
    storage._reset_caches()
