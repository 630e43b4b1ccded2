"""How `mhp` fails: one line on stderr naming the problem, and a non-zero exit, never a traceback.

``mhp.cli.main`` turns what a command raises into that line. Exit codes: 2 a bad argument or a
missing prerequisite (``core.errors.UsageError``, argparse errors, a missing or unwritable path,
missing AWS credentials, a domain error that names a bad value), 1 a failure while running
(an unreachable service, a refused AWS call, anything unexpected), 130 interrupted.
``MHP_TRACEBACK=1`` re-raises instead, for debugging.
"""
from __future__ import annotations

import os
import socket
import sys
from urllib.parse import urlparse

from core.errors import UsageError

#: domain errors whose message names the bad value (a usage problem: exit 2), by class name so this
#: module imports none of the rooms that define them
USAGE_ERROR_NAMES = frozenset({"ProfileError", "ConfigError", "DatasetBuildError", "StackError"})


class ArgumentError(UsageError):
    """What argparse reports (unknown option, missing argument, wrong type), as one line."""

    def __init__(self, message: str, prog: str = "mhp"):
        super().__init__(message)
        self.prog = prog

    def with_help(self, prog: str) -> "ArgumentError":
        return ArgumentError(f"{self} (see `{prog} --help`)", prog)


def one_line(text: str) -> str:
    lines = [s.strip() for s in str(text).splitlines() if s.strip()]
    return lines[0] if lines else ""


def _aws_hint() -> str:
    from core import aws  # lazy: only on the failure path

    ep = aws.endpoint_url()
    return (f"is the AWS endpoint {ep} (AWS_ENDPOINT_URL) running?" if ep
            else "no AWS_ENDPOINT_URL is set, so this went to real AWS")


def describe(exc: BaseException) -> tuple[int, str]:
    """(exit code, one-line message) for an exception a command raised."""
    name = type(exc).__name__
    module = type(exc).__module__ or ""
    if isinstance(exc, UsageError):
        return 2, one_line(exc)
    if isinstance(exc, KeyboardInterrupt):
        return 130, "interrupted"
    if module.startswith("botocore"):
        if name in ("NoCredentialsError", "PartialCredentialsError"):
            return 2, ("no AWS credentials found: configure them (AWS_PROFILE or AWS_ACCESS_KEY_ID/"
                       "AWS_SECRET_ACCESS_KEY), or use --profile aws-local with AWS_ENDPOINT_URL set to a moto server")
        if name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError"):
            return 1, f"cannot reach AWS ({one_line(exc)}): {_aws_hint()}"
        if name == "ClientError":
            err = getattr(exc, "response", {}).get("Error", {})
            return 1, (f"AWS refused {getattr(exc, 'operation_name', 'the call')}: "
                       f"{err.get('Code', '?')}: {one_line(err.get('Message', exc))}")
        return 1, f"AWS call failed: {name}: {one_line(exc)}"
    if name in USAGE_ERROR_NAMES:
        return 2, one_line(exc)
    if isinstance(exc, FileNotFoundError):
        return 2, f"{exc.filename or one_line(exc)}: no such file or directory"
    if isinstance(exc, (PermissionError, IsADirectoryError, NotADirectoryError)):
        return 2, f"cannot use {exc.filename or '?'}: {exc.strerror or one_line(exc)}"
    if isinstance(exc, OSError) and exc.filename:
        return 2, f"cannot use {exc.filename}: {exc.strerror or one_line(exc)}"
    if isinstance(exc, ConnectionError):
        return 1, f"connection failed: {one_line(exc)}"
    return 1, f"{name}: {one_line(exc)} (set MHP_TRACEBACK=1 for the traceback)"


def report(command: str | None, exc: BaseException) -> int:
    """Print the one line for ``exc`` on stderr and return the exit code (or re-raise under MHP_TRACEBACK)."""
    if os.environ.get("MHP_TRACEBACK") and not isinstance(exc, UsageError):
        raise exc
    code, message = describe(exc)
    print(f"mhp{' ' + command if command else ''}: error: {message}", file=sys.stderr)
    return code


def check_aws_local_endpoint(timeout: float = 2.0) -> None:
    """The aws-local profile needs a reachable moto server: fail in seconds, not after botocore's retries."""
    from core import aws  # lazy: only for the aws-local profile

    url = aws.endpoint_url()
    if not url:
        raise UsageError("--profile aws-local: set AWS_ENDPOINT_URL to the moto server's URL "
                         "(e.g. http://127.0.0.1:5000; start one with `moto_server -p 5000`)")
    u = urlparse(url)
    host, port = u.hostname or "127.0.0.1", u.port or (443 if u.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise UsageError(f"--profile aws-local: cannot reach the moto server at {url} (AWS_ENDPOINT_URL): "
                         f"{exc.strerror or exc}; start it or fix the URL") from None
