"""Serving benchmarks (embedded profile, loopback only).

* inference server: one-row p50/p99 latency and rows/s for batches, over HTTP keep-alive
  (``serving.endpoint.HttpEndpoint`` against ``serving.server.InferenceServer``);
* online lookup of the full ``churn_model_v1`` vector (``features.retrieval.online_features``:
  primary-tutor lookup + feature service with on-demand views) on the SQLite online store;
* trigger -> alert decision through the whole scoring path: ``ServingScoringHook.on_high_signal``
  for one customer = online lookup + endpoint call + rules + cooldown check (+ attribution,
  outbox and local alert log when an alert fires: measured separately).
"""
from __future__ import annotations

import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from features import catalog as C


def _pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def _world(root: Path):
    from features import store as FS
    from features.backfill import run_backfill
    from testing.toy_model import train_toy_model
    from tests.eventlog import ts, write_log
    from tests.test_serving_e2e import AS_OF, history

    write_log(history(), root / "events")
    run_backfill(str(root / "events"), str(root / "features"), until=AS_OF, progress=False)
    store = FS.open_store("local", root / "feast")
    FS.apply(store, str(root / "features"))
    store.materialize(start_date=ts("2024-12-01T00:00:00Z"), end_date=AS_OF)
    return store, train_toy_model(root / "model"), AS_OF


def run(quick: bool = False) -> list[dict]:
    import pandas as pd

    from features.retrieval import online_features
    from serving.config import ServingConfig
    from serving.endpoint import HttpEndpoint
    from serving.hook import ServingScoringHook
    from serving.runtime import build_service
    from serving.server import InferenceServer

    n_single = 200 if quick else 2000
    n_lookup = 50 if quick else 500
    n_trigger = 50 if quick else 500
    rows = []
    with tempfile.TemporaryDirectory(prefix="mhp-bench-serving-") as tmp:
        root = Path(tmp)
        store, model, as_of = _world(root)
        with InferenceServer(model, port=0) as srv:
            ep = HttpEndpoint(srv.url)
            from features.retrieval import model_columns
            from serving.scoring import frame_to_rows

            vec = frame_to_rows(online_features(store, ["bad"], pd.Timestamp(as_of)), model_columns())[0]
            for _ in range(50):
                ep.invoke([vec])
            lat = []
            for _ in range(n_single):
                t = time.perf_counter()
                ep.invoke([vec])
                lat.append((time.perf_counter() - t) * 1000)
            rows.append(dict(benchmark="serving", metric="inference server, 1 row, p50", value=_pct(lat, 50), unit="ms"))
            rows.append(dict(benchmark="serving", metric="inference server, 1 row, p99", value=_pct(lat, 99), unit="ms"))
            for size in (100, 1000):
                batch = [vec] * size
                reps = 5 if quick else 30
                t = time.perf_counter()
                for _ in range(reps):
                    ep.invoke(batch)
                el = time.perf_counter() - t
                rows.append(dict(benchmark="serving", metric=f"inference server, batches of {size}",
                                 value=size * reps / el, unit="rows/s"))

            from features.retrieval import online_feature_rows

            def lookups(fn, ids, n):
                fn(store, ids, pd.Timestamp(as_of))  # warm: the resolved plan is cached per registry version
                lat, cpu0 = [], time.process_time()
                for i in range(n):
                    t = time.perf_counter()
                    fn(store, ids, pd.Timestamp(as_of + timedelta(seconds=i, microseconds=i)))
                    lat.append((time.perf_counter() - t) * 1000)
                return lat, (time.process_time() - cpu0) * 1000 / n

            lk, cpu = lookups(online_features, ["bad"], n_lookup)
            rows.append(dict(benchmark="serving", metric=f"online lookup, full vector ({len(C.model_features())} features), p50",
                             value=_pct(lk, 50), unit="ms"))
            rows.append(dict(benchmark="serving", metric=f"online lookup, full vector ({len(C.model_features())} features), p99",
                             value=_pct(lk, 99), unit="ms", goal="<= 5 ms", ok=_pct(lk, 99) <= 5))
            rows.append(dict(benchmark="serving", metric="online lookup, full vector, CPU per lookup",
                             value=cpu, unit="ms"))
            lk, cpu = lookups(online_feature_rows, ["bad"], n_lookup)
            rows.append(dict(benchmark="serving", metric="online lookup as rows (no DataFrame), p50",
                             value=_pct(lk, 50), unit="ms"))
            rows.append(dict(benchmark="serving", metric="online lookup as rows (no DataFrame), p99",
                             value=_pct(lk, 99), unit="ms", goal="<= 5 ms", ok=_pct(lk, 99) <= 5))
            rows.append(dict(benchmark="serving", metric="online lookup as rows, CPU per lookup",
                             value=cpu, unit="ms"))
            batch = ["bad", "good"] * 50
            lk, cpu = lookups(online_features, batch, max(n_lookup // 10, 20))
            rows.append(dict(benchmark="serving", metric="online lookup, batch of 100 customers, p50",
                             value=_pct(lk, 50), unit="ms"))
            rows.append(dict(benchmark="serving", metric="online lookup, batch of 100 customers, p99",
                             value=_pct(lk, 99), unit="ms"))
            rows.append(dict(benchmark="serving", metric="online lookup, batch of 100, CPU per lookup",
                             value=cpu, unit="ms"))
            import os
            rows.append(dict(benchmark="serving", metric="load average (1 min) after the lookups",
                             value=os.getloadavg()[0], unit=""))

            config = ServingConfig(endpoint_url=srv.url)
            hook = ServingScoringHook(build_service(config, store, root / "state"))
            # no alert: a healthy customer (the common case)
            dec = []
            for i in range(n_trigger):
                t = time.perf_counter()
                hook.on_high_signal(["good"], as_of + timedelta(seconds=i))
                hook.drain()   # the hook records; the worker scores and decides
                dec.append((time.perf_counter() - t) * 1000)
            rows.append(dict(benchmark="serving", metric="trigger -> alert decision (no alert), p50",
                             value=_pct(dec, 50), unit="ms"))
            rows.append(dict(benchmark="serving", metric="trigger -> alert decision (no alert), p99",
                             value=_pct(dec, 99), unit="ms", goal="<= 50 ms", ok=_pct(dec, 99) <= 50))
            # alert fires every time (cooldown 0): + attribution call, outbox, local alert log
            hook2 = ServingScoringHook(build_service(config.with_(cooldown_hours=0.0), store, root / "state2"))
            al = []
            for i in range(max(n_trigger // 5, 20)):
                t = time.perf_counter()
                hook2.on_high_signal(["bad"], as_of + timedelta(seconds=i))
                hook2.drain()
                al.append((time.perf_counter() - t) * 1000)
            assert hook2.last.alerts, "the bad customer should alert"
            rows.append(dict(benchmark="serving", metric="trigger -> alert published (attribution + outbox + log), p50",
                             value=_pct(al, 50), unit="ms"))
            rows.append(dict(benchmark="serving", metric="trigger -> alert published (attribution + outbox + log), p99",
                             value=_pct(al, 99), unit="ms"))
            rows.append(dict(benchmark="serving", metric="trigger -> decision, mean", value=statistics.mean(dec), unit="ms"))
    return rows
