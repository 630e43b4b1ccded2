"""The generated ``features.state.snapshot``: readable, and its source shows in tracebacks."""
import re
import traceback

import pytest

from features import catalog as C
from features import state as S


def _state_at(clock_us: int) -> dict:
    state = S.new_state()
    state["clock"] = clock_us
    return state


def test_the_generated_snapshot_names_its_metrics():
    src = S._snapshot_source()
    for m in C.METRICS:
        assert f"{m.name}_lifetime = totals[" in src or f"{m.name}_7d = ws[" in src, m.name
    assert "'avg_session_rating_7d': float(rating_sum_7d / 1000000) / float(rating_n_7d) if rating_n_7d else None," \
        in src
    row = S.snapshot(_state_at(0))
    assert list(row) == [f.name for f in C.CUSTOMER_FEATURES]


def test_a_failure_inside_the_generated_snapshot_shows_its_source_line():
    state = _state_at(10 * 86_400_000_000)
    state["first"]["first_session_was_success"] = "five"   # not comparable with the 4.0 threshold
    with pytest.raises(TypeError):
        try:
            S.snapshot(state)
        except TypeError:
            tb = traceback.format_exc()
            raise
    assert S._SNAPSHOT_FILE in tb
    assert "'first_session_was_success': None if (v := first.get('first_session_was_success')) is None" in tb

    state = _state_at(0)
    state["totals"] = []   # a truncated state: the first lifetime total read fails
    with pytest.raises(IndexError):
        try:
            S.snapshot(state)
        except IndexError:
            tb = traceback.format_exc()
            raise
    assert re.search(r"\n +\w+_lifetime = totals\[\d+\]\n", tb), tb
