"""Serving drift: population stability index (PSI) of served features vs the training set.

Serving log format (written by the scoring path): one row per scored request,
JSONL or Parquet, with ``customer_id``, ``request_time`` and the served feature
vector under the same column names as the training set. Load it with
``load_serving_log`` or pass any DataFrame of that shape.

Method, per feature present in both tables:
* numeric: bins are the reference's deciles (unique quantile edges, open-ended
  first/last bin), plus a separate null bucket, so a feature going missing is
  drift too;
* categorical (strings, booleans): one bucket per reference category, one for
  categories never seen in training, one for null.
PSI = sum over buckets (s - r) * ln(s / r) with proportions floored at
``EPSILON`` so an empty bucket costs a finite amount.
Thresholds (the usual credit-scoring convention): < 0.1 stable, 0.1-0.25
moderate, >= 0.25 drift.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

STABLE, DRIFT = 0.1, 0.25
EPSILON = 1e-4
NON_FEATURE_COLUMNS = frozenset({
    "customer_id", "tutor_id", "request_time", "event_timestamp", "split",
    "churn_30d", "ib_calls_14d", "health_score",
})


@dataclass
class FeatureDrift:
    feature: str
    kind: str                 # numeric | categorical
    psi: float
    buckets: list[str]
    reference: np.ndarray     # bucket proportions
    serving: np.ndarray

    @property
    def status(self) -> str:
        return status_of(self.psi)


def status_of(psi: float) -> str:
    return "stable" if psi < STABLE else "moderate" if psi < DRIFT else "drift"


def psi(reference: np.ndarray, serving: np.ndarray) -> float:
    r = np.maximum(np.asarray(reference, float), EPSILON)
    s = np.maximum(np.asarray(serving, float), EPSILON)
    return float(np.sum((s - r) * np.log(s / r)))


def _is_categorical(s: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)


def feature_drift(name: str, reference: pd.Series, serving: pd.Series, bins: int = 10) -> FeatureDrift:
    if _is_categorical(reference):
        ref = reference.astype(object).where(reference.notna(), None)
        srv = serving.astype(object).where(serving.notna(), None)
        cats = sorted({str(v) for v in ref.dropna().unique()})
        known = set(cats)

        def props(x: pd.Series) -> np.ndarray:
            x = x.map(lambda v: None if v is None else str(v))
            counts = x.value_counts()
            n = max(len(x), 1)
            unseen = int(sum(c for v, c in counts.items() if v not in known))
            return np.array([counts.get(c, 0) for c in cats] + [unseen, int(x.isna().sum())], float) / n

        buckets = cats + ["(unseen)", "(null)"]
        r, s = props(ref), props(srv)
        kind = "categorical"
    else:
        ref = pd.to_numeric(reference, errors="coerce").astype(float).to_numpy()
        srv = pd.to_numeric(serving, errors="coerce").astype(float).to_numpy()
        finite = ref[~np.isnan(ref)]
        edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])) if finite.size else np.array([])

        def props(x: np.ndarray) -> np.ndarray:
            nan = np.isnan(x)
            idx = np.searchsorted(edges, x[~nan], side="right")
            counts = np.bincount(idx, minlength=len(edges) + 1).astype(float)
            return np.append(counts, nan.sum()) / max(len(x), 1)

        labels = [f"<= {edges[0]:.4g}"] if len(edges) else ["all"]
        labels += [f"({a:.4g}, {b:.4g}]" for a, b in zip(edges[:-1], edges[1:])]
        if len(edges):
            labels.append(f"> {edges[-1]:.4g}")
        buckets = labels + ["(null)"]
        r, s = props(ref), props(srv)
        kind = "numeric"
    return FeatureDrift(name, kind, psi(r, s), buckets, r, s)


def feature_columns(reference: pd.DataFrame, serving: pd.DataFrame) -> list[str]:
    """Features shared by both tables: not keys, labels or timestamps (``__ts`` move with time)."""
    return [c for c in reference.columns
            if c in serving.columns and c not in NON_FEATURE_COLUMNS and not c.endswith("__ts")
            and not pd.api.types.is_datetime64_any_dtype(reference[c])]


def drift_report(reference: pd.DataFrame, serving: pd.DataFrame, features: Sequence[str] | None = None,
                 bins: int = 10) -> tuple[pd.DataFrame, dict[str, FeatureDrift]]:
    """Ranked table (feature, kind, psi, status, null rates, sizes), worst first, plus per-feature detail."""
    if features is None:
        features = feature_columns(reference, serving)
    missing = [f for f in features if f not in reference.columns or f not in serving.columns]
    if missing:
        raise ValueError(f"features missing from the reference or serving table: {missing}")
    detail = {f: feature_drift(f, reference[f], serving[f], bins) for f in features}
    table = pd.DataFrame([{
        "feature": d.feature, "kind": d.kind, "psi": d.psi, "status": d.status,
        "reference_null_rate": float(reference[f].isna().mean()), "serving_null_rate": float(serving[f].isna().mean()),
    } for f, d in detail.items()], columns=["feature", "kind", "psi", "status", "reference_null_rate",
                                             "serving_null_rate"])
    table = table.sort_values("psi", ascending=False, kind="stable").reset_index(drop=True)
    table.attrs.update(n_reference=len(reference), n_serving=len(serving))
    return table, detail


def plot_drift(detail: dict[str, FeatureDrift], table: pd.DataFrame, path: str | Path, top: int = 6) -> Path:
    """Reference vs serving bucket proportions of the ``top`` worst features, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(table["feature"][:top])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = min(3, max(len(names), 1))
    rows = max(1, -(-len(names) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        d = detail[name]
        x = np.arange(len(d.buckets))
        ax.bar(x - 0.2, d.reference, 0.4, label="training (reference)")
        ax.bar(x + 0.2, d.serving, 0.4, label="serving")
        ax.set_xticks(x, d.buckets, rotation=60, ha="right", fontsize=7)
        ax.set_title(f"{name}: PSI {d.psi:.3f} ({d.status})", fontsize=9,
                     color={"drift": "#c62828", "moderate": "#b26a00"}.get(d.status, "black"))
        ax.set_ylabel("share of rows", fontsize=8)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def load_serving_log(path: str | Path) -> pd.DataFrame:
    """A serving log: JSONL (``.jsonl``/``.json``) or Parquet (file or directory)."""
    path = Path(path)
    if path.suffix in (".jsonl", ".json", ".ndjson"):
        return pd.read_json(path, lines=True)
    return pd.read_parquet(path)
