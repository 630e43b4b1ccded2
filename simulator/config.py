"""The simulation's identity: size, length, seed and start date (written to simulation.json); the stream's
arrival disorder (``Disorder``, simulator/disorder.py applies it)."""
from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import asdict, dataclass

DEFAULT_CUSTOMERS = 2_000
DEFAULT_DAYS = 120
DEFAULT_SEED = 7
DEFAULT_START = "2025-01-01"


class ConfigError(ValueError):
    """A bad simulation setting; the message names the setting and what was expected."""


@dataclass(frozen=True)
class SimConfig:
    customers: int = DEFAULT_CUSTOMERS
    days: int = DEFAULT_DAYS
    seed: int = DEFAULT_SEED
    start: str = DEFAULT_START            # first simulated UTC date, YYYY-MM-DD
    backdated_share: float = 0.75         # share of customers already signed up before start
    backdate_max_days: int = 365

    def __post_init__(self) -> None:
        for name in ("customers", "days"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ConfigError(f"{name}: expected a positive integer, got {v!r}")
        if self.customers > 10_000_000:
            raise ConfigError(f"customers: expected at most 10,000,000, got {self.customers}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed: expected a non-negative integer, got {self.seed!r}")
        try:
            parsed = dt.date.fromisoformat(self.start) if isinstance(self.start, str) else None
        except ValueError:
            parsed = None
        if parsed is None or len(self.start) != 10:
            raise ConfigError(f"start: expected a date as YYYY-MM-DD, got {self.start!r}")
        if not 0.0 <= self.backdated_share <= 1.0:
            raise ConfigError(f"backdated_share: expected a number in [0, 1], got {self.backdated_share!r}")

    @property
    def start_date(self) -> dt.date:
        return dt.date.fromisoformat(self.start)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "SimConfig":
        return cls(**json.loads(text))


class DisorderError(ValueError):
    """A bad disorder setting; the message names the setting and what was expected."""


@dataclass(frozen=True)
class Disorder:
    """How stream.jsonl's deliveries depart from event-time order (all zero: in order)."""

    late_share: float = 0.0          # share of events delivered late
    late_min: float = 60.0           # seconds: the shortest delay of a late event
    late_max: float = 21_600.0       # seconds: the longest delay of a late event (6 h)
    resend_share: float = 0.0        # share of events sent a second time
    resend_min: float = 3_600.0      # seconds after the first copy's arrival (1 h)
    resend_max: float = 86_400.0     # (1 day)

    def __post_init__(self) -> None:
        for name in ("late_share", "resend_share"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise DisorderError(f"{name.replace('_', '-')}: expected a number in [0, 1], got {v!r}")
        for low, high in (("late_min", "late_max"), ("resend_min", "resend_max")):
            lo, hi = getattr(self, low), getattr(self, high)
            for name, v in ((low, lo), (high, hi)):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 1:
                    raise DisorderError(f"{name.replace('_', '-')}: expected a number of seconds >= 1, got {v!r}")
            if hi < lo:
                raise DisorderError(f"{high.replace('_', '-')}: expected >= {low.replace('_', '-')} ({lo}), got {hi}")
        for name in ("late_share", "late_min", "late_max", "resend_share", "resend_min", "resend_max"):
            object.__setattr__(self, name, float(getattr(self, name)))  # one spelling in summary.json

    @property
    def active(self) -> bool:
        return self.late_share > 0 or self.resend_share > 0

    def to_dict(self) -> dict:
        return asdict(self)
