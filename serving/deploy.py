"""Deploying the model to a SageMaker endpoint and rolling new versions, through the SageMaker
Python SDK (``training.sagemaker_sdk.session``); autoscaling through boto3 (the SDK has none).

``deploy(model_tar, endpoint, bucket, role_arn)``:

1. upload ``model.tar.gz`` to ``s3://<bucket>/models/<model_version>/model.tar.gz``
   (``Session.upload_data``; the version comes from the artifact's ``model_config.json``);
2. ``sagemaker.model.Model(...).create()``: CreateModel with the AWS PyTorch inference container
   (``sagemaker.image_uris.retrieve`` for the region and instance type), ``SAGEMAKER_PROGRAM=inference.py``
   and ``SAGEMAKER_SUBMIT_DIRECTORY=/opt/ml/model/code``: the artifact carries its own handler, so
   the SDK's ``PyTorchModel`` (which repacks the artifact around a local entry point) is not needed;
3. ``Session.endpoint_from_production_variants``: an endpoint config with one production variant
   named after the version (``sagemaker.session.production_variant``) and the endpoint
   (or a rollout, below, when the endpoint already exists);
4. Application Auto Scaling: ``RegisterScalableTarget`` on
   ``endpoint/<name>/variant/<variant>`` (``sagemaker:variant:DesiredInstanceCount``) and a
   target-tracking ``PutScalingPolicy`` on ``SageMakerVariantInvocationsPerInstance``.

``rollout`` (new version onto a live endpoint, no downtime): a config with both variants
(old weight 1, new weight 0; variants from ``production_variant``, CreateEndpointConfig on the
session's client) -> switch the
endpoint to it -> autoscaling for the new variant -> ``UpdateEndpointWeightsAndCapacities``
step by step (default 10% -> 50% -> 100%), waiting for ``InService`` after each -> deregister
the old variant's autoscaling -> a config with only the new variant -> switch -> delete the old
config and model.

Switching configs is ``Session.update_endpoint`` (UpdateEndpoint: blue/green inside SageMaker,
no downtime). moto does not implement ``UpdateEndpoint`` (HTTP 500); against a local emulator
only (``AWS_ENDPOINT_URL`` set) the switch falls back to delete + create of the endpoint, and
the returned plan says so. Against real AWS an ``UpdateEndpoint`` error is raised, never
papered over. Waiting for ``InService`` is our own loop (``wait_in_service``): the SDK's
``wait_for_endpoint`` has no deadline.
"""
from __future__ import annotations

import json
import re
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from core import aws
from training import sagemaker_sdk  # first: it configures the SDK before its first import

from sagemaker.model import Model  # noqa: E402,I001 - after training.sagemaker_sdk
from sagemaker.session import production_variant  # noqa: E402,I001

SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
DEFAULT_STEPS = (0.1, 0.5, 1.0)


#: what the PyTorch inference container reads: the artifact's own handler, code/inference.py
CONTAINER_ENV = {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                 "SAGEMAKER_CONTAINER_LOG_LEVEL": "20", "MHP_TORCH_THREADS": "1"}


def _name(*parts: str, limit: int = 63) -> str:
    s = re.sub(r"[^a-zA-Z0-9-]+", "-", "-".join(parts)).strip("-")
    return s[:limit].rstrip("-")


def model_version_of(model_tar: str | Path) -> str:
    with tarfile.open(model_tar, "r:gz") as tar:
        member = tar.extractfile("model_config.json")
        if member is None:
            raise ValueError(f"{model_tar}: no model_config.json; not a model artifact")
        return str(json.load(member)["model_version"])


@dataclass(frozen=True)
class DeploySpec:
    endpoint: str
    bucket: str
    role_arn: str
    instance_type: str = "ml.m5.large"
    initial_instances: int = 1
    min_instances: int = 1
    max_instances: int = 4
    target_invocations_per_instance: float = 200.0   # per minute, SageMakerVariantInvocationsPerInstance
    scale_in_cooldown: int = 300
    scale_out_cooldown: int = 60
    image_uri: str | None = None    # default: the SDK's PyTorch inference image for the region + instance type
    prefix: str = "models"


@dataclass
class DeployResult:
    endpoint: str
    model_name: str
    variant: str
    model_data_url: str
    endpoint_config: str
    policy_name: str
    steps: list[str] = field(default_factory=list)    # what happened, in order


