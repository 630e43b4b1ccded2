"""Which features drove a prediction: occlusion to "missing", one batched endpoint call.

For a scored row x and a head f, the contribution of feature j is

    c_j = d * (f(x) - f(x with feature j set to null))

where d = +1 for a rule that fires on high values (risks) and -1 for one that fires on
low values (health). Setting a feature to null makes the model's own preprocessing impute
it (train median / train rate / unknown category; docs/model.md), so c_j is how far this
customer's actual value of j moves the head towards the alert compared with a typical
value: a finite difference between x_j and the training median, i.e. roughly
(x_j - median_j) x slope, the "standardised value x sensitivity" of the brief, measured
on the real model rather than linearised. Features already null contribute nothing (they
are at the baseline). It is model-agnostic (works against SageMaker too, no gradients
or artifact internals needed) and costs one extra endpoint call per batch of alerting
customers with one row per non-null feature.

Limitations (documented): one-at-a-time occlusion ignores interactions (two correlated
features that each alone move little are both under-credited), and for a feature that
has a missing indicator the null also flips the indicator.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence


def occluded_rows(row: Mapping[str, Any], features: Sequence[str]) -> tuple[list[str], list[dict[str, Any]]]:
    """The features that are set in ``row`` and one copy of ``row`` per such feature, nulled."""
    names = [f for f in features if row.get(f) is not None]
    out = []
    for f in names:
        r = dict(row)
        r[f] = None
        out.append(r)
    return names, out


def explain(rows: Sequence[Mapping[str, Any]], base: Sequence[Mapping[str, float]], heads_by_row: Sequence[Sequence[tuple[str, int]]],
            features: Sequence[str], invoke: Callable[[list[dict]], list[dict]], top_k: int,
            max_rows_per_call: int = 5000) -> list[dict[str, list[dict[str, Any]]]]:
    """For each row: {head: top ``top_k`` features pushing it towards the alert}.

    ``heads_by_row[i]`` lists (head, direction) pairs to explain for row i; ``base[i]`` is
    its prediction. All occluded rows go to ``invoke`` in as few calls as the size limit allows.
    """
    plan = []        # (row index, feature names, start offset)
    batch: list[dict] = []
    for i, (row, heads) in enumerate(zip(rows, heads_by_row)):
        if not heads:
            plan.append((i, [], 0))
            continue
        names, occl = occluded_rows(row, features)
        plan.append((i, names, len(batch)))
        batch.extend(occl)
    preds: list[dict] = []
    for start in range(0, len(batch), max_rows_per_call):
        preds.extend(invoke(batch[start:start + max_rows_per_call]))
    out: list[dict[str, list[dict[str, Any]]]] = []
    for i, names, start in plan:
        per_head: dict[str, list[dict[str, Any]]] = {}
        for head, direction in heads_by_row[i]:
            b = float(base[i][head])
            contrib = [(direction * (b - float(preds[start + j][head])), f) for j, f in enumerate(names)]
            contrib.sort(key=lambda t: (-t[0], t[1]))
            per_head[head] = [{"feature": f, "value": rows[i][f], "contribution": round(c, 6)}
                              for c, f in contrib[:top_k] if c > 0]
        out.append(per_head)
    return out
