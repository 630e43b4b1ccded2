"""The event-log suite passes a small real simulation (the simulator writes EVENT_LOG_SCHEMA)."""
import pandas as pd
import pytest

from validation.gate import run_gate
from validation.suites import event_log_suite

simulator_run = pytest.importorskip("simulator.run")
simulator_config = pytest.importorskip("simulator.config")


def test_event_suite_passes_a_small_simulation(tmp_path):
    simulator_run.simulate(simulator_config.SimConfig(customers=150, days=20, seed=7), str(tmp_path))
    log = pd.read_parquet(tmp_path / "events")
    assert len(log) > 100
    result = run_gate("events", log, event_log_suite(), engine="duckdb", raise_on_failure=False,
                      report_path=tmp_path / "events.html")
    assert result.success, result.summary()
