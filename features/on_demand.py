"""The request-time features: the body of the Feast on-demand views (``ON_DEMAND`` declarations).

The same code runs for Feast's online and offline retrieval and for the fast online path.
"""
from __future__ import annotations

from .declarations import ON_DEMAND, REQUEST_TIME_FIELD


def evaluate_on_demand(view: str, inputs: dict) -> dict:
    """The body of the on-demand view ``view``: dict of input lists in, dict of output lists out.

    float64 throughout, NaN where an input is missing.
    """
    nan = float("nan")

    def us(v):  # integer microseconds since the epoch, or None (offline nulls may arrive as NaN)
        return None if v is None or v != v else int(v)

    def num(v):
        return nan if v is None else float(v)

    def days(now, then):  # (now - then) in ns as float64 / 1e9 / 86400: pandas' total_seconds path
        return nan if now is None or then is None else float((now - then) * 1000) / 1e9 / 86400.0

    out: dict[str, list] = {}
    now = [us(v) for v in inputs[REQUEST_TIME_FIELD]] if REQUEST_TIME_FIELD in inputs else None
    since: dict[str, list] = {}  # timestamp input -> days since it (shared by the features reading it)

    def days_since(name):
        if name not in since:
            since[name] = [days(n, us(v)) for n, v in zip(now, inputs[name])]
        return since[name]

    for f in ON_DEMAND:
        if f.view != view:
            continue
        if f.op in ("days_since", "whole_days_since"):
            col = days_since(f.inputs[0])
            out[f.name] = list(col) if f.op == "days_since" else [float(int(d // 1)) if d == d else d for d in col]
        elif f.op == "per_tenure_day":
            count = ([num(a) for a in inputs[f.inputs[0]]] if len(f.inputs) == 2 else
                     [num(a) - num(b) for a, b in zip(inputs[f.inputs[0]], inputs[f.inputs[1]])])
            out[f.name] = [c / (int(d // 1) + 1) if d == d and d >= 0 else nan
                           for c, d in zip(count, days_since(f.inputs[-1]))]
        elif f.op == "per_day_change":
            da, db = f.divisors
            out[f.name] = [num(a) / da - num(b) / db for a, b in zip(inputs[f.inputs[0]], inputs[f.inputs[1]])]
        elif f.op == "difference":
            out[f.name] = [num(a) - num(b) for a, b in zip(inputs[f.inputs[0]], inputs[f.inputs[1]])]
        else:  # pragma: no cover
            raise ValueError(f"{f.name}: unknown on-demand op {f.op!r}")
    return out
