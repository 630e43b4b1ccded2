"""Give a served table the reference's column types before drift compares them.

JSON has no column types: a reader that infers them turns a boolean column with nulls into
1.0/0.0/NaN and an integer column with nulls into floats, and PSI then counts every served
value as a category the training set never had. Here each shared column is cast to what the
reference (the training set) holds, and a value that cannot be that type is an error naming
the column, not a silent null.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

_TRUE = {True, 1, 1.0, "true", "True", "1"}
_FALSE = {False, 0, 0.0, "false", "False", "0"}


def _is_boolean(s: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(s):
        return True
    if s.dtype != object:
        return False
    values = s.dropna()
    return len(values) > 0 and all(isinstance(v, (bool, np.bool_)) for v in values)


def _to_boolean(name: str, s: pd.Series) -> pd.Series:
    def one(v):
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            return pd.NA
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
        raise ValueError(f"column {name!r}: the reference holds booleans, the served value {v!r} is not one")
    return s.map(one).astype("boolean")


def align_types(serving: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``serving`` whose columns shared with ``reference`` have the reference's types:
    booleans (nullable), numbers (nulls as NaN), datetimes (UTC) or strings (nulls as None)."""
    out = serving.copy()
    for c in serving.columns.intersection(reference.columns):
        ref, srv = reference[c], serving[c]
        if _is_boolean(ref):
            out[c] = _to_boolean(c, srv)
        elif pd.api.types.is_numeric_dtype(ref):
            num = pd.to_numeric(srv, errors="coerce")
            bad = num.isna() & srv.notna()
            if bad.any():
                raise ValueError(f"column {c!r}: the reference holds numbers, the served value "
                                 f"{srv[bad].iloc[0]!r} is not one")
            out[c] = num.astype(float)
        elif pd.api.types.is_datetime64_any_dtype(ref):
            out[c] = pd.to_datetime(srv, utc=True, errors="coerce")
        else:
            out[c] = srv.astype(object).where(srv.notna(), None).map(lambda v: v if v is None else str(v))
    return out
