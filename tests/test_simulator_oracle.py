"""The oracle's probabilities are probabilities, follow the latent health, and match realised labels."""
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from labels import churn_label, health_score, ib_calls_label
from simulator.config import SimConfig
from simulator.oracle import label_probabilities
from simulator.run import simulate

DAYS = 60


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("oracle_sim")
    simulate(SimConfig(customers=900, days=DAYS, seed=21), str(out))
    events = pq.read_table(out / "events", columns=["customer_id", "event_type", "timestamp", "status",
                                                    "student_rating"]).to_pandas()
    return str(out), events


def _rows(sim_dir: str, events: pd.DataFrame) -> pd.DataFrame:
    """Customers subscribed at a random time t on days 4 and 25 (so 30 days of future are simulated)."""
    truth = pq.read_table(f"{sim_dir}/truth.parquet", columns=["customer_id", "date"]).to_pandas()
    rng = np.random.default_rng(0)
    rows = []
    for date in ("2025-01-05", "2025-01-26"):
        ids = truth.loc[truth["date"] == pd.Timestamp(date).date(), "customer_id"].to_numpy()
        t = pd.Timestamp(date, tz="UTC") + pd.to_timedelta(rng.integers(0, 86_400_000_000, ids.size), unit="us")
        rows.append(pd.DataFrame({"customer_id": ids, "event_timestamp": t}))
    rows = pd.concat(rows, ignore_index=True)
    # a row is a customer who has signed up and not cancelled at t
    first = events.groupby("customer_id")["timestamp"].min()
    cancelled = events[events.event_type == "subscription_cancelled"].set_index("customer_id")["timestamp"]
    signed = first.reindex(rows.customer_id).to_numpy() <= rows.event_timestamp.to_numpy()
    gone = cancelled.reindex(rows.customer_id).to_numpy() <= rows.event_timestamp.to_numpy()
    return rows[signed & ~gone].reset_index(drop=True)


