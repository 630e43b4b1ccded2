"""The `mhp` console command.

The subcommands live in ``mhp/commands/`` (one module per room) and ``mhp.demo``: each module
listed in COMMAND_MODULES exposes ``register(subparsers)``; the parsed namespace's ``func`` runs it.

A slim install (a deploy image: ``pip install .[serve]``, deploy/*.Dockerfile) lacks some
extras' third-party packages; a command module that cannot be imported for that reason is
left out and named in ``mhp --help`` with the missing package, instead of breaking every
other command (the inference image runs ``mhp serve`` without DuckDB or Great Expectations).
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
    "mhp.commands.stack",
    "mhp.commands.console",
    "mhp.demo",
]


#: the project's own top-level packages: failing to import one of these is a bug, never skipped
PROJECT_PACKAGES = frozenset({"core", "events", "labels", "simulator", "validation", "features", "ingestion",
                              "training", "serving", "mhp"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mhp", description="Marketplace Health Platform")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    unavailable = []
    for name in COMMAND_MODULES:
        try:
            importlib.import_module(name).register(sub)
        except ModuleNotFoundError as exc:
            missing = (exc.name or "").partition(".")[0]
            if not missing or missing in PROJECT_PACKAGES:
                raise
            unavailable.append(f"{name.rsplit('.', 1)[-1]} (needs {missing!r})")
    if unavailable:
        parser.epilog = ("not installed here: " + ", ".join(unavailable)
                         + "; pip install 'marketplace-health[test]' brings every command")
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
