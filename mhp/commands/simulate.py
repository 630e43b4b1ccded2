"""`mhp simulate`: generate a marketplace and print what it looks like."""
from __future__ import annotations

import argparse
from pathlib import Path

from core.errors import UsageError
from simulator.config import (
    DEFAULT_CUSTOMERS,
    DEFAULT_DAYS,
    DEFAULT_SEED,
    DEFAULT_START,
    ConfigError,
    Disorder,
    DisorderError,
    SimConfig,
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="generate a synthetic marketplace: event log, replay stream and ground truth",
        description=(
            "Simulate customers, tutors and 20 subjects day by day. Writes OUT/events/date=YYYY-MM-DD/"
            "part-0.parquet, OUT/stream.jsonl, OUT/truth.parquet, OUT/simulation.json and OUT/summary.json. "
            f"The defaults ({DEFAULT_CUSTOMERS:,} customers x {DEFAULT_DAYS} days, the size `make demo` uses) "
            "run end to end in well under a minute."
        ),
    )
    p.add_argument("--customers", type=str, default=str(DEFAULT_CUSTOMERS),
                   help=f"number of customers (default {DEFAULT_CUSTOMERS:,})")
    p.add_argument("--days", type=str, default=str(DEFAULT_DAYS), help=f"days to simulate (default {DEFAULT_DAYS})")
    p.add_argument("--seed", type=str, default=str(DEFAULT_SEED), help=f"random seed (default {DEFAULT_SEED})")
    p.add_argument("--start", default=DEFAULT_START, help=f"first UTC date, YYYY-MM-DD (default {DEFAULT_START})")
    p.add_argument("--out", default="out/sim", help="output folder or s3://bucket/prefix (default out/sim)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    d = p.add_argument_group(
        "arrival disorder",
        "stream.jsonl in arrival order: a share of events delivered late, a share re-sent (same event_id). "
        "Event timestamps and the event log are unchanged; delays are log-uniform in [min, max] seconds.")
    d.add_argument("--late-share", type=str, default="0", help="share of events delivered late (default 0)")
    d.add_argument("--late-min", type=str, default="60", help="shortest delay of a late event, seconds (default 60)")
    d.add_argument("--late-max", type=str, default="21600",
                   help="longest delay of a late event, seconds (default 21600 = 6 h)")
    d.add_argument("--resend-share", type=str, default="0", help="share of events sent twice (default 0)")
    d.add_argument("--resend-min", type=str, default="3600",
                   help="shortest delay of the second copy after the first, seconds (default 3600)")
    d.add_argument("--resend-max", type=str, default="86400",
                   help="longest delay of the second copy after the first, seconds (default 86400)")
    p.set_defaults(func=run)


def _int(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"--{name}: expected an integer, got {text!r}") from None


def _float(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"--{name}: expected a number, got {text!r}") from None


def disorder_from_args(args: argparse.Namespace) -> Disorder:
    names = ("late_share", "late_min", "late_max", "resend_share", "resend_min", "resend_max")
    try:
        return Disorder(**{n: _float(n.replace("_", "-"), getattr(args, n)) for n in names})
    except DisorderError as exc:
        raise UsageError(f"--{exc}") from None


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from simulator.run import simulate  # lazy: loaded only when this command runs (keeps `mhp --help` light)

    try:
        config = SimConfig(customers=_int("customers", args.customers), days=_int("days", args.days),
                           seed=_int("seed", args.seed), start=args.start)
    except ConfigError as exc:
        raise UsageError(f"--{exc}") from None
    disorder = disorder_from_args(args)
    if not args.out or not str(args.out).strip():
        raise UsageError("--out: expected a folder or s3://bucket/prefix, got an empty string")
    if "://" not in str(args.out):
        try:  # an unwritable folder fails here with its name, not deep inside the writer
            Path(args.out).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--out: cannot create the folder {args.out!r}: {exc.strerror or exc}") from None

    def days(r):
        return tqdm(r, desc="simulating", unit="day", disable=args.no_progress)

    summary = simulate(config, args.out, days_iter=days, disorder=disorder)
    print(format_summary(summary, args.out))
    return 0


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def format_summary(s: dict, out: str) -> str:
    c = s["config"]
    lines = [f"simulated {c['customers']:,} customers x {c['days']} days from {c['start']} (seed {c['seed']}) -> {out}",
             f"events: {s['events_total']:,}"]
    lines += [f"  {t:<24}{n:>12,}" for t, n in s["events_by_type"].items()]
    w = s["customer_windows"]
    lines += [
        "label base rates (windows of whole days starting every 7th midnight):",
        f"  monthly churn (churn_30d)           {_pct(s['churn_30d_rate'])}  over {w['churn']:,} customer-windows"
        f"  (cancellations per 30 customer-days: {_pct(s['churn_per_30_customer_days'])})",
        f"  >=2 inbound calls in 14d (ib_calls) {_pct(s['ib_calls_14d_rate'])}  over {w['ib_calls']:,} customer-windows",
        "  mean health score (30d)             "
        + ("n/a" if s["health_score_mean"] is None else f"{s['health_score_mean']:.1f}"),
        "  churn_30d by latent-health decile (1 = least healthy): "
        + " ".join(_pct(v) for v in s["churn_30d_by_health_decile"]),
        "  least / most healthy decile churn ratio: "
        + ("n/a (too few windows or no churn among the healthiest)" if s["churn_decile_ratio"] is None
           else f"{s['churn_decile_ratio']:.1f}x"),
    ]
    if "stream" in s:
        st = s["stream"]
        d = st["disorder"]
        lines.append(
            f"stream in arrival order: {st['late_events']:,} events late by {d['late_min']:g}-{d['late_max']:g} s, "
            f"{st['resent_events']:,} re-sent {d['resend_min']:g}-{d['resend_max']:g} s after the first copy")
    return "\n".join(lines)
