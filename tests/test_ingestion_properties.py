"""Exactly-once effect (hypothesis): duplicates, different batch splits and crashes between the
state write and the push change neither the state nor the online rows."""
import json
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.state import DAY_US
from ingestion.dead_letters import SQLiteDeadLetters
from ingestion.handler import Ingester, current_states
from ingestion.push import MemoryPusher
from ingestion.records import horizon_key, kinesis_record, tick_record, to_us
from ingestion.state_store import SQLiteStateStore
from ingestion.ticks import TickPlanner
from tests.eventlog import random_history


class Crash(BaseException):
    """A simulated Lambda crash (not an Exception: the handler must not catch it)."""


def stream(seed):
    """Time-ordered Kinesis records (events + midnight ticks) with fixed sequence numbers."""
    evs = [e for e in random_history(random.Random(seed), customers=4, days=12) if hasattr(e, "customer_id")]
    evs.sort(key=lambda e: (e.timestamp, e.event_id))
    out, planner, seq, midnight = [], TickPlanner(), 0, None
    for e in evs:
        t = to_us(e.timestamp)
        while midnight is not None and midnight <= t:
            for c in planner.due(midnight):
                seq += 1
                out.append(kinesis_record(json.dumps(tick_record(c, midnight)).encode(), c, seq, midnight))
            midnight += DAY_US
        midnight = midnight or (t // DAY_US + 1) * DAY_US
        planner.saw(e.customer_id, t)
        seq += 1
        out.append(kinesis_record(json.dumps(e.to_record()).encode(), e.customer_id, seq, t))
    return out


def run(tmp, records, cuts, redeliver=(), crash_at=None):
    """Deliver ``records`` in batches split at ``cuts``; batches in ``redeliver`` are delivered twice
    (the first time crashing at ``crash_at`` if given), like Lambda retrying a failed invocation."""
    pusher = MemoryPusher()
    armed = {"on": False}

    def stage(name):
        if armed["on"] and name == crash_at:
            armed["on"] = False
            raise Crash(name)

    ing = Ingester(SQLiteStateStore(tmp / "s.db"), pusher, SQLiteDeadLetters(tmp / "d.db"), stage_hook=stage)
    bounds = [0, *sorted(set(cuts)), len(records)]
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        batch = records[a:b]
        if not batch:
            continue
        if i in redeliver:
            armed["on"] = crash_at is not None
            try:
                ing.handle({"Records": batch})
            except Crash:
                pass
        assert ing.handle({"Records": batch}) == {"batchItemFailures": []}
    custs = sorted({r["kinesis"]["partitionKey"] for r in records})
    # ticks are applied lazily: compare the states the handler would continue from
    return current_states(ing.store, custs, horizon_key(records[0])), pusher.table, ing


RECORDS = {seed: stream(seed) for seed in range(3)}
_settings = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def scenario(draw):
    seed = draw(st.sampled_from(sorted(RECORDS)))
    n = len(RECORDS[seed])
    cuts = draw(st.lists(st.integers(0, n), max_size=8))
    dups = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n)), max_size=10))
    return seed, cuts, dups




def reference(tmp_path_factory, seed, cache={}):
    if seed not in cache:
        cache[seed] = run(tmp_path_factory.mktemp("ref"), RECORDS[seed], [])[:2]
    return cache[seed]


@_settings
@given(scenario())
def test_batch_splits_and_duplicates_do_not_change_state_or_online_rows(tmp_path_factory, sc):
    seed, cuts, dups = sc
    ref_state, ref_online = reference(tmp_path_factory, seed)
    recs = list(RECORDS[seed])
    for src, pos in sorted(dups, key=lambda d: -d[1]):     # redeliveries: the same record again, later
        if pos > src:
            recs.insert(pos, recs[src])
    state, online, ing = run(tmp_path_factory.mktemp("x"), recs, cuts)
    assert state == ref_state
    assert online == ref_online
    redundant = ing.totals["duplicates"] + ing.totals["tick_noops"] + ing.totals["dead_letter:late"]
    assert redundant >= sum(1 for s, p in dups if p > s)


@_settings
@given(scenario(), st.sampled_from(["after_push", "after_save"]), st.data())
def test_crash_between_state_write_and_push_is_harmless(tmp_path_factory, sc, crash_at, data):
    seed, cuts, _ = sc
    ref_state, ref_online = reference(tmp_path_factory, seed)
    nb = len(set(cuts)) + 1
    redeliver = set(data.draw(st.lists(st.integers(0, nb), max_size=3)))
    state, online, ing = run(tmp_path_factory.mktemp("c"), RECORDS[seed], cuts, redeliver, crash_at)
    assert state == ref_state
    assert online == ref_online
    assert not ing.dead_letters.all()
