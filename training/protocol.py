"""The evaluation protocol: the whole pipeline on held-out simulated worlds, with intervals.

Development seeds are for every choice (features, hyperparameters, sizes); evaluation seeds are
never used for a choice and are only run to report. Each evaluation world is simulated from its
seed, turned into a training set (backfill, point-in-time dataset, oracle on the holdout), trained
on with the entry point's own code (``run_training``: the same defaults as a SageMaker job) and
scored on its test split with a customer-level bootstrap (training/bootstrap.py):

* per world and task: the headline metric (AUC, AUC, R^2) of the model, the oracle and the
  single-task net; model/oracle; multi-task minus single-task; all paired on one set of replicates;
* the mean over worlds of each: replicate r of the mean is the mean of the worlds' replicate r;
* the bars on the mean model/oracle (training/evaluate.py ``BARS``), met or not.

``mhp evaluate`` (mhp/commands/evaluate.py) runs it; docs/model.md, "Evaluation protocol", says why
the worlds are this size.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from training import bootstrap as B

# training.evaluate (which imports torch) is imported inside the functions: `mhp --help` reads the
# seeds and sizes below without it

#: seeds every tuning choice was (and is to be) made on: 7 and 8, and the development range 20-29
DEV_SEEDS: tuple[int, ...] = (7, 8, *range(20, 30))
#: seeds only ever run to report, never to choose; fixed before any of them was run
EVAL_SEEDS: tuple[int, ...] = (4127, 6551, 9283)
#: the evaluation world: large enough that the churn AUC's 95% interval is narrower than +-0.02
#: (measured on a development seed: docs/model.md, "Evaluation protocol")
EVAL_CUSTOMERS = 10_000
EVAL_DAYS = 365
#: the half-width the churn AUC interval must stay under for a world to be large enough
MAX_CHURN_AUC_HALF_WIDTH = 0.02
BOOTSTRAP_SEED = 0
#: what a world keeps after scoring unless asked to keep everything (the rest is rebuilt from the seed)
WORLD_FILE = "world.json"   # the settings of a finished world (written last)
KEPT = ("report", "scores.json", "replicates.npz", "simulation.json", "summary.json", "timings.json", WORLD_FILE)
QUANTITIES = ("model", "oracle", "single_task_net", "model/oracle", "multi-single")


class ProtocolError(ValueError):
    """A request the protocol refuses (a development seed among evaluation seeds, a bad size, ...)."""


def check_seeds(seeds: Sequence[int], allow_dev_seeds: bool = False) -> tuple[int, ...]:
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ProtocolError("no seeds given")
    dup = sorted({s for s in seeds if seeds.count(s) > 1})
    if dup:
        raise ProtocolError(f"seed(s) given more than once: {dup}")
    dev = [s for s in seeds if s in DEV_SEEDS]
    if dev and not allow_dev_seeds:
        raise ProtocolError(f"seed(s) {dev} are development seeds (tuning was done on {list(DEV_SEEDS)}), so they "
                            "measure nothing held out; evaluate on the evaluation seeds (the default) or pass "
                            "--allow-dev-seeds to measure a development world on purpose")
    return seeds


@dataclass
class WorldScore:
    """One world's bootstrap: head -> quantity -> Replicates, plus facts for the tables."""

    seed: int
    replicates: dict[str, dict[str, B.Replicates]]
    facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from training.evaluate import HEADLINE_METRICS  # lazy: imports torch

        return {"seed": self.seed, **self.facts,
                "tasks": {h: {"metric": HEADLINE_METRICS[h], **{q: B.summary(r) for q, r in by.items()}}
                          for h, by in self.replicates.items()}}


# --- one world ---------------------------------------------------------------------------------

def build_world(seed: int, customers: int, days: int, world_dir: Path, progress: bool = False,
                log: Callable[[str], None] = print) -> Path:
    """Simulate the world and build its training set (from scratch); returns the dataset directory."""
    from simulator.config import SimConfig  # lazy: the command parses arguments without the pipeline
    from simulator.run import simulate  # lazy: as above
    from training.dataset import build_for_workspace  # lazy: as above

    if world_dir.exists():
        shutil.rmtree(world_dir)
    world_dir.mkdir(parents=True)
    days_iter = iter
    if progress:
        from tqdm import tqdm

        def days_iter(r):
            return tqdm(r, desc=f"seed {seed}: simulating", unit="day", leave=False)
    simulate(SimConfig(customers=customers, days=days, seed=seed), str(world_dir), days_iter=days_iter)
    # The oracle only on the test rows: nothing in the protocol reads it elsewhere, and it is most of
    # the dataset's cost at this size.
    result = build_for_workspace(world_dir, progress=progress, log=log, oracle_rows="test")
    return Path(result.out_dir)


