"""Evaluation metrics, the oracle side by side, the report files, and the `mhp train` command."""
import argparse
import json

import numpy as np
import pandas as pd
import pytest

from training.evaluate import (
    binary_metrics,
    calibration_table,
    evaluate,
    format_table,
    regression_metrics,
    write_report,
)


def test_metrics_on_known_values():
    y = np.array([0, 0, 1, 1])
    m = binary_metrics(y, np.array([0.1, 0.4, 0.35, 0.8]))
    assert m["auc"] == pytest.approx(0.75) and m["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    assert np.isnan(binary_metrics(np.zeros(3), np.full(3, 0.2))["auc"])  # one class: undefined, not a crash
    table = calibration_table(np.array([0, 1, 1, 0, 1]), np.array([0.05, 0.95, 0.99, 0.5, 1.0]))
    assert len(table) == 10 and sum(r["count"] for r in table) == 5
    assert table[9]["count"] == 3 and table[9]["observed_rate"] == 1.0
    r = regression_metrics(np.array([10.0, 20.0, 30.0]), np.array([12.0, 18.0, 30.0]))
    assert r["mae"] == pytest.approx(4 / 3) and r["r2"] == pytest.approx(1 - 8 / 200)


def test_model_beside_oracle_report_and_table(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    p_true = rng.uniform(0.05, 0.9, n)
    q_true = rng.uniform(0.05, 0.9, n)
    h_true = rng.uniform(10, 90, n)
    test = pd.DataFrame({
        "churn_30d": (rng.random(n) < p_true).astype(int), "ib_calls_14d": (rng.random(n) < q_true).astype(int),
        "health_score": h_true + rng.normal(0, 5, n),
        "oracle_churn_30d": p_true, "oracle_ib_calls_14d": q_true, "oracle_health_score": h_true})
    noisy = {"churn_risk_30d": np.clip(p_true + rng.normal(0, 0.15, n), 0, 1),
             "ib_call_risk_14d": np.clip(q_true + rng.normal(0, 0.15, n), 0, 1),
             "customer_health_score": h_true + rng.normal(0, 8, n)}
    ev = evaluate(noisy, test, {"linear": noisy})
    assert ev.metrics["churn_risk_30d"]["oracle"]["auc"] > ev.metrics["churn_risk_30d"]["model"]["auc"]
    assert 0.5 < ev.ratio("churn_risk_30d", "auc") < 1.0
    assert 0 < ev.ratio("customer_health_score", "r2") < 1.0
    table = format_table(ev)
    assert "model/oracle" in table and "customer_health_score" in table and "linear" in table
    report = write_report(ev, tmp_path, context={"feature service": "churn_model_v1"})
    text = report.read_text()
    assert "churn_model_v1" in text and "Calibration: churn_risk_30d" in text
    for png in ("roc.png", "calibration.png", "score_distributions.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    assert saved["model_over_oracle"]["churn_risk_30d"]["auc"] == pytest.approx(ev.ratio("churn_risk_30d", "auc"))
    # without oracle columns the model is still evaluated
    plain = evaluate(noisy, test[["churn_30d", "ib_calls_14d", "health_score"]])
    assert "oracle" not in plain.metrics["churn_risk_30d"] and "model/oracle" not in format_table(plain)


def test_mhp_train_command(tmp_path, capsys):
    from core.errors import UsageError
    from mhp.commands import train as cli
    from testing.training_data import make_synthetic_dataset, write_dataset
    from training.artifact import load_artifact

    df, schema = make_synthetic_dataset(900, seed=2)
    write_dataset(df, schema, tmp_path / "ds")
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["train", "--dataset", str(tmp_path / "ds"), "--out", str(tmp_path / "out"),
                              "--epochs", "3", "--set", "hidden=16", "--no-baselines"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "model/oracle" in out and "model.tar.gz" in out
    assert load_artifact(tmp_path / "out/model.tar.gz").model_version.startswith("churn_model_v1-")
    bad = parser.parse_args(["train", "--dataset", str(tmp_path / "ds"), "--set", "optimizer=sgd"])
    with pytest.raises(UsageError, match="optimizer"):
        bad.func(bad)
    missing = parser.parse_args(["train", "--dataset", str(tmp_path / "nope"), "--out", str(tmp_path / "o2")])
    with pytest.raises(UsageError, match="does not exist"):
        missing.func(missing)
