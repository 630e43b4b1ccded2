"""THE per-day dynamics of every customer: one vectorised step, shared by simulator and oracle.

``step_customers`` takes the state at 00:00 UTC of ``day`` for any number of
customers (the real population, or rows x Monte Carlo paths in the oracle),
draws that day's behaviour from the latent health, applies the day's shocks to
the health, and returns the state at the next midnight plus the day's events.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from core.times import DAY_US

from .day_events import BY_STUDENT, BY_TUTOR, CANCELLED, COMPLETED, NO_SHOW, DayEvents
from .params import MINUTE_US, PARAMS, Params
from .world import Customers, Tutors

HOUR_US = 3600 * 1_000_000


@dataclass
class CustomerState:
    health: np.ndarray           # latent health h (higher is healthier), in effect for the whole day
    health_mean: np.ndarray      # mu, the level h reverts to
    tier: np.ndarray             # int8
    subject: np.ndarray          # int8 primary subject (bookings and sessions are in it)
    tutor: np.ndarray            # int32 primary tutor
    signup_day: np.ndarray       # int32
    signup_tod_us: np.ndarray    # int64
    alive: np.ndarray            # bool: subscription not cancelled
    card_risk: np.ndarray        # float
    failed_attempts: np.ndarray  # int8 failed charges in the current billing cycle (0: paid up)
    trouble_billing: np.ndarray  # recent billing trouble (decays daily); drives calls
    trouble_tutor: np.ndarray    # recent bad/cancelled sessions; drives calls and tutor switches
    trouble_match: np.ndarray    # recent long waits for a tutor; drives calls

    def take(self, idx) -> "CustomerState":
        return CustomerState(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    @classmethod
    def initial(cls, customers: Customers, p: Params, rng: np.random.Generator) -> "CustomerState":
        n = customers.ids.size
        return cls(
            health=customers.health_mean + rng.normal(0.0, p.health_start_sd, n),
            health_mean=customers.health_mean, tier=customers.tier, subject=customers.subject,
            tutor=customers.first_tutor, signup_day=customers.signup_day,
            signup_tod_us=customers.signup_tod_us, alive=np.ones(n, bool), card_risk=customers.card_risk,
            failed_attempts=np.zeros(n, np.int8), trouble_billing=np.zeros(n), trouble_tutor=np.zeros(n),
            trouble_match=np.zeros(n),
        )


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _pick(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row-wise categorical draw from unnormalised weights, shape (m, k) -> (m,)."""
    cum = np.cumsum(weights, axis=1)
    u = rng.random(len(weights)) * cum[:, -1]
    return (u[:, None] > cum).sum(axis=1).astype(np.int8)


def _new_tutor(subject: np.ndarray, tutors: Tutors, rng: np.random.Generator) -> np.ndarray:
    return (tutors.subject_start[subject]
            + np.floor(rng.random(subject.size) * tutors.subject_count[subject]).astype(np.int64)).astype(np.int32)


