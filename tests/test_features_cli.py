"""`mhp backfill | apply | materialize` on a small simulation, and their argument errors."""
import pandas as pd

from features import catalog as C
from features.retrieval import model_columns, online_features
from features.store import open_store
from mhp.cli import main


def test_pipeline_commands_on_a_small_simulation(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ws = "ws"  # relative, as a user types it: Feast must not resolve it against its repo folder
    assert main(["simulate", "--customers", "60", "--days", "21", "--seed", "3", "--out", ws]) == 0
    assert main(["backfill", "--workspace", ws]) == 0
    out = capsys.readouterr().out
    assert "customer rows" in out and "customer_features.parquet" in out
    snaps = pd.read_parquet(tmp_path / "ws" / "features" / "customer_features.parquet")
    assert snaps.customer_id.nunique() == 60
    assert main(["apply", "--workspace", ws]) == 0
    assert main(["materialize", "--workspace", ws]) == 0
    end = pd.read_parquet(tmp_path / "ws" / "features" / "marketplace_features.parquet").event_timestamp.max()
    store = open_store("local", tmp_path / "ws" / "feast")
    ids = sorted(snaps.customer_id.unique())[:10]
    online = online_features(store, ids, end)
    last = snaps[snaps.event_timestamp <= end].sort_values("event_timestamp").groupby("customer_id").last()
    assert list(online.customer_id) == ids
    assert (online["total_sessions_lifetime"].to_numpy() == last.loc[ids, "total_sessions_lifetime"].to_numpy()).all()
    assert online[model_columns()].shape[1] == len(C.model_features())


def test_argument_errors_name_the_field(tmp_path, capsys):
    assert main(["backfill", "--workspace", str(tmp_path / "empty")]) == 2
    assert "no event log" in capsys.readouterr().err
    assert main(["backfill", "--workspace", str(tmp_path), "--profile", "aws-local"]) == 2
    assert "--data-uri" in capsys.readouterr().err
    (tmp_path / "events").mkdir()
    assert main(["backfill", "--workspace", str(tmp_path), "--until", "2025-01-01T00:00:00"]) == 2
    assert "--until" in capsys.readouterr().err
