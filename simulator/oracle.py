"""The oracle: true label probabilities for any (customer, t), by forward Monte Carlo.

For each row the customer's latent state at 00:00 UTC of day(t) is read from
truth.parquet (the state that governs the whole of day(t)), copied ``n_paths``
times together with the state of the customer's subject market, and pushed
forward with the simulator's own ``step_market`` / ``step_customers`` for
day(t) .. day(t) + LABEL_HORIZON_DAYS. Labels are labels' functions of
the declared aggregates (``labels.AGGREGATES``) of each path's events in (t, t + days].

The intra-day part of day(t): day(t) is simulated whole, from its midnight
state; its events at or before t are not counted (labels look strictly after
t), and paths that cancel at or before t are discarded, because a row at t is
a customer still subscribed at t. The oracle is therefore conditioned on the
latent state of day(t) and on "still subscribed at t", not on the other events
of day(t) before t (the model sees those; the oracle's state already contains
what they would reveal about health).

Rows whose customer has no state that day (not signed up yet, cancelled on an
earlier day, or a date outside the simulation) get NaN.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from core.times import DAY_US, date_us
from labels import AGGREGATES, LABEL_HORIZON_DAYS, label_values

from .config import SimConfig
from .day_events import CODE
from .dynamics import CustomerState, step_customers
from .market import MarketState, step_market
from .output import filesystem
from .params import PARAMS, Params
from .world import World, build_world, rng_for

RNG_ORACLE = 99
_STATE_COLUMNS = ["customer_index", "date", "latent_health", "tutor_index", "failed_attempts", "trouble_billing",
                  "trouble_tutor", "trouble_match", "subject_supply", "subject_demand"]


def load_world(sim_dir: str) -> tuple[World, str]:
    fs, root = filesystem(sim_dir)
    config = SimConfig.from_json(fs.cat(f"{root}/simulation.json").decode())
    return build_world(config), root


def label_probabilities(sim_dir: str, rows: pd.DataFrame, n_paths: int = 200, seed: int = 0,
                        max_paths_per_batch: int = 250_000, p: Params = PARAMS) -> pd.DataFrame:
    """P(churn_30d), P(ib_calls_14d) and E[health_score] for each (customer_id, event_timestamp) row.

    Returns a frame with the rows' index and columns churn_30d, ib_calls_14d,
    health_score, latent_health (the state used) and paths (paths kept).
    """
    if n_paths <= 0:
        raise ValueError(f"n_paths: expected a positive integer, got {n_paths!r}")
    missing = {"customer_id", "event_timestamp"} - set(rows.columns)
    if missing:
        raise ValueError(f"rows: missing column(s) {sorted(missing)}; expected customer_id, event_timestamp")
    world, root = load_world(sim_dir)
    fs, _ = filesystem(sim_dir)
    config = world.config

    ts = pd.to_datetime(rows["event_timestamp"], utc=True)
    # naive timestamps are taken as UTC
    t_us = ((ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(microseconds=1)).to_numpy(np.int64)
    start_us = date_us(config.start_date)
    day = np.floor_divide(t_us - start_us, DAY_US)
    tod = t_us - start_us - day * DAY_US
    index_of = pd.Series(np.arange(world.customers.ids.size), index=world.customers.ids)
    cust = index_of.reindex(rows["customer_id"].astype(str).to_numpy()).to_numpy()

    dates = sorted({config.start_date + dt.timedelta(days=int(d)) for d in np.unique(day) if 0 <= d < config.days})
    with fs.open(f"{root}/truth.parquet", "rb") as f:  # only the days the rows need
        truth = pq.read_table(f, columns=_STATE_COLUMNS, filters=[("date", "in", dates)] if dates else None)
    truth = truth.to_pandas() if dates else truth.slice(0, 0).to_pandas()
    truth["day"] = (pd.to_datetime(truth.pop("date")) - pd.Timestamp(config.start_date)).dt.days
    wanted = pd.DataFrame({"customer_index": cust, "day": day, "row": np.arange(len(rows))})
    state_rows = wanted.dropna(subset=["customer_index"]).astype({"customer_index": np.int64}).merge(
        truth, on=["customer_index", "day"], how="inner")

    out = pd.DataFrame({"churn_30d": np.nan, "ib_calls_14d": np.nan, "health_score": np.nan,
                        "latent_health": np.nan, "paths": 0}, index=rows.index)
    rng = rng_for(seed, RNG_ORACLE)
    batch = max(1, max_paths_per_batch // n_paths)
    for lo in range(0, len(state_rows), batch):
        s = state_rows.iloc[lo:lo + batch]
        r = s["row"].to_numpy()
        result = _simulate_rows(world, s, tod[r], n_paths, rng, p)
        for col, values in result.items():
            out.iloc[r, out.columns.get_loc(col)] = values
        out.iloc[r, out.columns.get_loc("latent_health")] = s["latent_health"].to_numpy()
    return out


def _simulate_rows(world: World, s: pd.DataFrame, tod: np.ndarray, n_paths: int, rng: np.random.Generator,
                   p: Params) -> dict[str, np.ndarray]:
    c = world.customers
    ci = s["customer_index"].to_numpy()
    day = s["day"].to_numpy()
    state = CustomerState(
        health=s["latent_health"].to_numpy(float), health_mean=c.health_mean[ci], tier=c.tier[ci],
        subject=c.subject[ci], tutor=s["tutor_index"].to_numpy(np.int32),
        # days are counted from day(t): the dynamics only use differences of days
        signup_day=(c.signup_day[ci] - day).astype(np.int32), signup_tod_us=c.signup_tod_us[ci],
        alive=np.ones(ci.size, bool), card_risk=c.card_risk[ci],
        failed_attempts=s["failed_attempts"].to_numpy(np.int8),
        trouble_billing=s["trouble_billing"].to_numpy(float), trouble_tutor=s["trouble_tutor"].to_numpy(float),
        trouble_match=s["trouble_match"].to_numpy(float),
    )
    market = MarketState(world.subject_base[c.subject[ci]], s["subject_supply"].to_numpy(float),
                         s["subject_demand"].to_numpy(float))
    paths = np.repeat(np.arange(ci.size), n_paths)
    state, market, t_path = state.take(paths), market.take(paths), tod[paths]
    n = paths.size
    windows = {d: [a for a in AGGREGATES if a.days == d] for d in sorted({a.days for a in AGGREGATES})}
    totals: dict[str, np.ndarray] = {}
    cancelled_by_t = np.zeros(n, bool)
    for k in range(LABEL_HORIZON_DAYS + 1):
        state, events = step_customers(state, market.tightness(), world.tutors, k, rng, p)
        after_t = k * DAY_US + events.tod - t_path[np.maximum(events.cust, 0)]
        if k == 0:
            cancel = events.etype == CODE["subscription_cancelled"]
            cancelled_by_t[events.cust[cancel & (after_t <= 0)]] = True
        for days, aggregates in windows.items():
            keep = (after_t > 0) & (after_t <= days * DAY_US)
            for name, v in events.label_counts(n, keep, aggregates).items():
                totals[name] = v if name not in totals else totals[name] + v
        market = step_market(market, rng, p)

    labels = label_values(totals)
    kept = (~cancelled_by_t).reshape(-1, n_paths)
    # if every path cancelled before t (practically never), fall back to all paths rather than 0/0
    kept[kept.sum(1) == 0] = True
    weights = kept / kept.sum(1, keepdims=True)
    out = {name: (np.asarray(v, float).reshape(-1, n_paths) * weights).sum(1) for name, v in labels.items()}
    out["paths"] = kept.sum(1)
    return out
