"""Where a pipeline run keeps its data: one workspace, the same layout for every command.

    <root>/events/          the event log (Parquet by UTC date)   <- mhp simulate
    <root>/stream.jsonl     the time-ordered stream for replay     <- mhp simulate
    <root>/features/        feature snapshot tables (Parquet)      <- mhp backfill
    <state>/feast/          Feast registry + embedded online store <- mhp apply / materialize
    <state>/dataset/        the point-in-time training set         <- mhp dataset
    <state>/model/          the trained model and its report       <- mhp train
    <root>/simulation.json  present when the workspace is a simulation's output (the oracle can run)

``root`` is a local folder (profile local) or an s3:// URI (aws profiles);
``state`` is always a local folder (the workspace folder itself when local).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from core import storage
from core.errors import UsageError

DEFAULT_WORKSPACE = "out"


@dataclass(frozen=True)
class Workspace:
    root: str
    state: Path
    profile: str = "local"

    @property
    def events(self) -> str:
        return storage.join(self.root, "events")

    @property
    def stream(self) -> str:
        return storage.join(self.root, "stream.jsonl")

    @property
    def features(self) -> str:
        return storage.join(self.root, "features")

    @property
    def feast_state(self) -> Path:
        return self.state / "feast"

    # local folders: the dataset build and training read and write them with local file I/O
    @property
    def dataset(self) -> Path:
        return self.state / "dataset"

    @property
    def model(self) -> Path:
        return self.state / "model"

    @property
    def simulation(self) -> str | None:
        """The root when the workspace is a simulation's output (it has simulation.json), else None."""
        return self.root if storage.exists(self.path("simulation.json")) else None

    @classmethod
    def local(cls, folder: str | Path) -> "Workspace":
        """A workspace kept wholly in a local folder (the local profile)."""
        return cls(root=str(folder), state=Path(folder))

    def path(self, *parts: str) -> str:
        return storage.join(self.root, *parts)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workspace", default=DEFAULT_WORKSPACE,
                        help=f"local workspace folder (default: {DEFAULT_WORKSPACE})")
    parser.add_argument("--profile", default="local", choices=["local", "aws-local", "aws"],
                        help="deployment profile (default: local, fully embedded)")
    parser.add_argument("--data-uri", default=None,
                        help="s3://bucket/prefix holding the data for the aws profiles (default: the workspace)")


def from_args(args: argparse.Namespace) -> Workspace:
    state = Path(args.workspace)
    root = args.data_uri or str(state)
    if args.profile != "local" and not storage.is_s3(root):
        raise UsageError(f"--data-uri: profile {args.profile!r} expects an s3:// URI, got {root!r}")
    if args.profile == "local" and storage.is_s3(root):
        raise UsageError("--data-uri: profile 'local' keeps data on local disk; use --profile aws-local or aws for s3://")
    return Workspace(root=root, state=state, profile=args.profile)
