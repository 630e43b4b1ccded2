"""`mhp demo` end to end at a tiny size: every stage leaves its output and the live part scores."""
import json

import pandas as pd

from features.retrieval import model_columns
from mhp.cli import main


def test_demo_runs_every_stage_end_to_end(tmp_path, capsys):
    ws = tmp_path / "demo"
    assert main(["demo", "--workspace", str(ws), "--customers", "150", "--days", "90", "--live-days", "3",
                 "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "demo finished" in out and "model vs the simulator's oracle" in out
    for path in ("events", "stream.jsonl", "features/customer_features.parquet", "reports/event_log.html",
                 "dataset/feature_schema.json", "model/model.tar.gz", "model/report/report.md"):
        assert (ws / path).exists(), path
    meta = json.loads((ws / "dataset" / "metadata.json").read_text())
    sim = json.loads((ws / "simulation.json").read_text())
    history_end = pd.Timestamp(sim["start"], tz="UTC") + pd.Timedelta(days=87)
    assert pd.Timestamp(meta["data_end"]) <= history_end          # no label from the live days
    served = [json.loads(line) for line in (ws / "serving" / "served.jsonl").read_text().splitlines()]
    assert served and set(model_columns()) <= set(served[0])
    times = pd.to_datetime([r["request_time"] for r in served], utc=True, format="ISO8601")
    assert times.min() >= history_end                              # scoring happened in the live days only
    assert "live days:" in out and "daily batch scorings" in out
    assert (ws / "drift" / "drift.csv").exists() and "expected to move (grow with tenure)" in out