def _realised(rows: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """labels over each row's events in (t, t + horizon]."""
    e = rows.reset_index().merge(events, on="customer_id")
    after = e["timestamp"] - e["event_timestamp"]
    out = pd.DataFrame(index=rows.index)
    for days, name in ((30, "30"), (14, "14")):
        w = e[(after > pd.Timedelta(0)) & (after <= pd.Timedelta(days=days))]
        completed = w[(w.event_type == "session_completed") & (w.status == "completed")]
        g = lambda frame: frame.groupby("index").size().reindex(rows.index, fill_value=0)  # noqa: E731
        out[f"calls_{name}"] = g(w[w.event_type == "inbound_call"])
        out[f"cancelled_{name}"] = g(w[w.event_type == "subscription_cancelled"])
        if days == 30:
            rated = completed.dropna(subset=["student_rating"])
            out["health"] = health_score(
                g(completed), rated.groupby("index")["student_rating"].sum().reindex(rows.index, fill_value=0),
                g(rated), out["calls_30"], g(w[w.event_type == "payment_failed"]),
                g(w[(w.event_type == "session_completed") & (w.status == "no_show")]), out["cancelled_30"] > 0)
    out["churn_30d"] = churn_label(out["cancelled_30"] > 0)
    out["ib_calls_14d"] = ib_calls_label(out["calls_14"])
    return out


@pytest.fixture(scope="module")
def scored(sim):
    sim_dir, events = sim
    rows = _rows(sim_dir, events)
    return rows, label_probabilities(sim_dir, rows, n_paths=60, seed=1), _realised(rows, events)


def test_outputs_are_probabilities_and_scores_aligned_with_rows(scored):
    rows, oracle, _ = scored
    assert len(rows) > 1000 and oracle.index.equals(rows.index)
    assert oracle[["churn_30d", "ib_calls_14d"]].stack().between(0, 1).all()
    assert oracle["health_score"].between(0, 100).all()
    assert oracle.notna().all().all() and (oracle["paths"] > 50).all()


def test_sicker_customers_have_higher_churn_and_call_probabilities(scored):
    _, oracle, _ = scored
    corr = oracle[["latent_health", "churn_30d", "ib_calls_14d", "health_score"]].corr(method="spearman")
    assert corr.loc["latent_health", "churn_30d"] < -0.5
    assert corr.loc["latent_health", "ib_calls_14d"] < -0.5
    assert corr.loc["latent_health", "health_score"] > 0.5


def test_oracle_is_calibrated_against_realised_labels(scored):
    _, oracle, real = scored
    n = len(real)
    for label, floor in (("churn_30d", 0.012), ("ib_calls_14d", 0.025)):
        p = oracle[label].mean()
        tolerance = max(floor, 3 * np.sqrt(p * (1 - p) / n))
        assert abs(p - real[label].mean()) < tolerance, (label, p, real[label].mean())
    assert abs(oracle["health_score"].mean() - real["health"].mean()) < 2.0
    # and it ranks: the riskiest fifth by the oracle churns far more often than the safest fifth
    quintile = pd.qcut(oracle["churn_30d"].rank(method="first"), 5, labels=False)
    by_quintile = real["churn_30d"].groupby(quintile).mean()
    assert by_quintile[4] > 3 * by_quintile[0] + 0.01
    calls = real["ib_calls_14d"].groupby(pd.qcut(oracle["ib_calls_14d"].rank(method="first"), 5, labels=False)).mean()
    assert calls[4] > 3 * calls[0]


def test_rows_without_a_state_get_nan_and_the_result_is_seeded(sim):
    sim_dir, events = sim
    rows = pd.DataFrame({
        "customer_id": ["c0000001", "c0000001", "nobody", "c0000002"],
        "event_timestamp": ["2025-01-10T08:00:00Z", "2025-12-31T00:00:00Z", "2025-01-10T08:00:00Z",
                            "2025-01-10T00:00:00Z"],
    }, index=[10, 11, 12, 13])
    a = label_probabilities(sim_dir, rows, n_paths=40, seed=3)
    assert a.index.tolist() == [10, 11, 12, 13]
    assert a.loc[[11, 12], "churn_30d"].isna().all()      # after the simulation / unknown customer
    pd.testing.assert_frame_equal(a, label_probabilities(sim_dir, rows, n_paths=40, seed=3))
    b = label_probabilities(sim_dir, rows, n_paths=40, seed=4)
    assert not a.loc[[10, 13], "health_score"].equals(b.loc[[10, 13], "health_score"])


def test_bad_arguments_are_named(sim):
    sim_dir, _ = sim
    with pytest.raises(ValueError, match="n_paths: expected a positive integer"):
        label_probabilities(sim_dir, pd.DataFrame({"customer_id": [], "event_timestamp": []}), n_paths=0)
    with pytest.raises(ValueError, match=r"rows: missing column\(s\) \['event_timestamp'\]"):
        label_probabilities(sim_dir, pd.DataFrame({"customer_id": ["c0000001"]}))


def test_lowering_the_latent_health_raises_the_churn_probability_of_the_same_rows(sim, tmp_path):
    """Same customers, same times, same seed: only truth's latent_health differs."""
    import shutil

    import pyarrow as pa

    sim_dir, _ = sim
    shutil.copy(f"{sim_dir}/simulation.json", tmp_path / "simulation.json")
    truth = pq.read_table(f"{sim_dir}/truth.parquet")
    i = truth.schema.get_field_index("latent_health")
    sicker = truth.set_column(i, "latent_health", pa.compute.subtract(truth.column(i), 1.0))
    pq.write_table(sicker, tmp_path / "truth.parquet")
    rows = pd.DataFrame({"customer_id": [f"c{i:07d}" for i in range(0, 900, 9)],
                         "event_timestamp": pd.Timestamp("2025-01-20T12:00:00Z")})
    healthy = label_probabilities(sim_dir, rows, n_paths=100, seed=2)
    sick = label_probabilities(str(tmp_path), rows, n_paths=100, seed=2)
    both = healthy["churn_30d"].notna()
    assert both.sum() > 50
    assert sick.loc[both, "churn_30d"].mean() > 1.5 * healthy.loc[both, "churn_30d"].mean()
    assert sick.loc[both, "ib_calls_14d"].mean() > healthy.loc[both, "ib_calls_14d"].mean() + 0.05
    assert sick.loc[both, "health_score"].mean() < healthy.loc[both, "health_score"].mean() - 3