def score_world(seed: int, report_dir: Path, n_replicates: int = B.DEFAULT_REPLICATES,
                bootstrap_seed: int = BOOTSTRAP_SEED) -> WorldScore:
    """Bootstrap a trained world's test predictions (report/test_predictions.parquet + evaluation.json)."""
    import pandas as pd

    from training.evaluate import (  # lazy: imports torch; `mhp --help` reads this module's constants
        SINGLE_TASK,
        UNCALIBRATED,
        headline_replicates,
        read_predictions_frame,
    )

    groups, labels, preds = read_predictions_frame(pd.read_parquet(report_dir / "test_predictions.parquet"))
    missing = [s for s in ("model", "oracle", SINGLE_TASK) if s not in preds]
    if missing:
        raise ProtocolError(f"{report_dir}: the test predictions lack {missing}; the protocol needs the oracle "
                            "columns (a simulated world) and the single-task baselines")
    # one bootstrap stream per (bootstrap seed, world seed): worlds are resampled independently
    stream = int(np.random.SeedSequence([bootstrap_seed, seed]).generate_state(1)[0])
    reps = headline_replicates(groups, labels, preds, n_replicates, stream)
    ev = json.loads((report_dir / "evaluation.json").read_text())
    calibration = {}
    for h, by in ev["metrics"].items():
        if "brier" in by.get("model", {}):
            before = by.get(UNCALIBRATED, by["model"])
            calibration[h] = {"brier_before": before["brier"], "brier_after": by["model"]["brier"],
                              "ece_before": before["ece"], "ece_after": by["model"]["ece"],
                              "oracle_brier": by.get("oracle", {}).get("brier"),
                              "method": ((ev.get("model_card") or {}).get("calibration") or {}).get(h, {}).get("method")}
    churn = reps["churn_risk_30d"]["model"].interval()
    facts = {"test_rows": int(len(groups)), "test_customers": int(len(np.unique(groups))),
             "churn_auc_half_width": (churn[1] - churn[0]) / 2, "calibration": calibration}
    return WorldScore(seed, reps, facts)


