"""Evaluation on the later-in-time test split, side by side with the simulator's oracle.

Per binary task: ROC-AUC, PR-AUC (average precision), Brier score and a 10-bin
calibration table (the plot labels each bin with its row count); for the health score: R^2 and MAE. Every metric is computed for
the model, for the oracle's own predictions on the same rows (the ceiling:
docs/simulator.md) with the model/oracle ratio, and for single-task baselines on the same
preprocessed inputs: a linear model per task (logistic regression / ridge) and a
single-task net built from our model code with one head. The gap between the
multi-task net and the single-task nets is what the shared trunk buys. The serving alert rules
(``REPORT_RULES``) are judged on the test rows too: fired per day, precision, recall.

Calibration: expected calibration error (ECE, the count-weighted mean |observed - predicted| over
the 10 bins) per binary task; when the model's probabilities went through the artifact's post-hoc
calibration (training/calibration.py), the raw net's probabilities are scored beside them
(source ``uncalibrated``: Brier and ECE before/after). Intervals: a customer-level bootstrap
(training/bootstrap.py) of the headline metric per task (AUC, AUC, R^2) for each source, of the
model/oracle ratio and of the multi-task minus single-task difference, paired (same replicates).
``report.md`` opens with a model card: data window, features by kind, those metrics with
intervals, calibration, known limits.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from training.model import BINARY_HEADS, HEAD_LABELS, HEADS, TrainConfig, predict, train_multitask

#: head -> oracle column in the dataset
ORACLE_COLUMNS = {"churn_risk_30d": "oracle_churn_30d", "ib_call_risk_14d": "oracle_ib_calls_14d",
                  "customer_health_score": "oracle_health_score"}
BINARY_METRICS = ("auc", "pr_auc", "brier", "ece")
REGRESSION_METRICS = ("r2", "mae")
#: metrics where lower is better (their model/oracle ratio reads inversely)
LOWER_IS_BETTER = {"brier", "mae", "ece"}
#: the headline metric per task: the one the bars and the protocol's intervals are about
HEADLINE_METRICS = {"churn_risk_30d": "auc", "ib_call_risk_14d": "auc", "customer_health_score": "r2"}
#: the bars on model/oracle of the headline metric (docs/model.md)
BARS = {"churn_risk_30d": 0.95, "ib_call_risk_14d": 0.95, "customer_health_score": 0.90}
#: the single-task baseline the multi-task model is compared with
SINGLE_TASK = "single_task_net"
#: the model's probabilities before the artifact's post-hoc calibration
UNCALIBRATED = "uncalibrated"

#: the serving alert rules, judged on the test split: (type, head, op, threshold); the same as
#: serving.config.DEFAULT_RULES (training sits below serving, so a test keeps the two equal).
#: A rule is judged against its head's label; the health rule against churn. ``top`` = the
#: given fraction of each day's rows with the highest prediction.
REPORT_RULES: tuple[tuple[str, str, str, float], ...] = (
    ("churn_risk_ib_calls", "ib_call_risk_14d", ">", 0.7),
    ("churn_risk_high", "churn_risk_30d", ">", 0.6),
    ("health_score_critical", "customer_health_score", "<", 40.0),
    ("churn_risk_top5pct", "churn_risk_30d", "top", 0.05),
)
RULE_LABEL_HEAD = {"ib_call_risk_14d": "ib_call_risk_14d", "churn_risk_30d": "churn_risk_30d",
                   "customer_health_score": "churn_risk_30d"}


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    ok = ~np.isnan(y) & ~np.isnan(p)
    y, p = y[ok], p[ok]
    both = len(np.unique(y)) == 2  # AUCs are undefined with one class
    return {"auc": float(roc_auc_score(y, p)) if both else float("nan"),
            "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
            "brier": float(brier_score_loss(y, p)) if len(y) else float("nan"),
            "prevalence": float(y.mean()) if len(y) else float("nan"),
            "mean_prediction": float(p.mean()) if len(p) else float("nan"), "n": int(len(y))}


def calibration_table(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> list[dict[str, float]]:
    """Equal-width probability bins: count, mean predicted, observed rate per bin."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1], right=False), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        m = idx == b
        rows.append({"bin": b, "lo": float(edges[b]), "hi": float(edges[b + 1]), "count": int(m.sum()),
                     "mean_predicted": float(p[m].mean()) if m.any() else float("nan"),
                     "observed_rate": float(y[m].mean()) if m.any() else float("nan")})
    return rows