def step_customers(state: CustomerState, tightness: np.ndarray, tutors: Tutors, day: int,
                   rng: np.random.Generator, p: Params = PARAMS) -> tuple[CustomerState, DayEvents]:
    """One day for every customer. ``tightness``: log(demand/supply) of each customer's subject today."""
    a = np.flatnonzero(state.alive & (state.signup_day < day))  # subscribed before today
    na = a.size
    h = state.health[a]
    tier = state.tier[a]
    tutor = state.tutor[a].copy()
    blocks: list[DayEvents] = []
    shock = np.zeros(na)
    trouble_b, trouble_t, trouble_m = np.zeros(na), np.zeros(na), np.zeros(na)

    # --- sessions: frequency from health and tier; outcome from tutor reliability/quality and health
    k = np.minimum(rng.poisson(np.array(p.session_rate_by_tier)[tier] * np.exp(p.session_h * h)), 3)
    j = np.repeat(np.arange(na), k)
    m = j.size
    st = tutor[j]
    u = rng.random(m)
    p_tutor_cancel = p.tutor_cancel_base + p.tutor_cancel_unreliability * (1 - tutors.reliability[st])
    p_student_cancel = p.student_cancel_base * np.exp(-0.5 * h[j])
    p_no_show = p.no_show_base * np.exp(-0.6 * h[j])
    c1, c2 = p_tutor_cancel, p_tutor_cancel + p_student_cancel
    status = np.select([u < c2, u < c2 + p_no_show], [CANCELLED, NO_SHOW], COMPLETED).astype(np.int8)
    canceller = np.select([u < c1, u < c2], [BY_TUTOR, BY_STUDENT], -1).astype(np.int8)
    experienced = np.clip(np.round(2 * (p.rating_mean + p.rating_quality * (tutors.quality[st] - 0.75)
                                        + p.rating_h * h[j] + p.rating_noise * rng.standard_normal(m))) / 2, 1, 5)
    done = status == COMPLETED
    rating = np.where(done & (rng.random(m) >= p.rating_missing), experienced, np.nan)
    duration = np.where(done, np.clip(np.round(rng.normal(np.array(p.session_minutes_by_tier)[tier[j]], 8.0), 1),
                                      10, 180), np.nan)
    blocks.append(DayEvents.block("session_completed", rng.integers(12 * HOUR_US, DAY_US, m), cust=a[j], tutor=st,
                                  subject=state.subject[a][j], status=status, canceller=canceller, rating=rating,
                                  value=duration))
    bad = done & (experienced <= 2.5)
    tutor_cancelled = canceller == BY_TUTOR
    shock += np.bincount(j, p.bad_session_shock * bad + p.good_session_lift * (done & (experienced >= 4.5))
                         + p.tutor_cancel_shock * tutor_cancelled, minlength=na)
    trouble_t += np.bincount(j, bad + 0.5 * tutor_cancelled, minlength=na)

    # --- logins, messages (and the tutor's replies), referrals
    k = rng.poisson(p.login_rate * np.exp(p.login_h * h))
    j = np.repeat(np.arange(na), k)
    blocks.append(DayEvents.block("login", rng.integers(0, DAY_US, j.size), cust=a[j]))

    k = rng.poisson(p.message_rate * np.exp(p.message_h * h))
    j = np.repeat(np.arange(na), k)
    to_tutor = rng.random(j.size) < p.message_to_tutor
    msg_tod = rng.integers(6 * HOUR_US, DAY_US, j.size)
    blocks.append(DayEvents.block("message_sent", msg_tod, cust=a[j], tutor=np.where(to_tutor, tutor[j], -1)))
    r = to_tutor & (rng.random(j.size) < tutors.reliability[tutor[j]])
    rel = tutors.reliability[tutor[j[r]]]
    resp = np.clip(np.round(rng.lognormal(np.log(p.response_median_minutes) + 4 * (1 - rel), 0.9), 1), 0.1, 43_200)
    blocks.append(DayEvents.block("tutor_response", msg_tod[r] + (resp * MINUTE_US).astype(np.int64),
                                  cust=a[j[r]], tutor=tutor[j[r]], value=resp))
    shock += np.bincount(j[r], p.slow_response_shock * (resp > p.slow_response_minutes), minlength=na)

    k = np.minimum(rng.poisson(p.referral_rate * np.exp(p.referral_h * h)), 1)
    j = np.flatnonzero(k)
    blocks.append(DayEvents.block("referral_made", rng.integers(0, DAY_US, j.size), cust=a[j]))

    # --- inbound calls: a low-health baseline plus reactions to recent trouble
    tb, tt, tm = state.trouble_billing[a], state.trouble_tutor[a], state.trouble_match[a]
    k = rng.poisson(p.call_base * np.exp(-p.call_h * h) + p.call_per_trouble * (tb + tt + tm))
    j = np.repeat(np.arange(na), k)
    m = j.size
    weights = np.stack([0.15 + 2 * tb[j], 0.10 + 2 * tt[j], 0.20 + 2 * tm[j], np.full(m, 0.25), np.full(m, 0.15)], 1)
    category = _pick(weights, rng) if m else np.zeros(0, np.int8)
    troubled = (tb + tt + tm)[j] > 0.3
    sentiment = np.round(np.clip(np.tanh(0.25 + 0.5 * h[j] - 0.5 * troubled + 0.35 * rng.standard_normal(m)),
                                 -1, 1), 3)
    escalated = rng.random(m) < _sigmoid(-2.5 - 2.5 * sentiment)
    call_seconds = np.clip(np.round(rng.lognormal(np.log(300) - 0.5 * sentiment, 0.5)), 20, 7_200)
    blocks.append(DayEvents.block("inbound_call", rng.integers(7 * HOUR_US, 23 * HOUR_US, m), cust=a[j],
                                  category=category, sentiment=sentiment, escalated=escalated, value=call_seconds))
    shock += np.bincount(j, p.escalated_call_shock * escalated, minlength=na)

    # --- payments: monthly charge at the midnight billing batch, retries of failed cycles later on
    failed = state.failed_attempts[a]
    due = ((day - state.signup_day[a]) % p.billing_cycle_days == 0) & (failed == 0)
    retry = (failed > 0) & (rng.random(na) < p.retry_probability)
    attempt = due | retry
    p_fail = np.where(retry, 0.45 + state.card_risk[a], state.card_risk[a] + p.payment_fail_h * _sigmoid(-2 * h))
    fail = attempt & (rng.random(na) < p_fail)
    pay_tod = np.where(due, 0, rng.integers(HOUR_US, 20 * HOUR_US, na))
    amount = np.array(p.price_by_tier)[tier]
    j = np.flatnonzero(attempt & ~fail)
    blocks.append(DayEvents.block("payment_succeeded", pay_tod[j], cust=a[j], value=amount[j]))
    j = np.flatnonzero(fail)
    blocks.append(DayEvents.block("payment_failed", pay_tod[j], cust=a[j], value=amount[j],
                                  category=rng.integers(0, 3, j.size)))
    failed = np.where(fail, failed + 1, np.where(attempt, 0, failed)).astype(np.int8)
    shock += p.failed_payment_shock * fail
    trouble_b += fail
    involuntary = failed >= p.max_failed_attempts

    # --- bookings: new tutor requests (more after bad sessions); waits follow the subject's tightness
    book = rng.random(na) < np.minimum(p.booking_base + p.booking_per_tutor_trouble * tt, 0.9)
    j = np.flatnonzero(book)
    tight = tightness[a[j]]
    req_tod = rng.integers(8 * HOUR_US, 22 * HOUR_US, j.size)
    blocks.append(DayEvents.block("booking_request", req_tod, cust=a[j], subject=state.subject[a[j]],
                                  origin_day=day))
    unmatched = rng.random(j.size) < _sigmoid(p.unmatched_intercept + p.unmatched_tightness * tight)
    wait = np.clip(np.round(rng.exponential(p.match_minutes * np.exp(p.match_tightness * tight)), 1), 0.5, 43_200)
    new_tutor = _new_tutor(state.subject[a[j]], tutors, rng)
    mj = ~unmatched
    blocks.append(DayEvents.block("booking_matched", req_tod[mj] + (wait[mj] * MINUTE_US).astype(np.int64),
                                  cust=a[j[mj]], subject=state.subject[a[j[mj]]], tutor=new_tutor[mj],
                                  value=wait[mj], origin_day=day))
    tutor[j[mj]] = new_tutor[mj]
    long_wait = unmatched | (wait > p.long_match_minutes)
    shock[j] += p.long_match_shock * long_wait
    trouble_m[j] += long_wait

    # --- churn: hazard from health, or involuntary after repeated failed charges
    hazard = np.minimum(np.exp(p.churn_intercept - p.churn_h * h), p.churn_max_daily)
    churn = (rng.random(na) < hazard) | involuntary
    cancel_tod = np.where(involuntary, pay_tod + MINUTE_US, rng.integers(HOUR_US, DAY_US, na))
    day_events = DayEvents.concat(blocks)
    # a cancelled customer emits nothing after the cancellation
    cutoff = np.full(state.health.size, np.iinfo(np.int64).max)
    cutoff[a[churn]] = cancel_tod[churn]
    day_events = day_events.select(day_events.tod < cutoff[day_events.cust])
    j = np.flatnonzero(churn)
    worst = np.stack([tb[j] + trouble_b[j], tt[j] + trouble_t[j], tm[j] + trouble_m[j]], 1)
    reason = np.where(worst.max(1) > 0.3, worst.argmax(1), 3)
    reason = np.where(involuntary[j], 4, reason)
    cancel = DayEvents.block("subscription_cancelled", cancel_tod[j], cust=a[j], category=reason)

    # --- signups today: the signup, the first charge, and the first tutor match
    s = np.flatnonzero(state.alive & (state.signup_day == day))
    s_tod = state.signup_tod_us[s]
    s_wait = np.clip(np.round(rng.exponential(p.match_minutes * np.exp(p.match_tightness * tightness[s])), 1),
                     0.5, 43_200)
    signups = [
        DayEvents.block("customer_signup", s_tod, cust=s),
        DayEvents.block("payment_succeeded", s_tod + 2 * MINUTE_US, cust=s,
                        value=np.array(p.price_by_tier)[state.tier[s]]),
        DayEvents.block("booking_request", s_tod + 5 * MINUTE_US, cust=s, subject=state.subject[s], origin_day=day),
        DayEvents.block("booking_matched", s_tod + 5 * MINUTE_US + (s_wait * MINUTE_US).astype(np.int64), cust=s,
                        subject=state.subject[s], tutor=state.tutor[s], value=s_wait, origin_day=day),
    ]
    day_events = DayEvents.concat([day_events, cancel, *signups])

    # --- tomorrow's state
    new = state.take(slice(None))
    new.health = state.health.copy()
    new.health[a] = h + p.kappa * (state.health_mean[a] - h) + p.sigma * rng.standard_normal(na) + shock
    new.tutor = state.tutor.copy()
    new.tutor[a] = tutor
    new.alive = state.alive.copy()
    new.alive[a[churn]] = False
    new.failed_attempts = state.failed_attempts.copy()
    new.failed_attempts[a] = failed
    for name, today in (("trouble_billing", trouble_b), ("trouble_tutor", trouble_t), ("trouble_match", trouble_m)):
        arr = getattr(state, name).copy()
        arr[a] = p.trouble_decay * arr[a] + today
        setattr(new, name, arr)
    return new, day_events
