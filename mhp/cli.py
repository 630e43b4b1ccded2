"""The `mhp` console command.

Each room registers its own subcommands: a module listed in COMMAND_MODULES
exposes ``register(subparsers)``; the parsed namespace's ``func`` runs it.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES: list[str] = [
    "simulator.cli",
    "validation.cli",
    "features.cli",
    "ingestion.cli",
    "serving.cli",
    "training.cli",
    "training.dataset_cli",
    "mhp.demo",
]


class UsageError(Exception):
    """A bad argument or config value; the message names the field and what was expected."""


def parse_utc_time(value: str, field: str):
    """An ISO-8601 time with an offset (``...Z``), as UTC; a UsageError naming ``field`` otherwise."""
    from datetime import datetime, timezone

    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{field}: expected an ISO-8601 UTC time such as 2025-03-01T00:00:00Z, got {value!r}") from None
    if t.tzinfo is None:
        raise UsageError(f"{field}: expected a timezone offset (e.g. a trailing Z), got naive {value!r}")
    return t.astimezone(timezone.utc)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mhp", description="Marketplace Health Platform")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"mhp {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
