"""A tenure-matched reference for the features that grow with the customer's age by construction.

Lifetime totals and days-since-signup rise with tenure: a serving week whose customers are older
than the training set's average shows them moved without anything having drifted. Each reference
row is weighted so the reference's tenure distribution (deciles of the reference tenure, nulls a
bucket of their own) matches the served one; drift is then judged against that weighted reference.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def quantile_buckets(reference: pd.Series, serving: pd.Series, bins: int = 10):
    """Numeric values in the reference's quantile buckets: (edges, reference buckets, serving
    buckets, reference values, serving values); bucket ``len(edges) + 1`` holds the nulls."""
    ref = pd.to_numeric(reference, errors="coerce").astype(float).to_numpy()
    srv = pd.to_numeric(serving, errors="coerce").astype(float).to_numpy()
    finite = ref[~np.isnan(ref)]
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])) if finite.size else np.array([])

    def bucket(x: np.ndarray) -> np.ndarray:
        b = np.searchsorted(edges, np.nan_to_num(x), side="right")
        return np.where(np.isnan(x), len(edges) + 1, b)

    return edges, bucket(ref), bucket(srv), ref, srv


def tenure_weights(reference_tenure: pd.Series, serving_tenure: pd.Series, bins: int = 10) -> np.ndarray:
    """Per reference row: served share / reference share of its tenure bucket (mean weight 1)."""
    edges, rb, sb, ref, srv = quantile_buckets(reference_tenure, serving_tenure, bins)
    n = len(edges) + 2
    r_share = np.bincount(rb, minlength=n) / max(len(ref), 1)
    s_share = np.bincount(sb, minlength=n) / max(len(srv), 1)
    ratio = np.divide(s_share, r_share, out=np.zeros(n), where=r_share > 0)
    w = ratio[rb]
    return w * (len(w) / w.sum()) if w.sum() > 0 else np.ones(len(ref))
