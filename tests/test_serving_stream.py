"""Events stream in through the real ingester (Lambda handler -> bounded state -> Feast push, day
ticks) with the serving hook attached: the customer who goes bad is alerted, by the hook, at the
event time the risk crossed the thresholds, once per type within the cooldown; the healthy
customers never are. Embedded profile (local alert log)."""
import json

import pytest

from events.contract import format_timestamp
from features import catalog as C
from features import store as FS
from features.backfill import run_backfill
from ingestion.dead_letters import SQLiteDeadLetters
from ingestion.handler import Ingester
from ingestion.push import FeastPusher
from ingestion.replay import StreamReplay
from ingestion.state_store import SQLiteStateStore
from serving.config import ServingConfig
from serving.hook import DrainAfterBatch, ServingScoringHook
from serving.runtime import build_service
from serving.server import InferenceServer
from testing.toy_model import train_toy_model
from tests.eventlog import ts, write_log
from tests.test_serving_e2e import AS_OF, history


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return train_toy_model(tmp_path_factory.mktemp("model"))


def write_stream(events, path):
    with open(path, "w") as f:
        for e in sorted(events, key=lambda e: (e.timestamp, e.event_id)):
            d = e.model_dump(exclude_none=True)
            d["timestamp"] = format_timestamp(e.timestamp)
            f.write(json.dumps(d, default=str) + "\n")


def test_stream_to_alert(tmp_path, model_path):
    events = history()
    write_log(events, tmp_path / "events")
    write_stream(events, tmp_path / "stream.jsonl")
    # the batch views (tutor, marketplace) come from the backfill at their daily cadence
    run_backfill(str(tmp_path / "events"), str(tmp_path / "features"), until=AS_OF, progress=False)
    store = FS.open_store("local", tmp_path / "feast")
    FS.apply(store, str(tmp_path / "features"))
    store.materialize(start_date=ts("2024-12-01T00:00:00Z"), end_date=AS_OF,
                      feature_views=list(C.BATCH_VIEWS))
    with InferenceServer(model_path, port=0) as srv:
        config = ServingConfig(endpoint_url=srv.url, cooldown_hours=24 * 30)
        service = build_service(config, store, tmp_path / "serving")
        calls = []

        class Recording(ServingScoringHook):
            def on_high_signal(self, customer_ids, as_of):
                calls.append((list(customer_ids), as_of))
                super().on_high_signal(customer_ids, as_of)

        hook = Recording(service)
        ing = Ingester(SQLiteStateStore(tmp_path / "state.db"), FeastPusher(store),
                       SQLiteDeadLetters(tmp_path / "dl.db"), hook)
        # the hook records; the in-process worker scores and publishes after each ingest batch
        rep = StreamReplay(DrainAfterBatch(ing, hook), tmp_path / "stream.jsonl", batch_size=25)
        rep.run_until(int(AS_OF.timestamp() * 1_000_000))
    assert not rep.failures and ing.totals["failed"] == 0 and calls
    assert service.state.pending_count() == 0 and service.state.undelivered_count() == 0
    log = [json.loads(line) for line in (tmp_path / "serving" / config.alert_log).read_text().splitlines()]
    assert {a["customer_id"] for a in log} == {"bad"}
    by_type = {}
    for a in log:
        assert a["type"] not in by_type, "one alert per type within the cooldown"
        by_type[a["type"]] = a
    assert "churn_risk_ib_calls" in by_type
    first = min(a["as_of"] for a in log)
    assert first > "2025-02-10"            # the bad streak starts on day 40 (2025-02-10)
    ib = by_type["churn_risk_ib_calls"]
    assert any(f["feature"].startswith(("ib_call_count_", "negative_sentiment_calls_", "escalation_count_",
                                        "avg_call_duration_")) for f in ib["top_features"])
