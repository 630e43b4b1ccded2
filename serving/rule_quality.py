"""How good each alert rule is, against the ground truth the simulator wrote (the event log).

Each rule answers one question, chosen by its head: ``ib_call_risk_14d`` rules predict >= 2
inbound calls within 14 days (``labels.definitions.CALLS_*``); the others (churn risk, health
score) predict a cancellation within 30 days (``CHURN_DAYS``). Per rule, over the alerts whose
as-of time lies in the evaluated window [start, end]:

* ``alerts_per_day``: alerts / days in the window;
* ``precision``: the share of alerts followed by the event within the horizon, (t, t + horizon],
  the labels' own definition. An alert whose horizon reaches past ``observed_until`` (the end of
  the event log) is *censored*: it counts as a hit if the event was seen, else as a miss, so with
  censored alerts the precision is a lower bound (``censored`` says how many);
* ``oracle_precision`` (when oracle probabilities are given): the mean probability of the event
  at each alert's time by the simulator's oracle (``simulator.oracle``), which needs no future
  and so is not censored;
* ``recall``: of the customers with an event in (start, observed_until] (a cancellation; the
  second of two inbound calls within 14 days), the share that had an alert of the rule at or
  before the event within the horizon and after the window start (both calls after the alert);
* ``median_lead_days``: over the caught customers, the days from their first such alert to the event.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence

from core.times import DAY_US, parse_utc_time, to_us
from labels.definitions import CALLS_DAYS, CALLS_THRESHOLD, CHURN_DAYS

from .config import AlertRule


@dataclass(frozen=True)
class Target:
    name: str
    horizon_days: int


CHURN = Target("churned within 30 d", CHURN_DAYS)
CALLS = Target(f">= {CALLS_THRESHOLD} IB calls within 14 d", CALLS_DAYS)


def target_of(rule: AlertRule) -> Target:
    return CALLS if rule.head == "ib_call_risk_14d" else CHURN


@dataclass
class RuleQuality:
    rule: str
    target: str
    alerts: int
    alerts_per_day: float
    customers: int
    precision: float
    censored: int
    oracle_precision: float
    events: int
    caught: int
    recall: float
    median_lead_days: float


def _us(t: Any) -> int:
    if isinstance(t, int):
        return t
    if isinstance(t, str):
        return to_us(parse_utc_time(t, "as_of"))
    return to_us(t)


def _hit(t: int, times: Sequence[int], target: Target) -> int | None:
    """The event time that makes an alert at ``t`` a hit (None: no event in (t, t + horizon])."""
    after = [x for x in times if t < x <= t + target.horizon_days * DAY_US]
    need = CALLS_THRESHOLD if target is CALLS else 1
    return after[need - 1] if len(after) >= need else None


def _events(times: Sequence[int], target: Target, start: int, until: int) -> list[int]:
    """Event times in (start, until]: a cancellation; a call that is the second within 14 days
    of an earlier call, both after ``start`` (the alerts cannot have seen earlier ones)."""
    ts = sorted(x for x in times if start < x <= until)
    if target is CHURN:
        return ts
    span = target.horizon_days * DAY_US
    return [ts[i] for i in range(CALLS_THRESHOLD - 1, len(ts)) if ts[i] - ts[i - CALLS_THRESHOLD + 1] <= span]


def rule_quality(alerts: Iterable[Mapping[str, Any]], cancellations: Mapping[str, Sequence[Any]],
                 calls: Mapping[str, Sequence[Any]], rules: Sequence[AlertRule], start: datetime, end: datetime,
                 observed_until: datetime, oracle: Mapping[tuple[str, str, str], float] | None = None
                 ) -> list[RuleQuality]:
    """``alerts``: dicts with ``type``, ``customer_id``, ``as_of`` (ISO or datetime);
    ``cancellations`` / ``calls``: customer -> event times (the event log's
    ``subscription_cancelled`` / ``inbound_call``); ``oracle``: (customer, as_of ISO, target
    name) -> probability, optional. Rules without alerts get a row of zeros/NaN."""
    if end <= start:
        raise ValueError(f"rule quality: the window must not be empty, got start {start} >= end {end}")
    s, e, obs = to_us(start), to_us(end), to_us(observed_until)
    days = (e - s) / DAY_US
    times = {CHURN: {c: sorted(_us(t) for t in v) for c, v in cancellations.items()},
             CALLS: {c: sorted(_us(t) for t in v) for c, v in calls.items()}}
    by_type: dict[str, list[tuple[str, int, str]]] = {}
    for a in alerts:
        t = _us(a["as_of"])
        if s <= t <= e:      # the daily batch at the window's last midnight belongs to it
            by_type.setdefault(a["type"], []).append((a["customer_id"], t, str(a["as_of"])))
    out = []
    for rule in rules:
        target = target_of(rule)
        got = sorted(by_type.get(rule.type, []), key=lambda x: (x[1], x[0]))
        hits = sum(_hit(t, times[target].get(c, []), target) is not None for c, t, _ in got)
        censored = sum(t + target.horizon_days * DAY_US > obs for _, t, _ in got)
        probs = [oracle.get((c, iso, target.name)) for c, _, iso in got] if oracle is not None else []
        probs = [p for p in probs if p is not None and p == p]
        first_alerts: dict[str, list[int]] = {}
        for c, t, _ in got:
            first_alerts.setdefault(c, []).append(t)
        events = caught = 0
        leads = []
        for c, ts in times[target].items():
            evs = _events(ts, target, s, obs)
            if not evs:
                continue
            events += 1
            # the earliest alert that this customer's events make a hit
            for t in first_alerts.get(c, []):
                ev = _hit(t, ts, target)
                if ev is not None and ev in evs:
                    caught += 1
                    leads.append((ev - t) / DAY_US)
                    break
        n = len(got)
        out.append(RuleQuality(
            rule=rule.type, target=target.name, alerts=n, alerts_per_day=n / days,
            customers=len(first_alerts), precision=hits / n if n else float("nan"), censored=censored,
            oracle_precision=statistics.fmean(probs) if probs else float("nan"),
            events=events, caught=caught, recall=caught / events if events else float("nan"),
            median_lead_days=statistics.median(leads) if leads else float("nan")))
    return out


def _f(v: float, pct: bool = False) -> str:
    if v != v:
        return "-"
    return f"{100 * v:.1f}%" if pct else f"{v:.1f}"


def format_rule_quality(rows: Sequence[RuleQuality]) -> str:
    head = (f"{'rule':<24} {'ground truth':<26} {'alerts/day':>10} {'customers':>9} {'precision':>9} "
            f"{'(censored)':>10} {'oracle prec.':>12} {'recall':>7} {'caught/events':>13} {'median lead d':>13}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.rule:<24} {r.target:<26} {r.alerts_per_day:>10.1f} {r.customers:>9} "
                     f"{_f(r.precision, True):>9} {r.censored:>10} {_f(r.oracle_precision, True):>12} "
                     f"{_f(r.recall, True):>7} {f'{r.caught}/{r.events}':>13} {_f(r.median_lead_days):>13}")
    return "\n".join(lines)


def ground_truth_events(events_uri: str, until: datetime) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """(cancellations, inbound calls) per customer from the event log (local or s3://), up to ``until``."""
    from features.backfill import connect  # lazy: DuckDB only when a report is made

    con = connect(events_uri)
    glob = events_uri.rstrip("/") + "/**/*.parquet"
    rows = con.execute(f"""
        SELECT customer_id, event_type, epoch_us("timestamp") AS tsu
        FROM read_parquet('{glob}', hive_partitioning = true, union_by_name = true)
        WHERE customer_id IS NOT NULL AND event_type IN ('subscription_cancelled', 'inbound_call')
          AND epoch_us("timestamp") <= ?
        ORDER BY tsu""", [to_us(until)]).fetchall()
    cancels: dict[str, list[int]] = {}
    calls: dict[str, list[int]] = {}
    for c, kind, t in rows:
        (cancels if kind == "subscription_cancelled" else calls).setdefault(c, []).append(int(t))
    return cancels, calls


def oracle_probabilities(sim_dir: str, alerts: Sequence[Mapping[str, Any]], n_paths: int = 100,
                         seed: int = 0) -> dict[tuple[str, str, str], float]:
    """(customer, as_of, target name) -> the simulator oracle's probability of the rule's event."""
    import pandas as pd

    from simulator.oracle import (
        label_probabilities,  # lazy: the oracle only for reports
    )

    keys = sorted({(a["customer_id"], str(a["as_of"])) for a in alerts})
    if not keys:
        return {}
    rows = pd.DataFrame({"customer_id": [c for c, _ in keys],
                         "event_timestamp": pd.to_datetime([t for _, t in keys], utc=True,
                                                           format="ISO8601").tz_localize(None)})
    probs = label_probabilities(sim_dir, rows, n_paths=n_paths, seed=seed)
    out: dict[tuple[str, str, str], float] = {}
    for (c, t), churn, calls in zip(keys, probs["churn_30d"], probs["ib_calls_14d"]):
        out[(c, t, CHURN.name)] = float(churn)
        out[(c, t, CALLS.name)] = float(calls)
    return out
