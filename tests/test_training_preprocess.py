"""Preprocessing: fitted on train only, nulls with indicators, named errors, JSON round trip."""
import json

import numpy as np
import pandas as pd
import pytest

from testing.training_data import make_synthetic_dataset
from training.preprocess import (
    UNKNOWN_BUCKET,
    FeatureSchema,
    FeatureTypeError,
    MissingFeaturesError,
    Preprocessor,
    SchemaError,
    UnknownFeaturesError,
)


@pytest.fixture(scope="module")
def data():
    return make_synthetic_dataset(600, seed=1)


def test_fit_uses_the_train_split_only(data):
    df, schema = data
    before = Preprocessor.fit_train_split(df, schema).to_dict()
    other = df.copy()
    later = other["split"] != "train"
    # wildly different validation/test rows: new scales, nulls everywhere, unseen categories
    other.loc[later, "session_count_30d"] = 1e6
    other.loc[later, "noise_a"] = np.nan
    other.loc[later, "constant_feature"] = np.nan
    other.loc[later, "acquisition_channel"] = "tv_ad"
    other.loc[later, "subscription_tier"] = "premium"
    assert Preprocessor.fit_train_split(other, schema).to_dict() == before
    # and the stats are those of the train rows
    train = df[df["split"] == "train"]
    params = before["params"]["session_count_30d"]
    assert params["mean"] == pytest.approx(train["session_count_30d"].mean())
    assert params["impute"] == pytest.approx(train["session_count_30d"].median())


def test_nulls_are_imputed_with_missing_indicators(data):
    df, schema = data
    train = df[df["split"] == "train"]
    pre = Preprocessor.fit(train, schema)
    names = pre.output_names
    # features with nulls in train get an indicator; never-null ones do not
    assert "avg_session_rating_30d__missing" in names
    assert "first_session_was_success__missing" in names
    assert "noise_a__missing" not in names and "constant_feature__missing" not in names
    x = pre.transform(train)
    assert np.isfinite(x).all()
    col = names.index("avg_session_rating_30d")
    ind = names.index("avg_session_rating_30d__missing")
    null = train["avg_session_rating_30d"].isna().to_numpy()
    assert null.any() and (x[null, ind] == 1).all() and (x[~null, ind] == 0).all()
    p = pre.params["avg_session_rating_30d"]
    assert np.allclose(x[null, col], (p["impute"] - p["mean"]) / p["scale"], atol=1e-6)
    # a null in a feature never null in train is still imputed (no indicator to set)
    row = train.iloc[[0]].copy()
    row["noise_a"] = np.nan
    out = pre.transform(row)
    assert np.isfinite(out).all()
    assert out[0, names.index("noise_a")] == pytest.approx(
        (pre.params["noise_a"]["impute"] - pre.params["noise_a"]["mean"]) / pre.params["noise_a"]["scale"], abs=1e-6)


def test_zero_variance_and_all_null_columns_stay_finite(data):
    df, schema = data
    train = df[df["split"] == "train"].copy()
    train["noise_b"] = np.nan
    pre = Preprocessor.fit(train, schema)
    x = pre.transform(train)
    assert np.isfinite(x).all()
    assert pre.params["constant_feature"]["scale"] == 1.0
    assert (x[:, pre.output_names.index("constant_feature")] == 0).all()


def test_categorical_and_ordinal_encoding(data):
    df, schema = data
    pre = Preprocessor.fit(df[df["split"] == "train"], schema)
    rows = [dict(df.iloc[0][schema.names]) for _ in range(4)]
    rows = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()} for r in rows]
    rows = [{k: (bool(v) if k == "first_session_was_success" and v is not None else v) for k, v in r.items()}
            for r in rows]
    for r, region, tier in zip(rows, ["east", "north", None, "west"], ["budget", "standard", "premium", None]):
        r["geographic_region"], r["subscription_tier"] = region, tier
    x = pre.transform(rows)
    names = pre.output_names
    unknown = names.index(f"geographic_region={UNKNOWN_BUCKET}")
    assert x[:, names.index("geographic_region=east")].tolist() == [1, 0, 0, 0]
    assert x[:, unknown].tolist() == [0, 1, 1, 0]  # unseen value and null share the bucket
    tier = x[:, names.index("subscription_tier")]
    assert tier[0] < tier[1] < tier[2]  # declared order budget < standard < premium
    rows[0]["subscription_tier"] = "platinum"
    with pytest.raises(FeatureTypeError, match="subscription_tier.*platinum"):
        pre.transform(rows)


