"""The ingester's push path (ingestion.push.FeastPusher -> store.push) goes through the guarded online
stores of both profiles: pushing a customer's older row after a newer one leaves the newer one."""
from __future__ import annotations

import random

import pytest

from core import aws
from features import catalog as C
from ingestion.push import FeastPusher
from tests.eventlog import aws_local_feature_store, local_feature_store, random_history, replay, ts, write_log

UNTIL = ts("2025-02-20T00:00:00Z")


@pytest.fixture(scope="module")
def history():
    return random_history(random.Random(5), customers=4, days=40)


def _two_rows(history):
    """A customer's snapshot at two clocks whose features differ."""
    snaps = replay(history, UNTIL)["c1"]
    clocks = sorted(snaps)
    old, new = clocks[len(clocks) // 3], clocks[-1]
    differ = [f.name for f in C.CUSTOMER_FEATURES if snaps[old][f.name] != snaps[new][f.name]]
    assert differ
    return (old, snaps[old]), (new, snaps[new]), differ


def _online(store, names):
    got = store.get_online_features(features=[f"{C.CUSTOMER_VIEW}:{n}" for n in names],
                                    entity_rows=[{"customer_id": "c1"}]).to_dict()
    return {n: got[n][0] for n in names}


def _check(store, history):
    (old_clock, old), (new_clock, new), differ = _two_rows(history)
    pusher = FeastPusher(store)
    pusher.push([("c1", new_clock, new)])
    pusher.push([("c1", old_clock, old)])                     # a slower writer's older row
    got = _online(store, differ)
    assert got == {n: pytest.approx(new[n]) if isinstance(new[n], float) else new[n] for n in differ}
    pusher.push([("c1", new_clock, {**new, **{differ[0]: old[differ[0]]}})])   # same clock, new values: written
    assert _online(store, differ[:1]) == {differ[0]: old[differ[0]]}


def test_local_profile_push_path_is_guarded(tmp_path, history):
    store = local_feature_store(tmp_path, history, UNTIL, "state")
    _check(store, history)


def test_aws_local_profile_push_path_is_guarded(moto_endpoint, tmp_path, history):
    aws.ensure_bucket("mhp-guard")
    data = "s3://mhp-guard/ws"
    store = aws_local_feature_store(tmp_path, write_log(history, tmp_path / "events"), UNTIL, data, "state")
    assert type(store._get_provider().online_store).__name__ == "GuardedDynamoDBOnlineStore"
    _check(store, history)
