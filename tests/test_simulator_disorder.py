"""Arrival disorder in the simulator's stream: late and re-sent lines, event time and the event log untouched."""
import collections
import hashlib
import json
import pathlib

import pytest

from events.contract import parse_event_json
from mhp.cli import main
from simulator.config import Disorder, DisorderError, SimConfig
from simulator.run import simulate

SMALL = SimConfig(customers=60, days=12, seed=5)
# sha256 of the stream and summary of SMALL, written before disorder existed: without the
# option the output stays byte-identical.
SMALL_STREAM_SHA = "f84418adc4ca16e2cef526fbd98b1018dda8698d31845e6e322f47eaf9020358"
SMALL_SUMMARY_SHA = "33a62eb2f099a98c83faf7449c8f55c2c37e5300484c20a6faa7152fd435af76"

CONFIG = SimConfig(customers=300, days=30, seed=11)
DISORDER = Disorder(late_share=0.05, late_min=60, late_max=3 * 86_400, resend_share=0.03,
                    resend_min=3_600, resend_max=86_400)


def _sha(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _digests(folder: pathlib.Path, pattern: str) -> dict[str, str]:
    return {str(p.relative_to(folder)): _sha(p) for p in sorted(folder.glob(pattern)) if p.is_file()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("disorder")
    summaries = {}
    for name, config, disorder in [("in_order", CONFIG, None), ("a", CONFIG, DISORDER), ("b", CONFIG, DISORDER),
                                   ("seed", SimConfig(customers=300, days=30, seed=12), DISORDER)]:
        summaries[name] = simulate(config, str(root / name), disorder=disorder)
    return root, summaries


def _lines(path: pathlib.Path) -> list[str]:
    return path.read_text().splitlines()


def test_without_disorder_the_output_is_byte_identical_to_before(tmp_path):
    for name, disorder in [("none", None), ("zero", Disorder())]:
        simulate(SMALL, str(tmp_path / name), disorder=disorder)
        assert _sha(tmp_path / name / "stream.jsonl") == SMALL_STREAM_SHA
        assert _sha(tmp_path / name / "summary.json") == SMALL_SUMMARY_SHA


def test_disorder_is_deterministic_by_seed_and_leaves_the_event_log_and_truth_alone(runs):
    root, _ = runs
    assert _sha(root / "a" / "stream.jsonl") == _sha(root / "b" / "stream.jsonl")
    assert _sha(root / "a" / "stream.jsonl") != _sha(root / "seed" / "stream.jsonl")
    for pattern in ("events/**/*.parquet", "truth.parquet", "simulation.json"):
        assert _digests(root / "a", pattern) == _digests(root / "in_order", pattern)


def test_stream_holds_every_event_byte_for_byte_and_resends_are_copies(runs):
    root, summaries = runs
    in_order = _lines(root / "in_order" / "stream.jsonl")
    disordered = _lines(root / "a" / "stream.jsonl")
    counts = collections.Counter(disordered)
    # the same lines (timestamps and every field untouched), each once or twice
    assert set(counts) == set(in_order) and set(counts.values()) == {1, 2}
    ids = collections.Counter(json.loads(line)["event_id"] for line in disordered)
    twice = {line for line, n in counts.items() if n == 2}
    assert sum(n == 2 for n in ids.values()) == len(twice) == summaries["a"]["stream"]["resent_events"]
    for line in twice:  # the second copy comes later in the stream, same event_id
        first = disordered.index(line)
        assert disordered.index(line, first + 1) > first
    assert disordered != in_order and all(parse_event_json(line) for line in disordered[:200])


def test_shares_and_delays_are_as_stated(runs):
    root, summaries = runs
    n = summaries["a"]["events_total"]
    stats = summaries["a"]["stream"]
    assert stats["disorder"] == {k: float(v) for k, v in DISORDER.to_dict().items()}
    for key, share in (("late_events", DISORDER.late_share), ("resent_events", DISORDER.resend_share)):
        sd = (n * share * (1 - share)) ** 0.5
        assert abs(stats[key] - n * share) < 4 * sd, (key, stats[key], n * share)
    # read from the stream itself: first copies that arrive after an event with a later timestamp
    seen, max_ts, overtaken = set(), None, 0
    late_max_us = DISORDER.late_max * 1e6
    for line in _lines(root / "a" / "stream.jsonl"):
        event = json.loads(line)
        if event["event_id"] in seen:
            continue
        seen.add(event["event_id"])
        ts = parse_event_json(line).timestamp.timestamp() * 1e6
        if max_ts is not None:
            # nothing before a first copy happened more than late_max after it
            assert max_ts - ts <= late_max_us
            overtaken += max_ts > ts
        max_ts = ts if max_ts is None else max(max_ts, ts)
    assert 0.5 * stats["late_events"] < overtaken <= stats["late_events"]


def test_cli_takes_the_disorder_options_and_prints_them(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["simulate", "--customers", "80", "--days", "14", "--seed", "3", "--out", str(out), "--no-progress",
                 "--late-share", "0.02", "--late-min", "60", "--late-max", "21600", "--resend-share", "0.01",
                 "--resend-min", "3600", "--resend-max", "7200"]) == 0
    text = capsys.readouterr().out
    stats = json.loads((out / "summary.json").read_text())["stream"]
    assert (f"stream in arrival order: {stats['late_events']:,} events late by 60-21600 s, "
            f"{stats['resent_events']:,} re-sent 3600-7200 s after the first copy") in text
    assert stats["disorder"]["resend_max"] == 7200.0


@pytest.mark.parametrize("args, message", [
    (["--late-share", "1.5"], "--late-share: expected a number in [0, 1], got 1.5"),
    (["--resend-share", "x"], "--resend-share: expected a number, got 'x'"),
    (["--late-min", "0"], "--late-min: expected a number of seconds >= 1, got 0.0"),
    (["--late-min", "600", "--late-max", "60"], "--late-max: expected >= late-min (600.0), got 60.0"),
    (["--resend-max", "nan"], "--resend-max: expected a number of seconds >= 1, got nan"),
])
def test_cli_rejects_bad_disorder_options(tmp_path, capsys, args, message):
    assert main(["simulate", "--out", str(tmp_path / "x"), "--no-progress", *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_disorder_rejects_bad_values_by_name():
    with pytest.raises(DisorderError, match=r"resend-share: expected a number in \[0, 1\], got -0.1"):
        Disorder(resend_share=-0.1)
