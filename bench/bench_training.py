"""Training pipeline wall time at the default simulation size (`mhp simulate` defaults:
2,000 customers x 120 days): backfill + apply, the point-in-time dataset build (sampling,
labels, Feast retrieval, oracle on the holdout, quality gate) and training (gate, fit,
evaluation, report; baselines off). ``quick`` uses 300 customers x 80 days.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path


def run(quick: bool) -> list[dict]:
    from core.workspace import Workspace
    from simulator.config import DEFAULT_CUSTOMERS, DEFAULT_DAYS, SimConfig
    from simulator.run import simulate
    from training import dataset as D
    from training.sagemaker_entry import run_training

    customers, days = (300, 80) if quick else (DEFAULT_CUSTOMERS, DEFAULT_DAYS)
    size = f"{customers:,} customers x {days} days"
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        ws = Path(tmp) / "ws"
        simulate(SimConfig(customers=customers, days=days), str(ws))
        t = time.perf_counter()
        D.ensure_feature_store(Workspace.local(ws), progress=False, log=lambda s: None)
        backfill = time.perf_counter() - t
        t = time.perf_counter()
        res = D.build_for_workspace(ws, progress=False, log=lambda s: None)
        build = time.perf_counter() - t
        t = time.perf_counter()
        run_training(res.out_dir, ws / "model", ws / "report", {"baselines": False}, log=lambda s: None)
        train = time.perf_counter() - t
        n = res.metadata["rows"]["total"]
        ratios = json.loads((ws / "report" / "evaluation.json").read_text())["model_over_oracle"]
    rows += [
        {"benchmark": "training", "metric": f"backfill + apply ({size})", "value": round(backfill, 1), "unit": "s"},
        {"benchmark": "training", "metric": f"dataset build, {n:,} rows ({size})", "value": round(build, 1),
         "unit": "s"},
        {"benchmark": "training", "metric": f"train + evaluate ({size})", "value": round(train, 1), "unit": "s"},
        {"benchmark": "training", "metric": "churn_30d test AUC / oracle", "value": round(ratios["churn_risk_30d"]["auc"], 3),
         "unit": "ratio", "goal": ">= 0.95", "ok": ratios["churn_risk_30d"]["auc"] >= 0.95},
        {"benchmark": "training", "metric": "ib_calls_14d test AUC / oracle",
         "value": round(ratios["ib_call_risk_14d"]["auc"], 3), "unit": "ratio", "goal": ">= 0.95",
         "ok": ratios["ib_call_risk_14d"]["auc"] >= 0.95},
        {"benchmark": "training", "metric": "health R^2 / oracle", "value": round(ratios["customer_health_score"]["r2"], 3),
         "unit": "ratio", "goal": ">= 0.9", "ok": ratios["customer_health_score"]["r2"] >= 0.9},
    ]
    return rows
