"""Every tunable number of the simulated marketplace, in one place.

Rates are per customer per day unless noted; ``*_h`` coefficients scale how a
rate responds to the latent health ``h`` (rate = base * exp(coef * h)).
docs/simulator.md explains how they were tuned to the label base-rate bars.
"""
from __future__ import annotations

from dataclasses import dataclass

MINUTE_US = 60 * 1_000_000


@dataclass(frozen=True)
class Params:
    # latent health: h' = h + kappa (mu - h) + sigma eps + shocks
    health_mean_sd: float = 0.75          # spread of customers' long-run means mu
    health_start_sd: float = 0.30         # |h - mu| at signup
    kappa: float = 0.03                   # mean reversion per day (half-life ~23 days)
    sigma: float = 0.05                   # daily diffusion (stationary sd of h - mu without shocks ~0.2)
    # shocks (added to h on the day they happen)
    bad_session_shock: float = -0.35      # completed session rated <= 2.5
    good_session_lift: float = 0.04       # completed session rated >= 4.5
    tutor_cancel_shock: float = -0.20
    failed_payment_shock: float = -0.30
    long_match_shock: float = -0.25       # time to match above long_match_minutes, or no match at all
    slow_response_shock: float = -0.05    # tutor answered after > 12 h
    escalated_call_shock: float = -0.08
    # sessions
    session_rate_by_tier: tuple[float, float, float] = (0.18, 0.28, 0.40)
    session_h: float = 0.6
    session_minutes_by_tier: tuple[float, float, float] = (40.0, 55.0, 60.0)
    tutor_cancel_base: float = 0.01
    tutor_cancel_unreliability: float = 0.35   # p += this * (1 - tutor reliability)
    student_cancel_base: float = 0.05
    no_show_base: float = 0.025
    rating_mean: float = 4.0
    rating_quality: float = 3.0           # rating += this * (tutor quality - 0.75)
    rating_h: float = 0.5
    rating_noise: float = 0.4
    rating_missing: float = 0.15
    # engagement
    login_rate: float = 0.55
    login_h: float = 0.5
    message_rate: float = 0.25
    message_h: float = 0.8
    message_to_tutor: float = 0.8
    response_median_minutes: float = 25.0
    slow_response_minutes: float = 720.0
    referral_rate: float = 0.004
    referral_h: float = 0.8
    # inbound calls
    call_base: float = 0.030
    call_h: float = 0.9
    call_per_trouble: float = 0.12        # extra daily call rate per unit of recent trouble
    trouble_decay: float = 0.75           # recent trouble carried to the next day
    # payments (monthly billing; first attempt at 00:00:00 UTC, the billing batch)
    billing_cycle_days: int = 30
    price_by_tier: tuple[float, float, float] = (49.0, 99.0, 179.0)
    payment_fail_h: float = 0.04          # p_fail += this * sigmoid(-2h)
    retry_probability: float = 0.5        # a failed cycle is retried on a given later day
    max_failed_attempts: int = 4          # then the subscription is cancelled (involuntary churn)
    # bookings and market
    booking_base: float = 0.012
    booking_per_tutor_trouble: float = 0.25
    match_minutes: float = 30.0           # mean time to match at tightness 0
    match_tightness: float = 1.6          # mean *= exp(this * tightness)
    long_match_minutes: float = 180.0
    unmatched_intercept: float = -4.5     # P(no match) = sigmoid(a + b * tightness)
    unmatched_tightness: float = 1.5
    market_rho: float = 0.93
    supply_sigma: float = 0.06
    demand_sigma: float = 0.06
    shortage_probability: float = 0.01    # per subject per day: tutors leave, supply drops
    shortage_size: float = 0.9
    subject_base_sd: float = 0.35
    # churn: daily hazard exp(a - b h), plus involuntary churn after failed payments
    churn_intercept: float = -6.95
    churn_h: float = 1.1
    churn_max_daily: float = 0.3


PARAMS = Params()
