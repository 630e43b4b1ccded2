"""The SageMaker Python SDK (``sagemaker`` 2.x) as this project uses it.

* :func:`session`: a ``sagemaker.Session`` whose every client (SageMaker, S3, ...) honours the
  AWS endpoint override and region of :mod:`core.aws` (the moto server in tests and ``aws-local``;
  real AWS when no override is set), with the SDK's telemetry off and its defaults files
  (``/etc/xdg/sagemaker/config.yaml``, ``~/.config/sagemaker/config.yaml``) not read: every
  setting of a job or endpoint is in our code, nothing is injected from the machine it runs on.
* :data:`FRAMEWORK_VERSION` / :data:`PY_VERSION`: the AWS PyTorch framework containers we use
  for training and for serving, and :func:`pytorch_image_uri`, their region-correct image URI
  (``sagemaker.image_uris.retrieve``: the registry account differs by region).

The container's torch (``FRAMEWORK_VERSION``) is not the local one (``torch==2.13.0`` in
pyproject.toml): the artifact holds a ``state_dict`` loaded with ``weights_only=True`` plus
JSON (training/artifact.py), which loads across these versions.

Importing this module imports the SDK (~2.5 s; it imports pandas and sagemaker-core, and its
JumpStart module builds a default boto3 session, which resolves AWS credentials: with none
configured botocore asks the EC2 instance metadata service). Only the training-job launcher
and the deployer import it, when they run.
"""
from __future__ import annotations

import logging
import os
from typing import Any

from core import aws

# We pin 2.x on purpose (3.x is ~400 MB more and fails against moto's DescribeEndpoint): the
# SDK's "v2 is on a path of deprecation" warning on every import is noise for our users.
os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
# "Not applying SDK defaults from location ..." INFO lines, printed at import (the SDK leaves a
# level set by the application alone)
if logging.getLogger("sagemaker.config").level == logging.NOTSET:
    logging.getLogger("sagemaker.config").setLevel(logging.WARNING)

import boto3  # noqa: E402
import sagemaker  # noqa: E402
from sagemaker import image_uris  # noqa: E402

#: PyTorch of the AWS framework containers (training and inference): the newest version the
#: SDK's image config lists for both (training goes to 2.8.0, inference to 2.6.0), so the job
#: trains with the torch that serves the model
FRAMEWORK_VERSION = "2.6.0"
PY_VERSION = "py312"

#: the SDK's config, given explicitly: telemetry opted out (Estimator.fit would otherwise GET
#: https://sm-pysdk-t-<region>.s3.<region>.amazonaws.com/telemetry after calling STS)
SDK_CONFIG: dict[str, Any] = {
    "SchemaVersion": "1.0",
    "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}},
}


class _EndpointAwareSession(boto3.Session):
    """A boto3 session whose clients and resources use ``core.aws``'s endpoint override.

    The SDK makes its own clients from the boto3 session it is given (S3 for uploads, STS, ...);
    boto3 itself honours only ``AWS_ENDPOINT_URL``, ``core.aws`` also ``MHP_AWS_ENDPOINT_URL``.
    """

    def client(self, service_name, *args, **kwargs):  # noqa: D102
        if kwargs.get("endpoint_url") is None and aws.endpoint_url():
            kwargs["endpoint_url"] = aws.endpoint_url()
        return super().client(service_name, *args, **kwargs)

    def resource(self, service_name, *args, **kwargs):  # noqa: D102
        if kwargs.get("endpoint_url") is None and aws.endpoint_url():
            kwargs["endpoint_url"] = aws.endpoint_url()
        return super().resource(service_name, *args, **kwargs)


def session(region: str | None = None, sagemaker_client=None, botocore_config=None) -> sagemaker.Session:
    """A ``sagemaker.Session`` for ``region`` (default: ``core.aws.region()``).

    ``sagemaker_client``: a boto3 SageMaker client to use instead of one made here;
    ``botocore_config``: a ``botocore.config.Config`` for the SageMaker client made here.
    """
    region = region or aws.region()
    boto_session = _EndpointAwareSession(region_name=region)
    if sagemaker_client is None:
        kwargs = {"config": botocore_config} if botocore_config is not None else {}
        sagemaker_client = boto_session.client("sagemaker", **kwargs)
    return sagemaker.Session(boto_session=boto_session, sagemaker_client=sagemaker_client,
                             sagemaker_config=SDK_CONFIG)


def pytorch_image_uri(scope: str, region: str, instance_type: str,
                      framework_version: str = FRAMEWORK_VERSION, py_version: str = PY_VERSION) -> str:
    """The AWS PyTorch ``scope`` ("training" / "inference") container for ``region`` and
    ``instance_type`` (CPU or GPU image), through ``sagemaker.image_uris.retrieve``."""
    if scope not in ("training", "inference"):
        raise ValueError(f"scope {scope!r}: expected 'training' or 'inference'")
    return image_uris.retrieve("pytorch", region=region, version=framework_version, py_version=py_version,
                               instance_type=instance_type, image_scope=scope)
