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

from mhp.cli_errors import ArgumentError, check_aws_local_endpoint, report

COMMAND_MODULES: list[str] = [
    "mhp.commands.simulate",
    "mhp.commands.validate",
    "mhp.commands.features",
    "mhp.commands.ingest",
    "mhp.commands.serve",
    "mhp.commands.train",
    "mhp.commands.evaluate",
    "mhp.commands.dataset",
    "mhp.commands.stack",
    "mhp.commands.console",
    "mhp.demo",
]


#: the project's own top-level packages: failing to import one of these is a bug, never skipped
PROJECT_PACKAGES = frozenset({"core", "events", "labels", "simulator", "validation", "features", "ingestion",
                              "training", "serving", "mhp"})


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting: ``main`` prints the one line."""

    def error(self, message: str):
        raise ArgumentError(message, self.prog)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="mhp", description="Marketplace Health Platform")
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
    """Run one command; every failure is one line on stderr and a non-zero exit (mhp/cli_errors.py)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except ArgumentError as exc:
        # unknown options surface from the top-level parser: name the command they were given to
        words = list(sys.argv[1:] if argv is None else argv)
        command = next((w for w in words if not w.startswith("-")), None)
        known = next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        command = command if command in known else None
        prog = exc.prog if exc.prog != "mhp" or command is None else f"mhp {command}"
        return report(prog.removeprefix("mhp").strip() or None, exc.with_help(prog))
    try:
        # aws-local needs its moto server: check it is there before botocore retries for a minute (a
        # workspace command without an s3:// --data-uri fails on that argument first; `mhp demo`
        # starts its own)
        if (getattr(args, "profile", None) == "aws-local" and not getattr(args, "starts_moto", False)
                and str(getattr(args, "data_uri", "s3://")).startswith("s3://")):
            check_aws_local_endpoint()
        return int(args.func(args) or 0)
    except (Exception, KeyboardInterrupt) as exc:
        return report(args.command, exc)


if __name__ == "__main__":
    sys.exit(main())
