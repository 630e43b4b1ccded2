"""Point-in-time training sets from Feast: entity rows, future labels, a time split.

Pipeline (``build_training_set``), every step set-based (DuckDB over the Parquet event
log, Feast's point-in-time join for the features; no per-customer Python loops):

1. **Entity rows** ``(customer_id, event_timestamp)`` by ``SamplingPolicy``:

   * *snapshots*: every active customer (signed up at or before t, not yet cancelled:
     ``signup_ts <= t < cancel_ts``) at 00:00 UTC every ``cadence_days`` days, from
     ``activity_start + warmup_days`` (the feature windows are filled by then) to the
     last t whose label horizon fits in the data (``t + LABEL_HORIZON_DAYS <= data_end``);
   * *event rows*: a seeded sample (``event_rate``, by ``md5(event_id:seed)``, so the same
     log and seed always pick the same events) of high-signal events (inbound calls,
     failed payments, sessions cancelled / no-show / rated <= 2.5), at the event's own
     timestamp (the event itself is in the features: Feast joins at-or-before t), in the
     same time range and only while the customer is active.

   A (customer, t) sampled twice is kept once (``sample_reason`` says which rule came
   first: snapshot, then event). Rows after a customer's cancellation are never sampled.
2. **Labels** from the events strictly after t (``labels``): one range join of
   the entity rows with the log over ``(t, t + horizon]``, aggregated per row. Rows whose
   horizon runs past ``data_end`` are never sampled (excluded, not labelled negative).
3. **Split by time** (``SplitPolicy``): train = rows with ``t <= train_end``; the
   holdout = rows with ``t >= holdout_start = train_end + gap_days`` (gap = the label
   horizon, 30 days), so every train label window ``(t, t + 30d]`` ends before the first
   holdout row's t: nothing a train label saw is in the holdout period, and a model
   trained on the train rows could have been trained at ``holdout_start``. Rows in the gap
   are dropped (counted in the metadata). The holdout is split into validation and test
   either by customer (``val_by="customer"``, default: a seeded hash puts each customer's
   holdout rows wholly in one of them, so no validation label window covers a test row
   of the same customer) or by time with a second gap (``val_by="time"``; needs a longer
   history than the default 120-day simulation provides).
4. **Features** via ``features.retrieval.historical_features`` (the ``churn_model_v1``
   service, two-step primary-tutor lookup, every row kept in input order), plus
   ``customer_features__ts``: the timestamp of the customer snapshot the join used, which
   the quality gate checks is <= the row's t.
5. **Oracle** (optional, a simulation dir): ``simulator.oracle.label_probabilities`` as
   ``oracle_churn_30d``, ``oracle_ib_calls_14d``, ``oracle_health_score`` on the holdout
   rows (train rows get NaN: the oracle is only used to evaluate).
6. **Quality gate** (``training.quality``) and the output: ``dataset.parquet``,
   ``feature_schema.json`` (``catalog.model_input_schema()``), ``metadata.json``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

import labels as L
from core.times import DAY_US, from_us, to_us
from features import catalog as C
from features import store as FS
from features.backfill import connect, load_events, run_backfill
from features.feast_objects import source_path
from features.retrieval import historical_features, model_columns
from simulator.oracle import label_probabilities
from training.quality import check_training_set

DATASET_FILE = "dataset.parquet"
SCHEMA_FILE = "feature_schema.json"
METADATA_FILE = "metadata.json"
ORACLE_COLUMNS = {"churn_30d": "oracle_churn_30d", "ib_calls_14d": "oracle_ib_calls_14d",
                  "health_score": "oracle_health_score"}
#: high-signal event rules: name -> SQL condition over the event log
EVENT_RULES: dict[str, str] = {
    "inbound_call": "event_type = 'inbound_call'",
    "payment_failed": "event_type = 'payment_failed'",
    "bad_session": ("event_type = 'session_completed' AND (status IN ('cancelled', 'no_show') "
                    "OR (status = 'completed' AND student_rating <= 2.5))"),
}


class DatasetBuildError(ValueError):
    """The inputs cannot give a training set (too short a history, no rows, ...); the message says why."""


@dataclass(frozen=True)
class SamplingPolicy:
    cadence_days: int = 7          # snapshot every active customer every N days, at 00:00 UTC
    warmup_days: int = 14          # first snapshot: activity start + warmup (windows filled)
    event_rules: tuple[str, ...] = tuple(EVENT_RULES)
    event_rate: float = 0.25       # share of the high-signal events that become rows
    seed: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.cadence_days, int) and self.cadence_days >= 1):
            raise ValueError(f"cadence_days: expected a positive integer, got {self.cadence_days!r}")
        if not (isinstance(self.warmup_days, int) and self.warmup_days >= 0):
            raise ValueError(f"warmup_days: expected a non-negative integer, got {self.warmup_days!r}")
        unknown = sorted(set(self.event_rules) - set(EVENT_RULES))
        if unknown:
            raise ValueError(f"event_rules: unknown {unknown}; expected some of {list(EVENT_RULES)}")
        if not 0.0 <= self.event_rate <= 1.0:
            raise ValueError(f"event_rate: expected a number in [0, 1], got {self.event_rate!r}")


@dataclass(frozen=True)
class SplitPolicy:
    gap_days: int = L.LABEL_HORIZON_DAYS   # between the splits: the label horizon
    holdout_fraction: float = 0.35         # of the sampled time span (gaps excluded) that is held out
    val_by: str = "customer"               # "customer" or "time"
    val_share: float = 0.4                 # share of the holdout customers (or time) for validation
    seed: int = 0

    def __post_init__(self) -> None:
        if self.gap_days < L.LABEL_HORIZON_DAYS:
            raise ValueError(f"gap_days: expected at least the label horizon ({L.LABEL_HORIZON_DAYS}), "
                             f"got {self.gap_days!r}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction: expected a number in (0, 1), got {self.holdout_fraction!r}")
        if self.val_by not in ("customer", "time"):
            raise ValueError(f"val_by: expected 'customer' or 'time', got {self.val_by!r}")
        if not 0.0 < self.val_share < 1.0:
            raise ValueError(f"val_share: expected a number in (0, 1), got {self.val_share!r}")


# --------------------------------------------------------------------------- time helpers

def _ts_series(us: np.ndarray) -> pd.Series:
    return pd.Series(pd.to_datetime(np.asarray(us, dtype=np.int64), unit="us", utc=True))


# --------------------------------------------------------------------------- the event log

def connect_events(events_uri: str, data_end: datetime | None = None):
    """A DuckDB connection with the log as view ``ev`` (column ``tsu``: microseconds), and data_end (us)."""

    con = connect(events_uri)
    end_us = load_events(con, events_uri, None if data_end is None else to_us(data_end))
    return con, end_us


def activity_start_us(con) -> int:
    """The first UTC midnight of the log's activity: the first event that is not a signup.

    (The simulator backdates signups by up to a year; behaviour starts with the simulation.)
    """
    first = con.execute("SELECT MIN(tsu) FROM ev WHERE event_type <> 'customer_signup'").fetchone()[0]
    if first is None:
        raise DatasetBuildError("the event log has no events other than signups")
    return (first // DAY_US) * DAY_US


# --------------------------------------------------------------------------- 1. entity rows

def _customer_spans_sql() -> str:
    return """SELECT customer_id,
                     MIN(tsu) FILTER (WHERE event_type = 'customer_signup') AS signup_us,
                     MIN(tsu) FILTER (WHERE event_type = 'subscription_cancelled') AS cancel_us
              FROM ev WHERE customer_id IS NOT NULL GROUP BY customer_id"""


def sample_entities(con, policy: SamplingPolicy, first_us: int, last_us: int) -> pd.DataFrame:
    """Entity rows in [first_us, last_us]: columns customer_id, event_timestamp, sample_reason.

    Sorted by (event_timestamp, customer_id); one row per (customer, t).
    """
    if last_us < first_us:
        return pd.DataFrame({"customer_id": pd.Series([], dtype=object),
                             "event_timestamp": _ts_series(np.array([], np.int64)),
                             "sample_reason": pd.Series([], dtype=object)})
    step = policy.cadence_days * DAY_US
    event_parts = []
    for name in policy.event_rules:
        event_parts.append(f"""SELECT e.customer_id, e.tsu AS t_us, 'event:{name}' AS reason, 1 AS prio
            FROM ev e JOIN spans s USING (customer_id)
            WHERE ({EVENT_RULES[name]}) AND e.tsu BETWEEN {first_us} AND {last_us}
              AND s.signup_us <= e.tsu AND (s.cancel_us IS NULL OR e.tsu < s.cancel_us)
              AND md5_number(e.event_id || ':' || '{int(policy.seed)}') % 1000000 < {int(round(policy.event_rate * 1e6))}""")
    union = " UNION ALL ".join([f"""SELECT s.customer_id, g.t_us, 'snapshot' AS reason, 0 AS prio
            FROM spans s, (SELECT unnest(range({first_us}, {last_us} + 1, {step})) AS t_us) g
            WHERE s.signup_us <= g.t_us AND (s.cancel_us IS NULL OR g.t_us < s.cancel_us)""", *event_parts])
    df = con.execute(f"""WITH spans AS ({_customer_spans_sql()}),
        cand AS ({union})
        SELECT customer_id, t_us, arg_min(reason, prio) AS sample_reason
        FROM cand GROUP BY customer_id, t_us ORDER BY t_us, customer_id""").df()
    return pd.DataFrame({"customer_id": df["customer_id"].astype(object),
                         "event_timestamp": _ts_series(df["t_us"].to_numpy(np.int64)),
                         "sample_reason": df["sample_reason"].astype(object)})


# --------------------------------------------------------------------------- 2. labels

def compute_labels(con, entity_df: pd.DataFrame, data_end_us: int | None = None) -> pd.DataFrame:
    """Labels of each entity row from the events in (t, t + horizon] (labels).

    Returns a frame aligned with ``entity_df`` (same index): churn_30d, ib_calls_14d,
    health_score and the future-window aggregates they come from. A row whose horizon runs
    past ``data_end_us`` raises: such rows must be excluded before labelling, never labelled.
    """
    t_us = entity_df["event_timestamp"].map(to_us).to_numpy(np.int64) if len(entity_df) else np.array([], np.int64)
    if data_end_us is not None and len(t_us) and (t_us + L.LABEL_HORIZON_DAYS * DAY_US > data_end_us).any():
        n = int((t_us + L.LABEL_HORIZON_DAYS * DAY_US > data_end_us).sum())
        raise DatasetBuildError(f"{n} entity rows have a label horizon past the end of the data "
                                f"({from_us(data_end_us)}); exclude them instead of labelling them")
    ent = pd.DataFrame({"row_id": np.arange(len(entity_df), dtype=np.int64),
                        "customer_id": entity_df["customer_id"].astype(str).to_numpy(), "t_us": t_us})
    con.register("label_rows", ent)
    h = {d: d * DAY_US for d in (L.CHURN_DAYS, L.CALLS_DAYS, L.HEALTH_DAYS, L.LABEL_HORIZON_DAYS)}
    try:
        agg = con.execute(f"""
            WITH f AS (
              SELECT customer_id, tsu, event_type, status, student_rating FROM ev
              WHERE customer_id IS NOT NULL AND event_type IN
                    ('subscription_cancelled', 'inbound_call', 'session_completed', 'payment_failed'))
            SELECT r.row_id,
              COUNT(f.tsu) FILTER (WHERE f.event_type = 'subscription_cancelled' AND f.tsu <= r.t_us + {h[L.CHURN_DAYS]}) AS cancelled_churn,
              COUNT(f.tsu) FILTER (WHERE f.event_type = 'inbound_call' AND f.tsu <= r.t_us + {h[L.CALLS_DAYS]}) AS inbound_calls_calls,
              COUNT(f.tsu) FILTER (WHERE f.event_type = 'session_completed' AND f.status = 'completed' AND f.tsu <= r.t_us + {h[L.HEALTH_DAYS]}) AS completed_sessions,
              COALESCE(SUM(f.student_rating) FILTER (WHERE f.event_type = 'session_completed' AND f.status = 'completed' AND f.student_rating IS NOT NULL AND f.tsu <= r.t_us + {h[L.HEALTH_DAYS]}), 0) AS rating_sum,
              COUNT(f.tsu) FILTER (WHERE f.event_type = 'session_completed' AND f.status = 'completed' AND f.student_rating IS NOT NULL AND f.tsu <= r.t_us + {h[L.HEALTH_DAYS]}) AS rating_n,
              COUNT(f.tsu) FILTER (WHERE f.event_type = 'inbound_call' AND f.tsu <= r.t_us + {h[L.HEALTH_DAYS]}) AS inbound_calls,
              COUNT(f.tsu) FILTER (WHERE f.event_type = 'payment_failed' AND f.tsu <= r.t_us + {h[L.HEALTH_DAYS]}) AS failed_payments,
              COUNT(f.tsu) FILTER (WHERE f.event_type = 'session_completed' AND f.status = 'no_show' AND f.tsu <= r.t_us + {h[L.HEALTH_DAYS]}) AS no_shows,
              COUNT(f.tsu) FILTER (WHERE f.event_type = 'subscription_cancelled' AND f.tsu <= r.t_us + {h[L.HEALTH_DAYS]}) AS cancelled
            FROM label_rows r LEFT JOIN f
              ON f.customer_id = r.customer_id AND f.tsu > r.t_us AND f.tsu <= r.t_us + {h[L.LABEL_HORIZON_DAYS]}
            GROUP BY r.row_id ORDER BY r.row_id""").df()
    finally:
        con.unregister("label_rows")
    out = pd.DataFrame(index=entity_df.index)
    out["churn_30d"] = L.churn_label(agg["cancelled_churn"].to_numpy() > 0)
    out["ib_calls_14d"] = L.ib_calls_label(agg["inbound_calls_calls"].to_numpy())
    out["health_score"] = L.health_score(
        agg["completed_sessions"], agg["rating_sum"], agg["rating_n"], agg["inbound_calls"],
        agg["failed_payments"], agg["no_shows"], agg["cancelled"].to_numpy() > 0)
    for c in ("completed_sessions", "rating_sum", "rating_n", "inbound_calls", "failed_payments", "no_shows"):
        out[f"future_{c}_{L.HEALTH_DAYS}d"] = agg[c].to_numpy()
    return out


# --------------------------------------------------------------------------- 3. splits

@dataclass
class SplitBoundaries:
    first_t: datetime
    last_t: datetime
    train_end: datetime               # train: t <= train_end
    holdout_start: datetime           # validation/test: t >= holdout_start
    val_by: str
    val_end: datetime | None = None   # val_by="time": validation t <= val_end
    test_start: datetime | None = None  # val_by="time": test t >= test_start

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in dataclasses.asdict(self).items()}


def _hash_unit(values: Iterable[str], seed: int) -> np.ndarray:
    """A deterministic uniform number in [0, 1) per value (sha256 of 'seed:value')."""
    return np.array([int.from_bytes(hashlib.sha256(f"{seed}:{v}".encode()).digest()[:8], "big") / 2.0 ** 64
                     for v in values])


def split_boundaries(first_us: int, last_us: int, policy: SplitPolicy) -> SplitBoundaries:
    """Where the splits fall in [first_us, last_us] (whole days; see the module doc)."""
    span_days = (last_us - first_us) // DAY_US
    gaps = policy.gap_days * (2 if policy.val_by == "time" else 1)
    usable = span_days - gaps
    if usable < 2:
        raise DatasetBuildError(
            f"the sampled time span is {span_days} days, too short for a time split with "
            f"{gaps} gap day(s) (val_by={policy.val_by!r}); simulate more days or use a shorter warm-up")
    holdout = max(1, int(round(usable * policy.holdout_fraction)))
    train_days = usable - holdout
    train_end = first_us + train_days * DAY_US
    holdout_start = train_end + policy.gap_days * DAY_US
    b = SplitBoundaries(from_us(first_us), from_us(last_us), from_us(train_end), from_us(holdout_start),
                        policy.val_by)
    if policy.val_by == "time":
        val_days = max(0, int(round((holdout - 1) * policy.val_share)))
        val_end = holdout_start + val_days * DAY_US
        b.val_end, b.test_start = from_us(val_end), from_us(val_end + policy.gap_days * DAY_US)
    return b


def assign_splits(rows: pd.DataFrame, b: SplitBoundaries, policy: SplitPolicy) -> pd.Series:
    """'train' / 'validation' / 'test', or None for rows in a gap (they are dropped)."""
    t = rows["event_timestamp"]
    split = pd.Series(np.full(len(rows), None, dtype=object), index=rows.index)
    split[t <= b.train_end] = "train"
    hold = t >= b.holdout_start
    if policy.val_by == "customer":
        customers = rows.loc[hold, "customer_id"].astype(str)
        uniq = pd.unique(customers)
        val_customers = set(uniq[_hash_unit(uniq, policy.seed) < policy.val_share])
        is_val = customers.isin(val_customers)
        split[hold] = np.where(is_val, "validation", "test")
    else:
        split[hold & (t <= b.val_end)] = "validation"
        split[t >= b.test_start] = "test"
    return split


# --------------------------------------------------------------------------- 4. features

def snapshot_timestamps(features_uri: str, entity_df: pd.DataFrame) -> pd.Series:
    """Timestamp of the latest customer snapshot at or before each row's t (what the join used)."""

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

