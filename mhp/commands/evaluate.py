"""`mhp evaluate`: the evaluation protocol (training/protocol.py) on held-out simulated worlds."""
from __future__ import annotations

import argparse
from pathlib import Path

from core.errors import UsageError
from mhp.commands.train import parse_hyperparameters


def register(subparsers) -> None:
    from training.protocol import DEV_SEEDS, EVAL_CUSTOMERS, EVAL_DAYS, EVAL_SEEDS  # lazy: the command modules load on every mhp call

    p = subparsers.add_parser(
        "evaluate", help="simulate -> dataset -> train -> report on held-out worlds, with bootstrap intervals",
        description="For each seed: simulate a world, build its training set, train with the training job's "
                    "code and defaults, and score the test split with a customer-level bootstrap. Prints per-seed "
                    "and mean model/oracle ratios and multi-task minus single-task differences with 95% "
                    "intervals, marks the bars met or not, and writes evaluation_summary.json / .md to the "
                    f"workdir. Defaults to the evaluation seeds {list(EVAL_SEEDS)}; the development seeds "
                    f"{list(DEV_SEEDS)} are refused unless --allow-dev-seeds.")
    p.add_argument("--seeds", help=f"comma-separated world seeds (default: the evaluation seeds "
                                   f"{','.join(map(str, EVAL_SEEDS))})")
    p.add_argument("--allow-dev-seeds", action="store_true",
                   help=f"allow the development seeds {list(DEV_SEEDS)} (for sizing and tuning, not for reporting)")
    p.add_argument("--customers", type=int, default=EVAL_CUSTOMERS,
                   help=f"customers per world (default {EVAL_CUSTOMERS:,})")
    p.add_argument("--days", type=int, default=EVAL_DAYS, help=f"days per world (default {EVAL_DAYS})")
    p.add_argument("--workdir", default="out/evaluate", help="where the worlds and the summary go (default out/evaluate)")
    p.add_argument("--keep", action="store_true",
                   help="keep each world's events, features, dataset and model (default: only its report and scores)")
    p.add_argument("--replicates", type=int, default=1000, help="bootstrap replicates (default 1000)")
    p.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap draws (default 0)")
    p.add_argument("--set", dest="hyperparameters", action="append", default=[], metavar="NAME=VALUE",
                   help="a training hyperparameter for every world, as in mhp train (e.g. --set ensemble=1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _seeds(text: str | None) -> list[int]:
    from training.protocol import EVAL_SEEDS  # lazy: as in register

    if text is None:
        return list(EVAL_SEEDS)
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--seeds: expected comma-separated integers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from training.protocol import ProtocolError, format_text, run_protocol  # lazy: only when this command runs

    if args.replicates < 1:
        raise UsageError(f"--replicates: must be >= 1, got {args.replicates}")
    try:
        summary = run_protocol(_seeds(args.seeds), Path(args.workdir), customers=args.customers, days=args.days,
                               hyperparameters=parse_hyperparameters(args.hyperparameters),
                               allow_dev_seeds=args.allow_dev_seeds, n_replicates=args.replicates,
                               bootstrap_seed=args.bootstrap_seed, keep=args.keep, progress=not args.no_progress,
                               log=lambda s: print(s, flush=True))
    except ProtocolError as exc:
        raise UsageError(str(exc)) from None
    print(format_text(summary))
    print(f"summary: {Path(args.workdir) / 'evaluation_summary.md'} (and .json)")
    return 0
