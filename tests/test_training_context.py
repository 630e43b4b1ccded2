"""The ``context`` feature kind: part of the input contract (validated as a number or null, a
request must carry it) but never fed to the network, so changing it cannot change a prediction.
The catalog marks the 80 wide per-subject marketplace columns with it."""
import numpy as np
import pandas as pd
import pytest

from features import catalog as C
from testing.training_data import make_synthetic_dataset, write_dataset
from training.artifact import load_artifact
from training.preprocess import (
    FeatureSchema,
    FeatureTypeError,
    MissingFeaturesError,
    Preprocessor,
    iter_output_groups,
)
from training.sagemaker_entry import run_training

CONTEXT = ["supply_demand_ratio_algebra", "tutor_count_physics"]
HPS = {"epochs": 6, "hidden": (16,), "learning_rate": 0.003, "batch_size": 128, "seed": 5, "patience": 3,
       "baselines": False}


def _with_context(n=1200, seed=4):
    df, schema = make_synthetic_dataset(n, seed=seed)
    rng = np.random.default_rng(0)
    # a per-date value, like the marketplace columns: the same for every row of a day
    day = pd.to_datetime(df["event_timestamp"]).dt.floor("D")
    codes = day.rank(method="dense").to_numpy()
    df[CONTEXT[0]] = np.where(rng.random(len(df)) < 0.1, np.nan, codes / 10.0)
    df[CONTEXT[1]] = codes.astype(int)
    raw = schema.to_dict()
    raw["features"] += [{"name": c, "kind": "context"} for c in CONTEXT]
    return df, FeatureSchema.from_dict(raw)


def test_catalog_marks_the_wide_marketplace_columns_as_context():
    feats = {f["name"]: f for f in C.model_features()}
    wide = [c for c, _, _ in C.subject_columns()]
    assert len(wide) == 80 and all(feats[c]["kind"] == C.CONTEXT_KIND for c in wide)
    assert all(feats[c]["kind"] == "numeric" for c, _ in C.subject_view_columns())
    assert {f["kind"] for f in C.model_input_schema()["features"]} <= {"numeric", "boolean", "ordinal",
                                                                       "categorical", "context"}
    FeatureSchema.from_dict(C.model_input_schema())                     # the preprocessing accepts it


def test_context_columns_are_validated_and_dropped():
    df, schema = _with_context()
    pre = Preprocessor.fit_train_split(df, schema)
    plain = Preprocessor.fit_train_split(df, FeatureSchema(schema.feature_service,
                                                            tuple(f for f in schema.features if f.kind != "context")))
    assert pre.output_names == plain.output_names                      # no output column for them
    assert not any(c in n for n in pre.output_names for c in CONTEXT)
    x = pre.transform(df)
    changed = df.copy()
    changed[CONTEXT[0]] = 1e6
    changed[CONTEXT[1]] = None
    np.testing.assert_array_equal(pre.transform(changed), x)
    assert dict(iter_output_groups(pre))[CONTEXT[0]] == []
    rows = df[schema.names].head(3).to_dict("records")
    rows[1][CONTEXT[1]] = "many"
    with pytest.raises(FeatureTypeError, match=CONTEXT[1]):
        pre.transform(rows)
    rows = df[schema.names].head(2).to_dict("records")
    del rows[0][CONTEXT[0]]
    with pytest.raises(MissingFeaturesError, match=CONTEXT[0]):
        pre.transform(rows)
    # it round-trips through preprocess.json
    again = Preprocessor.from_dict(pre.to_dict())
    np.testing.assert_array_equal(again.transform(df), x)


def test_served_model_accepts_the_context_columns_and_ignores_their_values(tmp_path):
    df, schema = _with_context()
    write_dataset(df, schema, tmp_path / "train")
    run_training(tmp_path / "train", tmp_path / "model", tmp_path / "out", HPS, log=lambda _: None)
    endpoint = load_artifact(tmp_path / "model")
    rows = [{k: (None if isinstance(v, float) and np.isnan(v) else v.item() if hasattr(v, "item") else v)
             for k, v in r.items()} for r in df[schema.names].head(5).to_dict("records")]
    before = endpoint.predict_records(rows)
    for r in rows:
        r[CONTEXT[0]], r[CONTEXT[1]] = 123.5, None
    assert endpoint.predict_records(rows) == before
    for r in rows:
        del r[CONTEXT[1]]
    with pytest.raises(ValueError, match=CONTEXT[1]):                   # the contract still requires them
        endpoint.predict_records(rows)
