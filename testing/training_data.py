"""A small synthetic dataset in the training-set contract, with a known signal.

Used by the tests and for smoke-running `mhp train` without the Feast dataset builder.
Two latent variables per row drive both the features and the labels: ``health``
(engagement/satisfaction) and ``friction`` (call-centre load). The oracle columns are
the true label probabilities / expected score, i.e. the ceiling a model can reach.

Contract (what the dataset builder writes and training reads): ``dataset.parquet`` with
``customer_id``, ``event_timestamp`` (UTC), ``split`` (train/validation/test, by time),
labels ``churn_30d``, ``ib_calls_14d``, ``health_score``, optional ``oracle_*`` columns
and the feature columns; plus ``feature_schema.json`` beside it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from training.preprocess import FeatureSchema

FEATURE_SERVICE = "churn_model_v1"

SCHEMA = {
    "feature_service": FEATURE_SERVICE,
    "features": [
        {"name": "session_count_7d", "kind": "numeric"},
        {"name": "session_count_30d", "kind": "numeric"},
        {"name": "avg_session_rating_30d", "kind": "numeric"},
        {"name": "login_count_7d", "kind": "numeric"},
        {"name": "days_since_last_session", "kind": "numeric"},
        {"name": "ib_call_count_14d", "kind": "numeric"},
        {"name": "negative_sentiment_calls_30d", "kind": "numeric"},
        {"name": "payment_success_rate_30d", "kind": "numeric"},
        {"name": "noise_a", "kind": "numeric"},
        {"name": "noise_b", "kind": "numeric"},
        {"name": "constant_feature", "kind": "numeric"},
        {"name": "first_session_was_success", "kind": "boolean"},
        {"name": "subscription_tier", "kind": "ordinal", "categories": ["budget", "standard", "premium"]},
        {"name": "acquisition_channel", "kind": "categorical", "categories": ["organic", "paid", "referral"]},
        {"name": "geographic_region", "kind": "categorical", "categories": ["east", "west", "south"]},
    ],
}


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def make_synthetic_dataset(n_rows: int = 3000, seed: int = 0):
    """-> (DataFrame in the dataset contract, FeatureSchema)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = n_rows
    health = rng.normal(size=n)
    friction = rng.normal(size=n)
    tier = rng.choice(["budget", "standard", "premium"], size=n, p=[0.4, 0.4, 0.2])
    channel = rng.choice(["organic", "paid", "referral"], size=n)
    # "north" is not in the declared categories: it must land in the unknown bucket
    region = rng.choice(["east", "west", "south", "north"], size=n, p=[0.3, 0.3, 0.3, 0.1])

    sessions_30d = rng.poisson(np.exp(1.6 + 0.6 * health)).astype(float)
    sessions_7d = rng.binomial(sessions_30d.astype(int), 0.25).astype(float)
    rating = np.clip(3.6 + 0.6 * health + rng.normal(0, 0.3, n), 1, 5)
    rating[sessions_30d == 0] = np.nan          # an average over no sessions is null, not 0
    rating[rng.random(n) < 0.1] = np.nan
    logins = rng.poisson(np.exp(1.0 + 0.5 * health)).astype(float)
    days_since = np.round(rng.exponential(np.exp(1.0 - 0.8 * health)), 1)
    days_since[rng.random(n) < 0.05] = np.nan
    calls = rng.poisson(np.exp(-0.6 + 0.9 * friction)).astype(float)
    neg_calls = rng.binomial(calls.astype(int), _sigmoid(friction)).astype(float)
    pay_rate = np.clip(0.9 + 0.05 * health - 0.05 * np.maximum(friction, 0) + rng.normal(0, 0.03, n), 0, 1)
    pay_rate[rng.random(n) < 0.15] = np.nan
    first_success = (health + rng.normal(0, 1, n) > 0).astype(object)
    first_success[rng.random(n) < 0.1] = None

    tier_effect = np.select([tier == "budget", tier == "premium"], [0.5, -0.4], 0.0)
    channel_effect = np.where(channel == "paid", 0.3, 0.0)
    churn_p = _sigmoid(-2.2 - 1.6 * health + 0.4 * friction + tier_effect + channel_effect)
    calls_p = _sigmoid(-1.2 + 1.6 * friction - 0.3 * health)
    health_mean = 100 * _sigmoid(0.3 + 1.1 * health - 0.5 * friction)

    t0 = pd.Timestamp("2025-01-01", tz="UTC")
    ts = t0 + pd.to_timedelta(np.sort(rng.uniform(0, 180, n)), unit="D")
    split = np.where(np.arange(n) < 0.6 * n, "train", np.where(np.arange(n) < 0.8 * n, "validation", "test"))
    df = pd.DataFrame({
        "customer_id": [f"c{i % (n // 3 + 1):05d}" for i in range(n)],
        "event_timestamp": ts,
        "split": split,
        "churn_30d": (rng.random(n) < churn_p).astype(np.int8),
        "ib_calls_14d": (rng.random(n) < calls_p).astype(np.int8),
        "health_score": np.clip(health_mean + rng.normal(0, 4, n), 0, 100),
        "oracle_churn_30d": churn_p,
        "oracle_ib_calls_14d": calls_p,
        "oracle_health_score": health_mean,
        "session_count_7d": sessions_7d,
        "session_count_30d": sessions_30d,
        "avg_session_rating_30d": rating,
        "login_count_7d": logins,
        "days_since_last_session": days_since,
        "ib_call_count_14d": calls,
        "negative_sentiment_calls_30d": neg_calls,
        "payment_success_rate_30d": pay_rate,
        "noise_a": rng.normal(size=n),
        "noise_b": rng.uniform(size=n),
        "constant_feature": np.full(n, 3.0),
        "first_session_was_success": pd.array(first_success, dtype="boolean"),
        "subscription_tier": tier,
        "acquisition_channel": channel,
        "geographic_region": region,
    })
    return df, FeatureSchema.from_dict(SCHEMA)


def write_dataset(df, schema: FeatureSchema, out_dir) -> Path:
    """Write ``dataset.parquet`` + ``feature_schema.json`` into ``out_dir`` (a training channel)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out / "dataset.parquet", index=False)
    (out / "feature_schema.json").write_text(json.dumps(schema.to_dict(), indent=1) + "\n")
    return out
