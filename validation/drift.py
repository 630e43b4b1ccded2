"""Serving drift of served features vs the training set, by each column's role.

Serving log format (written by the scoring path, serving/served_log.py): one row per scored
request with ``customer_id``, ``request_time`` and the served feature vector under the
training set's column names. ``drift_report`` first gives the served columns the reference's
types (``validation.drift_types``: JSON has none), then judges each feature by its role,
passed in by the caller from the feature catalog (``features.catalog.drift_roles``):

* ``entity`` (default): one value per customer; population stability index (PSI) of the
  rows. Numeric: bins are the reference's deciles (open-ended first/last bin) plus a null
  bucket, so a feature going missing is drift too. Categorical (strings, booleans): one bucket
  per reference category, one for categories never seen in training, one for null.
  PSI = sum over buckets (s - r) * ln(s / r), proportions floored at ``EPSILON``.
  < 0.1 stable, 0.1-0.25 moderate, >= 0.25 drift (the credit-scoring convention), and never
  above stable while the PSI lies within sampling noise: under no drift, PSI times
  1 / (1/n_ref + 1/n_serving) is about chi-square with (buckets - 1) degrees of freedom, with n
  the number of distinct entities (a customer served ten times is one sample, not ten); its
  99.9% quantile is the ``noise`` floor a flag must clear.
* ``daily``: a batch value shared by every customer on a day (marketplace, subject): judged
  over days as its own series (``validation.drift_daily``).
* ``tenure``: grows with the customer's age by construction: PSI against the reference
  re-weighted to the served tenure (``validation.drift_tenure``) when the tenure column is
  given, else only marked as expected to move.

Every feature gets a verdict: ``drifted``, ``expected to move`` (a tenure feature that moved
only as far as tenure explains, or with no tenure column to check) or ``stable``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from validation import drift_daily
from validation.drift_tenure import quantile_buckets, tenure_weights
from validation.drift_types import align_types

STABLE, DRIFT = 0.1, 0.25
EPSILON = 1e-4
NOISE_Z = 3.09  # the standard normal's 99.9% quantile
ROLES = ("entity", "daily", "tenure")
VERDICTS = ("drifted", "expected to move", "stable")
NON_FEATURE_COLUMNS = frozenset({
    "customer_id", "tutor_id", "request_time", "event_timestamp", "split", "model_version",
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
    noise: float = 0.0        # PSI that sampling alone reaches with 0.1% probability

    @property
    def status(self) -> str:
        return status_of(self.psi, self.noise)


def status_of(psi: float, noise: float = 0.0) -> str:
    if psi < max(STABLE, noise):
        return "stable"
    return "moderate" if psi < max(DRIFT, noise) else "drift"


def noise_floor(buckets_used: int, n_reference: float, n_serving: float) -> float:
    """The 99.9% quantile of PSI between two samples of one distribution (Wilson-Hilferty
    approximation of chi-square with ``buckets_used - 1`` degrees of freedom)."""
    k = buckets_used - 1
    if k < 1 or n_reference <= 0 or n_serving <= 0:
        return 0.0
    chi2 = k * (1 - 2 / (9 * k) + NOISE_Z * np.sqrt(2 / (9 * k))) ** 3
    return float(chi2 * (1 / n_reference + 1 / n_serving))


def psi(reference: np.ndarray, serving: np.ndarray) -> float:
    r = np.maximum(np.asarray(reference, float), EPSILON)
    s = np.maximum(np.asarray(serving, float), EPSILON)
    return float(np.sum((s - r) * np.log(s / r)))


def _is_categorical(s: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)


def _shares(buckets: np.ndarray, n_buckets: int, weights: np.ndarray | None) -> np.ndarray:
    counts = np.bincount(buckets, weights=weights, minlength=n_buckets).astype(float)
    total = counts.sum()
    return counts / total if total > 0 else counts


def feature_drift(name: str, reference: pd.Series, serving: pd.Series, bins: int = 10,
                  reference_weights: np.ndarray | None = None,
                  sizes: tuple[float, float] | None = None) -> FeatureDrift:
    """PSI of one feature; ``reference_weights`` re-weights the reference rows (tenure matching);
    ``sizes``: the effective sample sizes (distinct entities) for the noise floor (default: rows)."""
    if _is_categorical(reference):
        def labels(x: pd.Series) -> pd.Series:
            return x.astype(object).map(lambda v: None if v is None or v is pd.NA or v != v else str(v))

        ref, srv = labels(reference), labels(serving)
        cats = sorted(set(ref.dropna()))
        index = {c: i for i, c in enumerate(cats)}

        def bucket(x: pd.Series) -> np.ndarray:
            return np.array([len(cats) + 1 if v is None else index.get(v, len(cats)) for v in x], dtype=np.int64)

        buckets = cats + ["(unseen)", "(null)"]
        kind = "categorical"
        ref_buckets, srv_buckets = bucket(ref), bucket(srv)
    else:
        edges, ref_buckets, srv_buckets, _, _ = quantile_buckets(reference, serving, bins)
        names = [f"<= {edges[0]:.4g}"] if len(edges) else ["all"]
        names += [f"({a:.4g}, {b:.4g}]" for a, b in zip(edges[:-1], edges[1:])]
        if len(edges):
            names.append(f"> {edges[-1]:.4g}")
        buckets = names + ["(null)"]
        kind = "numeric"
    r = _shares(ref_buckets, len(buckets), reference_weights)
    s = _shares(srv_buckets, len(buckets), None)
    n_ref, n_srv = sizes or (len(reference), len(serving))
    noise = noise_floor(int(((r > 0) | (s > 0)).sum()), n_ref, n_srv)
    return FeatureDrift(name, kind, psi(r, s), buckets, r, s, noise)


def feature_columns(reference: pd.DataFrame, serving: pd.DataFrame) -> list[str]:
    """Features shared by both tables: not keys, labels or timestamps (``__ts`` move with time)."""
    return [c for c in reference.columns
            if c in serving.columns and c not in NON_FEATURE_COLUMNS and not c.endswith("__ts")
            and not pd.api.types.is_datetime64_any_dtype(reference[c])]


def _verdict(role: str, status: str, raw_status: str) -> str:
    if role == "tenure" and status != "drift" and raw_status != "stable":
        return "expected to move"
    return "drifted" if status == "drift" else "stable"


def drift_report(reference: pd.DataFrame, serving: pd.DataFrame, features: Sequence[str] | None = None,
                 bins: int = 10, roles: Mapping[str, str] | None = None, tenure_column: str | None = None,
                 reference_time: str = "event_timestamp", serving_time: str = "request_time",
                 entity_key: str = "customer_id") -> tuple[pd.DataFrame, dict[str, FeatureDrift]]:
    """Table (feature, role, kind, method, score, psi, status, verdict, null rates), drifted first,
    then expected to move, then stable, each worst first; plus the per-feature bucket detail.

    ``roles``: feature -> ``entity`` | ``daily`` | ``tenure`` (missing: ``entity``). ``daily`` needs
    the time columns; ``tenure`` is matched on ``tenure_column`` when both tables have it.
    ``psi`` is always the plain row-weighted PSI; ``score`` is what the role judges; ``noise`` the PSI
    sampling alone reaches (distinct ``entity_key`` values as sample sizes, when both tables have it)."""
    roles = dict(roles or {})
    bad = {f: r for f, r in roles.items() if r not in ROLES}
    if bad:
        raise ValueError(f"unknown drift role(s) {bad}; expected one of {list(ROLES)}")
    if features is None:
        features = feature_columns(reference, serving)
    missing = [f for f in features if f not in reference.columns or f not in serving.columns]
    if missing:
        raise ValueError(f"features missing from the reference or serving table: {missing}")
    serving = align_types(serving, reference)
    has_time = reference_time in reference.columns and serving_time in serving.columns
    sizes = None
    if entity_key in reference.columns and entity_key in serving.columns:
        sizes = (reference[entity_key].nunique(), serving[entity_key].nunique())
    weights = None
    if tenure_column and tenure_column in reference.columns and tenure_column in serving.columns:
        weights = tenure_weights(reference[tenure_column], serving[tenure_column], bins)
    detail, rows = {}, []
    for f in features:
        role = roles.get(f, "entity")
        d = feature_drift(f, reference[f], serving[f], bins, sizes=sizes)
        detail[f] = d
        method, score, status, noise = "psi", d.psi, d.status, d.noise
        if role == "daily" and has_time and not _is_categorical(reference[f]):
            ref_days = drift_daily.day_values(reference[f], reference[reference_time])
            srv_days = drift_daily.day_values(serving[f], serving[serving_time])
            score, _ = drift_daily.outside_share(ref_days, srv_days)
            method, status, noise = "share of served days outside the reference days' range", \
                drift_daily.status_of_share(score), np.nan
        elif role == "tenure" and weights is not None:
            matched = feature_drift(f, reference[f], serving[f], bins, reference_weights=weights, sizes=sizes)
            method, score, status, noise = "psi at matched tenure", matched.psi, matched.status, matched.noise
        elif role == "tenure":
            method = "psi (no tenure column to match)"
            status = "moderate" if d.status == "drift" else d.status
        rows.append({"feature": f, "role": role, "kind": d.kind, "method": method, "score": score, "psi": d.psi,
                     "noise": noise,
                     "status": status, "verdict": _verdict(role, status, d.status),
                     "reference_null_rate": float(reference[f].isna().mean()),
                     "serving_null_rate": float(serving[f].isna().mean())})
    columns = ["feature", "role", "kind", "method", "score", "psi", "noise", "status", "verdict", "reference_null_rate",
               "serving_null_rate"]
    table = pd.DataFrame(rows, columns=columns)
    order = table["verdict"].map({v: i for i, v in enumerate(VERDICTS)})
    table = (table.assign(_o=order).sort_values(["_o", "score"], ascending=[True, False], kind="stable")
             .drop(columns="_o").reset_index(drop=True))
    table.attrs.update(n_reference=len(reference), n_serving=len(serving), tenure_matched=weights is not None)
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
        verdict = table.set_index("feature").loc[name, "verdict"] if "verdict" in table else d.status
        ax.set_title(f"{name}: PSI {d.psi:.3f} ({verdict})", fontsize=9,
                     color={"drifted": "#c62828", "expected to move": "#b26a00"}.get(verdict, "black"))
        ax.set_ylabel("share of rows", fontsize=8)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def load_serving_log(path: str | Path, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """A serving log: JSONL (``.jsonl``/``.json``/``.ndjson``, read without type inference) or Parquet
    (file or directory); with ``reference``, its shared columns get the reference's types."""
    path = Path(path)
    if path.suffix in (".jsonl", ".json", ".ndjson"):
        records = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except ValueError as exc:
                        raise ValueError(f"{path}: line {n} is not JSON: {exc}") from None
        df = pd.DataFrame.from_records(records)
        df = df.astype({c: object for c in df.columns})
    else:
        df = pd.read_parquet(path)
    return df if reference is None else align_types(df, reference)
