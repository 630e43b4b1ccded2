"""The evaluation protocol: the customer bootstrap, seed discipline and `mhp evaluate` end to end."""
import json

import numpy as np
import pytest
from sklearn.metrics import r2_score, roc_auc_score

from mhp.cli import main
from training import bootstrap as B
from training.protocol import DEV_SEEDS, EVAL_SEEDS, ProtocolError, check_seeds, load_world


def _world(n_customers=300, rows_per=4, seed=0):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_customers), rows_per)
    latent = np.repeat(rng.normal(size=n_customers), rows_per) + rng.normal(0, 0.3, len(groups))
    y = (rng.random(len(groups)) < 1 / (1 + np.exp(-2 * latent))).astype(float)
    return rng, groups, latent, y


def test_weighted_metrics_equal_sklearn_on_repeated_rows():
    rng, groups, latent, y = _world()
    s = np.round(latent + rng.normal(0, 0.5, len(y)), 1)  # rounded: ties must count one half
    w = rng.integers(0, 4, size=len(y)).astype(float)
    rep = np.repeat(np.arange(len(y)), w.astype(int))
    assert B.weighted_auc(y, s, w[None, :])[0] == pytest.approx(roc_auc_score(y[rep], s[rep]), abs=1e-12)
    h = 50 + 10 * latent
    hs = h + rng.normal(0, 5, len(h))
    assert B.weighted_r2(h, hs, w[None, :])[0] == pytest.approx(r2_score(h[rep], hs[rep]), abs=1e-12)


def test_resampling_draws_whole_customers():
    _, groups, _, _ = _world(n_customers=50, rows_per=3)
    r = B.Resampler(groups, n_replicates=20, seed=1)
    assert (r.counts.sum(axis=1) == 50).all()  # each replicate draws as many customers as there are
    for w in r.chunks(np.arange(len(groups))):
        per_customer = w.reshape(len(w), 50, 3)
        assert (per_customer == per_customer[:, :, :1]).all()  # a customer's rows share one weight
    again = B.Resampler(groups, n_replicates=20, seed=1)
    assert np.array_equal(r.counts, again.counts)  # seeded


def test_identical_predictions_give_ratio_one_with_zero_width():
    rng, groups, latent, y = _world()
    p = 1 / (1 + np.exp(-latent))
    reps = B.bootstrap_metric(B.Resampler(groups, 200, 0), "auc", y, {"model": p, "oracle": p.copy()})
    ratio = B.ratio(reps["model"], reps["oracle"])
    assert ratio.point == 1.0 and ratio.interval() == (1.0, 1.0)
    diff = B.difference(reps["model"], reps["oracle"])
    assert diff.interval() == (0.0, 0.0)


def test_a_better_model_has_a_positive_paired_difference():
    rng, groups, latent, y = _world(n_customers=600)
    better = latent + rng.normal(0, 0.3, len(y))
    worse = latent + rng.normal(0, 1.5, len(y))
    reps = B.bootstrap_metric(B.Resampler(groups, 300, 0), "auc", y, {"better": better, "worse": worse})
    lo, hi = B.difference(reps["better"], reps["worse"]).interval()
    assert 0 < lo < hi
    # the interval around one AUC brackets the estimate and is not degenerate
    a_lo, a_hi = reps["better"].interval()
    assert a_lo < reps["better"].point < a_hi


def test_the_mean_over_worlds_averages_replicate_by_replicate():
    a = B.Replicates(1.0, np.array([0.9, 1.0, 1.1]))
    b = B.Replicates(0.8, np.array([0.7, 0.8, 0.9]))
    m = B.mean_over([a, b])
    assert m.point == pytest.approx(0.9) and np.allclose(m.replicates, [0.8, 0.9, 1.0])
    with pytest.raises(ValueError, match="replicate counts"):
        B.mean_over([a, B.Replicates(1.0, np.ones(4))])