def expected_calibration_error(table: list[Mapping[str, float]]) -> float:
    """ECE over a calibration table: sum over bins of count * |observed rate - mean predicted| / rows."""
    n = sum(int(r["count"]) for r in table)
    if not n:
        return float("nan")
    return float(sum(r["count"] * abs(r["observed_rate"] - r["mean_predicted"]) for r in table if r["count"]) / n)


def rule_table(predictions: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray], days: np.ndarray,
               rules=REPORT_RULES) -> list[dict[str, Any]]:
    """Per rule on labelled rows: rows fired per day (rows sampled per day, not customers), precision
    (label rate among fired rows), recall (fired share of the positive rows), and the label's base rate."""
    days = np.asarray(days)
    n_days = max(len(np.unique(days)), 1)
    out = []
    for kind, head, op, threshold in rules:
        p = np.asarray(predictions[head], dtype=float)
        y = np.asarray(labels[RULE_LABEL_HEAD[head]], dtype=float)
        if op == ">":
            fired = p > threshold
        elif op == "<":
            fired = p < threshold
        else:                      # top: the fraction of each day's rows with the highest prediction
            fired = np.zeros(len(p), dtype=bool)
            for d in np.unique(days):
                m = np.flatnonzero(days == d)
                k = max(1, math.ceil(threshold * len(m) - 1e-9))
                fired[m[np.argsort(-p[m], kind="stable")[:k]]] = True
        ok = ~np.isnan(y)
        f, pos = fired & ok, (y == 1) & ok
        out.append({"rule": kind, "label": HEAD_LABELS[RULE_LABEL_HEAD[head]], "fired": int(f.sum()),
                    "fired_per_day": float(f.sum() / n_days),
                    "precision": float(y[f].mean()) if f.any() else float("nan"),
                    "recall": float((f & pos).sum() / pos.sum()) if pos.any() else float("nan"),
                    "base_rate": float(y[ok].mean()) if ok.any() else float("nan")})
    return out


