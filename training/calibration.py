"""Post-hoc calibration of the binary heads: isotonic regression on the validation split.

Per binary head an isotonic map from the net's probability to the observed rate is fitted on the
validation rows, and kept only if it lowers the Brier score out of sample: the validation
customers are split into ``FOLDS`` groups, each group is scored by a map fitted on the others,
and that cross-fitted Brier must beat the raw Brier by ``MIN_GAIN`` (an isotonic fit always
lowers the Brier of the rows it was fitted on, so that comparison would decide nothing). A kept
map is refitted on all validation rows. With fewer than ``MIN_CLASS_ROWS`` validation positives
(or negatives) no map is tried.

The map is stored as plain JSON breakpoints (``{"method": "isotonic", "x": [...], "y": [...]}``)
in ``model_config.json``'s ``calibration`` and applied with ``numpy.interp`` (inference needs no
scikit-learn). Isotonic steps are flat, which would tie scores and move the AUC; so the stored map
is ``(1 - TIE_BREAK) * isotonic + TIE_BREAK * p``, strictly increasing: rankings (and AUCs) stay
exactly those of the net, the probabilities move by at most ``TIE_BREAK``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

FOLDS = 5
#: smallest relative Brier improvement (cross-fitted, on validation) for which a map is kept. The net's
#: logit offsets already calibrate it (ECE about the oracle's); on development worlds cross-fitted gains
#: of ~0.4% did not carry over to the test split, so only a clear miscalibration gets a map
MIN_GAIN = 0.01
TIE_BREAK = 1e-4
#: fewer validation positives (or negatives) than this and a map is not even tried: it would fit noise
MIN_CLASS_ROWS = 30
METHOD = "isotonic"


def fit_isotonic(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """An isotonic map of probabilities ``p`` to labels ``y`` as strictly increasing breakpoints on [0, 1]."""
    from sklearn.isotonic import IsotonicRegression  # lazy: training only; inference applies the JSON

    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    if len(y) == 0 or len(np.unique(p)) < 2:
        raise ValueError("isotonic calibration needs at least two distinct predictions")
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
    x, fx = np.asarray(iso.X_thresholds_, float), np.asarray(iso.y_thresholds_, float)
    # extend flat to 0 and 1, then blend in the identity: strictly increasing everywhere on [0, 1]
    if x[0] > 0.0:
        x, fx = np.r_[0.0, x], np.r_[fx[0], fx]
    if x[-1] < 1.0:
        x, fx = np.r_[x, 1.0], np.r_[fx, fx[-1]]
    fx = (1.0 - TIE_BREAK) * fx + TIE_BREAK * x
    return {"method": METHOD, "x": [float(v) for v in x], "y": [float(v) for v in fx]}


def apply(calibration: Mapping[str, Any] | None, p: np.ndarray) -> np.ndarray:
    """Map probabilities through a stored calibration; ``None`` leaves them as they are."""
    p = np.asarray(p, dtype=float)
    if not calibration:
        return p
    if calibration.get("method") != METHOD:
        raise ValueError(f"unknown calibration method {calibration.get('method')!r}; expected {METHOD!r}")
    return np.interp(p, np.asarray(calibration["x"], float), np.asarray(calibration["y"], float))


def _brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((y - p) ** 2))


def _folds(groups: np.ndarray | None, n: int) -> np.ndarray:
    """Fold of each row: by a hash of the customer (a customer's rows stay together), else by row."""
    if groups is None:
        return np.arange(n) % FOLDS
    return np.array([int(hashlib.md5(str(g).encode()).hexdigest()[:8], 16) % FOLDS for g in groups])


@dataclass
class CalibrationFit:
    """The per-head maps to store (None = not calibrated) and why each was kept or not."""

    maps: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def apply(self, predictions: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {h: apply(self.maps.get(h), p) if self.maps.get(h) else np.asarray(p) for h, p in predictions.items()}

    def to_config(self) -> dict[str, Any]:
        """What model_config.json stores: the kept maps only."""
        return {h: m for h, m in self.maps.items() if m}


def choose(y_val: Mapping[str, np.ndarray], p_val: Mapping[str, np.ndarray], heads, groups=None,
           enabled: bool = True) -> CalibrationFit:
    """Per head in ``heads``: fit, cross-check on validation, keep or drop (see the module doc)."""
    fit = CalibrationFit()
    for h in heads:
        y = np.asarray(y_val[h], dtype=float)
        p = np.asarray(p_val[h], dtype=float)
        ok = ~np.isnan(y) & ~np.isnan(p)
        y, p = y[ok], p[ok]
        g = None if groups is None else np.asarray(groups)[ok]
        if not enabled:
            fit.maps[h], fit.decisions[h] = None, {"method": None, "reason": "calibration switched off"}
            continue
        smaller = int(min(y.sum(), len(y) - y.sum()))
        if smaller < MIN_CLASS_ROWS:
            fit.maps[h], fit.decisions[h] = None, {
                "method": None, "validation_rows": int(len(y)),
                "reason": f"not calibrated: {smaller} validation rows in the smaller class (< {MIN_CLASS_ROWS})"}
            continue
        folds = _folds(g, len(y))
        crossed = np.empty_like(p)
        try:
            for k in range(FOLDS):
                test = folds == k
                if test.any():
                    crossed[test] = apply(fit_isotonic(y[~test], p[~test]), p[test])
        except ValueError as exc:
            fit.maps[h], fit.decisions[h] = None, {"method": None, "reason": f"not calibrated: {exc}"}
            continue
        raw, cross = _brier(y, p), _brier(y, crossed)
        keep = cross < raw * (1.0 - MIN_GAIN)
        fit.maps[h] = fit_isotonic(y, p) if keep else None
        fit.decisions[h] = {
            "method": METHOD if keep else None, "validation_rows": int(len(y)),
            "validation_brier_raw": raw, "validation_brier_cross_fitted": cross,
            "reason": (f"isotonic kept: cross-fitted validation Brier {cross:.5f} < raw {raw:.5f}" if keep else
                       f"isotonic dropped: cross-fitted validation Brier {cross:.5f} does not beat raw {raw:.5f} "
                       f"by {MIN_GAIN:.1%}")}
    return fit
