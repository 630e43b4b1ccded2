"""Per-subject supply and demand, and the tutors' availability they show up in.

Subjects evolve independently of each other, so the same step function runs
on the 20 real subjects (the simulator) or on one copy of a customer's subject
per Monte Carlo path (the oracle): the distribution is the same.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.times import DAY_US

from .day_events import DayEvents
from .params import PARAMS, Params
from .world import Tutors


@dataclass
class MarketState:
    base: np.ndarray     # structural tightness of the subject (static)
    supply: np.ndarray   # log deviation of tutor hours from normal
    demand: np.ndarray   # log deviation of booking demand from normal

    def tightness(self) -> np.ndarray:
        """log(demand / supply): the higher, the longer a booking waits for a tutor."""
        return self.base + self.demand - self.supply

    def take(self, idx) -> "MarketState":
        return MarketState(self.base[idx], self.supply[idx], self.demand[idx])


def step_market(m: MarketState, rng: np.random.Generator, p: Params = PARAMS) -> MarketState:
    """One day of AR(1) drift, plus sudden shortages (tutors leave) that recover slowly."""
    shape = m.supply.shape
    shortage = rng.random(shape) < p.shortage_probability
    return MarketState(
        base=m.base,
        supply=p.market_rho * m.supply + p.supply_sigma * rng.standard_normal(shape) - p.shortage_size * shortage,
        demand=p.market_rho * m.demand + p.demand_sigma * rng.standard_normal(shape),
    )


def tutor_availability(m: MarketState, tutors: Tutors, day: int, rng: np.random.Generator) -> DayEvents:
    """Each tutor publishes weekly hours on their own weekday; hours follow the subject's supply."""
    t = np.flatnonzero(tutors.publish_weekday == day % 7)
    noise = rng.lognormal(0.0, 0.15, t.size)
    hours = np.clip(np.round(tutors.base_hours[t] * np.exp(m.supply[tutors.subject[t]]) * noise * 2) / 2, 0.5, 80.0)
    tod = rng.integers(0, DAY_US, t.size)
    return DayEvents.block("tutor_availability", tod, tutor=t, subject=tutors.subject[t], value=hours)