def regression_metrics(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import mean_absolute_error, r2_score

    y = np.asarray(y, dtype=float)
    s = np.asarray(s, dtype=float)
    ok = ~np.isnan(y) & ~np.isnan(s)
    return {"r2": float(r2_score(y[ok], s[ok])) if ok.sum() > 1 else float("nan"),
            "mae": float(mean_absolute_error(y[ok], s[ok])) if ok.any() else float("nan"), "n": int(ok.sum())}


def _task_metrics(head: str, y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    return binary_metrics(y, pred) if head in BINARY_HEADS else regression_metrics(y, pred)


@dataclass
class Evaluation:
    """metrics[head][source] -> metric dict; sources: model, oracle, and the baselines."""

    n_test: int
    metrics: dict[str, dict[str, dict[str, float]]]
    calibration: dict[str, dict[str, list[dict[str, float]]]]
    labels: dict[str, np.ndarray] = field(repr=False)
    predictions: dict[str, dict[str, np.ndarray]] = field(repr=False)
    #: source -> rule_table rows (when the test rows carry event_timestamp)
    rules: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: the customer of each test row (the bootstrap resamples customers), when the test rows carry it
    groups: np.ndarray | None = field(default=None, repr=False)

    def ratio(self, head: str, metric: str, source: str = "model") -> float:
        a = self.metrics[head].get(source, {}).get(metric, float("nan"))
        b = self.metrics[head].get("oracle", {}).get(metric, float("nan"))
        return float(a / b) if b and not math.isnan(b) and not math.isnan(a) else float("nan")

    def to_dict(self) -> dict[str, Any]:
        ratios = {h: {m: self.ratio(h, m) for m in (BINARY_METRICS if h in BINARY_HEADS else REGRESSION_METRICS)}
                  for h in self.metrics if "oracle" in self.metrics[h]}
        return {"n_test": self.n_test, "metrics": self.metrics, "model_over_oracle": ratios,
                "calibration": self.calibration, "rules": self.rules}


def evaluate(model_predictions: Mapping[str, np.ndarray], test_frame: Any,
             baselines: Mapping[str, Mapping[str, np.ndarray]] | None = None,
             uncalibrated: Mapping[str, np.ndarray] | None = None) -> Evaluation:
    """Score the model (and the oracle columns if present, and any baselines) on the test rows.

    ``uncalibrated``: the binary heads' probabilities before post-hoc calibration, scored as the
    source ``uncalibrated`` (only heads whose calibration changed them)."""
    labels = {h: test_frame[HEAD_LABELS[h]].to_numpy(dtype=float) for h in HEADS}
    sources: dict[str, dict[str, np.ndarray]] = {"model": {h: np.asarray(v, float) for h, v in model_predictions.items()}}
    oracle = {h: test_frame[c].to_numpy(dtype=float) for h, c in ORACLE_COLUMNS.items() if c in test_frame}
    if oracle:
        sources["oracle"] = oracle
    for name, preds in (baselines or {}).items():
        sources[name] = {h: np.asarray(v, float) for h, v in preds.items()}
    raw = {h: np.asarray(v, float) for h, v in (uncalibrated or {}).items()
           if h in BINARY_HEADS and not np.array_equal(np.asarray(v, float), sources["model"][h])}
    if raw:
        sources[UNCALIBRATED] = raw
    metrics: dict[str, dict[str, dict[str, float]]] = {h: {} for h in HEADS}
    calibration: dict[str, dict[str, list[dict[str, float]]]] = {h: {} for h in BINARY_HEADS}
    for source, preds in sources.items():
        for h, p in preds.items():
            metrics[h][source] = _task_metrics(h, labels[h], p)
            if h in BINARY_HEADS:
                ok = ~np.isnan(labels[h]) & ~np.isnan(p)
                table = calibration_table(labels[h][ok], p[ok])
                metrics[h][source]["ece"] = expected_calibration_error(table)
                if source in ("model", "oracle", UNCALIBRATED):
                    calibration[h][source] = table
    rules: dict[str, list[dict[str, Any]]] = {}
    if "event_timestamp" in test_frame:
        days = np.asarray(test_frame["event_timestamp"].to_numpy(), dtype="datetime64[D]")
        rules = {source: rule_table(sources[source], labels, days) for source in ("model", "oracle")
                 if source in sources and all(h in sources[source] for h in HEADS)}
    groups = test_frame["customer_id"].to_numpy() if "customer_id" in test_frame else None
    return Evaluation(len(test_frame), metrics, calibration, labels, sources, rules, groups)


# --- intervals ---------------------------------------------------------------------------------

def headline_replicates(groups: np.ndarray, labels: Mapping[str, np.ndarray],
                        predictions: Mapping[str, Mapping[str, np.ndarray]], n_replicates: int = 1000,
                        seed: int = 0) -> dict[str, dict[str, Any]]:
    """Per task, bootstrap replicates (customer-level, paired) of the headline metric for every source
    that predicts it, of model/oracle and of model minus the single-task net: head -> name -> Replicates,
    names being the sources, ``model/oracle`` and ``multi-single``."""
    from training import bootstrap as B  # lazy: only reports with intervals need it

    resampler = B.Resampler(groups, n_replicates, seed)
    out: dict[str, dict[str, Any]] = {}
    for h, metric in HEADLINE_METRICS.items():
        scores = {s: p[h] for s, p in predictions.items() if h in p and s != UNCALIBRATED}
        if "model" not in scores:
            continue
        reps = B.bootstrap_metric(resampler, metric, labels[h], scores)
        if "oracle" in reps:
            reps["model/oracle"] = B.ratio(reps["model"], reps["oracle"])
        if SINGLE_TASK in reps:
            reps["multi-single"] = B.difference(reps["model"], reps[SINGLE_TASK])
        out[h] = reps
    return out


def split_intervals(ev: Evaluation, n_replicates: int = 1000, seed: int = 0) -> dict[str, dict[str, dict[str, float]]]:
    """headline_replicates of the test split as {head: {name: {estimate, lo, hi}}}; {} without customer ids."""
    from training.bootstrap import summary  # lazy: only reports with intervals need it

    if ev.groups is None:
        return {}
    reps = headline_replicates(ev.groups, ev.labels, ev.predictions, n_replicates, seed)
    return {h: {name: summary(r) for name, r in by.items()} for h, by in reps.items()}


def predictions_frame(ev: Evaluation):
    """One row per test row: customer_id, the labels (``label__<head>``) and each source's predictions
    (``<source>__<head>``): what the protocol re-scores (training/protocol.py)."""
    import pandas as pd

    cols: dict[str, Any] = {}
    if ev.groups is not None:
        cols["customer_id"] = ev.groups
    for h in HEADS:
        cols[f"label__{h}"] = ev.labels[h]
    for source, preds in ev.predictions.items():
        for h, p in preds.items():
            cols[f"{source}__{h}"] = p
    return pd.DataFrame(cols)


def read_predictions_frame(frame) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    """predictions_frame's inverse: (customer ids, labels by head, predictions by source and head)."""
    if "customer_id" not in frame:
        raise ValueError("test predictions carry no customer_id column; the bootstrap resamples customers")
    labels = {h: frame[f"label__{h}"].to_numpy(dtype=float) for h in HEADS}
    preds: dict[str, dict[str, np.ndarray]] = {}
    for col in frame.columns:
        source, sep, head = col.partition("__")
        if sep and source != "label" and head in HEADS:
            preds.setdefault(source, {})[head] = frame[col].to_numpy(dtype=float)
    return frame["customer_id"].to_numpy(), labels, preds


# --- baselines ---------------------------------------------------------------------------------

def fit_baselines(x_train: np.ndarray, y_train: Mapping[str, np.ndarray], x_val: np.ndarray,
                  y_val: Mapping[str, np.ndarray], x_test: np.ndarray, train_config: TrainConfig,
                  single_task_nets: bool = True) -> dict[str, dict[str, np.ndarray]]:
    """Per-task linear models and (optionally) single-task nets, on the same preprocessed inputs."""
    from sklearn.linear_model import LogisticRegression, Ridge

    linear: dict[str, np.ndarray] = {}
    for h in HEADS:
        y = np.asarray(y_train[h], dtype=float)
        ok = ~np.isnan(y)
        if h in BINARY_HEADS:
            clf = LogisticRegression(max_iter=2000, C=1.0)
            clf.fit(x_train[ok], y[ok].astype(int))
            linear[h] = clf.predict_proba(x_test)[:, 1]
        else:
            reg = Ridge(alpha=1.0)
            reg.fit(x_train[ok], y[ok])
            linear[h] = np.clip(reg.predict(x_test), 0.0, 100.0)
    out = {"linear": linear}
    if single_task_nets:
        single: dict[str, np.ndarray] = {}
        for h in HEADS:
            res = train_multitask(x_train, {h: y_train[h]}, x_val, {h: y_val[h]}, train_config, heads=(h,))
            single[h] = predict(res.model, x_test)[h]
        out["single_task_net"] = single
    return out


# --- presentation ------------------------------------------------------------------------------

SOURCE_TITLES = {"model": "multi-task", "oracle": "oracle", "linear": "linear", "single_task_net": "single-task net",
                 UNCALIBRATED: "multi-task, uncalibrated"}


def _fmt(v: float) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def format_table(ev: Evaluation) -> str:
    """A fixed-width table: task x metric rows, sources as columns, model/oracle ratio."""
    sources = [s for s in ("model", "oracle", "linear", "single_task_net") if any(s in ev.metrics[h] for h in HEADS)]
    header = ["task", "metric"] + [SOURCE_TITLES[s] for s in sources] + (["model/oracle"] if "oracle" in sources else [])
    rows = [header]
    for h in HEADS:
        for m in (BINARY_METRICS if h in BINARY_HEADS else REGRESSION_METRICS):
            row = [h, m] + [_fmt(ev.metrics[h].get(s, {}).get(m, float("nan"))) for s in sources]
            if "oracle" in sources:
                row.append(_fmt(ev.ratio(h, m)))
            rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _markdown_table(rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---" for _ in rows[0]) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out)


def model_card_facts(frame: Any, schema: Any, preprocessor: Any,
                     calibration: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The model card's facts from the training job: rows and time range per split, features by kind,
    encoded net inputs, the calibration decisions (training/calibration.py)."""
    from collections import Counter

    window = {}
    for split in ("train", "validation", "test"):
        part = frame[frame["split"] == split]
        ts = part["event_timestamp"] if "event_timestamp" in part else None
        window[split] = {"rows": int(len(part)), "from": str(ts.min()) if ts is not None and len(part) else None,
                         "to": str(ts.max()) if ts is not None and len(part) else None}
    return {"data_window": window, "features_by_kind": dict(Counter(f.kind for f in schema.features)),
            "net_inputs": int(preprocessor.n_outputs), "calibration": dict(calibration or {})}


#: what the model card says the numbers do not cover; true of every report this code writes
KNOWN_LIMITS = (
    "The data are simulated (docs/simulator.md); the oracle is a ceiling only inside that simulator.",
    "One time split: the test rows are one later window of one world. The intervals cover which customers "
    "that window happened to hold, not how another world or period would come out; `mhp evaluate` repeats "
    "the whole pipeline on several held-out worlds for that (docs/model.md, \"Evaluation protocol\").",
    "A customer's rows are correlated (weekly snapshots, overlapping label windows), so the intervals "
    "resample customers, not rows.",
    "Calibration is fitted on the validation split, i.e. on data from before the model serves; a drift in base "
    "rates after training moves the probabilities off again.",
    "The health label is a noisy 30-day count, so even the oracle's R^2 stays well below 1: the ratio to the "
    "oracle, not the R^2 itself, says how much of the attainable the model gets.",
)


def _interval_cell(d: Mapping[str, float] | None) -> str:
    if not d:
        return "-"
    return f"{_fmt(d['estimate'])} [{_fmt(d['lo'])}, {_fmt(d['hi'])}]"


def model_card_lines(ev: Evaluation, intervals: Mapping[str, Mapping[str, Mapping[str, float]]],
                     card: Mapping[str, Any] | None) -> list[str]:
    """The model card section: data window, features, metrics with intervals, calibration, limits."""
    card = dict(card or {})
    lines = ["## Model card", ""]
    window = card.get("data_window") or {}
    if window:
        lines += ["**Data window** (event_timestamp of the rows, UTC):", ""]
        rows = [["split", "rows", "from", "to"]]
        rows += [[s, str(w.get("rows", "-")), str(w.get("from", "-")), str(w.get("to", "-"))] for s, w in window.items()]
        lines += [_markdown_table(rows), ""]
    kinds = card.get("features_by_kind") or {}
    if kinds:
        lines += [f"**Features**: {sum(kinds.values())} in the schema ("
                  + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
                  + f"); {card.get('net_inputs', '-')} encoded inputs reach the net (context features do not).", ""]
    lines += ["**Metrics with 95% intervals** (test split; customer-level bootstrap, "
              f"{card.get('replicates', 1000)} replicates, paired across sources):", ""]
    if intervals:
        rows = [["task", "metric", "multi-task", "oracle", "model/oracle", "bar", "single-task net",
                 "multi - single"]]
        for h, metric in HEADLINE_METRICS.items():
            d = intervals.get(h, {})
            ratio = d.get("model/oracle")
            bar = "-" if ratio is None else f">= {BARS[h]:.2f} {'met' if ratio['estimate'] >= BARS[h] else 'NOT met'}"
            rows.append([h, metric, _interval_cell(d.get("model")), _interval_cell(d.get("oracle")),
                         _interval_cell(ratio), bar, _interval_cell(d.get(SINGLE_TASK)),
                         _interval_cell(d.get("multi-single"))])
        lines += [_markdown_table(rows), ""]
    else:
        lines += ["(no intervals: the test rows carry no customer_id)", ""]
    lines += ["**Calibration** (test split; ECE = count-weighted mean |observed - predicted| over 10 bins):", ""]
    decisions = card.get("calibration") or {}
    rows = [["task", "post-hoc calibration", "Brier before", "Brier after", "ECE before", "ECE after", "oracle ECE"]]
    for h in BINARY_HEADS:
        after = ev.metrics[h]["model"]
        before = ev.metrics[h].get(UNCALIBRATED, after)
        dec = decisions.get(h) or {}
        rows.append([h, str(dec.get("method") or "none"), _fmt(before.get("brier")), _fmt(after.get("brier")),
                     _fmt(before.get("ece")), _fmt(after.get("ece")),
                     _fmt(ev.metrics[h].get("oracle", {}).get("ece", float("nan")))])
    lines += [_markdown_table(rows), ""]
    for h, dec in decisions.items():
        if dec.get("reason"):
            lines.append(f"- {h}: {dec['reason']}")
    if decisions:
        lines.append("")
    lines += ["**Known limits**:", ""] + [f"- {t}" for t in KNOWN_LIMITS] + [""]
    return lines


def write_report(ev: Evaluation, out_dir, title: str = "Model evaluation", context: Mapping[str, Any] | None = None,
                 card: Mapping[str, Any] | None = None, n_replicates: int = 1000, bootstrap_seed: int = 0) -> Path:
    """report.md (model card first) + roc.png, calibration.png, score_distributions.png + evaluation.json
    + test_predictions.parquet in out_dir. ``card``: data_window {split: {rows, from, to}},
    features_by_kind {kind: n}, net_inputs, calibration {head: {method, reason, ...}}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _plot_roc(ev, out / "roc.png")
    _plot_calibration(ev, out / "calibration.png")
    _plot_distributions(ev, out / "score_distributions.png")
    intervals = split_intervals(ev, n_replicates, bootstrap_seed)
    predictions_frame(ev).to_parquet(out / "test_predictions.parquet", index=False)
    saved = {**ev.to_dict(), "intervals": intervals,
             "bootstrap": {"unit": "customer", "replicates": n_replicates, "seed": bootstrap_seed,
                           "interval": "95% percentile"}}
    if card:
        saved["model_card"] = dict(card)
    (out / "evaluation.json").write_text(json.dumps(saved, indent=1, sort_keys=True, default=_json_value) + "\n")
    lines = [f"# {title}", ""]
    for k, v in (context or {}).items():
        lines.append(f"- **{k}**: {v}")
    lines += [f"- **test rows**: {ev.n_test}", ""]
    lines += model_card_lines(ev, intervals, {**dict(card or {}), "replicates": n_replicates})
    lines += ["## Metrics (test split)", "",
              "Model/oracle is the ratio of the model's metric to the oracle's on the same rows "
              "(for Brier, ECE and MAE lower is better, so a ratio above 1 means worse than the oracle). "
              "`linear` is logistic regression (binary) / ridge (health); `single-task net` is the same "
              "network with one head, trained alone: the difference to `multi-task` is what the shared trunk buys.",
              "", "```", format_table(ev), "```", ""]
    for h in BINARY_HEADS:
        for source, table in ev.calibration[h].items():
            lines += [f"### Calibration: {h} ({SOURCE_TITLES[source]})", ""]
            rows = [["bin", "count", "mean predicted", "observed rate"]]
            rows += [[f"{r['lo']:.1f}-{r['hi']:.1f}", str(r["count"]), _fmt(r["mean_predicted"]),
                      _fmt(r["observed_rate"])] for r in table]
            lines += [_markdown_table(rows), ""]
    if ev.rules:
        lines += ["## Alert rules on the test split", "",
                  "The serving rules applied to the test rows' predictions, against the rows' observed labels "
                  "(the health rule against churn). Per day = per day of sampled rows, not of customers; "
                  "`top` rules take the given share of each day's rows.", ""]
        rows = [["rule", "source", "label", "fired/day", "precision", "recall", "base rate"]]
        rows += [[r["rule"], SOURCE_TITLES[source], r["label"], f"{r['fired_per_day']:.1f}", _fmt(r["precision"]),
                  _fmt(r["recall"]), _fmt(r["base_rate"])] for source, table in ev.rules.items() for r in table]
        lines += [_markdown_table(rows), ""]
    lines += ["## Plots", "", "![ROC](roc.png)", "", "![Calibration](calibration.png)", "",
              "![Score distributions](score_distributions.png)", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def _json_value(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on training instances / CI
    import matplotlib.pyplot as plt

    return plt


def _plot_roc(ev: Evaluation, path: Path) -> None:
    from sklearn.metrics import roc_curve

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(BINARY_HEADS), figsize=(11, 4.5))
    for ax, h in zip(axes, BINARY_HEADS):
        y = ev.labels[h]
        ok = ~np.isnan(y)
        for source, preds in ev.predictions.items():
            if h in preds and source != UNCALIBRATED and len(np.unique(y[ok])) == 2:
                fpr, tpr, _ = roc_curve(y[ok], preds[h][ok])
                ax.plot(fpr, tpr, label=f"{SOURCE_TITLES.get(source, source)} "
                                        f"(AUC {ev.metrics[h][source]['auc']:.3f})")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set(title=h, xlabel="false positive rate", ylabel="true positive rate")
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def calibration_figure(ev: Evaluation):
    """The calibration plot: observed rate vs mean prediction per bin, each point labelled with its
    row count (a bin of 3 rows says little), one panel per binary head."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(BINARY_HEADS), figsize=(11, 4.5))
    for ax, h in zip(axes, BINARY_HEADS):
        for i, (source, table) in enumerate(ev.calibration[h].items()):
            pts = [(r["mean_predicted"], r["observed_rate"], r["count"]) for r in table if r["count"] > 0]
            if pts:
                xs, ys, ns = zip(*pts)
                line, = ax.plot(xs, ys, "o-", label=SOURCE_TITLES[source])
                for x, y, n in pts:
                    ax.annotate(f"n={n}", (x, y), textcoords="offset points", xytext=(4, 6 - 14 * i), fontsize=6,
                                color=line.get_color())
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set(title=f"calibration: {h}", xlabel="mean predicted probability", ylabel="observed rate",
               xlim=(0, 1), ylim=(0, 1))
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _plot_calibration(ev: Evaluation, path: Path) -> None:
    fig = calibration_figure(ev)
    fig.savefig(path, dpi=90)
    _pyplot().close(fig)


def _plot_distributions(ev: Evaluation, path: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    model = ev.predictions["model"]
    for ax, h in zip(axes[:2], BINARY_HEADS):
        y = ev.labels[h]
        for label, name in ((0, "negatives"), (1, "positives")):
            ax.hist(model[h][y == label], bins=30, range=(0, 1), alpha=0.6, density=True, label=name)
        ax.set(title=f"{h} (model)", xlabel="predicted probability")
        ax.legend(fontsize=8)
    h = "customer_health_score"
    ax = axes[2]
    ax.hist(ev.labels[h][~np.isnan(ev.labels[h])], bins=30, range=(0, 100), alpha=0.5, density=True, label="observed")
    ax.hist(model[h], bins=30, range=(0, 100), alpha=0.5, density=True, label="model")
    if "oracle" in ev.predictions and h in ev.predictions["oracle"]:
        ax.hist(ev.predictions["oracle"][h], bins=30, range=(0, 100), histtype="step", density=True, label="oracle")
    ax.set(title="customer_health_score", xlabel="score (0-100)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
