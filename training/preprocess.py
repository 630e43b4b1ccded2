"""Feature preprocessing for the multi-task model: fitted on the train split only,
stored as JSON inside the model artifact, applied identically in training and serving.

This file is copied verbatim into the artifact's ``code/`` directory and loaded by
``code/inference.py`` without our package installed, so it depends only on numpy
(pandas is imported lazily, for DataFrame input during training).

Encoding per feature kind (docs/features.md: missing is not zero):

* numeric:     value -> (value, or the train median if null) standardised with the
               train mean/std of the observed values (std 0 -> 1, so a constant
               column maps to 0 instead of dividing by zero).
* boolean:     True/False (or 0/1) -> 1.0/0.0; null -> the train rate of True.
* ordinal:     index in the declared order, scaled to [0, 1]; null -> the train
               median code. A value outside the declared order is rejected.
* categorical: one-hot over the declared categories (plus any seen in train when
               none are declared) and one ``__unknown_or_missing__`` bucket that
               takes nulls and values never seen.
* context:     part of the input contract (a request carries it, validated as a
               number within float32's range, or null) but not fed to the network: no output column.
               Used for columns the feature service must serve but the model should
               not learn from (the per-subject marketplace columns, which identify
               the date under a time split).

Missing indicators: numeric, boolean and ordinal features that had at least one
null in the train split get an extra 0/1 ``<name>__missing`` column (the sklearn
``missing_only`` convention). A feature that was never null in train gets no
indicator: its weight would never be trained, so a null at serving time is
imputed only. Categorical features need no indicator (the unknown bucket is one).

Numbers must be finite and within float32's range (|x| <= 3.4028235e38): the net computes
in float32, where a larger value is infinite. A Python float NaN counts as null (pandas'
missing value); the JSON request layer (inference.py) rejects NaN/Infinity literals itself.
Columns of plain Python numbers / bools / strings (the JSON case) are checked and converted
vectorised; only a column holding something else is walked value by value, which is also
how an error finds the row it names.
"""
from __future__ import annotations

import json
import math
import operator
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

FORMAT_VERSION = 1
FEATURE_KINDS = ("numeric", "boolean", "ordinal", "categorical", "context")
UNKNOWN_BUCKET = "__unknown_or_missing__"
MISSING_SUFFIX = "__missing"
FLOAT32_MAX = float(np.finfo(np.float32).max)
_NUMBER_TYPES = frozenset({float, int, type(None)})
_BOOL_TYPES = frozenset({bool, type(None)})
_STRING_TYPES = frozenset({str, type(None)})


class FeatureInputError(ValueError):
    """Input rows do not match the model's feature schema (a client error: HTTP 400)."""

    status_code = 400


class MissingFeaturesError(FeatureInputError):
    def __init__(self, names: Sequence[str]):
        self.names = sorted(names)
        super().__init__(f"missing required features: {', '.join(self.names)}")


class UnknownFeaturesError(FeatureInputError):
    def __init__(self, names: Sequence[str]):
        self.names = sorted(names)
        super().__init__(f"unknown features (not in the model's feature schema): {', '.join(self.names)}")


class FeatureTypeError(FeatureInputError):
    def __init__(self, name: str, row: int | None, expected: str, got: Any):
        self.name, self.row = name, row
        where = f" (row {row})" if row is not None else ""
        super().__init__(f"feature {name!r}{where}: expected {expected}, got {_describe(got)}")


class SchemaError(ValueError):
    """The feature schema itself is malformed."""


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    kind: str
    categories: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind in ("ordinal", "categorical"):
            d["categories"] = list(self.categories)
        return d


