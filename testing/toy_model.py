"""A small model on the real ``churn_model_v1`` input schema, for tests, benchmarks and smoke runs.

The training package's own synthetic set (``training/synthetic.py``) uses a 15-feature toy
schema; the serving path needs an artifact whose inputs are exactly the feature service's
columns (``features.catalog.model_input_schema()``). This writes a synthetic dataset in
that schema, driven by two latent variables (``health``: engagement/satisfaction,
``friction``: call-centre load, failed payments), and trains it with the training package's
real entry point (``training.sagemaker_entry.run_training``), so the artifact is a genuine
``model.tar.gz``. A customer with many negative inbound calls, failed payments and no
sessions lands at high churn / IB-call risk and a low health score.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def make_dataset(n_rows: int = 2400, seed: int = 0):
    """-> (DataFrame in the training-set contract with all ``churn_model_v1`` features, schema dict)."""
    import pandas as pd

    from features.catalog import model_input_schema

    schema = model_input_schema()
    # The toy's two latent variables have no activity history to take a per-active-day rate of: those
    # inputs are carried and validated but not fed to its net (kind ``context``), so the serving tests'
    # customers are judged on the inputs the toy world gives meaning to.
    for f in schema["features"]:
        if f["name"].endswith("_per_active_day"):
            f["kind"] = "context"
    rng = np.random.default_rng(seed)
    n = n_rows
    health = rng.normal(size=n)
    friction = rng.normal(size=n)
    cols: dict[str, object] = {}
    for f in schema["features"]:
        name, kind = f["name"], f["kind"]
        m = re.search(r"_(7|14|30)d$", name)
        w = int(m.group(1)) if m else 30
        if kind in ("categorical", "ordinal"):
            cols[name] = rng.choice(list(f["categories"]), size=n)
        elif kind == "boolean":
            v = (health + rng.normal(0, 1, n) > 0).astype(object)
            v[rng.random(n) < 0.1] = None
            cols[name] = pd.array(v, dtype="boolean")
        elif name.startswith(("session_count_", "session_frequency_")):
            v = rng.poisson(w / 3.5 * np.exp(0.8 * health)).astype(float)
            cols[name] = v / w * 7 if name.startswith("session_frequency_") else v
        elif name.startswith(("login_count_", "days_active_", "message_count_")):
            cols[name] = np.minimum(rng.poisson(w / 3 * np.exp(0.6 * health)), w * 3).astype(float)
        elif name.startswith("ib_call_count_"):
            cols[name] = rng.poisson(w / 14 * np.exp(-0.5 + 1.2 * friction)).astype(float)
        elif name.startswith(("negative_sentiment_calls_", "escalation_count_")):
            calls = rng.poisson(w / 14 * np.exp(-0.5 + 1.2 * friction))
            cols[name] = rng.binomial(calls, _sigmoid(friction)).astype(float)
        elif name.startswith("payment_success_rate_"):
            v = np.clip(0.9 + 0.05 * health - 0.25 * np.maximum(friction, 0) + rng.normal(0, 0.05, n), 0, 1)
            v[rng.random(n) < 0.15] = np.nan
            cols[name] = v
        elif name.startswith(("avg_session_rating_", "avg_lifetime_rating")):
            v = np.clip(3.8 + 0.6 * health + rng.normal(0, 0.3, n), 1, 5)
            v[rng.random(n) < 0.15] = np.nan
            cols[name] = v
        elif name in ("days_since_last_session", "days_since_last_login"):
            v = np.round(rng.exponential(np.exp(1.0 - 0.9 * health)), 2)
            v[rng.random(n) < 0.05] = np.nan
            cols[name] = v
        elif name == "days_since_last_ib_call":
            cols[name] = np.round(rng.exponential(np.exp(2.5 - 1.0 * friction)), 2)
        elif name.endswith("_per_tenure_day"):  # lifetime rates: friction drives the trouble kinds
            trouble = name.startswith(("ib_calls", "negative_calls", "escalations", "payment_failures",
                                       "cancellations", "no_shows"))
            driver = np.exp(-0.5 + 1.2 * friction) * 0.07 if trouble else np.exp(0.6 * health) * 0.3
            cols[name] = rng.gamma(4.0, 0.25, n) * driver
        elif name in ("session_velocity_change", "rating_trend", "engagement_trend", "spend_acceleration"):
            cols[name] = rng.normal(0, 1, n)
        else:  # the rest carries no signal: plausible non-negative noise, some nulls
            v = rng.gamma(2.0, 5.0, n)
            v[rng.random(n) < 0.05] = np.nan
            cols[name] = v
    churn_p = _sigmoid(-2.2 - 1.3 * health + 1.3 * friction)
    calls_p = _sigmoid(-1.2 + 2.0 * friction)
    health_mean = 100 * _sigmoid(0.3 + 1.2 * health - 0.8 * friction)
    t0 = pd.Timestamp("2025-01-01", tz="UTC")
    ts = t0 + pd.to_timedelta(np.sort(rng.uniform(0, 180, n)), unit="D")
    idx = np.arange(n)
    frame = pd.DataFrame({
        "customer_id": [f"s{i:05d}" for i in range(n)],
        "event_timestamp": ts,
        "split": np.where(idx < 0.7 * n, "train", np.where(idx < 0.85 * n, "validation", "test")),
        "churn_30d": (rng.random(n) < churn_p).astype(np.int8),
        "ib_calls_14d": (rng.random(n) < calls_p).astype(np.int8),
        "health_score": np.clip(health_mean + rng.normal(0, 4, n), 0, 100),
        "oracle_churn_30d": churn_p, "oracle_ib_calls_14d": calls_p, "oracle_health_score": health_mean,
        **cols,
    })
    return frame, schema


def train_toy_model(out_dir, n_rows: int = 2400, epochs: int = 12, seed: int = 0, model_version: str | None = None,
                    hidden: tuple[int, ...] = (32, 16)) -> Path:
    """Train on :func:`make_dataset` and return the path of ``<out_dir>/model.tar.gz``.

    The training package's own pieces (Preprocessor fitted on the train split,
    ``train_multitask``, ``save_model_dir``, ``pack_model_dir``) without the evaluation
    report, which costs more than the training at this size.
    """
    from training.artifact import pack_model_dir, save_model_dir
    from training.model import HEAD_LABELS, TrainConfig, train_multitask
    from training.preprocess import FeatureSchema, Preprocessor

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frame, schema_dict = make_dataset(n_rows, seed)
    schema = FeatureSchema.from_dict(schema_dict)
    parts = {s: frame[frame["split"] == s].reset_index(drop=True) for s in ("train", "validation")}
    pre = Preprocessor.fit_train_split(frame, schema)
    x = {s: pre.transform(p) for s, p in parts.items()}
    y = {s: {h: p[c].to_numpy(dtype=float) for h, c in HEAD_LABELS.items()} for s, p in parts.items()}
    # max_pos_weight 10 (not the training default, 3): the serving tests' expected alerts
    # were set on the toy's scores with it
    config = TrainConfig(epochs=epochs, hidden=tuple(hidden), patience=3, seed=seed, max_pos_weight=10.0)
    result = train_multitask(x["train"], y["train"], x["validation"], y["validation"], config)
    save_model_dir(out / "model", net=result.model, preprocessor=pre, train_config=config.to_dict(),
                   train_summary=result.summary(), model_version=model_version,
                   metadata={"rows": {s: int(len(p)) for s, p in parts.items()}, "dataset": "testing.toy_model"})
    return pack_model_dir(out / "model", out / "model.tar.gz")
