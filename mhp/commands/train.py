"""`mhp train`: run the SageMaker entry point locally, pack model.tar.gz, print the report table."""
from __future__ import annotations

import argparse
from pathlib import Path

from core.errors import UsageError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train the multi-task model on a dataset directory and write model.tar.gz",
        description="Runs the same code as the SageMaker training job (training/sagemaker_entry.py) "
                    "on this machine, then packs the model directory into model.tar.gz.")
    p.add_argument("--dataset", required=True, help="dataset directory: Parquet file(s) + feature_schema.json")
    p.add_argument("--out", default="out/train", help="output root (default: out/train)")
    p.add_argument("--epochs", type=int, help="maximum epochs (default 40)")
    p.add_argument("--seed", type=int, help="seed (default 0)")
    p.add_argument("--set", dest="hyperparameters", action="append", default=[], metavar="NAME=VALUE",
                   help="any entry-point hyperparameter, e.g. --set hidden=256,128 --set task_weights=churn_risk_30d=2")
    p.add_argument("--no-baselines", action="store_true", help="skip the single-task baselines (faster)")
    p.add_argument("--no-gate", action="store_true", help="skip the training-set quality gate (not recommended)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from training.artifact import pack_model_dir  # lazy: loaded only when this command runs (keeps `mhp --help` light)
    from training.sagemaker_entry import (  # lazy: loaded only when this command runs (keeps `mhp --help` light)
        HYPERPARAMETERS,
        DatasetError,
        HyperparameterError,
        _decode_string,
        run_training,
    )

    hps = {}
    for item in args.hyperparameters:
        name, sep, value = item.partition("=")
        key = name.strip().replace("-", "_")
        if not sep:
            raise UsageError(f"--set {item!r}: expected NAME=VALUE")
        if key not in HYPERPARAMETERS:
            raise UsageError(f"--set {name!r}: unknown hyperparameter; known: {', '.join(sorted(HYPERPARAMETERS))}")
        try:
            hps[key] = HYPERPARAMETERS[key][0](_decode_string(value))
        except (ValueError, TypeError) as exc:
            raise UsageError(f"--set {name}={value!r}: {exc}") from None
    if args.epochs is not None:
        hps["epochs"] = HYPERPARAMETERS["epochs"][0](args.epochs)
    if args.seed is not None:
        hps["seed"] = HYPERPARAMETERS["seed"][0](args.seed)
    if args.no_baselines:
        hps["baselines"] = False
    if args.no_gate:
        hps["quality_gate"] = False
    out = Path(args.out)
    try:
        outcome = run_training(args.dataset, out / "model", out / "report", hps)
    except (DatasetError, HyperparameterError) as exc:
        raise UsageError(str(exc)) from None
    tarball = pack_model_dir(out / "model", out / "model.tar.gz")
    print(outcome.table)
    print(f"model {outcome.model_config['model_version']}: {tarball}")
    print(f"report: {out / 'report' / 'report.md'}")
    return 0
