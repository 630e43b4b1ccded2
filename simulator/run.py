"""The day loop: world -> per-day dynamics -> event log, stream, truth, base rates."""
from __future__ import annotations

import datetime as dt
import json
from typing import Callable, Iterable

import numpy as np
import pyarrow as pa

from core.times import DAY_US

from .config import SimConfig
from .day_events import CODE, DayEvents
from .disorder import ArrivalOrder, Disorder
from .dynamics import CustomerState, step_customers
from .market import MarketState, step_market, tutor_availability
from .output import SimulationOutput
from .params import PARAMS, Params
from .records import RecordBuilder, json_lines
from .summary import BaseRates
from .world import World, build_world, rng_for

# Streams of randomness (SeedSequence spawn keys): 0 world, 1 initial state, 2 market, 3 customers.
RNG_INITIAL, RNG_MARKET, RNG_CUSTOMERS = 1, 2, 3

TRUTH_SCHEMA = pa.schema([
    ("customer_id", pa.string()),
    ("date", pa.date32()),
    ("customer_index", pa.int32()),
    ("latent_health", pa.float64()),
    ("health_mean", pa.float64()),
    ("daily_churn_hazard", pa.float64()),
    ("tutor_index", pa.int32()),
    ("failed_attempts", pa.int8()),
    ("trouble_billing", pa.float64()),
    ("trouble_tutor", pa.float64()),
    ("trouble_match", pa.float64()),
    ("subject_supply", pa.float64()),
    ("subject_demand", pa.float64()),
    ("subject_tightness", pa.float64()),
])


def initial_state(world: World, p: Params = PARAMS) -> tuple[CustomerState, MarketState]:
    state = CustomerState.initial(world.customers, p, rng_for(world.config.seed, RNG_INITIAL))
    zeros = np.zeros_like(world.subject_base)
    return state, MarketState(world.subject_base, zeros, zeros)


def truth_table(world: World, state: CustomerState, market: MarketState, day: int, p: Params) -> pa.Table:
    """The state at 00:00 UTC of ``day`` of every customer signed up and still subscribed."""
    idx = np.flatnonzero(state.alive & (state.signup_day <= day))
    subj = state.subject[idx]
    h = state.health[idx]
    date = world.config.start_date + dt.timedelta(days=day)
    return pa.Table.from_arrays([
        pa.array(world.customers.ids[idx]), pa.array(np.full(idx.size, date), pa.date32()),
        pa.array(idx.astype(np.int32)), pa.array(h), pa.array(state.health_mean[idx]),
        pa.array(np.minimum(np.exp(p.churn_intercept - p.churn_h * h), p.churn_max_daily)),
        pa.array(state.tutor[idx]), pa.array(state.failed_attempts[idx]),
        pa.array(state.trouble_billing[idx]), pa.array(state.trouble_tutor[idx]), pa.array(state.trouble_match[idx]),
        pa.array(market.supply[subj]), pa.array(market.demand[subj]), pa.array(market.tightness()[subj]),
    ], schema=TRUTH_SCHEMA)


def _backdated_signups(world: World) -> Iterable[tuple[dt.date, DayEvents]]:
    c = world.customers
    for day in np.unique(c.signup_day[c.signup_day < 0]):
        idx = np.flatnonzero(c.signup_day == day)
        yield (world.config.start_date + dt.timedelta(days=int(day)),
               DayEvents.block("customer_signup", c.signup_tod_us[idx], cust=idx))


def simulate(config: SimConfig, out: str, days_iter: Callable[[range], Iterable[int]] = iter,
             p: Params = PARAMS, disorder: Disorder | None = None) -> dict:
    """Run the simulation into ``out`` (folder or s3:// URI); returns the summary (also in summary.json).

    ``days_iter`` wraps the day range (the CLI passes a tqdm progress bar). ``disorder`` (late and
    re-sent deliveries) changes only the order and copies of stream.jsonl's lines; without it the
    stream is in (timestamp, event_id) order.
    """
    world = build_world(config, p)
    state, market = initial_state(world, p)
    arrival = ArrivalOrder(disorder, config.seed) if disorder is not None and disorder.active else None
    output = SimulationOutput(out, config, TRUTH_SCHEMA, arrival)
    records = RecordBuilder(world)
    rates = BaseRates(config.customers, config.days)
    try:
        for date, events in _backdated_signups(world):
            table = records.table(events, date)
            output.write_day(date, table, json_lines(table))
            rates.event_counts += np.bincount(events.etype, minlength=len(rates.event_counts))

        carry: DayEvents | None = None
        for day in days_iter(range(config.days)):
            date = config.start_date + dt.timedelta(days=day)
            rates.start_day(day, state.health, state.alive & (state.signup_day < day))
            output.write_truth(truth_table(world, state, market, day, p))
            tutors_today = tutor_availability(market, world.tutors, day, rng_for(config.seed, RNG_MARKET, day, 0))
            tightness = market.tightness()[state.subject]
            state, customers_today = step_customers(state, tightness, world.tutors, day,
                                                    rng_for(config.seed, RNG_CUSTOMERS, day), p)
            events = DayEvents.concat([e for e in (carry, tutors_today, customers_today) if e is not None])
            # yesterday's delayed events of a customer who cancelled today stop at the cancellation
            cancel = events.etype == CODE["subscription_cancelled"]
            cutoff = np.full(config.customers + 1, np.iinfo(np.int64).max)
            cutoff[events.cust[cancel]] = events.tod[cancel]
            keep = (events.cust < 0) | (events.tod < cutoff[events.cust]) | cancel
            events = events.select(keep)
            today = events.tod < DAY_US
            carry = events.select(~today).shift(DAY_US)
            events = events.select(today)
            table = records.table(events, date)
            output.write_day(date, table, json_lines(table))
            rates.add_day(day, events)
            market = step_market(market, rng_for(config.seed, RNG_MARKET, day, 1), p)
        summary = {"config": json.loads(config.to_json()), **rates.result()}
        if arrival is not None:
            summary["stream"] = arrival.stats()
        output.write_text("summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
        return summary
    finally:
        output.close()
