"""The `mhp` console command.

Each room registers its own subcommands: a module listed in COMMAND_MODULES
exposes ``register(subparsers)``; the parsed namespace's ``func`` runs it.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from core.errors import UsageError

COMMAND_MODULES: list[str] = [
    "mhp.commands.simulate",
    "mhp.commands.validate",
    "mhp.commands.features",
    "mhp.commands.ingest",
    "mhp.commands.serve",
    "mhp.commands.train",
    "mhp.commands.dataset",
    "mhp.demo",
]


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
