"""Launch the training job on SageMaker through the SageMaker Python SDK (tested against moto).

``launch(spec)`` builds a ``sagemaker.pytorch.PyTorch`` estimator and calls ``fit`` once:

* the image is the AWS PyTorch training container for the job's region and instance type
  (``sagemaker.image_uris.retrieve``, via the estimator; ``training.sagemaker_sdk``);
* script mode: ``entry_point`` ``training/sagemaker_entry.py`` inside ``source_dir``, a directory
  staged with the packages the entry point imports (``SOURCE_PACKAGES``) and a
  ``requirements.txt`` the container's training toolkit installs; the SDK tars it and uploads it
  to ``<code_s3_uri>/<job name>/source/sourcedir.tar.gz``;
* one input channel, ``train`` (``SM_CHANNEL_TRAIN`` in the container), the dataset prefix;
* our hyperparameters (the SDK JSON-encodes each value; the entry point decodes them), the
  instance type, the role, the output path (``model.tar.gz`` and ``output.tar.gz``), the
  volume, the runtime limit, the tags.

``fit(wait=False)``: the call returns once SageMaker has accepted the job (CreateTrainingJob);
``wait=True`` polls DescribeTrainingJob until the job ends.

Importing this module imports the SDK (~2.5 s, see training/sagemaker_sdk.py); `mhp train`
imports it only with ``--on sagemaker``.
"""
from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from training import sagemaker_sdk  # first: it configures the SDK before its first import
from training.sagemaker_entry import HYPERPARAMETERS

from sagemaker.inputs import TrainingInput  # noqa: E402,I001 - after training.sagemaker_sdk
from sagemaker.pytorch import PyTorch  # noqa: E402,I001

ENTRY_POINT = "training/sagemaker_entry.py"
#: what the entry point imports in the container: training, its quality gate (validation) and the
#: rooms validation stands on (tests/test_training_job_on_moto.py runs the entry point from the
#: uploaded source alone)
SOURCE_PACKAGES = ("core", "events", "validation", "training")
#: run-time dependencies the PyTorch training container lacks (installed by the toolkit)
SOURCE_REQUIREMENTS = ("pandas>=2.2,<3\npyarrow>=15\nscikit-learn>=1.4,<2\nmatplotlib>=3.8,<4\n"
                       # the training-set quality gate (validation/) runs in the job before fitting
                       "great-expectations>=1.3,<2\nduckdb>=1.1,<3\n")
_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


class LaunchConfigError(ValueError):
    """A training-job setting is invalid; the message names it."""


@dataclass
class TrainingJobSpec:
    job_name: str
    role_arn: str
    train_s3_uri: str             # s3://bucket/prefix/ holding the dataset + feature_schema.json
    output_s3_uri: str            # s3://bucket/prefix/ for model.tar.gz and output.tar.gz
    code_s3_uri: str              # s3://bucket/prefix: the SDK uploads <prefix>/<job>/source/sourcedir.tar.gz
    region: str = "us-east-1"
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 1
    volume_size_gb: int = 30
    max_runtime_seconds: int = 3600
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    image_uri: str | None = None  # default: the SDK's PyTorch training image for region + instance type

    def validate(self) -> None:
        if not _JOB_NAME.match(self.job_name):
            raise LaunchConfigError(f"job_name {self.job_name!r}: 1-63 letters, digits and hyphens")
        if not re.match(r"^arn:aws[a-z-]*:iam::\d{12}:role/.+", self.role_arn):
            raise LaunchConfigError(f"role_arn {self.role_arn!r}: expected arn:aws:iam::<12-digit account>:role/<name>")
        for name in ("train_s3_uri", "output_s3_uri", "code_s3_uri"):
            value = str(getattr(self, name))
            if not value.startswith("s3://") or not value[len("s3://"):].split("/")[0]:
                raise LaunchConfigError(f"{name} {value!r}: expected an s3://bucket/... URI")
        if not self.instance_type.startswith("ml."):
            raise LaunchConfigError(f"instance_type {self.instance_type!r}: expected an ml.* instance type")
        if self.instance_count != 1:
            raise LaunchConfigError("instance_count: the entry point trains on one instance; use 1")
        if self.max_runtime_seconds <= 0 or self.volume_size_gb <= 0:
            raise LaunchConfigError("max_runtime_seconds and volume_size_gb must be > 0")
        unknown = [k for k in self.hyperparameters if k.replace("-", "_") not in HYPERPARAMETERS]
        if unknown:
            raise LaunchConfigError(f"unknown hyperparameters {unknown}; known: {sorted(HYPERPARAMETERS)}")