def test_development_seeds_are_refused_unless_allowed():
    assert not set(DEV_SEEDS) & set(EVAL_SEEDS) and len(EVAL_SEEDS) >= 3
    with pytest.raises(ProtocolError, match="development seeds"):
        check_seeds([EVAL_SEEDS[0], DEV_SEEDS[0]])
    assert check_seeds([DEV_SEEDS[0]], allow_dev_seeds=True) == (DEV_SEEDS[0],)
    with pytest.raises(ProtocolError, match="more than once"):
        check_seeds([5, 5])


def test_mhp_evaluate_refuses_a_dev_seed_in_one_line(capsys, tmp_path):
    code = main(["evaluate", "--seeds", str(DEV_SEEDS[0]), "--workdir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "development seeds" in err and "--allow-dev-seeds" in err and len(err.splitlines()) == 1
    assert not list(tmp_path.iterdir())  # refused before anything ran
    assert main(["evaluate", "--set", "baselines=false", "--workdir", str(tmp_path)]) != 0
    assert "single-task" in capsys.readouterr().err


def test_mhp_evaluate_end_to_end_on_a_tiny_world(capsys, tmp_path):
    seed = DEV_SEEDS[0]
    code = main(["evaluate", "--seeds", str(seed), "--allow-dev-seeds", "--customers", "150", "--days", "90",
                 "--workdir", str(tmp_path), "--set", "ensemble=1", "--set", "epochs=3", "--replicates", "100",
                 "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "model / oracle" in out and "multi-task minus single-task net" in out and "mean" in out
    summary = json.loads((tmp_path / "evaluation_summary.json").read_text())
    assert summary["settings"]["seeds"] == [seed] and summary["settings"]["dev_seeds"] == [seed]
    world = summary["worlds"][0]
    assert world["test_rows"] > 0 and world["test_customers"] <= world["test_rows"]
    for h, metric in (("churn_risk_30d", "auc"), ("ib_call_risk_14d", "auc"), ("customer_health_score", "r2")):
        task = world["tasks"][h]
        assert task["metric"] == metric
        for q in ("model", "oracle", "single_task_net", "model/oracle", "multi-single"):
            assert task[q]["lo"] <= task[q]["estimate"] <= task[q]["hi"] or np.isnan(task[q]["estimate"]), (h, q)
        assert task["model/oracle"]["estimate"] == pytest.approx(task["model"]["estimate"] / task["oracle"]["estimate"])
        # one world: its mean is itself
        assert summary["mean"][h]["model/oracle"] == pytest.approx(task["model/oracle"])
        assert set(summary["mean"][h]["bar"]) == {"at_least", "met", "met_at_lower_bound"}
    assert set(world["calibration"]) == {"churn_risk_30d", "ib_call_risk_14d"}
    md = (tmp_path / "evaluation_summary.md").read_text()
    assert "## model / oracle" in md and "## multi-task minus single-task net" in md and "| bar |" in md
    kept = {p.name for p in (tmp_path / f"seed-{seed}").iterdir()}
    assert "report" in kept and "scores.json" in kept and "events" not in kept  # heavy parts removed
    report = (tmp_path / f"seed-{seed}" / "report" / "report.md").read_text()
    assert "## Model card" in report and "Known limits" in report and "multi - single" in report
    # A second run with the same settings loads the finished world (same summary, nothing rebuilt);
    # other settings rerun it.
    before = (tmp_path / f"seed-{seed}" / "scores.json").stat().st_mtime_ns
    assert main(["evaluate", "--seeds", str(seed), "--allow-dev-seeds", "--customers", "150", "--days", "90",
                 "--workdir", str(tmp_path), "--set", "ensemble=1", "--set", "epochs=3", "--replicates", "100",
                 "--no-progress"]) == 0
    assert "loaded, not rerun" in capsys.readouterr().out
    assert (tmp_path / f"seed-{seed}" / "scores.json").stat().st_mtime_ns == before
    again = json.loads((tmp_path / "evaluation_summary.json").read_text())
    same = lambda a, b: json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # noqa: E731 (NaN-safe)
    assert same(again["mean"], summary["mean"]) and same(again["worlds"], summary["worlds"])
    settings = json.loads((tmp_path / f"seed-{seed}" / "world.json").read_text())
    assert load_world(tmp_path / f"seed-{seed}", {**settings, "replicates": 99}) is None
