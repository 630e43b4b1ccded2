"""The SageMaker training-job launcher, against a moto server on 127.0.0.1."""
import io
import subprocess
import sys
import sysconfig
import tarfile

import pytest

from training.launcher import (
    LaunchConfigError,
    TrainingJobSpec,
    build_source_tarball,
    build_training_job_request,
    describe_training_job,
    launch,
    pytorch_training_image_uri,
)

ROLE = "arn:aws:iam::123456789012:role/mhp-sagemaker-training"


def _spec(**overrides):
    base = dict(
        job_name="mhp-churn-model-v1-0001", role_arn=ROLE, train_s3_uri="s3://mhp-data/datasets/churn_model_v1/",
        output_s3_uri="s3://mhp-models/training/", source_s3_uri="s3://mhp-models/source/sourcedir.tar.gz",
        image_uri=pytorch_training_image_uri("eu-west-1"), region="eu-west-1", instance_type="ml.m5.2xlarge",
        max_runtime_seconds=7200, hyperparameters={"epochs": 30, "hidden": (128, 64), "learning_rate": 0.001,
                                                   "baselines": False},
        tags={"project": "mhp"},
    )
    base.update(overrides)
    return TrainingJobSpec(**base)


def test_request_carries_string_hyperparameters_and_script_mode_settings():
    req = build_training_job_request(_spec())
    hps = req["HyperParameters"]
    assert all(isinstance(v, str) for v in hps.values())
    assert hps["epochs"] == "30" and hps["hidden"] == "128,64" and hps["learning-rate"] == "0.001"
    assert hps["baselines"] == "false"
    assert hps["sagemaker_program"] == '"training/sagemaker_entry.py"'
    assert hps["sagemaker_submit_directory"] == '"s3://mhp-models/source/sourcedir.tar.gz"'
    assert req["AlgorithmSpecification"]["TrainingImage"] == (
        "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-training:2.3.0-cpu-py311")
    assert req["InputDataConfig"][0]["ChannelName"] == "train"  # -> SM_CHANNEL_TRAIN
    assert req["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200}


@pytest.mark.parametrize("overrides, field", [
    (dict(job_name="bad name!"), "job_name"), (dict(role_arn="admin"), "role_arn"),
    (dict(train_s3_uri="/local/path"), "train_s3_uri"), (dict(instance_type="m5.large"), "instance_type"),
    (dict(hyperparameters={"optimizer": "sgd"}), "optimizer"),
])
def test_invalid_settings_are_named(overrides, field):
    with pytest.raises(LaunchConfigError, match=field):
        build_training_job_request(_spec(**overrides))


def test_source_tarball_is_reproducible_and_holds_the_entry_point(tmp_path):
    a = build_source_tarball(tmp_path / "a.tar.gz")
    b = build_source_tarball(tmp_path / "b.tar.gz")
    assert a.read_bytes() == b.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(a.read_bytes())) as tar:
        names = tar.getnames()
        assert names == sorted(names)
        assert {m.mtime for m in tar.getmembers()} == {0}
    assert "training/sagemaker_entry.py" in names and "requirements.txt" in names
    assert not any("__pycache__" in n for n in names)


def test_the_entry_point_imports_from_the_source_tarball_alone(tmp_path):
    """In the training container only the tarball's packages exist: the entry point and its quality
    gate must import from them (no site-packages .pth, so our installed package is invisible)."""
    with tarfile.open(build_source_tarball(tmp_path / "src.tar.gz")) as tar:
        tar.extractall(tmp_path / "src", filter="data")
    script = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
              "import training.sagemaker_entry, training.quality, validation.gate, validation.suites\n"
              "assert training.quality.__file__.startswith(sys.argv[1]), training.quality.__file__\n"
              "print('ok')")
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", script, str(tmp_path / "src"),
                           sysconfig.get_paths()["purelib"]], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_launch_against_moto_and_describe_returns_what_we_sent(moto_endpoint):
    """moto_endpoint (tests/conftest.py): a clean moto server on 127.0.0.1, AWS_ENDPOINT_URL etc. set."""
    from core.aws import boto3_client, ensure_bucket

    ensure_bucket("mhp-models")
    spec = _spec()
    arn = launch(spec)
    assert arn.endswith(":training-job/" + spec.job_name)
    desc = describe_training_job(spec.job_name)
    req = build_training_job_request(spec)
    assert desc["TrainingJobName"] == spec.job_name and desc["RoleArn"] == ROLE
    assert desc["AlgorithmSpecification"]["TrainingImage"] == req["AlgorithmSpecification"]["TrainingImage"]
    assert desc["HyperParameters"] == req["HyperParameters"]
    assert desc["InputDataConfig"][0]["DataSource"] == req["InputDataConfig"][0]["DataSource"]
    assert desc["OutputDataConfig"]["S3OutputPath"] == req["OutputDataConfig"]["S3OutputPath"]
    assert desc["ResourceConfig"]["InstanceType"] == "ml.m5.2xlarge"
    assert desc["StoppingCondition"]["MaxRuntimeInSeconds"] == 7200
    # the source tarball the job points at was uploaded
    head = boto3_client("s3").head_object(Bucket="mhp-models", Key="source/sourcedir.tar.gz")
    assert head["ContentLength"] > 0
