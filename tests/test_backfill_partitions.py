"""The backfill processes customers in key-range partitions (bounded memory): any partitioning
gives the same tables, row for row and value for value, in the same order."""
from __future__ import annotations

import random

import pyarrow.parquet as pq
import pytest

from features.backfill import customer_partitions, run_backfill
from tests.eventlog import random_history, ts, write_log

UNTIL = ts("2025-03-01T00:00:00Z")


def test_partitions_hold_at_most_the_bound_and_keep_key_order():
    counts = [("a", 5), ("b", 3), ("c", 9), ("d", 1), ("e", 1), ("f", 4)]
    assert customer_partitions(counts, 8) == [("a", "c"), ("c", "d"), ("d", None)]   # c alone: 9 > 8
    assert customer_partitions(counts, 100) == [("a", None)]
    assert customer_partitions([], 10) == []
    with pytest.raises(ValueError, match="positive number of events per partition, got 0"):
        customer_partitions(counts, 0)


def test_partitioned_backfill_equals_the_single_pass(tmp_path):
    history = random_history(random.Random(21), customers=12, days=45)
    events = write_log(history, tmp_path / "events")
    one = run_backfill(events, str(tmp_path / "one"), until=UNTIL, progress=False, partition_events=10 ** 9)
    many = run_backfill(events, str(tmp_path / "many"), until=UNTIL, progress=False, partition_events=40)
    ids = [getattr(e, "customer_id", None) for e in history]
    per_customer = sorted(ids.count(c) for c in set(ids) if c)
    assert per_customer[-1] > 40 > per_customer[0]        # several partitions, one customer alone in some
    assert many.customer_rows == one.customer_rows > 0
    for view, uri in one.outputs.items():
        a, b = pq.read_table(uri), pq.read_table(many.outputs[view])
        assert a.num_rows > 0
        assert a.column_names == b.column_names
        assert a.to_pylist() == b.to_pylist(), view
