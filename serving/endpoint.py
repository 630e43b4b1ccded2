"""Endpoint clients: send feature rows, get predictions. One interface, two transports.

* :class:`HttpEndpoint`: our inference server over HTTP (profiles ``local`` and
  ``aws-local``), a persistent keep-alive connection per thread, connect/read timeouts.
* :class:`SageMakerEndpoint`: ``sagemaker-runtime`` ``InvokeEndpoint`` via boto3 (``aws``).

Both raise :class:`EndpointRejected` for a 4xx other than 429 (the request is wrong: retrying
will not help) and :class:`EndpointUnavailable` for everything that may pass (connection
refused, timeout, 5xx, 429 / throttling, a model not loaded yet). On SageMaker the container's
answer arrives as ``ModelError`` (HTTP 424) with the container's status in
``OriginalStatusCode``: the artifact's handler reports bad input as a 4xx there through the
SageMaker inference toolkit (training/inference.py). :func:`invoke_with_retry` retries only
:class:`EndpointUnavailable`, with exponential backoff on the monotonic clock, and re-raises
the last error when the budget is spent.
"""
from __future__ import annotations

import http.client
import json
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence
from urllib.parse import urlsplit

from core import aws


class EndpointError(RuntimeError):
    pass


class EndpointRejected(EndpointError):
    """The endpoint refused the request (4xx); the message is the endpoint's reason."""

    def __init__(self, status: int, message: str):
        super().__init__(f"endpoint rejected the request ({status}): {message}")
        self.status = status


class EndpointUnavailable(EndpointError):
    """The endpoint could not answer (down, timeout, 5xx, throttled): worth retrying later."""


def is_rejection(status: int) -> bool:
    """A status that rejects the request itself: 4xx except 429 (Too Many Requests)."""
    return 400 <= status < 500 and status != 429


class Endpoint(Protocol):
    name: str

    def invoke(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]: ...


def _json_value(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, float):
        return None if math.isnan(v) else v
    if hasattr(v, "item"):  # numpy scalars
        v = v.item()
        return None if isinstance(v, float) and math.isnan(v) else v
    return v


def encode_rows(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """The request body: the column form when every row has the same features (a third of the
    bytes, and the server's faster path), otherwise one object per row."""
    columns = list(rows[0]) if rows else []
    if rows and all(len(r) == len(columns) and all(c in r for c in columns) for r in rows):
        payload: dict[str, Any] = {"columns": columns, "data": [[_json_value(r[c]) for c in columns] for r in rows]}
    else:
        payload = {"instances": [{k: _json_value(v) for k, v in r.items()} for r in rows]}
    return json.dumps(payload, allow_nan=False).encode()


def decode_predictions(body: bytes, n_rows: int) -> list[dict[str, Any]]:
    try:
        preds = json.loads(body)["predictions"]
    except (ValueError, KeyError, TypeError) as exc:
        raise EndpointUnavailable(f"endpoint returned an unreadable response: {exc}") from None
    if not isinstance(preds, list) or len(preds) != n_rows:
        raise EndpointUnavailable(f"endpoint returned {len(preds) if isinstance(preds, list) else '?'} "
                                  f"predictions for {n_rows} rows")
    return preds


def _reason(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"])
    except Exception:  # noqa: BLE001
        return body.decode("utf-8", "replace")[:500]


class HttpEndpoint:
    """Our inference server (``serving.server``) at ``url``."""

    def __init__(self, url: str, connect_timeout: float = 1.0, read_timeout: float = 5.0):
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"endpoint url: expected http://host:port, got {url!r}")
        self.name = url
        self.host, self.port = parts.hostname, parts.port or 80
        self.base = parts.path.rstrip("/")
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self._local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.connect_timeout)
            conn.connect()
            conn.sock.settimeout(self.read_timeout)
            import socket

            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"} if body is not None else {}
        for attempt in (0, 1):  # a keep-alive connection the server closed: reconnect once
            fresh = getattr(self._local, "conn", None) is None
            try:
                conn = self._conn()
                conn.request(method, self.base + path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self._drop()
                return resp.status, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self._drop()
                if fresh or attempt:
                    raise EndpointUnavailable(f"endpoint {self.name} dropped the connection: {exc}") from None
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                raise EndpointUnavailable(f"endpoint {self.name} unreachable: {type(exc).__name__}: {exc}") from None
        raise EndpointUnavailable(f"endpoint {self.name} unreachable")

    def ping(self) -> bool:
        try:
            return self._request("GET", "/ping")[0] == 200
        except EndpointUnavailable:
            return False

    def invoke_raw(self, body: bytes) -> bytes:
        status, data = self._request("POST", "/invocations", body)
        if is_rejection(status):
            raise EndpointRejected(status, _reason(data))
        if status != 200:
            raise EndpointUnavailable(f"endpoint {self.name} answered {status}: {_reason(data)}")
        return data

    def invoke(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return decode_predictions(self.invoke_raw(encode_rows(rows)), len(rows))

    def close(self) -> None:
        self._drop()


class SageMakerEndpoint:
    """A SageMaker endpoint by name, through ``sagemaker-runtime`` InvokeEndpoint."""

    def __init__(self, endpoint_name: str, client=None, read_timeout: float = 5.0, connect_timeout: float = 1.0):
        self.name = endpoint_name
        if client is None:
            from botocore.config import Config


            client = aws.boto3_client("sagemaker-runtime", config=Config(
                connect_timeout=connect_timeout, read_timeout=read_timeout, retries={"max_attempts": 1}))
        self._client = client

    def invoke(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            resp = self._client.invoke_endpoint(EndpointName=self.name, ContentType="application/json",
                                                Accept="application/json", Body=encode_rows(rows))
            body = resp["Body"].read()
        except ClientError as exc:
            err = exc.response.get("Error", {})
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            code = err.get("Code", "")
            # ModelError (424) = the container answered non-200; its status is in OriginalStatusCode
            original = int(exc.response.get("OriginalStatusCode", 0) or 0)
            if code == "ModelError" and is_rejection(original):
                raise EndpointRejected(original, exc.response.get("OriginalMessage") or err.get("Message", ""))
            if code == "ValidationError" and status == 400:   # e.g. no such endpoint, body too large
                raise EndpointRejected(400, err.get("Message", str(exc)))
            # ModelNotReadyException (429), ThrottlingException, ServiceUnavailable (503),
            # InternalFailure (500), InternalDependencyException (530), a container 5xx or 429
            raise EndpointUnavailable(f"SageMaker endpoint {self.name}: {code}: {err.get('Message', exc)}") from None
        except BotoCoreError as exc:
            raise EndpointUnavailable(f"SageMaker endpoint {self.name} unreachable: {exc}") from None
        return decode_predictions(body, len(rows))


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: attempts in total, first delay, factor, cap (seconds)."""

    attempts: int = 3
    initial_delay: float = 0.05
    factor: float = 2.0
    max_delay: float = 1.0

    def delays(self):
        d = self.initial_delay
        for _ in range(max(self.attempts - 1, 0)):
            yield min(d, self.max_delay)
            d *= self.factor


def invoke_with_retry(call: Callable[[], Any], policy: RetryPolicy, sleep: Callable[[float], None] = time.sleep,
                      retry_on: tuple[type[BaseException], ...] = (EndpointUnavailable,)):
    """``call()``, retried on ``retry_on`` per ``policy``; the last error propagates."""
    delays = policy.delays()
    while True:
        try:
            return call()
        except retry_on:
            d = next(delays, None)
            if d is None:
                raise
            sleep(d)
