"""`mhp ingest --from stream.jsonl` on a small simulated workspace."""
from mhp.cli import main
from simulator.config import SimConfig
from simulator.run import simulate


def test_ingest_from_stream_file(tmp_path, capsys):
    ws = str(tmp_path)
    simulate(SimConfig(customers=30, days=10, seed=2), ws)
    assert main(["backfill", "--workspace", ws]) == 0
    assert main(["apply", "--workspace", ws]) == 0
    with open(tmp_path / "stream.jsonl", "a") as f:
        f.write('{"event_type": "login"}\n')
    capsys.readouterr()
    assert main(["ingest", "--from", str(tmp_path / "stream.jsonl"), "--workspace", ws, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "applied events" in out and "dead letters        1 (missing_field: 1)" in out
    assert main(["ingest", "--from", str(tmp_path / "nope.jsonl"), "--workspace", ws]) == 2
    assert main(["ingest", "--from", str(tmp_path / "stream.jsonl"), "--workspace", ws, "--batch-size", "0"]) == 2
