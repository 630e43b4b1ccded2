"""The latest drift and data-quality verdicts, read from the reports the pipeline wrote.

* data quality: ``<state>/reports/*.html`` (``validation.report``: each says PASSED or FAILED);
* drift: ``<state>/drift/drift.csv`` (``mhp drift``: one row per feature with its PSI status) and its plot.

Only the files listed here can be opened through the console (by name, no paths).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

DRIFT_ORDER = {"stable": 0, "moderate": 1, "drift": 2}


@dataclass(frozen=True)
class Report:
    name: str           # the link's key: "<folder>/<file>"
    kind: str           # "data quality" | "drift"
    verdict: str        # PASSED / FAILED / stable / moderate / drift / unknown
    detail: str
    written: str        # file modification time (UTC), when the pipeline wrote it


class Reports:
    def __init__(self, state_dir: str | Path):
        self.state = Path(state_dir)

    def files(self) -> dict[str, Path]:
        found = {}
        for folder, pattern in (("reports", "*.html"), ("drift", "*.csv"), ("drift", "*.png")):
            for p in sorted((self.state / folder).glob(pattern)):
                found[f"{folder}/{p.name}"] = p
        return found

    def path(self, name: str) -> Path | None:
        return self.files().get(name)

    def verdicts(self) -> list[Report]:
        out = []
        for name, p in self.files().items():
            if name.startswith("reports/"):
                text = p.read_text(encoding="utf-8", errors="replace")
                verdict = "FAILED" if ">FAILED<" in text else "PASSED" if ">PASSED<" in text else "unknown"
                out.append(Report(name, "data quality", verdict, p.stem, _mtime(p)))
            elif name.endswith(".csv"):
                with open(p, newline="", encoding="utf-8") as f:
                    rows = list(csv.DictReader(f))
                worst = max((r.get("status", "") for r in rows), key=lambda s: DRIFT_ORDER.get(s, -1), default="")
                drifted = [r["feature"] for r in rows if r.get("status") == "drift"][:5]
                detail = (f"{len(rows)} features; drifted: {', '.join(drifted)}" if drifted
                          else f"{len(rows)} features, none drifted")
                out.append(Report(name, "drift", worst or "unknown", detail, _mtime(p)))
        return out


def _mtime(p: Path) -> str:
    return datetime.fromtimestamp(p.stat().st_mtime, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
