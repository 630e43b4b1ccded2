"""The simulation's identity: size, length, seed and start date (written to simulation.json)."""
from __future__ import annotations

import datetime as dt
import json
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
