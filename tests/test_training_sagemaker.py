"""The SageMaker contract: the entry point run as a training instance runs it, the artifact
loaded as an endpoint loads it, inference.py without our package, and bad input."""
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from testing.training_data import make_synthetic_dataset, write_dataset
from training.artifact import load_artifact, pack_model_dir
from training.model import HEADS, load_model, predict
from training.preprocess import Preprocessor
from training.sagemaker_entry import HyperparameterError, main, resolve_environment, run_training

REPO = Path(__file__).resolve().parents[1]
HPS_FILE = {  # as SageMaker writes hyperparameters.json: string values, JSON-encoded by the SDK
    "epochs": "10", "hidden": "\"32,16\"", "learning-rate": "0.003", "batch-size": "128",
    "sagemaker_program": "\"training/sagemaker_entry.py\"", "sagemaker_region": "\"us-east-1\"",
}
CLI = ["--seed", "5", "--patience", "3"]
IN_PROCESS_HPS = {"epochs": 10, "hidden": (32, 16), "learning_rate": 0.003, "batch_size": 128, "seed": 5,
                  "patience": 3, "baselines": False}


@pytest.fixture(scope="module")
def dataset():
    return make_synthetic_dataset(1500, seed=11)


@pytest.fixture(scope="module")
def sm_run(tmp_path_factory, dataset):
    """Lay out /opt/ml under a temp dir and run the entry point in a subprocess, as SageMaker does."""
    opt_ml = tmp_path_factory.mktemp("opt_ml")
    df, schema = dataset
    write_dataset(df, schema, opt_ml / "input/data/train")
    (opt_ml / "input/config").mkdir(parents=True)
    (opt_ml / "input/config/hyperparameters.json").write_text(json.dumps(HPS_FILE))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    env.update({"SM_CHANNEL_TRAIN": str(opt_ml / "input/data/train"), "SM_MODEL_DIR": str(opt_ml / "model"),
                "SM_OUTPUT_DATA_DIR": str(opt_ml / "output/data"), "SM_INPUT_CONFIG_DIR": str(opt_ml / "input/config"),
                "SM_HPS": json.dumps({"epochs": 10, "hidden": "32,16", "learning-rate": 0.003, "batch-size": 128}),
                "MPLBACKEND": "Agg"})
    proc = subprocess.run([sys.executable, "-m", "training.sagemaker_entry", *CLI], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return opt_ml, proc.stdout


def test_entry_point_writes_the_model_and_report_layout(sm_run):
    opt_ml, stdout = sm_run
    model_dir = opt_ml / "model"
    for name in ("model.pt", "preprocess.json", "model_config.json", "code/inference.py", "code/preprocess.py",
                 "code/model.py", "code/requirements.txt"):
        assert (model_dir / name).is_file(), name
    for name in ("report.md", "roc.png", "calibration.png", "score_distributions.png", "metrics.json"):
        assert (opt_ml / "output/data" / name).is_file(), name
    config = json.loads((model_dir / "model_config.json").read_text())
    assert config["feature_service"] == "churn_model_v1"
    assert config["model_version"].startswith("churn_model_v1-")
    assert config["architecture"]["hidden"] == [32, 16] and config["architecture"]["heads"] == list(HEADS)
    assert config["labels"] == {"churn_risk_30d": "churn_30d", "ib_call_risk_14d": "ib_calls_14d",
                                "customer_health_score": "health_score"}
    hp = config["training"]["hyperparameters"]
    assert (hp["epochs"], hp["seed"], hp["patience"], hp["learning_rate"]) == (10, 5, 3, 0.003)
    metrics = json.loads((opt_ml / "output/data/metrics.json").read_text())
    assert {"model", "oracle", "linear", "single_task_net"} <= set(metrics["metrics"]["churn_risk_30d"])
    assert "model/oracle" in stdout and "single-task net" in stdout
    assert not (opt_ml / "output/failure").exists()


def test_artifact_predictions_match_the_in_process_model(sm_run, dataset, tmp_path):
    opt_ml, _ = sm_run
    df, schema = dataset
    tarball = pack_model_dir(opt_ml / "model", tmp_path / "model.tar.gz")
    assert pack_model_dir(opt_ml / "model", tmp_path / "again.tar.gz").read_bytes() == tarball.read_bytes()
    endpoint = load_artifact(tarball, tmp_path / "extracted")
    test = df[df["split"] == "test"].head(40)
    rows = _records(test, schema)
    served = endpoint.predict_records(rows)
    assert len(served) == len(rows)
    assert all(r["model_version"] == endpoint.model_version for r in served)

    # the same data and hyperparameters trained in this process give the same bytes and predictions
    outcome = run_training(opt_ml / "input/data/train", tmp_path / "model_inproc", tmp_path / "out", IN_PROCESS_HPS,
                           log=lambda _: None)
    assert (outcome.model_dir / "model.pt").read_bytes() == (opt_ml / "model/model.pt").read_bytes()
    pre = Preprocessor.load(outcome.model_dir / "preprocess.json")
    net = load_model(str(outcome.model_dir / "model.pt"), outcome.model_config["architecture"])
    direct = predict(net, pre.transform(test))
    for h in HEADS:
        assert np.allclose([r[h] for r in served], direct[h], atol=1e-6), h


def _records(frame, schema):
    rows = []
    for _, r in frame.iterrows():
        row = {}
        for name in schema.names:
            v = r[name]
            if v is None or v is getattr(__import__("pandas"), "NA") or (isinstance(v, float) and np.isnan(v)):
                v = None
            elif isinstance(v, np.bool_):
                v = bool(v)
            elif isinstance(v, (np.floating, np.integer)):
                v = v.item()
            row[name] = v
        rows.append(row)
    return rows


ISOLATED_SCRIPT = r"""
import importlib.util, json, sys
site_packages = sys.argv[1]
sys.path.append(site_packages)  # torch/numpy only: -S skipped .pth files, so no editable install of our package
for pkg in ("training", "mhp"):
    assert importlib.util.find_spec(pkg) is None, pkg + " must not be importable here"
spec = importlib.util.spec_from_file_location("inference", "code/inference.py")
inference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(inference)
model = inference.model_fn(".")
body = sys.stdin.read()
print(inference.output_fn(inference.predict_fn(inference.input_fn(body.encode(), "application/json"), model),
                          "application/json"))
try:
    inference.predict_fn(inference.input_fn(json.dumps({"instances": [{"x": 1}]}), "application/json"), model)
except ValueError as exc:
    print("ERROR", type(exc).__name__, exc)
"""


def test_inference_runs_from_the_extracted_dir_without_our_package(sm_run, dataset, tmp_path):
    opt_ml, _ = sm_run
    df, schema = dataset
    tarball = pack_model_dir(opt_ml / "model", tmp_path / "model.tar.gz")
    endpoint = load_artifact(tarball, tmp_path / "extracted")
    rows = _records(df[df["split"] == "test"].head(5), schema)
    body = json.dumps({"instances": rows})
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", ISOLATED_SCRIPT, sysconfig.get_paths()["purelib"]],
                          cwd=tmp_path / "extracted", input=body, capture_output=True, text=True, timeout=120,
                          env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert json.loads(lines[0]) == json.loads(endpoint.invoke(body))
    assert lines[1].startswith("ERROR InferenceInputError") and lines[1].endswith("unknown features (not in the model's feature schema): x")


def test_bad_requests_raise_value_errors_naming_the_problem(sm_run, dataset, tmp_path):
    opt_ml, _ = sm_run
    df, schema = dataset
    endpoint = load_artifact(opt_ml / "model")
    good = _records(df.head(2), schema)
    single = json.loads(endpoint.invoke(json.dumps(good[0])))["predictions"]
    assert len(single) == 1 and set(single[0]) == set(HEADS) | {"model_version"}
    assert len(json.loads(endpoint.invoke(json.dumps(good)))["predictions"]) == 2
    cases = [
        (dict(body="{}", content_type="text/csv"), 415, "content type"),
        (dict(body="{not json"), 400, "not valid JSON"),
        (dict(body=""), 400, "empty"),
        (dict(body=json.dumps({"instances": []})), 400, "no instances"),
        (dict(body=json.dumps({"instances": [1]})), 400, "instance 0"),
        (dict(body=json.dumps({"instances": good, "extra": 1})), 400, "extra"),
        (dict(body=json.dumps({k: v for k, v in good[0].items() if k != "noise_a"})), 400, "missing.*noise_a"),
        (dict(body=json.dumps({**good[0], "favourite_colour": "red"})), 400, "unknown.*favourite_colour"),
        (dict(body=json.dumps({**good[0], "login_count_7d": "many"})), 400, "login_count_7d"),
        (dict(body=json.dumps(good), accept="text/csv"), 406, "accept"),
    ]
    for kwargs, status, pattern in cases:
        with pytest.raises(ValueError, match=pattern) as err:
            endpoint.invoke(**kwargs)
        assert getattr(err.value, "status_code", None) == status, kwargs


def test_hyperparameters_from_file_env_and_cli_with_named_errors(tmp_path):
    (tmp_path / "hyperparameters.json").write_text(json.dumps(
        {"epochs": "7", "pos-weight": "\"auto\"", "task_weights": "churn_risk_30d=2", "sagemaker_program": "\"x.py\""}))
    env = {"SM_INPUT_CONFIG_DIR": str(tmp_path), "SM_HPS": json.dumps({"epochs": 9, "dropout": 0.2}),
           "SM_CHANNEL_TRAIN": "/data/train", "SM_MODEL_DIR": "/m", "SM_OUTPUT_DATA_DIR": "/o/data"}
    resolved = resolve_environment(["--epochs", "11", "--hidden=64,32"], env)
    hp = resolved.hyperparameters
    assert (hp["epochs"], hp["dropout"], hp["hidden"], hp["pos_weight"]) == (11, 0.2, (64, 32), "auto")
    assert hp["task_weights"] == {"churn_risk_30d": 2.0, "ib_call_risk_14d": 1.0, "customer_health_score": 1.0}
    assert resolved.train_dir == Path("/data/train") and resolved.model_dir == Path("/m")
    with pytest.raises(HyperparameterError, match="unknown hyperparameters: optimizer"):
        resolve_environment(["--optimizer", "sgd"], env)
    with pytest.raises(HyperparameterError, match="'epochs'.*command line.*'lots'"):
        resolve_environment(["--epochs", "lots"], env)
    with pytest.raises(HyperparameterError, match="dropout"):
        resolve_environment(["--dropout", "1.5"], env)


def test_a_failing_job_writes_the_failure_reason(tmp_path):
    env = {"SM_CHANNEL_TRAIN": str(tmp_path / "nothing"), "SM_MODEL_DIR": str(tmp_path / "model"),
           "SM_OUTPUT_DATA_DIR": str(tmp_path / "output/data"), "SM_INPUT_CONFIG_DIR": str(tmp_path / "cfg")}
    assert main([], env) != 0
    assert "does not exist" in (tmp_path / "output/failure").read_text()
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing/feature_schema.json").write_text(json.dumps(
        {"feature_service": "s", "features": [{"name": "a", "kind": "numeric"}]}))
    assert main([], env) != 0
    assert "no .parquet files" in (tmp_path / "output/failure").read_text()
