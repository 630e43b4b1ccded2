"""Serving benchmarks (embedded profile, loopback only).

* inference server (``serving.server.InferenceServer`` in its own process, as ``mhp serve`` runs
  it, serving a production-shaped artifact: the ``churn_model_v1`` inputs, an ensemble of 5 nets
  of (128, 64)): one-row p50/p99 at 1 and 50 concurrent keep-alive clients, rows/s for batches
  of 100 and 1,000 in the row form and the column form; the ensemble's batched forward pass
  against its members run one after another;
* the scoring path's own client (``serving.endpoint.HttpEndpoint``, in-process server, toy model);
* online lookup of the full ``churn_model_v1`` vector (``features.retrieval.online_features``:
  primary-tutor lookup + feature service with on-demand views) on the SQLite online store;
* trigger -> alert decision through the whole scoring path: ``ServingScoringHook.on_high_signal``
  for one customer = online lookup + endpoint call + rules + cooldown check (+ attribution,
  outbox and local alert log when an alert fires: measured separately).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
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


def _production_shaped_artifact(root: Path, toy_model: Path) -> Path:
    """The toy artifact's preprocessing under a 5 x (128, 64) ensemble (seeded weights): the
    production model's shape, so the timings are the production model's."""
    import torch

    from training.artifact import load_artifact, pack_model_dir, save_model_dir
    from training.model import EnsembleNet, NetConfig

    pre = load_artifact(toy_model).model.preprocessor
    torch.manual_seed(0)
    net = EnsembleNet(NetConfig(pre.n_outputs, (128, 64), 0.1, members=5)).eval()
    save_model_dir(root / "prod-shaped", net=net, preprocessor=pre, train_config={"ensemble": 5},
                   train_summary={})
    return pack_model_dir(root / "prod-shaped", root / "prod-shaped.tar.gz")


_SERVE = """
import sys
from serving.server import InferenceServer
srv = InferenceServer(sys.argv[1], port=0)
print(srv.port, flush=True)
srv.serve_forever()
"""


def _cpu_seconds(pid: int) -> float:
    """user + system CPU of a process (Linux /proc): the server's own work, whatever the machine's load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _timed_posts(port: int, body: bytes, n: int, out: list[float], barrier=None) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"}
    if barrier is not None:
        barrier.wait()
    for _ in range(n):
        t = time.perf_counter()
        conn.request("POST", "/invocations", body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        out.append((time.perf_counter() - t) * 1000)
        if resp.status != 200:
            raise RuntimeError(f"status {resp.status}")
    conn.close()


def _inference_server(model: Path, vec: dict, quick: bool) -> list[dict]:
    rows = [dict(benchmark="serving", metric="load average (1 min) before the inference server runs",
                 value=os.getloadavg()[0], unit="")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1])]
                                                      + sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", _SERVE, str(model)], stdout=subprocess.PIPE, env=env, text=True)
    try:
        port = int(proc.stdout.readline())
        one = json.dumps({"instances": [vec]}).encode()
        warm: list[float] = []
        _timed_posts(port, one, 100, warm)
        lat: list[float] = []
        cpu0 = _cpu_seconds(proc.pid)
        _timed_posts(port, one, 300 if quick else 3000, lat)
        cpu_one = (_cpu_seconds(proc.pid) - cpu0) / len(lat) * 1000
        rows.append(dict(benchmark="serving", metric="inference server, 1 row, 1 client, p50", value=_pct(lat, 50),
                         unit="ms"))
        rows.append(dict(benchmark="serving", metric="inference server, 1 row, 1 client, p99", value=_pct(lat, 99),
                         unit="ms", goal="<= 5 ms", ok=_pct(lat, 99) <= 5))
        rows.append(dict(benchmark="serving", metric="inference server, 1 row, server CPU per request", value=cpu_one,
                         unit="ms"))
        clients, per_client = 50, (10 if quick else 100)
        barrier = threading.Barrier(clients)
        results: list[list[float]] = [[] for _ in range(clients)]
        threads = [threading.Thread(target=_timed_posts, args=(port, one, per_client, results[i], barrier))
                   for i in range(clients)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        elapsed = time.perf_counter() - t
        lat = [x for r in results for x in r]
        if len(lat) != clients * per_client:
            raise RuntimeError(f"{clients * per_client - len(lat)} requests of 50 clients failed")
        rows.append(dict(benchmark="serving", metric="inference server, 1 row, 50 concurrent clients, p50",
                         value=_pct(lat, 50), unit="ms"))
        rows.append(dict(benchmark="serving", metric="inference server, 1 row, 50 concurrent clients, p99",
                         value=_pct(lat, 99), unit="ms"))
        rows.append(dict(benchmark="serving", metric="inference server, 1 row, 50 concurrent clients, throughput",
                         value=len(lat) / elapsed, unit="requests/s"))
        for size in (100, 1000):
            reps = 5 if quick else 30
            forms = {"row form": {"instances": [vec] * size},
                     "column form": {"columns": list(vec), "data": [list(vec.values())] * size}}
            for form, payload in forms.items():
                body = json.dumps(payload).encode()
                _timed_posts(port, body, 2, [])
                lat = []
                cpu0 = _cpu_seconds(proc.pid)
                _timed_posts(port, body, reps, lat)
                cpu = _cpu_seconds(proc.pid) - cpu0
                rate = size * reps / (sum(lat) / 1000)
                # the goal is the scoring path's: serving.endpoint sends the column form
                goal = dict(goal=">= 20,000 rows/s", ok=rate >= 20_000) if (size, form) == (1000, "column form") else {}
                rows.append(dict(benchmark="serving", metric=f"inference server, batches of {size}, {form} "
                                 f"({len(body) // size:,} bytes/row)", value=rate, unit="rows/s", **goal))
                rows.append(dict(benchmark="serving", metric=f"inference server, batches of {size}, {form}: "
                                 "rows per second of server CPU", value=size * reps / cpu, unit="rows/CPU-s"))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return rows


def _ensemble_forward(model: Path, quick: bool) -> list[dict]:
    import torch

    from training.artifact import load_artifact

    net = load_artifact(model).model.net
    rows = []
    torch.set_num_threads(1)
    for n in (1, 1000):
        x = torch.randn(n, net.config.input_dim)
        reps = (200 if n == 1 else 20) * (1 if quick else 5)
        with torch.no_grad():
            for label, fn in (("batched", lambda: net.predict_tensors(x)),
                              ("members one after another", lambda: [m.predict_tensors(x) for m in net.members])):
                fn()
                t = time.perf_counter()
                for _ in range(reps):
                    fn()
                ms = (time.perf_counter() - t) / reps * 1000
                rows.append(dict(benchmark="serving", metric=f"ensemble forward pass (5 x (128, 64)), {n} row(s), "
                                 f"{label}", value=ms, unit="ms"))
    return rows


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
        # the inference server first, on its own artifact and a toy-dataset row (the feature store not involved)
        from testing.toy_model import make_dataset, train_toy_model

        frame, schema = make_dataset(50, seed=1)
        names = [f["name"] for f in schema["features"]]
        sample = json.loads(frame[names].iloc[[7]].to_json(orient="records"))[0]   # NaN -> null
        prod_shaped = _production_shaped_artifact(root, train_toy_model(root / "toy-for-shape", n_rows=600, epochs=1))
        rows += _inference_server(prod_shaped, sample, quick)
        rows += _ensemble_forward(prod_shaped, quick)

        store, model, as_of = _world(root)
        from features.retrieval import model_columns
        from serving.scoring import frame_to_rows

        vec = frame_to_rows(online_features(store, ["bad"], pd.Timestamp(as_of)), model_columns())[0]
        with InferenceServer(model, port=0) as srv:
            ep = HttpEndpoint(srv.url)
            for _ in range(50):
                ep.invoke([vec])
            lat = []
            for _ in range(n_single):
                t = time.perf_counter()
                ep.invoke([vec])
                lat.append((time.perf_counter() - t) * 1000)
            rows.append(dict(benchmark="serving", metric="HttpEndpoint -> in-process server (toy model), 1 row, p50",
                             value=_pct(lat, 50), unit="ms"))
            rows.append(dict(benchmark="serving", metric="HttpEndpoint -> in-process server (toy model), 1 row, p99",
                             value=_pct(lat, 99), unit="ms"))

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