@dataclass(frozen=True)
class FeatureSchema:
    """The sidecar ``feature_schema.json`` of a training dataset."""

    feature_service: str
    features: tuple[FeatureSpec, ...]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def to_dict(self) -> dict[str, Any]:
        return {"feature_service": self.feature_service, "features": [f.to_dict() for f in self.features]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FeatureSchema":
        if not isinstance(data, Mapping):
            raise SchemaError(f"feature schema: expected a JSON object, got {_describe(data)}")
        service = data.get("feature_service")
        if not isinstance(service, str) or not service:
            raise SchemaError("feature schema: 'feature_service' must be a non-empty string")
        raw = data.get("features")
        if not isinstance(raw, list) or not raw:
            raise SchemaError("feature schema: 'features' must be a non-empty list")
        specs, seen = [], set()
        for i, item in enumerate(raw):
            if not isinstance(item, Mapping) or not isinstance(item.get("name"), str) or not item["name"]:
                raise SchemaError(f"feature schema: features[{i}] needs a non-empty string 'name'")
            name, kind = item["name"], item.get("kind")
            if kind not in FEATURE_KINDS:
                raise SchemaError(f"feature schema: feature {name!r} has kind {kind!r}; expected one of {FEATURE_KINDS}")
            if name in seen:
                raise SchemaError(f"feature schema: feature {name!r} is declared twice")
            seen.add(name)
            cats = item.get("categories") or []
            if not isinstance(cats, list) or not all(isinstance(c, (str, int)) and not isinstance(c, bool) for c in cats):
                raise SchemaError(f"feature schema: feature {name!r}: 'categories' must be a list of strings")
            cats = tuple(str(c) for c in cats)
            if len(set(cats)) != len(cats):
                raise SchemaError(f"feature schema: feature {name!r} has duplicate categories")
            if kind == "ordinal" and len(cats) < 2:
                raise SchemaError(f"feature schema: ordinal feature {name!r} needs at least 2 ordered categories")
            specs.append(FeatureSpec(name, kind, cats if kind in ("ordinal", "categorical") else ()))
        return cls(service, tuple(specs))

    @classmethod
    def load(cls, path) -> "FeatureSchema":
        with open(path, encoding="utf-8") as fh:
            return cls.from_dict(json.load(fh))


# --- value coercion -------------------------------------------------------------------------
# Each coercer turns one column (a numpy array, possibly dtype=object with None/NaN for
# nulls) into (float values with NaN for null) or, for categories, (object array of str|None).

def _is_null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (type(v).__name__ in ("NAType", "NaTType"))


def _numeric_column(name: str, col: np.ndarray) -> np.ndarray:
    if col.dtype.kind in "fiu":
        return col.astype(np.float64)
    if set(map(type, col)) <= _NUMBER_TYPES:  # plain JSON numbers and nulls: convert in one go
        try:
            vals = col.astype(np.float64)   # None -> NaN
        except OverflowError:               # an integer beyond float64: the loop below names it
            vals = None
        if vals is not None and not (np.abs(vals) > FLOAT32_MAX).any():  # NaN compares False
            return vals
    out = np.empty(len(col), dtype=np.float64)
    for i, v in enumerate(col):
        if _is_null(v):
            out[i] = np.nan
        elif isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise FeatureTypeError(name, i, "a number or null", v)
        else:
            try:
                out[i] = float(v)
            except OverflowError:
                out[i] = math.inf
            if not abs(out[i]) <= FLOAT32_MAX:
                raise FeatureTypeError(name, i, f"a finite number within float32's range (|x| <= {FLOAT32_MAX:.8g})"
                                       " or null", v)
    return out


def _boolean_column(name: str, col: np.ndarray) -> np.ndarray:
    if col.dtype.kind == "b":
        return col.astype(np.float64)
    if col.dtype.kind in "fiu":
        vals = col.astype(np.float64)
        bad = ~np.isnan(vals) & ~np.isin(vals, (0.0, 1.0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise FeatureTypeError(name, i, "true/false (or 0/1) or null", col[i].item())
        return vals
    if set(map(type, col)) <= _BOOL_TYPES:
        return col.astype(np.float64)     # True/False -> 1.0/0.0, None -> NaN
    out = np.empty(len(col), dtype=np.float64)
    for i, v in enumerate(col):
        if _is_null(v):
            out[i] = np.nan
        elif isinstance(v, (bool, np.bool_)):
            out[i] = float(v)
        elif isinstance(v, (int, float, np.integer, np.floating)) and float(v) in (0.0, 1.0):
            out[i] = float(v)
        else:
            raise FeatureTypeError(name, i, "true/false (or 0/1) or null", v)
    return out


def _category_column(name: str, col: np.ndarray) -> np.ndarray:
    if col.dtype == object and set(map(type, col)) <= _STRING_TYPES:
        return col
    out = np.empty(len(col), dtype=object)
    for i, v in enumerate(col):
        if _is_null(v):
            out[i] = None
        elif isinstance(v, str):
            out[i] = v
        elif isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
            out[i] = str(int(v))  # e.g. a grade level stored as an integer code
        else:
            raise FeatureTypeError(name, i, "a string or null", v)
    return out


# --- the fitted preprocessor ------------------------------------------------------------------

@dataclass
class Preprocessor:
    """Fitted encoding of a feature schema into a float32 matrix (see the module docstring)."""

    schema: FeatureSchema
    params: dict[str, dict[str, Any]] = field(default_factory=dict)

    # -- fitting ------------------------------------------------------------------------------
    @classmethod
    def fit(cls, train: Any, schema: FeatureSchema) -> "Preprocessor":
        """Fit on the train split only (a DataFrame or a mapping of column -> values)."""
        columns = _columns_of(train, schema, allow_extra=True)
        params: dict[str, dict[str, Any]] = {}
        for spec in schema.features:
            col = columns[spec.name]
            if spec.kind == "context":
                _numeric_column(spec.name, col)  # validated like a numeric, never encoded
                params[spec.name] = {}
            elif spec.kind in ("numeric", "boolean", "ordinal"):
                vals = _encode_scalar(spec, col)
                observed = vals[~np.isnan(vals)]
                has_missing = bool(len(observed) < len(vals))
                if spec.kind == "numeric":
                    median = float(np.median(observed)) if len(observed) else 0.0
                    mean = float(observed.mean()) if len(observed) else 0.0
                    std = float(observed.std()) if len(observed) else 0.0
                    params[spec.name] = {
                        "impute": median, "mean": mean,
                        # zero variance: scale 1 keeps a constant column at 0 instead of NaN/inf
                        "scale": std if std > 1e-12 else 1.0,
                        "missing_indicator": has_missing,
                    }
                elif spec.kind == "boolean":
                    params[spec.name] = {
                        "impute": float(observed.mean()) if len(observed) else 0.0,
                        "missing_indicator": has_missing,
                    }
                else:
                    params[spec.name] = {
                        "impute": float(np.median(observed)) if len(observed) else 0.5,
                        "missing_indicator": has_missing,
                    }
            else:
                cats = list(spec.categories)
                if not cats:  # no declared vocabulary: learn it from train, in sorted order
                    cats = sorted({v for v in _category_column(spec.name, col) if v is not None})
                params[spec.name] = {"categories": cats}
        return cls(schema, params)

    @classmethod
    def fit_train_split(cls, frame: Any, schema: FeatureSchema, split_column: str = "split",
                        train_value: str = "train") -> "Preprocessor":
        """Fit on the rows of ``frame`` whose split is train: validation/test never leak into the stats."""
        rows = frame[frame[split_column] == train_value]
        if len(rows) == 0:
            raise ValueError(f"no rows with {split_column} == {train_value!r} to fit preprocessing on")
        return cls.fit(rows, schema)

    # -- output layout ------------------------------------------------------------------------
    @property
    def output_names(self) -> list[str]:
        names: list[str] = []
        for spec in self.schema.features:
            p = self.params[spec.name]
            if spec.kind == "context":
                continue
            if spec.kind == "categorical":
                names += [f"{spec.name}={c}" for c in p["categories"]] + [f"{spec.name}={UNKNOWN_BUCKET}"]
            else:
                names.append(spec.name)
                if p["missing_indicator"]:
                    names.append(spec.name + MISSING_SUFFIX)
        return names

    @property
    def n_outputs(self) -> int:
        return len(self.output_names)

    # -- transforming -------------------------------------------------------------------------
    def transform(self, data: Any) -> np.ndarray:
        """DataFrame / mapping of columns / list of row dicts -> float32 matrix.

        Raises MissingFeaturesError / UnknownFeaturesError naming the features, or
        FeatureTypeError naming the feature, the row and the offending value. Extra
        columns are allowed for DataFrames (ids, labels, split), not for row dicts.
        """
        if isinstance(data, list):
            columns = records_to_columns(data, self.schema)
        else:
            columns = _columns_of(data, self.schema, allow_extra=True)
        n = len(next(iter(columns.values())))
        blocks: list[np.ndarray] = []
        for spec in self.schema.features:
            p, col = self.params[spec.name], columns[spec.name]
            if spec.kind == "context":
                _numeric_column(spec.name, col)  # a string or an infinite number is still a 400
                continue
            if spec.kind == "categorical":
                vals = _category_column(spec.name, col)
                cats = p["categories"]
                index = {c: i for i, c in enumerate(cats)}
                codes = np.array([index.get(v, len(cats)) if v is not None else len(cats) for v in vals],
                                 dtype=np.int64)
                onehot = np.zeros((n, len(cats) + 1), dtype=np.float64)
                onehot[np.arange(n), codes] = 1.0
                blocks.append(onehot)
                continue
            vals = _encode_scalar(spec, col)
            missing = np.isnan(vals)
            filled = np.where(missing, p["impute"], vals)
            if spec.kind == "numeric":
                filled = (filled - p["mean"]) / p["scale"]
            blocks.append(filled[:, None])
            if p["missing_indicator"]:
                blocks.append(missing.astype(np.float64)[:, None])
        if not blocks:
            return np.zeros((n, 0), dtype=np.float32)
        return np.hstack(blocks).astype(np.float32)

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "schema": self.schema.to_dict(),
                "params": {k: self.params[k] for k in self.schema.names},
                "output_names": self.output_names}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Preprocessor":
        if data.get("format_version") != FORMAT_VERSION:
            raise SchemaError(f"preprocess.json: format_version {data.get('format_version')!r}, "
                              f"expected {FORMAT_VERSION}")
        pre = cls(FeatureSchema.from_dict(data["schema"]), {k: dict(v) for k, v in data["params"].items()})
        if set(pre.params) != set(pre.schema.names):
            raise SchemaError("preprocess.json: params do not cover exactly the schema's features")
        return pre

    def save(self, path) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, indent=1, sort_keys=True)
            fh.write("\n")

    @classmethod
    def load(cls, path) -> "Preprocessor":
        with open(path, encoding="utf-8") as fh:
            return cls.from_dict(json.load(fh))


def _encode_scalar(spec: FeatureSpec, col: np.ndarray) -> np.ndarray:
    """numeric/boolean/ordinal column -> float64 with NaN for null (ordinal: code in [0, 1])."""
    if spec.kind == "numeric":
        return _numeric_column(spec.name, col)
    if spec.kind == "boolean":
        return _boolean_column(spec.name, col)
    cats = _category_column(spec.name, col)
    index = {c: i for i, c in enumerate(spec.categories)}
    out = np.empty(len(cats), dtype=np.float64)
    last = len(spec.categories) - 1
    for i, v in enumerate(cats):
        if v is None:
            out[i] = np.nan
        elif v not in index:
            # the order is part of the contract: a tier we cannot place is an input error
            raise FeatureTypeError(spec.name, i, f"one of {list(spec.categories)} or null", v)
        else:
            out[i] = index[v] / last
    return out


def records_to_columns(rows: Sequence[Any], schema: FeatureSchema) -> dict[str, np.ndarray]:
    """A list of {feature: value} dicts -> columns; every row must hold exactly the schema's features."""
    if not rows:
        raise FeatureInputError("no rows to score")
    names = schema.names
    n, width = len(rows), len(names)
    # fast path (C loops): plain dicts of the right size that hold every name hold exactly the names
    if all(type(row) is dict and len(row) == width for row in rows):
        try:
            values = list(map(operator.itemgetter(*names), rows)) if width > 1 else \
                [(row[names[0]],) for row in rows]
        except KeyError:
            values = None
        if values is not None:
            # transpose: one tuple per feature (fromiter keeps nested values as single objects)
            return {name: np.fromiter(col, dtype=object, count=n) for name, col in zip(names, zip(*values))}
    expected = set(names)
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise FeatureInputError(f"row {i}: expected a JSON object of feature values, got {_describe(row)}")
        keys = set(row)
        if keys != expected:
            missing, unknown = expected - keys, keys - expected
            if unknown:
                err: FeatureInputError = UnknownFeaturesError(unknown)
            else:
                err = MissingFeaturesError(missing)
            if missing and unknown:
                err = FeatureInputError(f"{MissingFeaturesError(missing)}; {UnknownFeaturesError(unknown)}")
            if len(rows) > 1:
                err.args = (f"row {i}: {err.args[0]}",)
            raise err
    return {name: np.fromiter((row[name] for row in rows), dtype=object, count=n) for name in names}


def _columns_of(data: Any, schema: FeatureSchema, allow_extra: bool) -> dict[str, np.ndarray]:
    """DataFrame or mapping -> {feature: numpy column}; rejects missing (and, optionally, extra) names."""
    names = list(data.columns) if hasattr(data, "columns") else list(data.keys())
    missing = [n for n in schema.names if n not in set(names)]
    if missing:
        raise MissingFeaturesError(missing)
    if not allow_extra:
        extra = [n for n in names if n not in set(schema.names)]
        if extra:
            raise UnknownFeaturesError(extra)
    out = {}
    for spec in schema.features:
        name = spec.name
        col = data[name]
        if hasattr(col, "to_numpy"):
            out[name] = _pandas_to_numpy(col, numeric=spec.kind in ("numeric", "boolean", "context"))
        else:
            out[name] = np.asarray(col, dtype=object) if not isinstance(col, np.ndarray) else col
    return out


def _pandas_to_numpy(series: Any, numeric: bool) -> np.ndarray:
    # Plain numpy dtypes pass through; extension dtypes (Int64, boolean, string, category)
    # become object arrays with None for null so the per-value type checks apply.
    dtype = series.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "fiub":
        return series.to_numpy()
    if numeric and getattr(dtype, "kind", "O") in "fiub":  # nullable Int64/Float64/boolean: vectorised, NaN for null
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    values = series.astype(object).to_numpy()
    mask = series.isna().to_numpy()
    values = values.copy()
    values[mask] = None
    return values


def iter_output_groups(pre: Preprocessor) -> Iterable[tuple[str, list[str]]]:
    """(feature, its output columns) in output order, for attributing weights back to features."""
    names = pre.output_names
    pos = 0
    for spec in pre.schema.features:
        p = pre.params[spec.name]
        if spec.kind == "context":
            width = 0
        else:
            width = len(p["categories"]) + 1 if spec.kind == "categorical" else 1 + int(p["missing_indicator"])
        yield spec.name, names[pos:pos + width]
        pos += width
