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


def test_rule_table_by_hand_and_in_the_report(tmp_path):
    from serving.config import DEFAULT_RULES
    from training.evaluate import REPORT_RULES, calibration_figure, rule_table

    # the report judges the serving defaults (training cannot import serving: the test keeps them equal)
    assert REPORT_RULES == tuple((r.type, r.head, r.op, r.threshold) for r in DEFAULT_RULES)
    days = np.array(["2025-01-01"] * 4 + ["2025-01-02"] * 4, dtype="datetime64[D]")
    preds = {"churn_risk_30d": np.array([0.9, 0.7, 0.2, 0.1, 0.65, 0.3, 0.2, 0.1]),
             "ib_call_risk_14d": np.array([0.8, 0.1, 0.1, 0.1, 0.75, 0.2, 0.1, 0.9]),
             "customer_health_score": np.array([20, 80, 80, 80, 30, 90, 90, 90.0])}
    labels = {"churn_risk_30d": np.array([1, 0, 0, 1, 0, 0, 0, 0.0]),
              "ib_call_risk_14d": np.array([1, 0, 0, 0, 0, 0, 0, 1.0]),
              "customer_health_score": np.full(8, 50.0)}
    t = {r["rule"]: r for r in rule_table(preds, labels, days)}
    # churn > 0.6 fires rows 0, 1, 4; churners are rows 0 and 3: precision 1/3, recall 1/2
    assert t["churn_risk_high"]["fired"] == 3 and t["churn_risk_high"]["precision"] == pytest.approx(1 / 3)
    assert t["churn_risk_high"]["recall"] == pytest.approx(0.5) and t["churn_risk_high"]["fired_per_day"] == 1.5
    # ib > 0.7 fires rows 0, 4, 7; callers are rows 0 and 7
    assert t["churn_risk_ib_calls"]["precision"] == pytest.approx(2 / 3) and t["churn_risk_ib_calls"]["recall"] == 1.0
    # health < 40 (rows 0 and 4) is judged against churn
    assert t["health_score_critical"]["label"] == "churn_30d" and t["health_score_critical"]["precision"] == 0.5
    # top 5% of each day's 4 rows = the riskiest row per day: rows 0 and 4
    assert t["churn_risk_top5pct"]["fired"] == 2 and t["churn_risk_top5pct"]["recall"] == pytest.approx(0.5)

    rng = np.random.default_rng(1)
    n = 200
    p = rng.uniform(0.05, 0.9, n)
    test = pd.DataFrame({"churn_30d": (rng.random(n) < p).astype(int), "ib_calls_14d": (rng.random(n) < p).astype(int),
                         "health_score": rng.uniform(10, 90, n), "oracle_churn_30d": p, "oracle_ib_calls_14d": p,
                         "oracle_health_score": rng.uniform(10, 90, n),
                         "event_timestamp": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 10, n), "D")})
    ev = evaluate({"churn_risk_30d": p, "ib_call_risk_14d": p, "customer_health_score": rng.uniform(10, 90, n)}, test)
    assert set(ev.rules) == {"model", "oracle"} and len(ev.rules["model"]) == len(REPORT_RULES)
    text = write_report(ev, tmp_path).read_text()
    assert "## Alert rules on the test split" in text and "churn_risk_top5pct" in text
    assert json.loads((tmp_path / "evaluation.json").read_text())["rules"]["model"][0]["rule"] == "churn_risk_ib_calls"
    # the calibration plot labels every non-empty bin with its count
    fig = calibration_figure(ev)
    for ax, h in zip(fig.axes, ("churn_risk_30d", "ib_call_risk_14d")):
        labels_drawn = sorted(t.get_text() for t in ax.texts)
        want = sorted(f"n={r['count']}" for src in ev.calibration[h].values() for r in src if r["count"])
        assert labels_drawn == want and sum(int(x[2:]) for x in labels_drawn) == 2 * n
