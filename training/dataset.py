"""Point-in-time training sets from Feast: entity rows, future labels, a time split.

``build_training_set`` runs the steps, every one set-based (DuckDB over the Parquet event
log, Feast's point-in-time join for the features; no per-customer Python loops):

1. **Entity rows** ``(customer_id, event_timestamp)`` by ``training.sampling.SamplingPolicy``,
   from ``activity_start + warmup_days`` (the feature windows are filled by then) to the last t
   whose label horizon fits in the data (``t + LABEL_HORIZON_DAYS <= data_end``).
2. **Split by time** (``training.splits.SplitPolicy``): train, a label-horizon gap, then the
   holdout split into validation and test; rows in the gap are dropped (counted in the metadata).
3. **Labels** from the events strictly after t (``training.label_join.compute_labels``: the
   aggregates declared in ``labels/``, one range join over ``(t, t + horizon]``). Rows whose
   horizon runs past ``data_end`` are never sampled (excluded, not labelled negative).
4. **Features** via ``features.retrieval.historical_features`` (the ``churn_model_v1``
   service, two-step primary-tutor lookup, every row kept in input order), plus
   ``customer_features__ts``: the timestamp of the customer snapshot the join used, which
   the quality gate checks is <= the row's t.
5. **Oracle** (optional, a simulation dir): ``simulator.oracle.label_probabilities`` as
   ``oracle_churn_30d``, ``oracle_ib_calls_14d``, ``oracle_health_score`` on the holdout
   rows (train rows get NaN: the oracle is only used to evaluate).
6. **Quality gate** (``training.quality``) and the output: ``dataset.parquet``,
   ``feature_schema.json`` (``catalog.model_input_schema()``), ``metadata.json``.

``build_for_workspace`` does the same over a workspace (``core.workspace.Workspace``),
running the backfill and Feast ``apply`` first when needed (``ensure_feature_store``).

``engine="spark"`` runs steps 3 and 4's joins on Apache Spark (``core.spark``): the labels from
the same generated SQL, the features through the same Feast call with the offline store
``features.feast_spark_offline``; sampling, the on-demand views, the oracle and the gate stay in
this process. The training set is the DuckDB engine's, cell for cell (docs/model.md).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa

import labels as L
from core.spark import spark_session
from core.times import DAY_US, from_us
from core.workspace import Workspace
from features import catalog as C
from features import store as FS
from features.backfill import connect, run_backfill
from features.feast_objects import source_path
from features.feast_spark_offline import spark_feature_store
from features.pit_join import ViewJoin
from features.retrieval import historical_features, model_columns
from features.spark_pit_join import spark_pit_join
from simulator.oracle import label_probabilities
from training.errors import DatasetBuildError
from training.label_join import compute_labels, compute_labels_spark
from training.quality import check_training_set
from training.sampling import (
    SamplingPolicy,
    activity_start_us,
    connect_events,
    sample_entities,
)
from training.splits import SplitPolicy, assign_splits, split_boundaries

DATASET_FILE = "dataset.parquet"
SCHEMA_FILE = "feature_schema.json"
METADATA_FILE = "metadata.json"
#: where the joins run: DuckDB in this process, or Spark (``core.spark``); the training set is the same
ENGINES = ("duckdb", "spark")
#: entity rows per Feast call: bounds the driver's memory; Spark's per-job overhead wants big calls
CHUNK_ROWS = {"duckdb": 10_000, "spark": 1_000_000}
ORACLE_COLUMNS = {"churn_30d": "oracle_churn_30d", "ib_calls_14d": "oracle_ib_calls_14d",
                  "health_score": "oracle_health_score"}


# --------------------------------------------------------------------------- features

def snapshot_timestamps(features_uri: str, entity_df: pd.DataFrame, engine: str = "duckdb") -> pd.Series:
    """Timestamp of the latest customer snapshot at or before each row's t (what the join used)."""
    if engine == "spark":
        return _snapshot_timestamps_spark(features_uri, entity_df)
    con = connect(features_uri)  # local or s3://
    ent = pd.DataFrame({"row_id": np.arange(len(entity_df)), "customer_id": entity_df["customer_id"].astype(str),
                        "ts": entity_df["event_timestamp"]})
    con.register("ent", ent)
    path = source_path(features_uri, C.CUSTOMER_VIEW)
    got = con.execute(f"""SELECT e.row_id, c.event_timestamp AS snap FROM ent e
        ASOF LEFT JOIN (SELECT customer_id, event_timestamp FROM read_parquet('{path}')) c
        ON e.customer_id = c.customer_id AND e.ts >= c.event_timestamp ORDER BY e.row_id""").df()
    con.close()
    snap = pd.to_datetime(got["snap"], utc=True)
    snap.index = entity_df.index
    return snap