def run_world(seed: int, customers: int, days: int, world_dir: Path, hyperparameters: Mapping[str, Any],
              n_replicates: int = B.DEFAULT_REPLICATES, bootstrap_seed: int = BOOTSTRAP_SEED, keep: bool = False,
              progress: bool = False, log: Callable[[str], None] = print) -> WorldScore:
    """simulate -> dataset -> train -> score one world; writes scores.json + replicates.npz in world_dir."""
    from training.sagemaker_entry import run_training  # lazy: imports torch

    settings = world_settings(seed, customers, days, hyperparameters, n_replicates, bootstrap_seed)
    done = load_world(world_dir, settings)
    if done is not None:
        log(f"seed {seed}: already scored with these settings in {world_dir}: loaded, not rerun")
        return done
    timings: dict[str, float] = {}
    t = time.perf_counter()
    log(f"seed {seed}: simulating {customers:,} customers x {days} days and building the training set")
    dataset_dir = build_world(seed, customers, days, world_dir, progress=progress, log=lambda s: None)
    timings["simulate_and_dataset"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    log(f"seed {seed}: training (with the single-task baselines)")
    run_training(dataset_dir, world_dir / "model", world_dir / "report", dict(hyperparameters), log=lambda s: None)
    timings["train_and_report"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    score = score_world(seed, world_dir / "report", n_replicates, bootstrap_seed)
    timings["bootstrap"] = round(time.perf_counter() - t, 1)
    score.facts["seconds"] = timings
    (world_dir / "timings.json").write_text(json.dumps(timings) + "\n")
    (world_dir / "scores.json").write_text(json.dumps(score.to_dict(), indent=1, default=float) + "\n")
    np.savez_compressed(world_dir / "replicates.npz", **{f"{h}|{q}": r.replicates
                                                         for h, by in score.replicates.items() for q, r in by.items()})
    (world_dir / WORLD_FILE).write_text(json.dumps(settings, sort_keys=True) + "\n")   # last: marks the world done
    if not keep:  # the heavy parts are rebuilt from the seed; the report and the scores stay
        for child in world_dir.iterdir():
            if child.name not in KEPT:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    log(f"seed {seed}: done in {sum(timings.values()):.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in timings.items())})")
    return score


def world_settings(seed: int, customers: int, days: int, hyperparameters: Mapping[str, Any], n_replicates: int,
                   bootstrap_seed: int) -> dict[str, Any]:
    """What a world's scores depend on (besides the code): a finished world with equal settings is reused."""
    return json.loads(json.dumps({"seed": seed, "customers": customers, "days": days,
                                  "hyperparameters": dict(hyperparameters), "replicates": n_replicates,
                                  "bootstrap_seed": bootstrap_seed}, sort_keys=True, default=str))


def load_world(world_dir: Path, settings: Mapping[str, Any]) -> WorldScore | None:
    """A world finished earlier with these settings (an interrupted run resumes; worlds run as separate
    processes into one workdir are summarised together), or None."""
    marker = world_dir / WORLD_FILE
    if not marker.exists() or json.loads(marker.read_text()) != dict(settings):
        return None
    doc = json.loads((world_dir / "scores.json").read_text())
    with np.load(world_dir / "replicates.npz") as npz:
        reps = {h: {q: B.Replicates(float(v["estimate"]), npz[f"{h}|{q}"]) for q, v in by.items() if q != "metric"}
                for h, by in doc["tasks"].items()}
    facts = {k: v for k, v in doc.items() if k not in ("seed", "tasks")}
    return WorldScore(int(doc["seed"]), reps, facts)


# --- over worlds -------------------------------------------------------------------------------

def summarise(scores: Sequence[WorldScore], settings: Mapping[str, Any]) -> dict[str, Any]:
    """Per-world tables, the mean over worlds with combined intervals, and the bars on the mean."""
    from training.evaluate import BARS, HEADLINE_METRICS  # lazy: imports torch
    mean: dict[str, dict[str, Any]] = {}
    for h in HEADLINE_METRICS:
        by: dict[str, Any] = {"metric": HEADLINE_METRICS[h]}
        for q in QUANTITIES:
            items = [s.replicates[h][q] for s in scores if q in s.replicates.get(h, {})]
            if len(items) == len(scores):
                by[q] = B.summary(B.mean_over(items))
        ratio = by.get("model/oracle")
        by["bar"] = {"at_least": BARS[h], "met": bool(ratio and ratio["estimate"] >= BARS[h]),
                     "met_at_lower_bound": bool(ratio and ratio["lo"] >= BARS[h])}
        mean[h] = by
    widths = [s.facts["churn_auc_half_width"] for s in scores]
    return {"settings": dict(settings), "worlds": [s.to_dict() for s in scores], "mean": mean,
            "churn_auc_half_width_max": max(widths),
            "worlds_large_enough": bool(max(widths) < MAX_CHURN_AUC_HALF_WIDTH)}


def _cell(d: Mapping[str, float] | None, digits: int = 3) -> str:
    if not d:
        return "-"
    return f"{d['estimate']:.{digits}f} [{d['lo']:.{digits}f}, {d['hi']:.{digits}f}]"


def _rows(summary: Mapping[str, Any], quantity: str, digits: int = 3) -> list[list[str]]:
    from training.evaluate import HEADLINE_METRICS  # lazy: imports torch

    heads = list(HEADLINE_METRICS)
    rows = [["seed"] + [f"{h} {HEADLINE_METRICS[h]}" for h in heads]]
    for w in summary["worlds"]:
        rows.append([str(w["seed"])] + [_cell(w["tasks"].get(h, {}).get(quantity), digits) for h in heads])
    rows.append(["mean"] + [_cell(summary["mean"][h].get(quantity), digits) for h in heads])
    return rows


def _bar_row(summary: Mapping[str, Any]) -> list[str]:
    cells = []
    for h in summary["mean"]:
        b = summary["mean"][h]["bar"]
        cells.append(f">= {b['at_least']:.2f}: {'met' if b['met'] else 'NOT met'}"
                     + (" (also at the lower bound)" if b["met_at_lower_bound"] else ""))
    return ["bar"] + cells


TABLES = (
    ("model / oracle", "model/oracle", 3, True),
    ("multi-task minus single-task net", "multi-single", 4, False),
    ("model (multi-task)", "model", 3, False),
    ("oracle", "oracle", 3, False),
)


def format_text(summary: Mapping[str, Any]) -> str:
    out = []
    for title, q, digits, bars in TABLES:
        rows = _rows(summary, q, digits) + ([_bar_row(summary)] if bars else [])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        out.append(f"{title} (95% intervals, customer bootstrap):")
        out += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
        out.append("")
    out.append(_calibration_text(summary))
    verdict = "narrower" if summary["worlds_large_enough"] else "NOT narrower"
    out.append(f"churn AUC interval half-width: at most {summary['churn_auc_half_width_max']:.4f} "
               f"({verdict} than +-{MAX_CHURN_AUC_HALF_WIDTH})")
    return "\n".join(out)


def _calibration_text(summary: Mapping[str, Any]) -> str:
    lines = ["calibration (test split: Brier / ECE before -> after the post-hoc step):"]
    for w in summary["worlds"]:
        parts = [f"{h} {c.get('method') or 'none'}: Brier {c['brier_before']:.4f} -> {c['brier_after']:.4f}, "
                 f"ECE {c['ece_before']:.4f} -> {c['ece_after']:.4f}" for h, c in w.get("calibration", {}).items()]
        lines.append(f"  seed {w['seed']}: " + "; ".join(parts))
    return "\n".join(lines) + "\n"


def format_markdown(summary: Mapping[str, Any]) -> str:
    s = summary["settings"]
    lines = ["# Evaluation on held-out worlds", "",
             f"- seeds: {s['seeds']} ({'includes development seeds' if s.get('dev_seeds') else 'evaluation seeds'})",
             f"- world: {s['customers']:,} customers x {s['days']} days; bootstrap: {s['replicates']} customer-level "
             f"replicates (seed {s['bootstrap_seed']}), 95% percentile intervals, paired across sources",
             f"- hyperparameters: {json.dumps(s.get('hyperparameters', {}), sort_keys=True, default=str)}", ""]
    for title, q, digits, bars in TABLES:
        rows = _rows(summary, q, digits) + ([_bar_row(summary)] if bars else [])
        lines += [f"## {title}", "", "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        lines += ["| " + " | ".join(r) + " |" for r in rows[1:]] + [""]
    lines += ["## Calibration", "", "| seed | task | method | Brier before | Brier after | ECE before | ECE after |",
              "|---|---|---|---|---|---|---|"]
    for w in summary["worlds"]:
        for h, c in w.get("calibration", {}).items():
            lines.append(f"| {w['seed']} | {h} | {c.get('method') or 'none'} | {c['brier_before']:.4f} | "
                         f"{c['brier_after']:.4f} | {c['ece_before']:.4f} | {c['ece_after']:.4f} |")
    lines += ["", "## Worlds", "", "| seed | test rows | test customers | churn AUC half-width | seconds |",
              "|---|---|---|---|---|"]
    for w in summary["worlds"]:
        secs = w.get("seconds", {})
        lines.append(f"| {w['seed']} | {w['test_rows']:,} | {w['test_customers']:,} | "
                     f"{w['churn_auc_half_width']:.4f} | {sum(secs.values()):.0f} |")
    verdict = "narrower" if summary["worlds_large_enough"] else "NOT narrower"
    lines += ["", f"The churn AUC's interval is at most +-{summary['churn_auc_half_width_max']:.4f} wide: "
              f"{verdict} than +-{MAX_CHURN_AUC_HALF_WIDTH}."]
    return "\n".join(lines) + "\n"


def run_protocol(seeds: Sequence[int], workdir, *, customers: int = EVAL_CUSTOMERS, days: int = EVAL_DAYS,
                 hyperparameters: Mapping[str, Any] | None = None, allow_dev_seeds: bool = False,
                 n_replicates: int = B.DEFAULT_REPLICATES, bootstrap_seed: int = BOOTSTRAP_SEED, keep: bool = False,
                 progress: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every world in turn, then the summary: evaluation_summary.json and .md in ``workdir``."""
    seeds = check_seeds(seeds, allow_dev_seeds)
    if customers < 1 or days < 1:
        raise ProtocolError(f"a world needs customers >= 1 and days >= 1, got {customers} x {days}")
    hps = dict(hyperparameters or {})
    for name in ("baselines", "single_task_nets"):
        if hps.get(name, True) is False:
            raise ProtocolError(f"the protocol compares with the single-task nets: {name} cannot be switched off")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    scores = []
    for i, seed in enumerate(seeds, 1):
        log(f"world {i}/{len(seeds)}")
        scores.append(run_world(seed, customers, days, workdir / f"seed-{seed}", hps, n_replicates, bootstrap_seed,
                                keep=keep, progress=progress, log=log))
    settings = {"seeds": list(seeds), "customers": customers, "days": days, "replicates": n_replicates,
                "bootstrap_seed": bootstrap_seed, "hyperparameters": hps,
                "dev_seeds": [s for s in seeds if s in DEV_SEEDS]}
    summary = summarise(scores, settings)
    (workdir / "evaluation_summary.json").write_text(json.dumps(summary, indent=1, default=float) + "\n")
    (workdir / "evaluation_summary.md").write_text(format_markdown(summary))
    return summary
