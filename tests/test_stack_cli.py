"""`mhp stack deploy|outputs|delete` against a moto server (the aws-local profile)."""
from __future__ import annotations

import pytest

from core import aws
from mhp.cli import main

pytestmark = [pytest.mark.aws, pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")]


def _env(name: str) -> dict:
    return aws.boto3_client("lambda").get_function_configuration(FunctionName=name)["Environment"]["Variables"]


#: moto 5.2 fails any update of a stack whose event source mapping is conditioned out
#: (AttributeError in its mapping's update), so this stack keeps the mapping; nothing is put on its stream
MAPPED = ["--param", "IngesterEventSource=kinesis"]


def test_deploy_update_and_delete_the_stack(moto_endpoint, capsys):
    assert main(["stack", "deploy", "--profile", "aws-local", "--stage", "cli", *MAPPED]) == 0
    out = capsys.readouterr().out
    assert "mhp-cli: created (CREATE_COMPLETE)" in out and "StreamName" in out and "mhp-cli-events" in out
    assert float(_env("mhp-cli-ingester")["MHP_CHURN_RISK_THRESHOLD"]) == 0.6
    # an update changes what it is given and keeps every other parameter's previous value
    assert main(["stack", "deploy", "--profile", "aws-local", "--stage", "cli", *MAPPED, "--param", "ChurnRiskThreshold=0.5",
                 "--model-data", "s3://mhp-cli-data-123456789012-us-east-1/models/v2/model.tar.gz"]) == 0
    assert "mhp-cli: updated (UPDATE_COMPLETE)" in capsys.readouterr().out
    env = _env("mhp-cli-ingester")
    assert float(env["MHP_CHURN_RISK_THRESHOLD"]) == 0.5 and float(env["MHP_IB_CALL_RISK_THRESHOLD"]) == 0.7
    params = {p["ParameterKey"]: p["ParameterValue"] for p in
              aws.boto3_client("cloudformation").describe_stacks(StackName="mhp-cli")["Stacks"][0]["Parameters"]}
    assert params["ModelDataUrl"].endswith("/models/v2/model.tar.gz") and params["StreamMode"] == "ON_DEMAND"
    # a bad parameter is named, nothing changes
    assert main(["stack", "deploy", "--profile", "aws-local", "--stage", "cli", "--param", "Stage"]) == 2
    assert "--param: expected KEY=VALUE" in capsys.readouterr().err
    assert main(["stack", "outputs", "--profile", "aws-local", "--stage", "cli"]) == 0
    assert "AlertTopicArn" in capsys.readouterr().out
    assert main(["stack", "delete", "--profile", "aws-local", "--stage", "cli"]) == 0
    assert "mhp-cli: deleted" in capsys.readouterr().out
    assert main(["stack", "outputs", "--profile", "aws-local", "--stage", "cli"]) == 2


def test_aws_local_needs_a_moto_endpoint(monkeypatch, capsys):
    for name in aws.ENDPOINT_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    assert main(["stack", "deploy", "--profile", "aws-local"]) == 2
    assert "AWS_ENDPOINT_URL" in capsys.readouterr().err


def test_a_first_deploy_takes_the_model_from_another_bucket(moto_endpoint, capsys):
    """A stage's own bucket does not exist before its first deploy: ModelBucket names the one
    holding the model, and the SageMaker role may read only its models/ prefix."""
    assert main(["stack", "deploy", "--profile", "aws-local", "--stage", "seed", "--param", "ModelBucket=mhp-model-seed",
                 "--model-data", "s3://mhp-model-seed/models/v1/model.tar.gz"]) == 0
    doc = aws.boto3_client("iam").get_role_policy(RoleName="mhp-seed-sagemaker", PolicyName="endpoint")["PolicyDocument"]
    assert "arn:aws:s3:::mhp-model-seed/models/*" in str(doc) and "mhp-seed-data-" not in str(doc)
