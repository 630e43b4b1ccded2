"""Launch the training job on SageMaker (profile ``aws``; tested against moto).

The request runs ``training/sagemaker_entry.py`` in script mode inside the AWS PyTorch
training container: the ``sagemaker_program`` / ``sagemaker_submit_directory``
hyperparameters tell the container's training toolkit which script to run from which
source tarball (built by :func:`build_source_tarball` and uploaded by :func:`launch`).
Our own hyperparameters travel as strings (CreateTrainingJob's HyperParameters is a
string->string map); the entry point decodes them.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from core.aws import boto3_client
from training.artifact import deterministic_tar_gz
from training.sagemaker_entry import HYPERPARAMETERS

ENTRY_POINT = "training/sagemaker_entry.py"
#: what the entry point imports in the container: training, its quality gate (validation) and the
#: rooms validation stands on (tests/test_training_launcher.py runs the entry point from the tarball alone)
SOURCE_PACKAGES = ("core", "events", "validation", "training")
#: AWS Deep Learning Containers registry account for most commercial regions
DLC_ACCOUNT = "763104351884"
#: run-time dependencies the PyTorch training container lacks (installed by the toolkit)
SOURCE_REQUIREMENTS = ("pandas>=2.2,<3\npyarrow>=15\nscikit-learn>=1.4,<2\nmatplotlib>=3.8,<4\n"
                       # the training-set quality gate (validation/) runs in the job before fitting
                       "great-expectations>=1.3,<2\nduckdb>=1.1,<3\n")
_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


class LaunchConfigError(ValueError):
    """A training-job setting is invalid; the message names it."""


def pytorch_training_image_uri(region: str, framework_version: str = "2.3.0", py_version: str = "py311",
                               account: str = DLC_ACCOUNT) -> str:
    """The AWS PyTorch training DLC (CPU) for ``region``; pass ``image_uri`` to override."""
    return f"{account}.dkr.ecr.{region}.amazonaws.com/pytorch-training:{framework_version}-cpu-{py_version}"


@dataclass
class TrainingJobSpec:
    job_name: str
    role_arn: str
    train_s3_uri: str             # s3://bucket/prefix/ holding the dataset + feature_schema.json
    output_s3_uri: str            # s3://bucket/prefix/ for model.tar.gz and output.tar.gz
    source_s3_uri: str            # s3://.../sourcedir.tar.gz (build_source_tarball)
    image_uri: str
    region: str = "us-east-1"
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 1
    volume_size_gb: int = 30
    max_runtime_seconds: int = 3600
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        if not _JOB_NAME.match(self.job_name):
            raise LaunchConfigError(f"job_name {self.job_name!r}: 1-63 letters, digits and hyphens")
        if not re.match(r"^arn:aws[a-z-]*:iam::\d{12}:role/.+", self.role_arn):
            raise LaunchConfigError(f"role_arn {self.role_arn!r}: expected arn:aws:iam::<12-digit account>:role/<name>")
        for name in ("train_s3_uri", "output_s3_uri", "source_s3_uri"):
            if not str(getattr(self, name)).startswith("s3://"):
                raise LaunchConfigError(f"{name} {getattr(self, name)!r}: expected an s3:// URI")
        if not self.instance_type.startswith("ml."):
            raise LaunchConfigError(f"instance_type {self.instance_type!r}: expected an ml.* instance type")
        if self.instance_count != 1:
            raise LaunchConfigError("instance_count: the entry point trains on one instance; use 1")
        if self.max_runtime_seconds <= 0 or self.volume_size_gb <= 0:
            raise LaunchConfigError("max_runtime_seconds and volume_size_gb must be > 0")

        unknown = [k for k in self.hyperparameters if k.replace("-", "_") not in HYPERPARAMETERS]
        if unknown:
            raise LaunchConfigError(f"unknown hyperparameters {unknown}; known: {sorted(HYPERPARAMETERS)}")


def _hp_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(dict(value), sort_keys=True)
    return str(value)


def build_training_job_request(spec: TrainingJobSpec) -> dict[str, Any]:
    """The CreateTrainingJob request (boto3 ``sagemaker.create_training_job`` kwargs)."""
    spec.validate()
    hps = {k.replace("_", "-"): _hp_string(v) for k, v in sorted(spec.hyperparameters.items())}
    # script-mode settings read by the container's training toolkit (JSON-encoded strings)
    hps.update({
        "sagemaker_program": json.dumps(ENTRY_POINT),
        "sagemaker_submit_directory": json.dumps(spec.source_s3_uri),
        "sagemaker_region": json.dumps(spec.region),
        "sagemaker_container_log_level": "20",
    })
    request: dict[str, Any] = {
        "TrainingJobName": spec.job_name,
        "AlgorithmSpecification": {"TrainingImage": spec.image_uri, "TrainingInputMode": "File"},
        "RoleArn": spec.role_arn,
        "HyperParameters": hps,
        "InputDataConfig": [{
            "ChannelName": "train",
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": spec.train_s3_uri,
                                            "S3DataDistributionType": "FullyReplicated"}},
            "InputMode": "File",
        }],
        "OutputDataConfig": {"S3OutputPath": spec.output_s3_uri},
        "ResourceConfig": {"InstanceType": spec.instance_type, "InstanceCount": spec.instance_count,
                           "VolumeSizeInGB": spec.volume_size_gb},
        "StoppingCondition": {"MaxRuntimeInSeconds": spec.max_runtime_seconds},
        "EnableNetworkIsolation": False,
    }
    if spec.tags:
        request["Tags"] = [{"Key": k, "Value": v} for k, v in sorted(spec.tags.items())]
    return request


def build_source_tarball(out_path) -> Path:
    """``sourcedir.tar.gz``: the packages the entry point imports (``SOURCE_PACKAGES``) +
    requirements.txt, reproducibly packed."""
    import shutil
    import tempfile

    repo = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="mhp-sourcedir-") as tmp:
        root = Path(tmp)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        for package in SOURCE_PACKAGES:
            shutil.copytree(repo / package, root / package, ignore=ignore)
        (root / "requirements.txt").write_text(SOURCE_REQUIREMENTS)
        return deterministic_tar_gz(root, out_path)


def _sagemaker_client(client=None):
    if client is not None:
        return client
    return boto3_client("sagemaker")


def submit_training_job(request: Mapping[str, Any], client=None) -> str:
    """CreateTrainingJob; returns the job ARN."""
    return _sagemaker_client(client).create_training_job(**request)["TrainingJobArn"]


def describe_training_job(job_name: str, client=None) -> dict[str, Any]:
    return _sagemaker_client(client).describe_training_job(TrainingJobName=job_name)


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


def launch(spec: TrainingJobSpec, s3_client=None, sagemaker_client=None) -> str:
    """Build and upload the source tarball to ``spec.source_s3_uri``, then submit the job."""
    import tempfile

    spec.validate()
    if s3_client is None:
        s3_client = boto3_client("s3")
    with tempfile.TemporaryDirectory() as tmp:
        tarball = build_source_tarball(Path(tmp) / "sourcedir.tar.gz")
        bucket, key = _split_s3(spec.source_s3_uri)
        s3_client.upload_file(str(tarball), bucket, key)
    return submit_training_job(build_training_job_request(spec), sagemaker_client)
