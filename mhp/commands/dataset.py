"""`mhp dataset`: build the point-in-time training set of a workspace (training/dataset.py)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from core.errors import UsageError


def register(subparsers) -> None:
    from training.sampling import SamplingPolicy  # lazy: loaded only when this command runs (keeps `mhp --help` light)
    from training.splits import SplitPolicy  # lazy: loaded only when this command runs (keeps `mhp --help` light)

    s, sp = SamplingPolicy(), SplitPolicy()
    p = subparsers.add_parser(
        "dataset", help="build a point-in-time training set (Feast features, future labels, time split)",
        description="Samples (customer, t) rows from the workspace's event log, retrieves the churn_model_v1 "
                    "features as of each t from Feast (running the backfill and `apply` first if the workspace "
                    "has none), labels each row from the events after t, splits by time with a label-horizon gap, "
                    "adds the simulator oracle's probabilities when the workspace is a simulation, runs the "
                    "training-set quality gate and writes DIR/dataset/{dataset.parquet, feature_schema.json, "
                    "metadata.json}.")
    p.add_argument("--workspace", default="out", help="workspace folder (default: out): DIR/events, DIR/features, "
                                                      "DIR/feast; a simulation's output folder is one")
    p.add_argument("--out", help="dataset folder (default: DIR/dataset)")
    p.add_argument("--cadence-days", type=int, default=s.cadence_days,
                   help=f"snapshot every active customer every N days at 00:00 UTC (default {s.cadence_days})")
    p.add_argument("--warmup-days", type=int, default=s.warmup_days,
                   help=f"first snapshot N days after the log's activity starts (default {s.warmup_days})")
    p.add_argument("--event-rate", type=float, default=s.event_rate,
                   help=f"share of high-signal events sampled as extra rows (default {s.event_rate})")
    p.add_argument("--seed", type=int, default=0, help="seed of the event sample and the validation/test "
                                                       "customer split (default 0)")
    p.add_argument("--holdout-fraction", type=float, default=sp.holdout_fraction,
                   help=f"share of the sampled time span held out for validation + test (default {sp.holdout_fraction})")
    p.add_argument("--val-by", choices=("customer", "time"), default=sp.val_by,
                   help="split the holdout into validation/test by customer (default) or by time with a second gap")
    p.add_argument("--oracle-paths", type=int, default=200, help="oracle Monte Carlo paths per row (default 200)")
    p.add_argument("--oracle-rows", choices=("holdout", "test", "all"), default="holdout",
                   help="rows that get oracle columns (default holdout = validation + test)")
    p.add_argument("--no-oracle", action="store_true", help="skip the oracle even for a simulation workspace")
    p.add_argument("--engine", choices=("duckdb", "spark"), default="duckdb",
                   help="where the labels and the point-in-time joins run: DuckDB in this process (default) or "
                        "Apache Spark (pyspark + Java 17; MHP_SPARK_MASTER, default local[2]); the same training set")
    p.add_argument("--no-gate", action="store_true", help="skip the quality gate (not recommended)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def format_summary(meta: dict, out: Path, seconds: float) -> str:
    r, b = meta["rows"], meta["split_boundaries"]
    lines = [f"dataset: {r['total']:,} rows -> {out}  ({seconds:.1f}s)",
             f"  feature service {meta['feature_service']} (schema {meta['feature_service_version']}, "
             f"{meta['feature_count']} features); data {meta['activity_start'][:10]} .. {meta['data_end'][:10]}",
             f"  sampled {r['sampled']:,} rows ({', '.join(f'{k}={v:,}' for k, v in r['by_reason'].items())}); "
             f"{r['dropped_in_gaps']:,} in the split gap(s) dropped",
             f"  train      t <= {b['train_end'][:10]}   (from {b['first_t'][:10]})",
             f"  holdout    t >= {b['holdout_start'][:10]}   (to {b['last_t'][:10]}; validation/test by {b['val_by']})",
             "  split       rows  customers  churn_30d  ib_calls_14d  health"]
    for s in ("train", "validation", "test"):
        rate = meta["label_rates"].get(s)
        if rate:
            lines.append(f"  {s:<10} {r[s]:>6,}  {meta['customers'][s]:>9,}  {_pct(rate['churn_30d']):>9}  "
                         f"{_pct(rate['ib_calls_14d']):>12}  {rate['health_score_mean']:>6.1f}")
    if meta.get("oracle"):
        o = meta["oracle"]
        lines.append(f"  oracle: {o['rows_with_oracle']:,} {o['rows']} rows x {o['n_paths']} paths")
    if meta.get("quality_gate"):
        g = meta["quality_gate"]
        lines.append(f"  quality gate {g['suite']}: {'passed' if g['passed'] else 'FAILED'} "
                     f"({g['expectations']} expectations)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from training.dataset import build_for_workspace  # lazy: loaded only when this command runs (keeps `mhp --help` light)
    from training.errors import DatasetBuildError  # lazy: loaded only when this command runs (keeps `mhp --help` light)
    from training.sampling import SamplingPolicy  # lazy: loaded only when this command runs (keeps `mhp --help` light)
    from training.splits import SplitPolicy  # lazy: loaded only when this command runs (keeps `mhp --help` light)
    from validation.gate import DataQualityError  # lazy: loaded only when this command runs (keeps `mhp --help` light)

    ws = Path(args.workspace)
    if not (ws / "events").is_dir():
        raise UsageError(f"--workspace: no event log at {ws / 'events'}; run `mhp simulate --out {ws}` first")
    try:
        sampling = SamplingPolicy(cadence_days=args.cadence_days, warmup_days=args.warmup_days,
                                  event_rate=args.event_rate, seed=args.seed)
        split = SplitPolicy(holdout_fraction=args.holdout_fraction, val_by=args.val_by, seed=args.seed)
    except ValueError as exc:
        raise UsageError(f"--{str(exc).split(':')[0].replace('_', '-')}: {str(exc).split(':', 1)[-1].strip()}") from None
    if args.oracle_paths <= 0:
        raise UsageError(f"--oracle-paths: expected a positive integer, got {args.oracle_paths}")
    t0 = time.perf_counter()
    try:
        res = build_for_workspace(ws, sampling=sampling, split=split, sim_dir=False if args.no_oracle else True,
                                  out_dir=args.out, progress=not args.no_progress, oracle_paths=args.oracle_paths,
                                  oracle_rows=args.oracle_rows, gate=not args.no_gate, engine=args.engine)
    except DatasetBuildError as exc:
        raise UsageError(f"--workspace: {exc}") from None
    except DataQualityError as exc:
        print(f"mhp dataset: the training set failed its quality gate; nothing written\n{exc}")
        return 1
    print(format_summary(res.metadata, res.out_dir, time.perf_counter() - t0))
    print(f"next: mhp train --dataset {res.out_dir} --out {ws / 'model'}")
    return 0