def _rows(df, schema, n=3):
    out = []
    for _, r in df.head(n).iterrows():
        row = {}
        for name in schema.names:
            v = r[name]
            if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
                v = None
            elif isinstance(v, (np.bool_, bool)):
                v = bool(v)
            elif isinstance(v, np.floating):
                v = float(v)
            row[name] = v
        out.append(row)
    return out


def test_records_and_frames_encode_identically_and_json_round_trips(data):
    df, schema = data
    pre = Preprocessor.fit(df[df["split"] == "train"], schema)
    test = df[df["split"] == "test"].head(25)
    text = json.dumps(pre.to_dict())  # plain JSON, no pickle
    again = Preprocessor.from_dict(json.loads(text))
    assert np.array_equal(pre.transform(test), again.transform(test))
    assert np.allclose(pre.transform(test.head(3)), again.transform(_rows(test, schema)), atol=1e-6)


def test_input_errors_name_the_problem(data):
    df, schema = data
    pre = Preprocessor.fit(df[df["split"] == "train"], schema)
    rows = _rows(df, schema, 2)
    missing = [dict(rows[0])]
    del missing[0]["login_count_7d"], missing[0]["noise_a"]
    with pytest.raises(MissingFeaturesError, match="login_count_7d, noise_a"):
        pre.transform(missing)
    extra = [dict(rows[0], shoe_size=42)]
    with pytest.raises(UnknownFeaturesError, match="shoe_size"):
        pre.transform(extra)
    with pytest.raises(MissingFeaturesError, match="geographic_region"):
        pre.transform(df.drop(columns=["geographic_region"]))
    for name, bad in [("session_count_7d", "7"), ("session_count_7d", True), ("first_session_was_success", "yes"),
                      ("acquisition_channel", ["paid"]), ("noise_a", float("inf"))]:
        broken = [dict(r) for r in rows]
        broken[1][name] = bad
        with pytest.raises(FeatureTypeError, match=f"{name}.*row 1") as err:
            pre.transform(broken)
        assert isinstance(err.value, ValueError) and err.value.status_code == 400
    with pytest.raises(ValueError, match="no rows"):
        pre.transform([])


def test_schema_errors_name_the_field():
    with pytest.raises(SchemaError, match="kind 'text'"):
        FeatureSchema.from_dict({"feature_service": "s", "features": [{"name": "a", "kind": "text"}]})
    with pytest.raises(SchemaError, match="declared twice"):
        FeatureSchema.from_dict({"feature_service": "s", "features": [{"name": "a", "kind": "numeric"}] * 2})
    with pytest.raises(SchemaError, match="ordinal feature 'tier'"):
        FeatureSchema.from_dict({"feature_service": "s", "features": [{"name": "tier", "kind": "ordinal"}]})


def test_nullable_pandas_dtypes_are_accepted(data):
    df, schema = data
    train = df[df["split"] == "train"]
    pre = Preprocessor.fit(train, schema)
    typed = train.copy()
    typed["session_count_30d"] = typed["session_count_30d"].astype("Int64")
    typed.loc[typed.index[0], "session_count_30d"] = pd.NA
    typed["acquisition_channel"] = typed["acquisition_channel"].astype("category")
    typed["geographic_region"] = typed["geographic_region"].astype("string")
    x, ref = pre.transform(typed), pre.transform(train)
    assert np.isfinite(x).all()
    assert np.array_equal(x[1:], ref[1:])
