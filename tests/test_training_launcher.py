"""The SageMaker training-job launcher without AWS: settings validation, the staged source,
the SDK session's endpoints and telemetry opt-out, region-correct images, the CLI's errors.
The launch itself, on moto: tests/test_training_job_on_moto.py."""
import pytest

from training import sagemaker_sdk
from training.launcher import (
    ENTRY_POINT,
    SOURCE_PACKAGES,
    LaunchConfigError,
    TrainingJobSpec,
    launch,
    stage_source_dir,
)

ROLE = "arn:aws:iam::123456789012:role/mhp-sagemaker-training"


def _spec(**overrides):
    base = dict(
        job_name="mhp-churn-model-v1-0001", role_arn=ROLE, train_s3_uri="s3://mhp-data/datasets/churn_model_v1/",
        output_s3_uri="s3://mhp-models/training/", code_s3_uri="s3://mhp-models/code",
        region="eu-west-1", instance_type="ml.m5.2xlarge", max_runtime_seconds=7200,
        hyperparameters={"epochs": 30, "hidden": (128, 64), "learning_rate": 0.001, "baselines": False,
                         "task_weights": {"churn_risk_30d": 2.0}},
        tags={"project": "mhp"},
    )
    base.update(overrides)
    return TrainingJobSpec(**base)


@pytest.mark.parametrize("overrides, field", [
    (dict(job_name="bad name!"), "job_name"), (dict(role_arn="admin"), "role_arn"),
    (dict(train_s3_uri="/local/path"), "train_s3_uri"), (dict(code_s3_uri="s3://"), "code_s3_uri"),
    (dict(instance_type="m5.large"), "instance_type"), (dict(instance_count=2), "instance_count"),
    (dict(hyperparameters={"optimizer": "sgd"}), "optimizer"),
])
def test_invalid_settings_are_named_before_any_aws_call(overrides, field):
    with pytest.raises(LaunchConfigError, match=field):
        launch(_spec(**overrides), sagemaker_session=object())  # never reached: validation comes first


def test_source_dir_holds_the_packages_the_entry_point_imports(tmp_path):
    root = stage_source_dir(tmp_path / "src")
    assert (root / ENTRY_POINT).is_file() and (root / "requirements.txt").is_file()
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(SOURCE_PACKAGES)
    assert not list(root.rglob("__pycache__"))


def test_the_session_points_every_client_at_the_endpoint_override(monkeypatch):
    """Only MHP_AWS_ENDPOINT_URL set (boto3 itself ignores it): the SDK's own clients still go there."""
    from sagemaker.config.config_schema import TELEMETRY_OPT_OUT_PATH
    from sagemaker.utils import resolve_value_from_config

    for name in ("AWS_ENDPOINT_URL", "FEAST_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MHP_AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    s = sagemaker_sdk.session("ap-southeast-2")
    assert s.boto_region_name == "ap-southeast-2"
    for client in (s.sagemaker_client, s.s3_client, s.sagemaker_runtime_client, s.boto_session.client("sts")):
        assert client.meta.endpoint_url == "http://127.0.0.1:1", client.meta.service_model.service_name
    assert s.s3_resource.meta.client.meta.endpoint_url == "http://127.0.0.1:1"
    assert resolve_value_from_config(None, TELEMETRY_OPT_OUT_PATH, default_value=False, sagemaker_session=s) is True


@pytest.mark.parametrize("scope, region, instance_type, expected", [
    ("training", "eu-west-1", "ml.m5.xlarge", "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-training:2.6.0-cpu-py312"),
    ("inference", "me-south-1", "ml.m5.large", "217643126080.dkr.ecr.me-south-1.amazonaws.com/pytorch-inference:2.6.0-cpu-py312"),
    ("inference", "af-south-1", "ml.c5.large", "626614931356.dkr.ecr.af-south-1.amazonaws.com/pytorch-inference:2.6.0-cpu-py312"),
    ("inference", "cn-north-1", "ml.m5.large", "727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn/pytorch-inference:2.6.0-cpu-py312"),
    ("training", "us-east-1", "ml.g5.xlarge", "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.6.0-gpu-py312"),
])
def test_images_are_region_correct(scope, region, instance_type, expected):
    """The registry account differs by region (the old hard-coded 763104351884 was wrong in these)."""
    assert sagemaker_sdk.pytorch_image_uri(scope, region, instance_type) == expected


def test_the_framework_version_is_the_newest_both_containers_list():
    """Training and serving run one torch: the newest version the SDK lists for both images."""
    from sagemaker.image_uris import config_for_framework

    cfg = config_for_framework("pytorch")
    listed = {scope: set(cfg[scope]["versions"]) for scope in ("training", "inference")}
    common = listed["training"] & listed["inference"]
    newest = max(common, key=lambda v: tuple(int(p) for p in v.split(".")))
    assert sagemaker_sdk.FRAMEWORK_VERSION == newest
    for scope in ("training", "inference"):
        assert sagemaker_sdk.PY_VERSION in cfg[scope]["versions"][newest]["py_versions"]
    with pytest.raises(ValueError, match="scope"):
        sagemaker_sdk.pytorch_image_uri("serving", "us-east-1", "ml.m5.large")


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "s3://d/x", "--out", "s3://b/o"], "--role"),
    (["--dataset", "s3://d/x", "--role", ROLE], "--out s3://"),
    (["--dataset", "out/datasets/x", "--out", "s3://b/o", "--role", ROLE], "--dataset must be"),
    (["--dataset", "s3://d/x", "--out", "s3://b/o", "--role", "admin"], "role_arn"),
])
def test_mhp_train_on_sagemaker_names_what_is_missing(argv, message, capsys):
    from mhp.cli import main

    assert main(["train", "--on", "sagemaker", *argv]) != 0
    assert message in capsys.readouterr().err
