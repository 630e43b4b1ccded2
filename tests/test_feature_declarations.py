"""The declarations file and what is derived from it: the rules read declared attributes, and the
Feast repo names every object the declarations produce."""
import runpy
from pathlib import Path

from events.contract import TIERS
from features import catalog as C
from features import declarations as D
from features.feast_objects import build

REPO = Path(__file__).resolve().parents[1]


def test_every_metric_is_bound_to_its_own_name():
    # features reference metrics by variable: the variable and the stored metric name must agree
    for m in D.METRICS + D.TUTOR_METRICS + D.SUBJECT_METRICS:
        assert getattr(D, m.name) is m, m.name
    assert len({m.name for m in D.METRICS}) == len(D.METRICS)


def test_declared_attributes_decide_the_model_inputs():
    inputs = {m["name"]: m for m in C.model_features()}
    # the lookup keys (features.retrieval reads these two columns by name)
    keys = {f.key_of: f.name for f in C.CUSTOMER_FEATURES if f.key_of}
    assert keys == {C.TUTOR_VIEW: "primary_tutor_id", C.SUBJECT_VIEW: "primary_subject"}
    assert not set(keys.values()) & set(inputs)
    not_inputs = {f.name for f in C.CUSTOMER_FEATURES if not f.model_input}
    assert {f.name for f in C.CUSTOMER_FEATURES if isinstance(f, C.LastSeen)} <= not_inputs
    assert "total_logins_lifetime" in not_inputs and not not_inputs & set(inputs)
    customer = [f.name for f in C.CUSTOMER_FEATURES if f.name in inputs]
    assert len(customer) == len(C.CUSTOMER_FEATURES) - len(not_inputs) - len(keys)
    assert [n for n, m in inputs.items() if m["kind"] == "ordinal"] == ["subscription_tier"]
    assert inputs["subscription_tier"]["categories"] == list(TIERS)
    assert inputs["acquisition_channel"]["kind"] == "categorical"


def test_column_specs_bound_ratios_below_by_zero_but_not_other_numbers():
    specs = {s["name"]: s for s in C.column_specs(C.CUSTOMER_VIEW)}
    averages = [n for n in specs if n.startswith("avg_")]
    assert averages and all(specs[n]["min"] == 0 for n in averages)
    assert "min" not in specs["student_grade_level"]
    marketplace = {s["name"]: s for s in C.column_specs(C.MARKETPLACE_VIEW)}
    assert all(s["min"] == 0 for n, s in marketplace.items() if n.startswith("avg_match_time_"))


def test_the_feast_repo_names_every_object_under_its_feast_name(tmp_path):
    ns = runpy.run_path(str(REPO / "feature_repo" / "definitions.py"))
    built = build(str(tmp_path))
    for name, obj in built.items():
        assert name in ns, f"feature_repo/definitions.py does not name {name!r}"
        assert type(ns[name]) is type(obj) and ns[name].name == name
