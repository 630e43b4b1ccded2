"""Deploy on moto through the SageMaker SDK: S3 upload, model, endpoint config, endpoint and a
target-tracking policy on invocations per instance; a rollout shifts weights step by step to the
new variant and removes the old one."""
import json
import shutil

import pytest

from core import aws
from serving.deploy import Deployer, DeploySpec, model_version_of, variant_name
from testing.toy_model import train_toy_model
from training.artifact import pack_model_dir

ROLE = "arn:aws:iam::123456789012:role/mhp-sagemaker"


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    v1 = train_toy_model(root / "a", n_rows=600, epochs=1, model_version="churn_model_v1-aaaaaaaaaaaa")
    shutil.copytree(root / "a" / "model", root / "b" / "model")
    cfg = root / "b" / "model" / "model_config.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "model_version": "churn_model_v1-bbbbbbbbbbbb"}))
    return v1, pack_model_dir(root / "b" / "model", root / "b" / "model.tar.gz")


def test_deploy_then_rollout(moto_endpoint, two_models):
    v1, v2 = two_models
    assert model_version_of(v2) == "churn_model_v1-bbbbbbbbbbbb"
    spec = DeploySpec(endpoint="mhp-churn", bucket="mhp-models", role_arn=ROLE, max_instances=3,
                      target_invocations_per_instance=150)
    seen = []
    dep = Deployer(spec, on_step=lambda step, d: seen.append(
        (step, {v["VariantName"]: v.get("CurrentWeight") for v in d["ProductionVariants"]})))
    res = dep.deploy(v1)
    sm, aas, s3 = aws.boto3_client("sagemaker"), aws.boto3_client("application-autoscaling"), aws.boto3_client("s3")
    assert s3.head_object(Bucket="mhp-models", Key="models/churn_model_v1-aaaaaaaaaaaa/model.tar.gz")["ContentLength"] > 0
    model = sm.describe_model(ModelName=res.model_name)
    assert model["PrimaryContainer"]["ModelDataUrl"] == res.model_data_url
    assert model["PrimaryContainer"]["Environment"] == {
        "SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20", "MHP_TORCH_THREADS": "1"}
    # the region's PyTorch inference container, from the SDK's image config (moto runs in us-east-1)
    assert model["PrimaryContainer"]["Image"] == (
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6.0-cpu-py312")
    assert model["ExecutionRoleArn"] == ROLE
    ep = sm.describe_endpoint(EndpointName="mhp-churn")
    assert ep["EndpointStatus"] == "InService" and ep["EndpointConfigName"] == res.endpoint_config
    cfg = sm.describe_endpoint_config(EndpointConfigName=res.endpoint_config)["ProductionVariants"]
    assert [(v["VariantName"], v["ModelName"]) for v in cfg] == [(variant_name("churn_model_v1-aaaaaaaaaaaa"), res.model_name)]
    targets = aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert [(t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in targets] == [
        (f"endpoint/mhp-churn/variant/{res.variant}", 1, 3)]
    pol = aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    assert len(pol) == 1 and pol[0]["PolicyType"] == "TargetTrackingScaling"
    tt = pol[0]["TargetTrackingScalingPolicyConfiguration"]
    assert tt["PredefinedMetricSpecification"]["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"
    assert tt["TargetValue"] == 150

    # rollout of v2: weights shift step by step, then the old variant is gone
    res2 = dep.deploy(v2)
    old, new = res.variant, res2.variant
    weights = [w for step, w in seen if step.startswith("weights")]
    assert weights == [{old: 0.9, new: 0.1}, {old: 0.5, new: 0.5}, {old: 0.0, new: 1.0}]
    # both variants served (at weight 1 / 0) before any weight moved
    assert any(set(w) == {old, new} and w[old] == 1.0 and not w[new] for step, w in seen if "rollout" in step)
    ep = sm.describe_endpoint(EndpointName="mhp-churn")
    assert [v["VariantName"] for v in ep["ProductionVariants"]] == [new]
    assert ep["EndpointConfigName"] == res2.endpoint_config
    configs = {c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]}
    assert configs == {res2.endpoint_config}
    assert {m["ModelName"] for m in sm.list_models()["Models"]} == {res2.model_name}
    targets = aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert [t["ResourceId"] for t in targets] == [f"endpoint/mhp-churn/variant/{new}"]
    with pytest.raises(ValueError, match="already serves"):
        dep.deploy(v2)


def test_deploy_runs_with_the_deploy_extra_alone():
    """`mhp deploy` / `mhp train --on sagemaker` need the `deploy` extra (the SageMaker SDK), not torch."""
    from deploy import image_deps as D

    closure = D.closure(["deploy"])
    assert closure.missing == [] and "sagemaker" in closure and "torch" not in closure
    r = D.import_check("import serving.deploy, training.launcher, mhp.cli", D.blocked_modules(closure))
    assert r.ok, r.output[-3000:]
    assert r.heavy_loaded == []
