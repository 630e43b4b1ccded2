"""`mhp train`: run the SageMaker entry point locally, pack model.tar.gz, print the report table;
or, with ``--on sagemaker``, launch it as a SageMaker training job (training/launcher.py)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.errors import UsageError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train the multi-task model on a dataset directory and write model.tar.gz",
        description="Runs the same code as the SageMaker training job (training/sagemaker_entry.py) "
                    "on this machine, then packs the model directory into model.tar.gz; with "
                    "--on sagemaker, launches it as a SageMaker training job (PyTorch estimator of the "
                    "SageMaker Python SDK) instead.")
    p.add_argument("--dataset", required=True,
                   help="dataset directory: Parquet file(s) + feature_schema.json (--on sagemaker: an s3:// prefix)")
    p.add_argument("--on", choices=["local", "sagemaker"], default="local",
                   help="where to train: this machine (default) or a SageMaker training job")
    p.add_argument("--out", default="out/train",
                   help="output root (default: out/train; --on sagemaker: an s3:// prefix, required)")
    p.add_argument("--epochs", type=int, help="maximum epochs (default 40)")
    p.add_argument("--seed", type=int, help="seed (default 0)")
    p.add_argument("--set", dest="hyperparameters", action="append", default=[], metavar="NAME=VALUE",
                   help="any entry-point hyperparameter, e.g. --set hidden=256,128 --set task_weights=churn_risk_30d=2")
    p.add_argument("--no-baselines", action="store_true", help="skip the single-task baselines (faster)")
    p.add_argument("--no-gate", action="store_true", help="skip the training-set quality gate (not recommended)")
    sm = p.add_argument_group("--on sagemaker")
    sm.add_argument("--role", help="SageMaker execution role ARN (required)")
    sm.add_argument("--job-name", help="training job name (default: mhp-train-<UTC time>)")
    sm.add_argument("--instance-type", default="ml.m5.xlarge", help="training instance type (default: ml.m5.xlarge)")
    sm.add_argument("--code", help="s3:// prefix for the uploaded source (default: <out>/code)")
    sm.add_argument("--region", help="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION, else us-east-1)")
    sm.add_argument("--max-runtime", type=int, default=3600, help="seconds before SageMaker stops the job (default 3600)")
    sm.add_argument("--volume-size", type=int, default=30, help="training volume in GB (default 30)")
    sm.add_argument("--wait", action="store_true", help="wait until the job ends (default: return once it is created)")
    p.set_defaults(func=run)


def parse_hyperparameters(items: list[str]) -> dict:
    """``--set NAME=VALUE`` options as typed hyperparameters (names as the training job knows them)."""
    from training.sagemaker_entry import HYPERPARAMETERS, _decode_string  # lazy: only when a command runs

    hps = {}
    for item in items:
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
    return hps


def run(args: argparse.Namespace) -> int:
    from training.artifact import pack_model_dir  # lazy: loaded only when this command runs (keeps `mhp --help` light)
    from training.sagemaker_entry import (  # lazy: loaded only when this command runs (keeps `mhp --help` light)
        HYPERPARAMETERS,
        DatasetError,
        HyperparameterError,
        run_training,
    )

    hps = parse_hyperparameters(args.hyperparameters)
    for key, value in (("epochs", args.epochs), ("seed", args.seed)):
        if value is not None:
            try:
                hps[key] = HYPERPARAMETERS[key][0](value)
            except (ValueError, TypeError) as exc:
                raise UsageError(f"--{key}: {exc}, got {value}") from None
    if args.no_baselines:
        hps["baselines"] = False
    if args.no_gate:
        hps["quality_gate"] = False
    if args.on == "sagemaker":
        return _launch_on_sagemaker(args, hps)
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


def _launch_on_sagemaker(args: argparse.Namespace, hps: dict) -> int:
    from datetime import datetime, timezone

    from core import aws  # lazy: loaded only when this command runs (keeps `mhp --help` light)
    from training.launcher import (  # lazy: imports the SageMaker SDK (~2.5 s), only for --on sagemaker
        LaunchConfigError,
        TrainingJobSpec,
        launch,
    )

    if not args.role:
        raise UsageError("--on sagemaker needs --role (the SageMaker execution role ARN)")
    if args.out == "out/train" or not args.out.startswith("s3://"):
        raise UsageError(f"--on sagemaker needs --out s3://bucket/prefix for the job's output, got {args.out!r}")
    if not args.dataset.startswith("s3://"):
        raise UsageError(f"--on sagemaker: --dataset must be the dataset's s3:// prefix (the job's train "
                         f"channel), got {args.dataset!r}")
    out = args.out.rstrip("/")
    spec = TrainingJobSpec(
        job_name=args.job_name or f"mhp-train-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}",
        role_arn=args.role, train_s3_uri=args.dataset.rstrip("/") + "/", output_s3_uri=out,
        code_s3_uri=args.code or f"{out}/code", region=args.region or aws.region(),
        instance_type=args.instance_type, max_runtime_seconds=args.max_runtime, volume_size_gb=args.volume_size,
        hyperparameters=hps, tags={"mhp:component": "training"})
    from sagemaker.exceptions import UnexpectedStatusException

    try:
        job = launch(spec, wait=args.wait)
    except LaunchConfigError as exc:
        raise UsageError(str(exc)) from None
    except UnexpectedStatusException as exc:  # --wait and the job failed or was stopped
        print(f"training job {spec.job_name}: {exc}", file=sys.stderr)
        return 1
    desc = job.description
    print(f"training job {job.job_name}: {desc['TrainingJobStatus']}")
    print(f"  arn:    {job.job_arn}")
    print(f"  image:  {job.image_uri}")
    print(f"  source: {job.source_s3_uri}")
    print(f"  data:   {spec.train_s3_uri}")
    print(f"  model:  {desc.get('ModelArtifacts', {}).get('S3ModelArtifacts') or f'{out}/{job.job_name}/output/model.tar.gz'}")
    if not args.wait:
        print(f"  follow: aws sagemaker describe-training-job --training-job-name {job.job_name} --region {spec.region}")
    return 0
