"""The customer's own subject's supply/demand (docs/features.md): ``primary_subject`` from the customer
view, then the subject view keyed by it, point in time offline and the same online (Feast's path
and the fast path); the long subject table carries exactly the values of the wide marketplace
columns."""
import random
from datetime import timedelta

import pandas as pd
import pytest

from events.contract import SUBJECTS
from features import catalog as C
from features import retrieval as R
from features import store as FS
from features.backfill import run_backfill
from tests.eventlog import ev, same_value, session, ts, write_log

UNTIL = ts("2025-02-20T00:00:00Z")
START = ts("2025-01-01T00:00:00Z")
USED = ("algebra", "physics", "history")


def _signup(at, cid, subject):
    return ev("customer_signup", at, customer_id=cid, tier="standard", acquisition_channel="paid", grade_level=7,
              subject_category="STEM" if subject != "history" else "humanities", primary_subject=subject,
              region="west")


def _history():
    rng = random.Random(5)
    out = []
    for i in range(9):
        cid, subject = f"c{i}", USED[i % 3]
        out.append(_signup(START + timedelta(hours=1 + i), cid, subject))
        for _ in range(12):
            t = START + timedelta(days=rng.random() * 40)
            out.append(session(t, rating=rng.choice([None, 3.0, 5.0]), customer_id=cid, tutor=f"t{i % 4}"))
            out.append(ev("booking_request", t - timedelta(minutes=30), customer_id=cid, request_id=f"r{rng.random()}",
                          subject=subject))
    # a customer whose primary subject changes (a later signup record): the key is point in time
    out.append(_signup("2025-01-02T00:00:00Z", "switch", "algebra"))
    out.append(_signup("2025-01-25T12:00:00Z", "switch", "physics"))
    out.append(ev("login", "2025-01-20T08:00:00Z", customer_id="switch"))
    # a customer without a signup record: no primary subject, null subject features
    out.append(ev("login", "2025-01-10T08:00:00Z", customer_id="nosignup"))
    for d in range(0, 51, 3):   # supply that differs by subject and over time
        for k, subject in enumerate(USED):
            for tutor in range(k + 1 + (d // 15)):
                out.append(ev("tutor_availability", START + timedelta(days=d, hours=2), tutor_id=f"{subject}{tutor}",
                              subject=subject, available_hours=5.0 + tutor))
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("subject")
    res = run_backfill(write_log(_history(), root / "events"), str(root / "features"), until=UNTIL, progress=False)
    store = FS.open_store("local", root / "state")
    FS.apply(store, str(root / "features"))
    return store, res


def test_subject_table_is_the_long_form_of_the_marketplace_columns(world):
    _, res = world
    subj = pd.read_parquet(res.outputs[C.SUBJECT_VIEW])
    market = pd.read_parquet(res.outputs[C.MARKETPLACE_VIEW]).set_index("event_timestamp")
    assert list(subj.columns) == ["subject", "event_timestamp"] + [c for c, _ in C.subject_view_columns()]
    assert len(subj) == len(SUBJECTS) * len(market)                  # every subject, every midnight
    assert (subj.groupby("event_timestamp")["subject"].nunique() == len(SUBJECTS)).all()
    assert set(subj.event_timestamp) == set(market.index)
    for row in subj.itertuples(index=False):
        wide = market.loc[row.event_timestamp]
        for f in C.SUBJECT_FEATURES:
            a, b = getattr(row, C.SUBJECT_FEATURE_PREFIX + f.name), wide[f"{f.name}_{row.subject}"]
            assert same_value(a, b, rel=0), (row.subject, row.event_timestamp, f.name, a, b)
    # the subjects do differ, or the lookup would prove nothing
    day = subj[subj.event_timestamp == pd.Timestamp("2025-02-10", tz="UTC")].set_index("subject")
    assert day.loc["physics", "subject_tutor_count"] != day.loc["algebra", "subject_tutor_count"]


def entity_rows():
    rng = random.Random(8)
    rows = [("switch", "2025-01-20T00:00:00Z"), ("switch", "2025-01-25T12:00:00Z"), ("switch", "2025-02-01T00:00:00Z"),
            ("nosignup", "2025-02-01T00:00:00Z"), ("nobody", "2025-02-01T00:00:00Z"),
            ("c0", "2024-12-20T00:00:00Z")]                          # before any data
    rows += [(f"c{rng.randrange(9)}", START + timedelta(hours=rng.randrange(50 * 24))) for _ in range(40)]
    return pd.DataFrame({"customer_id": [r[0] for r in rows],
                         "event_timestamp": pd.to_datetime([str(r[1]) for r in rows], utc=True, format="ISO8601")})


def _as_of(table, key, value, t):
    rows = table[(table[key] == value) & (table.event_timestamp <= t)]
    return None if rows.empty else rows.sort_values("event_timestamp").iloc[-1]


def test_historical_looks_up_the_customers_own_subject_as_of_t(world):
    store, res = world
    ent = entity_rows()
    out = R.historical_features(store, ent)
    assert len(out) == len(ent) and list(out.customer_id) == list(ent.customer_id)
    snaps = pd.read_parquet(res.outputs[C.CUSTOMER_VIEW])
    subj = pd.read_parquet(res.outputs[C.SUBJECT_VIEW])
    names = [c for c, _ in C.subject_view_columns()]
    assert set(names) <= set(R.model_columns())
    seen = set()
    for i, row in out.iterrows():
        t = row["event_timestamp"]
        cust = _as_of(snaps, "customer_id", row["customer_id"], t)
        subject = None if cust is None else cust["primary_subject"]
        subject = None if subject is None or pd.isna(subject) else subject
        assert row["subject"] == subject or (row["subject"] is None and subject is None), (i, row["subject"], subject)
        want = None if subject is None else _as_of(subj, "subject", subject, t)
        for name in names:
            b = None if want is None else want[name]
            assert same_value(row[name], b, rel=0), (i, name, row[name], b)
        seen.add(subject)
    assert set(USED) <= seen and None in seen
    by_t = out[out.customer_id == "switch"].set_index("event_timestamp")["subject"]
    assert list(by_t) == ["algebra", "physics", "physics"]           # the key is point in time
    assert out.loc[out.customer_id == "nosignup", "subject_tutor_count"].isna().all()


def test_online_subject_lookup_equals_offline(world):
    store, _ = world
    store.materialize(start_date=ts("2024-12-01T00:00:00Z"), end_date=UNTIL)
    ids = [f"c{i}" for i in range(9)] + ["switch", "nosignup", "nobody"]
    t = pd.Timestamp(UNTIL) + pd.Timedelta(hours=5)
    assert R._plan_for(store) is not None                            # the fast path does the lookup
    online = R.online_features(store, ids, t)
    hist = R.historical_features(store, pd.DataFrame({"customer_id": ids, "event_timestamp": t}))
    assert list(online["subject"]) == list(hist["subject"])
    assert online["subject"].tolist()[:3] == list(USED) and online["subject"].tolist()[-3:] == ["physics", None, None]
    for name in R.model_columns():
        for c, a, b in zip(ids, online[name].to_numpy(dtype=object), hist[name].to_numpy(dtype=object)):
            assert same_value(a, b), (name, c, a, b)
    # Feast's own path (the reference the fast path is held to) agrees as well
    ref = R._feast_online_dict(store, ids, R._request_us(t))
    for name in [c for c, _ in C.subject_view_columns()]:
        assert all(same_value(a, b) for a, b in zip(online[name], ref[name])), name
    # different subjects do get different values
    assert online.loc[0, "subject_tutor_count"] != online.loc[1, "subject_tutor_count"]
