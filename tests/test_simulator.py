"""The simulator: contract-valid, ordered, deterministic output whose label base rates are realistic."""
import collections
import hashlib
import json
import pathlib

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from events.contract import EVENT_LOG_SCHEMA, EVENT_TYPES, parse_event_json
from mhp.cli import main
from simulator.config import ConfigError, SimConfig
from simulator.run import TRUTH_SCHEMA, simulate


def _digest(folder: pathlib.Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    summary = simulate(SimConfig(customers=300, days=45, seed=11), str(out))
    events = [parse_event_json(line) for line in (out / "stream.jsonl").read_text().splitlines()]
    return out, summary, events


def test_every_stream_line_satisfies_the_contract_and_covers_every_type(small):
    out, summary, events = small
    assert len(events) == summary["events_total"] > 10_000
    assert {e.event_type for e in events} == set(EVENT_TYPES)
    assert len({e.event_id for e in events}) == len(events)


def test_stream_is_ordered_by_timestamp_then_event_id(small):
    _, _, events = small
    keys = [(e.timestamp, e.event_id) for e in events]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)


def test_some_events_happen_exactly_at_midnight_utc(small):
    _, _, events = small
    midnight = [e for e in events if e.timestamp.time().isoformat() == "00:00:00"]
    assert midnight and all(e.timestamp.microsecond == 0 for e in midnight)


def test_event_log_partitions_have_the_contract_schema_and_match_the_stream(small):
    out, _, events = small
    files = sorted((out / "events").glob("date=*/part-0.parquet"))
    assert files
    for f in files:
        assert pq.read_schema(f).equals(EVENT_LOG_SCHEMA)
        table = pq.read_table(f, schema=EVENT_LOG_SCHEMA)
        dates = {ts.date().isoformat() for ts in table.column("timestamp").to_pylist()}
        assert dates == {f.parent.name.removeprefix("date=")}  # partitioned by UTC date
    log = ds.dataset(out / "events", format="parquet", schema=EVENT_LOG_SCHEMA).to_table()
    assert sorted(log.column("event_id").to_pylist()) == sorted(e.event_id for e in events)


def test_each_customer_signs_up_once_and_is_silent_after_cancelling(small):
    _, _, events = small
    by_customer = collections.defaultdict(list)
    for e in events:
        if e.event_type != "tutor_availability":
            by_customer[e.customer_id].append(e)
    assert len(by_customer) == 300
    for customer, evs in by_customer.items():
        signups = [e for e in evs if e.event_type == "customer_signup"]
        assert len(signups) == 1 and evs[0] is signups[0], customer
        cancels = [i for i, e in enumerate(evs) if e.event_type == "subscription_cancelled"]
        assert cancels in ([], [len(evs) - 1]), customer


def test_bookings_match_their_request_and_tutor_events_are_tutor_keyed(small):
    _, _, events = small
    requests = {e.request_id: e for e in events if e.event_type == "booking_request"}
    matched = [e for e in events if e.event_type == "booking_matched"]
    assert matched
    for m in matched:
        r = requests[m.request_id]
        assert (r.customer_id, r.subject) == (m.customer_id, m.subject) and r.timestamp < m.timestamp
    availability = [e for e in events if e.event_type == "tutor_availability"]
    assert availability and all(e.partition_key == e.tutor_id for e in availability)


def test_truth_has_one_row_per_subscribed_customer_day(small):
    out, _, events = small
    truth = pq.read_table(out / "truth.parquet")
    assert truth.schema.equals(TRUTH_SCHEMA)
    df = truth.to_pandas()
    assert not df.duplicated(["customer_id", "date"]).any()
    assert df["date"].nunique() == 45
    config = json.loads((out / "simulation.json").read_text())
    assert config["customers"] == 300 and config["days"] == 45 and config["seed"] == 11


def test_same_seed_gives_byte_identical_outputs_and_another_seed_does_not(tmp_path):
    runs = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        simulate(SimConfig(customers=120, days=20, seed=seed), str(tmp_path / name))
        runs[name] = _digest(tmp_path / name)
    assert len(runs["a"]) > 5 and runs["a"] == runs["b"]
    for f in ("stream.jsonl", "truth.parquet"):
        assert runs["a"][f] != runs["c"][f]


def test_label_base_rates_are_realistic_and_latent_health_drives_churn(tmp_path):
    s = simulate(SimConfig(customers=1000, days=90, seed=3), str(tmp_path))
    assert 0.03 <= s["churn_30d_rate"] <= 0.08
    assert 0.10 <= s["ib_calls_14d_rate"] <= 0.25
    assert 40 < s["health_score_mean"] < 95
    deciles = s["churn_30d_by_health_decile"]
    assert deciles[0] >= 3 * deciles[-1]
    assert s["customer_windows"]["churn"] > 5000


def test_cli_simulates_and_prints_the_summary(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["simulate", "--customers", "150", "--days", "35", "--seed", "2", "--out", str(out),
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert f"events: {summary['events_total']:,}" in text
    assert "monthly churn (churn_30d)" in text and ">=2 inbound calls in 14d" in text
    assert "by latent-health decile" in text
    for t, n in summary["events_by_type"].items():
        assert f"{t:<24}{n:>12,}" in text
    assert (out / "stream.jsonl").stat().st_size > 0 and (out / "truth.parquet").exists()


@pytest.mark.parametrize("args, message", [
    (["--customers", "0"], "--customers: expected a positive integer, got 0"),
    (["--customers", "many"], "--customers: expected an integer, got 'many'"),
    (["--days", "-3"], "--days: expected a positive integer, got -3"),
    (["--seed", "-1"], "--seed: expected a non-negative integer, got -1"),
    (["--start", "2025-02-30"], "--start: expected a date as YYYY-MM-DD, got '2025-02-30'"),
    (["--start", "01/02/2025"], "--start: expected a date as YYYY-MM-DD, got '01/02/2025'"),
])
def test_cli_rejects_bad_arguments_with_exit_code_2(tmp_path, capsys, args, message):
    assert main(["simulate", "--out", str(tmp_path / "x"), "--no-progress", *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_config_rejects_a_bad_backdated_share():
    with pytest.raises(ConfigError, match=r"backdated_share: expected a number in \[0, 1\], got 1.5"):
        SimConfig(backdated_share=1.5)
