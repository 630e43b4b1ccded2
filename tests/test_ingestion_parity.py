"""Online (stream ingester -> Feast push) equals offline (backfill -> point-in-time join) at random
(customer, t) pairs of a simulated month, for every feature of churn_model_v1: on the stream in
event-time order, and on a stream in arrival order (late and re-sent deliveries) after arrival."""
import json
import random

import pandas as pd
import pytest

from events.contract import TUTOR_KEYED_TYPES
from features import catalog as C
from features import store as FS
from features.backfill import run_backfill
from features.retrieval import historical_features, model_columns, online_features
from features.state import DAY_US
from ingestion.dead_letters import SQLiteDeadLetters
from ingestion.handler import Ingester
from ingestion.push import FeastPusher
from ingestion.replay import StreamReplay
from ingestion.state_store import SQLiteStateStore
from simulator.config import SimConfig
from simulator.run import simulate
from tests.eventlog import same_value

START = pd.Timestamp("2025-01-01", tz="UTC")
DAYS = 32


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    simulate(SimConfig(customers=150, days=DAYS, seed=5), str(root))
    return root


def first_arrivals(stream_path):
    """Per stream line (ts, customer or None); per customer its events' (ts, position of first arrival)."""
    lines, first, seen = [], {}, set()
    for i, line in enumerate(open(stream_path, "rb")):
        obj = json.loads(line)
        t = pd.Timestamp(obj["timestamp"]).value // 1000
        cid = obj.get("customer_id") if obj["event_type"] not in TUTOR_KEYED_TYPES else None
        lines.append(t)
        if cid is not None and obj["event_id"] not in seen:
            seen.add(obj["event_id"])
            first.setdefault(cid, []).append((t, i))
    return lines, first


def compare(root, tmp_path, *, n_times, per_time, seed, batch_size, after_arrival=False):
    """Replay ``root``'s stream, pause at random instants t, read the online rows of random customers at t
    and compare them with the point-in-time rows at t, every churn_model_v1 column. With
    ``after_arrival``, only pairs whose customer's events at or before t have all arrived by t."""
    run_backfill(str(root / "events"), str(tmp_path / "features"), progress=False)
    store = FS.open_store("local", tmp_path / "feast")
    FS.apply(store, str(tmp_path / "features"))
    ing = Ingester(SQLiteStateStore(tmp_path / "state.db"), FeastPusher(store), SQLiteDeadLetters(tmp_path / "dl.db"))
    rep = StreamReplay(ing, root / "stream.jsonl", batch_size=batch_size)
    line_ts, first = first_arrivals(root / "stream.jsonl") if after_arrival else ([], {})

    rng = random.Random(seed)
    customers = [f"c{i:07d}" for i in range(150)]
    times = set()
    while len(times) < n_times:
        # arbitrary microsecond instants: the request time travels as integer microseconds
        # (catalog.REQUEST_TIME_FIELD), so the request-time recency features match offline exactly
        t = START + pd.Timedelta(microseconds=rng.randrange(DAY_US // 2, DAYS * DAY_US))
        if rng.random() < 0.2:
            t = t.floor("D")                      # exactly at a midnight (a tick instant)
        times.add(t)
    pairs, online_rows, skipped = [], [], 0
    materialized_day = None
    cut = 0
    for t in sorted(times):
        t_us = t.value // 1000
        rep.run_until(t_us)
        while cut < len(line_ts) and line_ts[cut] <= t_us:    # the replay sent lines[:cut]
            cut += 1
        day = t.floor("D")
        if day != materialized_day:               # the daily batch job for the day just ended
            store.materialize(start_date=pd.Timestamp("2020-01-01", tz="UTC").to_pydatetime(),
                              end_date=(day + pd.Timedelta(seconds=1)).to_pydatetime(),
                              feature_views=list(C.BATCH_VIEWS))
            materialized_day = day
        custs = rng.sample(customers, per_time)
        if after_arrival:
            arrived = [c for c in custs if all(i < cut for ts_, i in first.get(c, []) if ts_ <= t_us)]
            skipped += len(custs) - len(arrived)
            custs = arrived
        online_rows.append(online_features(store, custs, t))
        pairs += [(c, t) for c in custs]
    assert not rep.failures and ing.totals["failed"] == 0
    online = pd.concat(online_rows, ignore_index=True)
    hist = historical_features(store, pd.DataFrame({"customer_id": [c for c, _ in pairs],
                                                    "event_timestamp": [t for _, t in pairs]}))
    cols = model_columns()
    assert len(cols) > 140
    mismatches = []
    for name in cols:
        for (c, t), a, b in zip(pairs, online[name].to_numpy(dtype=object), hist[name].to_numpy(dtype=object)):
            if not same_value(a, b):
                mismatches.append((name, c, str(t), a, b))
    assert not mismatches, mismatches[:10]
    # the comparison is not vacuous: most pairs have data, and windows decayed for some
    assert online["total_sessions_lifetime"].notna().mean() > 0.5
    assert (online["session_count_7d"] == 0).any() and (online["session_count_7d"] > 0).any()
    return ing, rep, pairs, skipped


def test_online_equals_offline_at_random_instants(sim, tmp_path):
    ing, rep, pairs, _ = compare(sim, tmp_path, n_times=20, per_time=52, seed=17, batch_size=1000)
    assert len(pairs) >= 1000
    assert ing.totals["applied"] > 3000 and ing.totals["ticks"] > 1000