@dataclass(frozen=True)
class Paths:
    """The workspace layout shared with `mhp simulate/backfill/apply` (mhp/workspace.py)."""

    root: Path

    @property
    def events(self) -> str:
        return str(self.root / "events")

    @property
    def features(self) -> str:
        return str(self.root / "features")

    @property
    def feast_state(self) -> Path:
        return self.root / "feast"

    @property
    def dataset(self) -> Path:
        return self.root / "dataset"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def simulation(self) -> str | None:
        return str(self.root) if (self.root / "simulation.json").is_file() else None


def ensure_feature_store(paths: Paths, until: datetime | None = None, progress: bool = True,
                         log: Callable[[str], None] = print):
    """Open the workspace's Feast store: the backfill if it has no feature tables yet, then `apply`."""

    if not os.path.isdir(paths.events):
        raise DatasetBuildError(f"no event log at {paths.events}; run `mhp simulate --out {paths.root}` first")
    views = (C.CUSTOMER_VIEW,) + C.BATCH_VIEWS
    if not all(os.path.exists(source_path(paths.features, v)) for v in views):
        stale = f"none under {paths.features}"
    else:  # tables written by an older catalog: Feast would fail on the first missing column
        import pyarrow.parquet as pq

        have = set(pq.read_schema(source_path(paths.features, C.CUSTOMER_VIEW)).names)
        missing = [f.name for f in C.CUSTOMER_FEATURES if f.name not in have]
        stale = missing and (f"the tables under {paths.features} predate the catalog (missing "
                             f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''})")
    if stale:
        log(f"features: {stale}; running the backfill")
        run_backfill(paths.events, paths.features, until=until, progress=progress)
    store = FS.open_store("local", paths.feast_state)
    # always (re-)register: idempotent, cheap, and a registry left by older code would not match
    # the definitions the retrieval code expects
    FS.apply(store, paths.features)
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
                       chunk_rows: int = 10_000, gate: bool = True, progress: bool = True,
                       log: Callable[[str], None] = print) -> DatasetResult:
    """Sample, label, split, retrieve features (and the oracle), gate, and write the dataset."""
    from tqdm import tqdm

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
        lab = compute_labels(con, rows, end_us)
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
        rows["customer_features__ts"] = snapshot_timestamps(features_uri, rows)
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
        "events_uri": str(events_uri), "features_uri": str(features_uri),
        "activity_start": from_us(start_us).isoformat(), "data_end": from_us(end_us).isoformat(),
        "label_horizon_days": L.LABEL_HORIZON_DAYS,
        "labels": {"churn_30d": f"subscription_cancelled in (t, t+{L.CHURN_DAYS}d]",
                   "ib_calls_14d": f">= {L.CALLS_THRESHOLD} inbound_call in (t, t+{L.CALLS_DAYS}d]",
                   "health_score": f"labels.health_score over (t, t+{L.HEALTH_DAYS}d]"},
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


def build_for_workspace(workspace, *, sampling: SamplingPolicy = SamplingPolicy(),
                        split: SplitPolicy = SplitPolicy(), sim_dir: str | None | bool = True,
                        out_dir=None, progress: bool = True, log: Callable[[str], None] = print,
                        **kwargs) -> DatasetResult:
    """``build_training_set`` over the workspace layout (backfill + apply first if needed).

    ``sim_dir=True`` uses the workspace itself when it is a simulation (simulation.json).
    """
    paths = Paths(Path(workspace))
    store = ensure_feature_store(paths, progress=progress, log=log)
    sim = paths.simulation if sim_dir is True else (sim_dir or None)
    return build_training_set(paths.events, paths.features, store, out_dir or paths.dataset, sampling=sampling,
                              split=split, sim_dir=sim, progress=progress, log=log, **kwargs)