def _snapshot_timestamps_spark(features_uri: str, entity_df: pd.DataFrame) -> pd.Series:
    spark = spark_session()
    name = f"__mhp_customer_snapshots_{uuid.uuid4().hex[:12]}"
    spark.read.parquet(source_path(features_uri, C.CUSTOMER_VIEW)).createOrReplaceTempView(name)
    ent = pa.table({"customer_id": pa.array(entity_df["customer_id"].astype(str).to_numpy(), pa.string()),
                    "ts": pa.array(entity_df["event_timestamp"], pa.timestamp("us", tz="UTC"))})
    view = ViewJoin(relation=name, join_keys={"customer_id": "customer_id"}, timestamp_field="event_timestamp",
                    created_timestamp_field=None, features={"event_timestamp": "snap"}, ttl=None)
    try:
        got = spark_pit_join(spark, ent, "ts", [view])
    finally:
        spark.catalog.dropTempView(name)
    snap = pd.to_datetime(got.column("snap").to_pandas(), utc=True)
    snap.index = entity_df.index
    return snap


def retrieve_features(store, entity_df: pd.DataFrame, chunk_rows: int = 10_000,
                      progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """The model's input columns for every entity row, in order, via Feast (in chunks)."""
    import warnings

    cols = model_columns()
    parts = []
    for lo in range(0, len(entity_df), chunk_rows):
        chunk = entity_df.iloc[lo:lo + chunk_rows][["customer_id", "event_timestamp"]].reset_index(drop=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Feast's "on demand feature views are experimental"
            got = historical_features(store, chunk)
        if len(got) != len(chunk) or not (got["customer_id"].to_numpy() == chunk["customer_id"].to_numpy()).all():
            raise RuntimeError("feature retrieval did not return the entity rows in order")
        parts.append(got[cols])
        if progress is not None:
            progress(len(chunk))
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat(parts, ignore_index=True)
    out.index = entity_df.index
    return out


# --------------------------------------------------------------------------- workspace

def ensure_feature_store(workspace: Workspace, until: datetime | None = None, progress: bool = True,
                         log: Callable[[str], None] = print):
    """Open a local workspace's Feast store: the backfill if it has no feature tables yet, then `apply`."""

    if not os.path.isdir(workspace.events):
        raise DatasetBuildError(f"no event log at {workspace.events}; run `mhp simulate --out {workspace.root}` first")
    views = (C.CUSTOMER_VIEW,) + C.BATCH_VIEWS
    if not all(os.path.exists(source_path(workspace.features, v)) for v in views):
        stale = f"none under {workspace.features}"
    else:  # tables written by an older catalog: Feast would fail on the first missing column
        import pyarrow.parquet as pq

        have = set(pq.read_schema(source_path(workspace.features, C.CUSTOMER_VIEW)).names)
        missing = [f.name for f in C.CUSTOMER_FEATURES if f.name not in have]
        stale = missing and (f"the tables under {workspace.features} predate the catalog (missing "
                             f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''})")
    if stale:
        log(f"features: {stale}; running the backfill")
        run_backfill(workspace.events, workspace.features, until=until, progress=progress)
    store = FS.open_store("local", workspace.feast_state)
    # always (re-)register: idempotent, cheap, and a registry left by older code would not match
    # the definitions the retrieval code expects
    FS.apply(store, workspace.features)
    return store


# --------------------------------------------------------------------------- the whole build

@dataclass
class DatasetResult:
    out_dir: Path
    frame: pd.DataFrame = field(repr=False)
    metadata: dict[str, Any]
    gate_summary: str


def feature_schema_dict() -> dict[str, Any]:
    return C.model_input_schema()


def _schema_version(schema: dict) -> str:
    return hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()[:12]


def build_training_set(events_uri: str, features_uri: str, store, out_dir, *,
                       sampling: SamplingPolicy = SamplingPolicy(), split: SplitPolicy = SplitPolicy(),
                       sim_dir: str | None = None, oracle_paths: int = 200, oracle_seed: int = 0,
                       oracle_rows: str = "holdout", data_end: datetime | None = None,
                       chunk_rows: int | None = None, gate: bool = True, progress: bool = True,
                       engine: str = "duckdb", log: Callable[[str], None] = print) -> DatasetResult:
    """Sample, label, split, retrieve features (and the oracle), gate, and write the dataset.

    ``engine="spark"``: the labels, the point-in-time joins (Feast's ``get_historical_features``
    through ``features.feast_spark_offline``) and the snapshot times run on Spark; the sampling
    (a scan of the log for the entity rows), the on-demand views, the oracle and the gate stay in
    this process. The result equals the DuckDB engine's, cell for cell."""
    from tqdm import tqdm

    if engine not in ENGINES:
        raise ValueError(f"engine: expected one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "spark":
        spark = spark_session()  # first: no Java or pyspark fails before any work
        store = spark_feature_store(store)
    chunk_rows = chunk_rows or CHUNK_ROWS[engine]
    if oracle_rows not in ("holdout", "test", "all"):
        raise ValueError(f"oracle_rows: expected 'holdout', 'test' or 'all', got {oracle_rows!r}")
    out = Path(out_dir)
    con, end_us = connect_events(events_uri, data_end)
    try:
        start_us = activity_start_us(con)
        first_us = start_us + sampling.warmup_days * DAY_US
        last_us = end_us - L.LABEL_HORIZON_DAYS * DAY_US
        if last_us < first_us:
            raise DatasetBuildError(
                f"no time t fits: activity starts {from_us(start_us)}, warm-up {sampling.warmup_days} days, and the "
                f"{L.LABEL_HORIZON_DAYS}-day label horizon must end by the end of the data {from_us(end_us)}")
        bounds = split_boundaries(first_us, last_us, split)
        rows = sample_entities(con, sampling, first_us, last_us)
        sampled = len(rows)
        rows["split"] = assign_splits(rows, bounds, split)
        in_gap = int(rows["split"].isna().sum())
        rows = rows[rows["split"].notna()].reset_index(drop=True)
        if rows.empty:
            raise DatasetBuildError("the sampling policy gave no entity rows outside the split gaps")
        lab = (compute_labels_spark(spark, events_uri, rows, end_us) if engine == "spark"
               else compute_labels(con, rows, end_us))
    finally:
        con.close()
    rows = pd.concat([rows, lab], axis=1)

    oracle_mask = {"all": np.ones(len(rows), bool), "holdout": (rows["split"] != "train").to_numpy(),
                   "test": (rows["split"] == "test").to_numpy()}[oracle_rows] if sim_dir else np.zeros(len(rows), bool)
    n_oracle = int(oracle_mask.sum())
    bar = tqdm(total=len(rows) + n_oracle, desc="dataset", unit="row", disable=not progress)
    try:
        bar.set_postfix_str("features")
        feats = retrieve_features(store, rows, chunk_rows=chunk_rows, progress=bar.update)
        rows["customer_features__ts"] = snapshot_timestamps(features_uri, rows, engine)
        rows = pd.concat([rows, feats], axis=1)
        if sim_dir:
            bar.set_postfix_str("oracle")
            for col in ORACLE_COLUMNS.values():
                rows[col] = np.nan
            idx = np.flatnonzero(oracle_mask)
            for lo in range(0, len(idx), chunk_rows):
                part = idx[lo:lo + chunk_rows]
                prob = label_probabilities(sim_dir, rows.iloc[part][["customer_id", "event_timestamp"]],
                                           n_paths=oracle_paths, seed=oracle_seed)
                for label, col in ORACLE_COLUMNS.items():
                    rows.iloc[part, rows.columns.get_loc(col)] = prob[label].to_numpy()
                bar.update(len(part))
    finally:
        bar.close()

    schema = feature_schema_dict()
    counts = {s: int((rows["split"] == s).sum()) for s in ("train", "validation", "test")}
    metadata = {
        "format_version": 1,
        "feature_service": schema["feature_service"],
        "feature_service_version": _schema_version(schema),
        "feature_count": len(schema["features"]),
        "engine": engine,
        "events_uri": str(events_uri), "features_uri": str(features_uri),
        "activity_start": from_us(start_us).isoformat(), "data_end": from_us(end_us).isoformat(),
        "label_horizon_days": L.LABEL_HORIZON_DAYS,
        "labels": {"churn_30d": f"subscription_cancelled in (t, t+{L.CHURN_DAYS}d]",
                   "ib_calls_14d": f">= {L.CALLS_THRESHOLD} inbound_call in (t, t+{L.CALLS_DAYS}d]",
                   "health_score": f"labels.health_score over (t, t+{L.HEALTH_DAYS}d]"},
        "label_aggregates": {a.name: a.describe() for a in L.AGGREGATES},
        "sampling_policy": dataclasses.asdict(sampling),
        "split_policy": dataclasses.asdict(split),
        "split_boundaries": bounds.to_dict(),
        "rows": {"total": int(len(rows)), **counts, "sampled": sampled, "dropped_in_gaps": in_gap,
                 "by_reason": {k: int(v) for k, v in rows["sample_reason"].value_counts().sort_index().items()}},
        "customers": {s: int(rows.loc[rows["split"] == s, "customer_id"].nunique()) for s in counts},
        "label_rates": {s: {"churn_30d": float(rows.loc[rows["split"] == s, "churn_30d"].mean()),
                            "ib_calls_14d": float(rows.loc[rows["split"] == s, "ib_calls_14d"].mean()),
                            "health_score_mean": float(rows.loc[rows["split"] == s, "health_score"].mean())}
                        for s in counts if counts[s]},
        "oracle": ({"sim_dir": str(sim_dir), "n_paths": oracle_paths, "seed": oracle_seed, "rows": oracle_rows,
                    "rows_with_oracle": n_oracle} if sim_dir else None),
    }
    gate_summary = "quality gate skipped"
    if gate:
        out.mkdir(parents=True, exist_ok=True)
        result = check_training_set(rows, schema, report_path=out / "quality_report.html")
        gate_summary = result.summary()
        metadata["quality_gate"] = {"suite": result.suite_name, "passed": result.success,
                                    "expectations": len(result.outcomes)}
    write_dataset(rows, schema, metadata, out)
    return DatasetResult(out, rows, metadata, gate_summary)


def write_dataset(frame: pd.DataFrame, schema: dict, metadata: dict, out_dir) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.parquet"):  # the training channel reads every Parquet file here
        stale.unlink()
    frame.to_parquet(out / DATASET_FILE, index=False)
    (out / SCHEMA_FILE).write_text(json.dumps(schema, indent=1) + "\n")
    (out / METADATA_FILE).write_text(json.dumps(metadata, indent=1, sort_keys=True, default=str) + "\n")
    return out


def build_for_workspace(workspace: Workspace | str | Path, *, sampling: SamplingPolicy = SamplingPolicy(),
                        split: SplitPolicy = SplitPolicy(), sim_dir: str | None | bool = True,
                        out_dir=None, progress: bool = True, engine: str = "duckdb",
                        log: Callable[[str], None] = print, **kwargs) -> DatasetResult:
    """``build_training_set`` over a local workspace (backfill + apply first if needed).

    ``workspace``: a ``Workspace`` or a local folder. ``sim_dir=True`` uses the workspace itself
    when it is a simulation (simulation.json).
    """
    ws = workspace if isinstance(workspace, Workspace) else Workspace.local(workspace)
    if engine == "spark":
        spark_session()  # no Java or pyspark: fail before the backfill
    store = ensure_feature_store(ws, progress=progress, log=log)
    sim = ws.simulation if sim_dir is True else (sim_dir or None)
    return build_training_set(ws.events, ws.features, store, out_dir or ws.dataset, sampling=sampling,
                              split=split, sim_dir=sim, progress=progress, engine=engine, log=log, **kwargs)