class Deployer:
    def __init__(self, spec: DeploySpec, session=None, autoscaling=None,
                 sleep: Callable[[float], None] = time.sleep, wait_timeout: float = 1800.0,
                 on_step: Callable[[str, dict[str, Any]], None] | None = None):
        """``session``: a ``sagemaker.Session`` (default: ``training.sagemaker_sdk.session()``)."""
        from botocore.config import Config

        cfg = Config(retries={"max_attempts": 2, "mode": "standard"})
        self.spec = spec
        self.session = session or sagemaker_sdk.session(botocore_config=cfg)
        self.sm = self.session.sagemaker_client    # for the calls the SDK does not wrap
        self.aas = autoscaling or aws.boto3_client("application-autoscaling", config=cfg)
        self._sleep, self.wait_timeout = sleep, wait_timeout
        self.on_step = on_step or (lambda step, endpoint: None)   # progress: (step, DescribeEndpoint)

    @property
    def image_uri(self) -> str:
        return self.spec.image_uri or sagemaker_sdk.pytorch_image_uri(
            "inference", self.session.boto_region_name, self.spec.instance_type)

    # --- pieces --------------------------------------------------------------------------
    def upload(self, model_tar: Path, version: str) -> str:
        return self.session.upload_data(str(model_tar), bucket=self.spec.bucket,
                                        key_prefix=f"{self.spec.prefix.strip('/')}/{version}")

    def create_model(self, version: str, model_data_url: str) -> str:
        model = Model(image_uri=self.image_uri, model_data=model_data_url, role=self.spec.role_arn,
                      env=dict(CONTAINER_ENV), name=_name(self.spec.endpoint, version),
                      sagemaker_session=self.session)
        model.create(instance_type=self.spec.instance_type, tags=[{"Key": "mhp:model_version", "Value": version}])
        return model.name

    def _variant(self, model_name: str, version: str, weight: float, instances: int | None = None) -> dict[str, Any]:
        return production_variant(model_name=model_name, instance_type=self.spec.instance_type,
                                  initial_instance_count=instances or self.spec.initial_instances,
                                  variant_name=variant_name(version), initial_weight=float(weight))

    def create_config(self, name: str, variants: Sequence[dict[str, Any]], version: str) -> str:
        """CreateEndpointConfig ``name`` holding ``variants``, on the session's SageMaker client.

        The SDK's ``create_endpoint_config`` makes one variant named ``AllTraffic``, and its
        ``create_endpoint_config_from_existing`` copies the template's ``DataCaptureConfig``
        (moto describes an unset one as ``{}``, which CreateEndpointConfig rejects).
        """
        self.sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=list(variants),
                                       Tags=[{"Key": "mhp:model_version", "Value": version}])
        return name

    def autoscale(self, variant: str) -> str:
        resource = f"endpoint/{self.spec.endpoint}/variant/{variant}"
        self.aas.register_scalable_target(ServiceNamespace="sagemaker", ResourceId=resource,
                                          ScalableDimension=SCALABLE_DIMENSION,
                                          MinCapacity=self.spec.min_instances, MaxCapacity=self.spec.max_instances)
        policy = _name(self.spec.endpoint, variant, "invocations", limit=200)
        self.aas.put_scaling_policy(
            PolicyName=policy, ServiceNamespace="sagemaker", ResourceId=resource,
            ScalableDimension=SCALABLE_DIMENSION, PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": float(self.spec.target_invocations_per_instance),
                "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
                "ScaleInCooldown": self.spec.scale_in_cooldown, "ScaleOutCooldown": self.spec.scale_out_cooldown,
            })
        return policy

    def remove_autoscaling(self, variant: str) -> None:
        from botocore.exceptions import ClientError

        resource = f"endpoint/{self.spec.endpoint}/variant/{variant}"
        try:
            self.aas.deregister_scalable_target(ServiceNamespace="sagemaker", ResourceId=resource,
                                                ScalableDimension=SCALABLE_DIMENSION)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ObjectNotFoundException":
                raise

    def wait_in_service(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.wait_timeout
        delay = 0.5
        while True:
            desc = self.session.describe_endpoint(self.spec.endpoint)
            status = desc["EndpointStatus"]
            if status == "InService":
                return desc
            if status == "Failed":
                raise RuntimeError(f"endpoint {self.spec.endpoint} failed: {desc.get('FailureReason', '?')}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"endpoint {self.spec.endpoint} still {status} after {self.wait_timeout:.0f}s")
            self._sleep(delay)
            delay = min(delay * 2, 30.0)

    def switch_config(self, config_name: str, steps: list[str]) -> None:
        from botocore.exceptions import ClientError

        try:
            self.session.update_endpoint(self.spec.endpoint, config_name, wait=False)
            steps.append(f"UpdateEndpoint -> {config_name}")
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if aws.endpoint_url() is None or code not in ("500", "NotImplemented", "InternalFailure"):
                raise
            # local emulator (moto) without UpdateEndpoint: recreate; AWS never takes this branch
            self.session.delete_endpoint(self.spec.endpoint)
            self.session.create_endpoint(self.spec.endpoint, config_name, wait=False)
            steps.append(f"recreate endpoint -> {config_name} (emulator lacks UpdateEndpoint)")
        self.on_step(steps[-1], self.wait_in_service())

    def endpoint_exists(self) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.session.describe_endpoint(self.spec.endpoint)
            return True
        except ClientError:
            return False

    # --- the two operations ----------------------------------------------------------------
    def deploy(self, model_tar: str | Path, steps_weights: Sequence[float] = DEFAULT_STEPS) -> DeployResult:
        """A new endpoint, or a rollout onto the existing one."""
        model_tar = Path(model_tar)
        version = model_version_of(model_tar)
        aws.ensure_bucket(self.spec.bucket)
        url = self.upload(model_tar, version)
        model = self.create_model(version, url)
        variant = variant_name(version)
        if self.endpoint_exists():
            return self._rollout(model, version, url, steps_weights)
        # the endpoint's first config is named after the endpoint (the SDK's convention); a
        # rollout replaces it by one named after the new version and deletes it
        config = self.spec.endpoint
        self.session.endpoint_from_production_variants(
            name=self.spec.endpoint, production_variants=[self._variant(model, version, 1.0)],
            tags=[{"Key": "mhp:model_version", "Value": version}], wait=False)
        self.wait_in_service()
        policy = self.autoscale(variant)
        return DeployResult(self.spec.endpoint, model, variant, url, config, policy,
                            [f"uploaded {url}", f"CreateModel {model}", f"CreateEndpointConfig {config}",
                             f"CreateEndpoint {self.spec.endpoint}", f"autoscaling {policy}"])

    def _rollout(self, model: str, version: str, url: str, weights: Sequence[float]) -> DeployResult:
        desc = self.session.describe_endpoint(self.spec.endpoint)
        old_config = desc["EndpointConfigName"]
        old_variants = self.session.describe_endpoint_config(old_config)["ProductionVariants"]
        new_variant = variant_name(version)
        if any(v["VariantName"] == new_variant for v in old_variants):
            raise ValueError(f"endpoint {self.spec.endpoint} already serves model version {version}")
        if len(old_variants) != 1:
            raise RuntimeError(f"endpoint {self.spec.endpoint} has {len(old_variants)} variants (a rollout in "
                               "progress?); finish or revert it first")
        old = old_variants[0]
        live = {v["VariantName"]: v for v in desc.get("ProductionVariants", [])}
        old_count = int(live.get(old["VariantName"], {}).get("CurrentInstanceCount") or old["InitialInstanceCount"])
        steps = [f"uploaded {url}", f"CreateModel {model}"]
        both = self.create_config(_name(self.spec.endpoint, version, "rollout"), [
            production_variant(model_name=old["ModelName"], instance_type=old["InstanceType"],
                               initial_instance_count=old_count, variant_name=old["VariantName"], initial_weight=1.0),
            self._variant(model, version, 0.0, old_count)], version)
        steps.append(f"CreateEndpointConfig {both} ({old['VariantName']}=1, {new_variant}=0)")
        self.switch_config(both, steps)
        policy = self.autoscale(new_variant)
        steps.append(f"autoscaling {policy}")
        for w in weights:
            w = min(max(float(w), 0.0), 1.0)
            self.sm.update_endpoint_weights_and_capacities(EndpointName=self.spec.endpoint, DesiredWeightsAndCapacities=[
                {"VariantName": old["VariantName"], "DesiredWeight": 1.0 - w},
                {"VariantName": new_variant, "DesiredWeight": w}])
            desc = self.wait_in_service()
            steps.append(f"weights {old['VariantName']}={1.0 - w:.2f} {new_variant}={w:.2f}")
            self.on_step(steps[-1], desc)
        self.remove_autoscaling(old["VariantName"])
        steps.append(f"deregistered autoscaling of {old['VariantName']}")
        final = self.create_config(_name(self.spec.endpoint, version), [self._variant(model, version, 1.0, old_count)],
                                   version)
        steps.append(f"CreateEndpointConfig {final} ({new_variant} only)")
        self.switch_config(final, steps)
        for cfg in (old_config, both):
            self.session.delete_endpoint_config(cfg)
        self.session.delete_model(old["ModelName"])
        steps.append(f"deleted {old_config}, {both}, model {old['ModelName']}")
        return DeployResult(self.spec.endpoint, model, new_variant, url, final, policy, steps)


def variant_name(version: str) -> str:
    return _name("v", version.rsplit("-", 1)[-1])
