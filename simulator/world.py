"""The static world: who the customers and tutors are, and the 20 subjects' fixed traits.

Rebuilt identically from a SimConfig (the oracle does so), so nothing here may
depend on anything but the config's seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from events.contract import CATEGORIES, REGIONS, SUBJECT_CATEGORY, SUBJECTS

from .config import SimConfig
from .params import PARAMS, Params

N_SUBJECTS = len(SUBJECTS)
# Relative demand per subject (algebra and the test-prep classics are the big ones).
SUBJECT_POPULARITY = np.array(
    [10, 6, 6, 4, 6, 6, 5, 5, 7, 4, 3, 4, 3, 3, 4, 2, 8, 5, 2, 4], dtype=float
)
TEST_PREP_GRADES = {"sat_prep": (10, 12), "act_prep": (10, 12), "ap_prep": (10, 12), "gre_prep": (13, 13)}


def rng_for(seed: int, *key: int) -> np.random.Generator:
    """An independent, reproducible stream per purpose (and per day): no shared global state."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


@dataclass
class Tutors:
    ids: np.ndarray            # str
    subject: np.ndarray        # int8 index into SUBJECTS
    quality: np.ndarray        # 0..1, drives ratings
    reliability: np.ndarray    # 0..1, drives tutor cancellations and response times
    base_hours: np.ndarray     # weekly hours at normal supply
    publish_weekday: np.ndarray  # day % 7 on which the tutor publishes availability
    subject_start: np.ndarray  # tutors are sorted by subject: [start, start+count) teach subject s
    subject_count: np.ndarray


@dataclass
class Customers:
    ids: np.ndarray            # str
    tier: np.ndarray           # int8 index into TIERS
    channel: np.ndarray        # int8 index into CHANNELS
    grade: np.ndarray          # int8 1..13
    subject: np.ndarray        # int8 primary subject
    region: np.ndarray         # int8 index into REGIONS
    referrer: np.ndarray       # int32 customer index, -1 if none
    signup_day: np.ndarray     # int32, relative to the start date (negative: backdated)
    signup_tod_us: np.ndarray  # int64 time of day of the signup
    health_mean: np.ndarray    # mu: the long-run latent health the customer reverts to
    card_risk: np.ndarray      # baseline probability a charge fails
    first_tutor: np.ndarray    # int32 tutor index matched at signup


@dataclass
class World:
    config: SimConfig
    tutors: Tutors
    customers: Customers
    subject_base: np.ndarray   # structural tightness per subject (some are always short of tutors)


def _tutors(n_customers: int, rng: np.random.Generator) -> Tutors:
    n = max(3 * N_SUBJECTS, n_customers // 8)
    share = SUBJECT_POPULARITY / SUBJECT_POPULARITY.sum()
    # every subject gets at least 3 tutors; the rest follow popularity
    count = 3 + rng.multinomial(n - 3 * N_SUBJECTS, share)
    subject = np.repeat(np.arange(N_SUBJECTS, dtype=np.int8), count)
    start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
    width = max(6, len(str(n - 1)))
    return Tutors(
        ids=np.array([f"t{i:0{width}d}" for i in range(n)]),
        subject=subject,
        quality=rng.beta(7.0, 2.3, n),
        reliability=rng.beta(10.0, 1.2, n),
        base_hours=np.round(rng.gamma(4.0, 3.0, n) + 2.0, 1),
        publish_weekday=rng.integers(0, 7, n).astype(np.int8),
        subject_start=start,
        subject_count=count.astype(np.int64),
    )


def _customers(config: SimConfig, tutors: Tutors, rng: np.random.Generator, p: Params) -> Customers:
    n = config.customers
    share = SUBJECT_POPULARITY / SUBJECT_POPULARITY.sum()
    subject = rng.choice(N_SUBJECTS, n, p=share).astype(np.int8)
    tier = rng.choice(3, n, p=[0.35, 0.45, 0.20]).astype(np.int8)
    channel = rng.choice(3, n, p=[0.5, 0.3, 0.2]).astype(np.int8)
    channel[0] = 0  # the first customer cannot have been referred
    referrer = np.where(channel == 2, np.floor(rng.random(n) * np.arange(n)).astype(np.int32), -1)
    grade = rng.integers(1, 14, n)
    for name, (lo, hi) in TEST_PREP_GRADES.items():
        mask = subject == SUBJECTS.index(name)
        grade[mask] = rng.integers(lo, hi + 1, mask.sum())
    backdated = rng.random(n) < config.backdated_share
    signup_day = np.where(
        backdated,
        -rng.integers(1, config.backdate_max_days + 1, n),
        rng.integers(0, config.days, n),
    ).astype(np.int32)
    # premium and referred customers are healthier on average, paid acquisition less so
    mu = (rng.normal(0.0, p.health_mean_sd, n) + np.array([-0.2, 0.0, 0.25])[tier]
          + np.array([0.0, -0.15, 0.2])[channel])
    first_tutor = tutors.subject_start[subject] + np.floor(
        rng.random(n) * tutors.subject_count[subject]).astype(np.int64)
    width = max(7, len(str(n - 1)))
    return Customers(
        ids=np.array([f"c{i:0{width}d}" for i in range(n)]),
        tier=tier, channel=channel, grade=grade.astype(np.int8), subject=subject,
        region=rng.choice(len(REGIONS), n, p=[0.2, 0.2, 0.18, 0.14, 0.2, 0.08]).astype(np.int8),
        referrer=referrer.astype(np.int32), signup_day=signup_day,
        signup_tod_us=rng.integers(6 * 3600, 22 * 3600, n) * 1_000_000 + rng.integers(0, 1_000_000, n),
        health_mean=mu, card_risk=rng.beta(1.2, 50.0, n), first_tutor=first_tutor.astype(np.int32),
    )


def build_world(config: SimConfig, p: Params = PARAMS) -> World:
    rng = rng_for(config.seed, 0)
    tutors = _tutors(config.customers, rng)
    customers = _customers(config, tutors, rng, p)
    return World(config, tutors, customers, subject_base=rng.normal(0.0, p.subject_base_sd, N_SUBJECTS))


def subject_category_index(subject: np.ndarray) -> np.ndarray:
    lookup = np.array([CATEGORIES.index(SUBJECT_CATEGORY[s]) for s in SUBJECTS], dtype=np.int8)
    return lookup[subject]