def _hp_value(value: Any) -> Any:
    """A hyperparameter as the entry point parses it after the SDK's JSON round trip."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(dict(value), sort_keys=True)
    return value


def hyperparameters(spec: TrainingJobSpec) -> dict[str, Any]:
    """Our hyperparameters as given to the estimator (names with dashes, as on a command line)."""
    return {k.replace("_", "-"): _hp_value(v) for k, v in sorted(spec.hyperparameters.items())}


def stage_source_dir(dest) -> Path:
    """Lay out the job's ``source_dir`` in ``dest``: ``SOURCE_PACKAGES`` + requirements.txt."""
    repo = Path(__file__).resolve().parent.parent
    root = Path(dest)
    root.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in SOURCE_PACKAGES:
        shutil.copytree(repo / package, root / package, ignore=ignore)
    (root / "requirements.txt").write_text(SOURCE_REQUIREMENTS)
    return root


def estimator(spec: TrainingJobSpec, source_dir, sagemaker_session=None):
    """The ``sagemaker.pytorch.PyTorch`` estimator of ``spec`` (``source_dir``: :func:`stage_source_dir`)."""
    spec.validate()
    return PyTorch(
        entry_point=ENTRY_POINT, source_dir=str(source_dir),
        framework_version=sagemaker_sdk.FRAMEWORK_VERSION, py_version=sagemaker_sdk.PY_VERSION,
        image_uri=spec.image_uri, role=spec.role_arn,
        instance_type=spec.instance_type, instance_count=spec.instance_count,
        volume_size=spec.volume_size_gb, max_run=spec.max_runtime_seconds,
        hyperparameters=hyperparameters(spec), output_path=spec.output_s3_uri.rstrip("/"),
        code_location=spec.code_s3_uri.rstrip("/"),
        tags=[{"Key": k, "Value": v} for k, v in sorted(spec.tags.items())] or None,
        container_log_level=20,
        # no SageMaker Debugger hook or profiler: the entry point does not use them, and each
        # adds its own S3 output and rules to the job
        debugger_hook_config=False, disable_profiler=True,
        sagemaker_session=sagemaker_session or sagemaker_sdk.session(spec.region),
    )


@dataclass(frozen=True)
class LaunchedJob:
    job_name: str
    job_arn: str
    image_uri: str
    source_s3_uri: str            # the sourcedir.tar.gz the SDK uploaded
    description: dict[str, Any]   # DescribeTrainingJob right after the launch (or at the end with wait)


def launch(spec: TrainingJobSpec, sagemaker_session=None, wait: bool = False) -> LaunchedJob:
    """Stage the source, then ``PyTorch(...).fit({"train": ...})``: upload + CreateTrainingJob.

    ``wait``: poll until the job ends (raises the SDK's ``UnexpectedStatusException`` if it fails).
    """
    spec.validate()
    with tempfile.TemporaryDirectory(prefix="mhp-sourcedir-") as tmp:
        est = estimator(spec, stage_source_dir(Path(tmp) / "source"), sagemaker_session)
        train = TrainingInput(spec.train_s3_uri, distribution="FullyReplicated", s3_data_type="S3Prefix")
        est.fit({"train": train}, wait=wait, logs=False, job_name=spec.job_name)
    desc = est.latest_training_job.describe()
    return LaunchedJob(job_name=spec.job_name, job_arn=desc["TrainingJobArn"], image_uri=est.training_image_uri(),
                       source_s3_uri=est.uploaded_code.s3_prefix, description=desc)


def describe_training_job(job_name: str, sagemaker_session=None) -> dict[str, Any]:
    return (sagemaker_session or sagemaker_sdk.session()).describe_training_job(job_name)
