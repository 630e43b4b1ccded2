"""Online equals offline on a stream in arrival order (issue 13's bar): a simulated month with 2% of
events delivered 1 minute to 6 hours late and 1% re-sent, replayed in small batches: nothing
dead-lettered, no silent duplicate, and online == offline at >= 2,000 random (customer, t) pairs
after arrival, every feature of churn_model_v1 (the comparison is ``test_ingestion_parity.compare``)."""
import json

import pyarrow.parquet as pq
import pytest

from events.contract import TUTOR_KEYED_TYPES
from simulator.config import Disorder, SimConfig
from simulator.run import simulate
from tests.test_ingestion_parity import DAYS, compare


@pytest.fixture(scope="module")
def disordered(tmp_path_factory):
    """The same kind of month with 2% of events delivered 1 minute to 6 hours late and 1% re-sent
    (1 hour to 1 day after the first copy): stream.jsonl in arrival order."""
    root = tmp_path_factory.mktemp("sim_disorder")
    summary = simulate(SimConfig(customers=150, days=DAYS, seed=6), str(root),
                       disorder=Disorder(late_share=0.02, late_min=60, late_max=6 * 3600, resend_share=0.01))
    return root, summary["stream"]


def test_online_equals_offline_after_arrival_on_a_disordered_stream(disordered, tmp_path):
    """2% late (1 min - 6 h), 1% re-sent, small batches (a quiet stream): nothing dead-lettered, every
    re-sent copy a duplicate and nothing else, and online == offline at >= 2,000 (customer, t) pairs
    whose events at or before t have arrived."""
    root, stats = disordered
    ing, rep, pairs, skipped = compare(root, tmp_path, n_times=40, per_time=56, seed=23, batch_size=50,
                                       after_arrival=True)
    rep.run_until(None)
    assert len(pairs) >= 2000 and skipped > 0
    assert stats["late_events"] > 50 and stats["resent_events"] > 30
    events = pq.read_table(root / "events").to_pandas()
    customer_events = int((events["customer_id"].notna() & ~events["event_type"].isin(TUTOR_KEYED_TYPES)).sum())
    t = ing.totals
    assert not [k for k in t if k.startswith("dead_letter:")]          # 0 dead-lettered (none too late)
    assert t["applied"] == customer_events                              # every event applied once
    assert t["duplicates"] == stats["resent_events"] - resent_tutor_lines(root)   # 0 silent duplicates
    assert t["late_applied"] > 5                                        # late after a newer event of theirs


def resent_tutor_lines(root) -> int:
    """Re-sent copies of tutor-keyed events (acknowledged as tutor events, not customer duplicates)."""
    seen, n = set(), 0
    for line in open(root / "stream.jsonl", "rb"):
        obj = json.loads(line)
        if obj["event_type"] in TUTOR_KEYED_TYPES:
            n += obj["event_id"] in seen
            seen.add(obj["event_id"])
    return n
