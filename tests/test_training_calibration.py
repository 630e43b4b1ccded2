"""Post-hoc calibration: the isotonic map, the keep-or-drop decision, and its use by the artifact."""
import json

import numpy as np
import pandas as pd
import pytest

from testing.training_data import make_synthetic_dataset, write_dataset
from training import calibration as C
from training.artifact import load_artifact
from training.evaluate import calibration_table, expected_calibration_error
from training.model import BINARY_HEADS, HEADS, load_model, predict
from training.preprocess import Preprocessor
from training.sagemaker_entry import run_training


def _overconfident(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    true = rng.uniform(0.02, 0.6, n)
    y = (rng.random(n) < true).astype(float)
    p = np.clip(true ** 0.5, 0, 1)  # systematically too high
    return y, p, np.arange(n) // 3


def test_isotonic_map_is_strictly_increasing_json_and_better_out_of_sample():
    y, p, _ = _overconfident()
    cal = C.fit_isotonic(y, p)
    assert json.loads(json.dumps(cal)) == cal and cal["method"] == "isotonic"
    x = np.asarray(cal["x"])
    assert x[0] == 0.0 and x[-1] == 1.0 and (np.diff(x) > 0).all() and (np.diff(cal["y"]) > 0).all()
    grid = np.linspace(0, 1, 1001)
    assert (np.diff(C.apply(cal, grid)) > 0).all()  # rankings (and AUCs) are kept exactly
    y2, p2, _ = _overconfident(seed=1)
    after = C.apply(json.loads(json.dumps(cal)), p2)
    assert np.mean((y2 - after) ** 2) < np.mean((y2 - p2) ** 2)
    assert expected_calibration_error(calibration_table(y2, after)) < expected_calibration_error(
        calibration_table(y2, p2))
    assert np.array_equal(C.apply(None, p2), p2)
    with pytest.raises(ValueError, match="unknown calibration method"):
        C.apply({"method": "platt", "x": [0, 1], "y": [0, 1]}, p2)


def test_choose_keeps_a_helpful_map_and_drops_a_useless_one():
    y, p, groups = _overconfident()
    rng = np.random.default_rng(2)
    calibrated = rng.uniform(0.02, 0.6, len(y))
    y_cal = (rng.random(len(y)) < calibrated).astype(float)
    fit = C.choose({"a": y, "b": y_cal}, {"a": p, "b": calibrated}, ("a", "b"), groups=groups)
    assert fit.decisions["a"]["method"] == "isotonic" and fit.maps["a"] is not None
    assert fit.decisions["b"]["method"] is None and fit.maps["b"] is None
    assert "cross-fitted" in fit.decisions["b"]["reason"]
    assert set(fit.to_config()) == {"a"}
    assert np.array_equal(fit.apply({"b": calibrated})["b"], calibrated)
    off = C.choose({"a": y}, {"a": p}, ("a",), enabled=False)
    assert off.maps["a"] is None and off.decisions["a"]["reason"] == "calibration switched off"


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibrated")
    df, schema = make_synthetic_dataset(900, seed=3)
    write_dataset(df, schema, root / "data")
    run_training(root / "data", root / "model", root / "report",
                 {"epochs": 3, "hidden": (16,), "ensemble": 1, "baselines": False, "quality_gate": False},
                 log=lambda _: None)
    return root, df[df["split"] == "test"].head(30), schema


def _rows(frame, schema):
    out = []
    for _, r in frame.iterrows():
        row = {}
        for name in schema.names:
            v = r[name]
            row[name] = None if pd.isna(v) else (v.item() if hasattr(v, "item") else v)
        out.append(row)
    return out


def test_the_artifact_serves_its_stored_calibration_and_nothing_else(artifact, tmp_path):
    root, test, schema = artifact
    config = json.loads((root / "model" / "model_config.json").read_text())
    assert set(config["training"]["calibration_decisions"]) == set(BINARY_HEADS)
    pre = Preprocessor.load(root / "model" / "preprocess.json")
    net = load_model(str(root / "model" / "model.pt"), config["architecture"])
    raw = predict(net, pre.transform(test))
    rows = _rows(test, schema)

    def served(calibration):
        import shutil

        d = tmp_path / f"m{len(list(tmp_path.iterdir()))}"
        shutil.copytree(root / "model", d)
        cfg = dict(config, calibration=calibration)
        (d / "model_config.json").write_text(json.dumps(cfg))
        return load_artifact(d).predict_records(rows)

    plain = served({})
    for h in HEADS:
        assert np.allclose([r[h] for r in plain], raw[h], atol=1e-6), h
    squeeze = {"method": "isotonic", "x": [0.0, 0.5, 1.0], "y": [0.1, 0.2, 0.9]}
    mapped = served({"churn_risk_30d": squeeze})
    expected = np.interp(raw["churn_risk_30d"], squeeze["x"], squeeze["y"])
    assert np.allclose([r["churn_risk_30d"] for r in mapped], expected, atol=1e-6)
    assert np.allclose([r["ib_call_risk_14d"] for r in mapped], raw["ib_call_risk_14d"], atol=1e-6)
    with pytest.raises(RuntimeError, match="increasing x"):
        served({"churn_risk_30d": {"method": "isotonic", "x": [0.5, 0.2], "y": [0.1, 0.2]}})


def test_the_report_has_a_model_card_with_calibration(artifact):
    root, _, _ = artifact
    report = (root / "report" / "report.md").read_text()
    assert "## Model card" in report and "**Data window**" in report and "Brier before" in report
    saved = json.loads((root / "report" / "evaluation.json").read_text())
    assert saved["model_card"]["data_window"]["test"]["rows"] > 0
    assert "ece" in saved["metrics"]["churn_risk_30d"]["model"]
    assert saved["intervals"]["churn_risk_30d"]["model"]["lo"] <= saved["intervals"]["churn_risk_30d"]["model"]["hi"]


def test_too_few_validation_positives_get_no_map():
    y, p, _ = _overconfident(n=200)
    y[:] = 0
    y[:10] = 1
    fit = C.choose({"a": y}, {"a": p}, ("a",))
    assert fit.maps["a"] is None and "smaller class" in fit.decisions["a"]["reason"]
