"""The SageMaker training job (the SDK's PyTorch estimator) against a moto server on 127.0.0.1.
moto accepts CreateTrainingJob and answers DescribeTrainingJob but runs nothing: the tests check
the request it received and the source the SDK uploaded, that no connection leaves 127.0.0.1,
and run the entry point's hyperparameter decoding on what the job would be given."""
import json
import socket
import subprocess
import sys
import sysconfig
import tarfile

import pytest

from training.launcher import ENTRY_POINT, SOURCE_PACKAGES, launch
from training.sagemaker_entry import resolve_environment

from .test_training_launcher import ROLE, _spec


@pytest.fixture
def no_internet(monkeypatch):
    """Any connection or name lookup other than 127.0.0.1 / localhost fails and is recorded
    (the SDK's telemetry would GET https://sm-pysdk-t-<region>.s3.<region>.amazonaws.com)."""
    attempts = []
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost"):
            attempts.append(host)
            raise socket.gaierror(f"test: no internet ({host})")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self, address):
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "localhost"):
            attempts.append(address)
            raise OSError(f"test: no internet ({address})")
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


def test_launch_creates_the_training_job_moto_received(moto_endpoint, no_internet, tmp_path):
    """moto_endpoint (tests/conftest.py): a clean moto server on 127.0.0.1, AWS_ENDPOINT_URL etc. set."""
    from core.aws import boto3_client, ensure_bucket

    ensure_bucket("mhp-models")
    spec = _spec()
    job = launch(spec)
    assert no_internet == []          # telemetry off, every client on the endpoint override

    sm = boto3_client("sagemaker", region_name="eu-west-1")
    desc = sm.describe_training_job(TrainingJobName=spec.job_name)
    assert job.job_arn == desc["TrainingJobArn"] == (
        f"arn:aws:sagemaker:eu-west-1:123456789012:training-job/{spec.job_name}")
    # the region's PyTorch training image, from the SDK's image config
    image = "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-training:2.6.0-cpu-py312"
    assert desc["AlgorithmSpecification"]["TrainingImage"] == image == job.image_uri
    assert desc["AlgorithmSpecification"]["TrainingInputMode"] == "File"
    source = "s3://mhp-models/code/mhp-churn-model-v1-0001/source/sourcedir.tar.gz"
    assert job.source_s3_uri == source
    # hyperparameters: ours JSON-encoded by the SDK, plus the script-mode settings
    assert desc["HyperParameters"] == {
        "epochs": "30", "hidden": '"128,64"', "learning-rate": "0.001", "baselines": "false",
        "task-weights": json.dumps(json.dumps({"churn_risk_30d": 2.0})),
        "sagemaker_program": json.dumps(ENTRY_POINT), "sagemaker_submit_directory": json.dumps(source),
        "sagemaker_region": '"eu-west-1"', "sagemaker_job_name": json.dumps(spec.job_name),
        "sagemaker_container_log_level": "20",
    }
    assert [(c["ChannelName"], c["DataSource"]["S3DataSource"]) for c in desc["InputDataConfig"]] == [
        ("train", {"S3DataType": "S3Prefix", "S3Uri": spec.train_s3_uri, "S3DataDistributionType": "FullyReplicated"})]
    assert desc["OutputDataConfig"]["S3OutputPath"] == "s3://mhp-models/training"
    assert desc["RoleArn"] == ROLE
    assert desc["ResourceConfig"] == {"InstanceType": "ml.m5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30}
    assert desc["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200}
    tags = sm.list_tags(ResourceArn=job.job_arn)["Tags"]
    assert {"Key": "project", "Value": "mhp"} in tags

    # the entry point, given these hyperparameters as the container writes them, trains with ours
    (tmp_path / "config").mkdir()
    (tmp_path / "config/hyperparameters.json").write_text(json.dumps(desc["HyperParameters"]))
    hps = resolve_environment([], {"SM_INPUT_CONFIG_DIR": str(tmp_path / "config")}).hyperparameters
    assert (hps["epochs"], hps["hidden"], hps["learning_rate"], hps["baselines"]) == (30, (128, 64), 0.001, False)
    assert hps["task_weights"]["churn_risk_30d"] == 2.0

    # the source the SDK uploaded: the staged packages; the entry point imports from them alone
    # (in the training container our installed package does not exist)
    boto3_client("s3").download_file("mhp-models", "code/mhp-churn-model-v1-0001/source/sourcedir.tar.gz",
                                     str(tmp_path / "sourcedir.tar.gz"))
    with tarfile.open(tmp_path / "sourcedir.tar.gz") as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "src", filter="data")
    assert ENTRY_POINT in names and "requirements.txt" in names
    assert {n.split("/")[0] for n in names} == set(SOURCE_PACKAGES) | {"requirements.txt"}
    script = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
              "import training.sagemaker_entry, training.quality, validation.gate, validation.suites\n"
              "assert training.quality.__file__.startswith(sys.argv[1]), training.quality.__file__\n"
              "print('ok')")
    # a script file, not -c: pyspark (which great_expectations imports when it is installed) takes a main
    # module without a file for its own doctest run and exits
    (tmp_path / "check_imports.py").write_text(script)
    proc = subprocess.run([sys.executable, "-I", "-S", str(tmp_path / "check_imports.py"), str(tmp_path / "src"),
                           sysconfig.get_paths()["purelib"]], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_mhp_train_on_sagemaker_launches_the_job(moto_endpoint, no_internet, capsys):
    from core.aws import boto3_client, ensure_bucket
    from mhp.cli import main

    ensure_bucket("mhp-models")
    argv = ["train", "--on", "sagemaker", "--dataset", "s3://mhp-data/datasets/churn_model_v1",
            "--out", "s3://mhp-models/jobs", "--role", ROLE, "--job-name", "mhp-cli-0001",
            "--instance-type", "ml.c5.2xlarge", "--epochs", "12", "--set", "hidden=64,32", "--no-baselines"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "training job mhp-cli-0001" in out
    assert "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.6.0-cpu-py312" in out
    desc = boto3_client("sagemaker").describe_training_job(TrainingJobName="mhp-cli-0001")
    hps = desc["HyperParameters"]
    assert (hps["epochs"], hps["hidden"], hps["baselines"]) == ("12", '"64,32"', "false")
    assert desc["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://mhp-data/datasets/churn_model_v1/"
    assert desc["OutputDataConfig"]["S3OutputPath"] == "s3://mhp-models/jobs"
    assert desc["ResourceConfig"]["InstanceType"] == "ml.c5.2xlarge"
    assert hps["sagemaker_submit_directory"] == '"s3://mhp-models/jobs/code/mhp-cli-0001/source/sourcedir.tar.gz"'
    assert no_internet == []
