"""Console benchmark: page times over HTTP (uvicorn on 127.0.0.1, loopback) on a demo workspace.

The workspace is ``$MHP_CONSOLE_WORKSPACE`` when set (e.g. ``out/demo`` after ``make demo``),
else one built here through ``mhp demo`` (default sizes: 2,000 customers x 120 days, 7 live days;
``--quick``: 150 x 90, 3 live days). Pages score at the simulation's end. A customer page is one
online lookup + one endpoint call (the scores) + one batched call for the score history and one
for the top features (occlusion), the event query and rendering.
"""
from __future__ import annotations

import os
import random
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path


def _pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def _get(url: str) -> float:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url) as resp:
        resp.read()
        assert resp.status == 200, url
    return (time.perf_counter() - t0) * 1000


def run(quick: bool = False) -> list[dict]:
    import json

    from console.server import build_console, start
    from core.workspace import Workspace
    from testing import console_workspace as cw

    tmp = None
    root = os.environ.get("MHP_CONSOLE_WORKSPACE")
    if root:
        root = Path(root)
        sim = json.loads((root / "simulation.json").read_text())
        end = datetime.fromisoformat(sim["start"]).replace(tzinfo=timezone.utc) + timedelta(days=sim["days"])
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bench-console-")
        root = Path(tmp.name) / "demo"
        end = (cw.build(root) if quick else cw.build(root, customers=2000, days=120, live_days=7, epochs=40))
    console, inference = build_console(Workspace.local(root), at=end)
    running = start(console, inference)
    try:
        customers = sorted(console.history._offsets)
        rng = random.Random(7)
        sample = [rng.choice(customers) for _ in range(30 if quick else 200)]
        for cid in sample[:5]:                                   # warm-up (first requests, caches)
            _get(f"{running.url}/customers/{urllib.parse.quote(cid, safe='')}")
        customer_ms = [_get(f"{running.url}/customers/{urllib.parse.quote(c, safe='')}") for c in sample]
        alerts_ms = [_get(f"{running.url}/alerts") for _ in range(20)]
        _get(f"{running.url}/overview")
        overview_ms = [_get(f"{running.url}/overview") for _ in range(10)]
        n_alerts = len(console.alerts.all())
    finally:
        running.stop()
        if tmp is not None:
            tmp.cleanup()
    size = f"{len(customers):,} served customers, {n_alerts:,} alerts"
    rows = [
        {"benchmark": "console", "metric": f"customer page p50 ({size})", "value": _pct(customer_ms, 50), "unit": "ms"},
        {"benchmark": "console", "metric": "customer page p95", "value": _pct(customer_ms, 95), "unit": "ms",
         "goal": "<= 300", "ok": _pct(customer_ms, 95) <= 300},
        {"benchmark": "console", "metric": "alerts page p95 (50 rows)", "value": _pct(alerts_ms, 95), "unit": "ms"},
        {"benchmark": "console", "metric": "overview page p95", "value": _pct(overview_ms, 95), "unit": "ms"},
    ]
    for r in rows:
        print(f"{r['metric']}: {r['value']:.1f} ms", flush=True)
    return rows
