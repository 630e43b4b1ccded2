"""The event contract rejects bad records with a message naming the field and the expectation."""
import json

import pytest

from events.contract import (
    EVENT_LOG_SCHEMA,
    EVENT_MODELS,
    EVENT_TYPES,
    EventValidationError,
    parse_event,
    parse_event_bytes,
    parse_event_json,
)

TS = "2025-01-06T14:30:00Z"
GOOD = {
    "customer_signup": dict(customer_id="c1", tier="premium", acquisition_channel="paid", grade_level=9,
                            subject_category="STEM", primary_subject="algebra", region="west"),
    "session_completed": dict(customer_id="c1", session_id="s1", tutor_id="t1", subject="physics",
                              status="completed", student_rating=4.5, duration_minutes=45.0),
    "inbound_call": dict(customer_id="c1", duration_seconds=420.0, sentiment_score=-0.65,
                         issue_category="tutor_complaint", escalated=False),
    "login": dict(customer_id="c1"),
    "message_sent": dict(customer_id="c1", tutor_id="t1"),
    "payment_succeeded": dict(customer_id="c1", amount=120.0),
    "payment_failed": dict(customer_id="c1", amount=120.0, failure_reason="card_declined"),
    "subscription_cancelled": dict(customer_id="c1", reason="too_expensive"),
    "booking_request": dict(customer_id="c1", request_id="r1", subject="algebra"),
    "booking_matched": dict(customer_id="c1", request_id="r1", subject="algebra", tutor_id="t1",
                            time_to_match_minutes=35.0),
    "tutor_availability": dict(tutor_id="t1", subject="algebra", available_hours=10.0),
    "tutor_response": dict(customer_id="c1", tutor_id="t1", response_time_minutes=12.0),
    "referral_made": dict(customer_id="c1", referred_customer_id="c9"),
}


def record(event_type, **overrides):
    r = {"event_type": event_type, "event_id": f"e-{event_type}", "timestamp": TS, **GOOD[event_type]}
    r.update(overrides)
    return {k: v for k, v in r.items() if v is not ...}


def test_every_event_type_has_a_valid_example_and_round_trips():
    assert set(GOOD) == set(EVENT_TYPES)
    for et in EVENT_TYPES:
        ev = parse_event(record(et))
        assert ev.event_type == et
        again = parse_event_json(json.dumps(ev.to_record()))
        assert again == ev
        assert ev.partition_key == (ev.tutor_id if et == "tutor_availability" else ev.customer_id)


def test_log_schema_covers_every_field():
    names = set(EVENT_LOG_SCHEMA.names)
    for model in EVENT_MODELS.values():
        assert set(model.model_fields) <= names


def expect_error(rec, field, fragment):
    with pytest.raises(EventValidationError) as info:
        parse_event(rec)
    fields = dict(info.value.problems)
    assert field in fields, info.value
    assert fragment in fields[field], fields[field]
    assert field in str(info.value)
    return info.value


# One wrong type, one missing required field and one out-of-range value per event type.
WRONG_TYPE = {
    "customer_signup": ("grade_level", "9"), "session_completed": ("student_rating", "4.5"),
    "inbound_call": ("escalated", "yes"), "login": ("customer_id", 42), "message_sent": ("tutor_id", 7),
    "payment_succeeded": ("amount", "120"), "payment_failed": ("amount", [1]),
    "subscription_cancelled": ("reason", 3), "booking_request": ("request_id", 1.5),
    "booking_matched": ("time_to_match_minutes", "35"), "tutor_availability": ("available_hours", "10"),
    "tutor_response": ("response_time_minutes", True), "referral_made": ("referred_customer_id", 9),
}
MISSING = {
    "customer_signup": "tier", "session_completed": "tutor_id", "inbound_call": "sentiment_score",
    "login": "customer_id", "message_sent": "customer_id", "payment_succeeded": "amount",
    "payment_failed": "amount", "subscription_cancelled": "customer_id", "booking_request": "subject",
    "booking_matched": "time_to_match_minutes", "tutor_availability": "subject",
    "tutor_response": "tutor_id", "referral_made": "customer_id",
}
OUT_OF_RANGE = {
    "customer_signup": ("grade_level", 14, "less than or equal to 13"),
    "session_completed": ("student_rating", 7.0, "less than or equal to 5"),
    "inbound_call": ("sentiment_score", -1.5, "greater than or equal to -1"),
    "login": ("customer_id", "", "at least 1 character"),
    "message_sent": ("customer_id", "has space", "match pattern"),
    "payment_succeeded": ("amount", -5.0, "greater than 0"),
    "payment_failed": ("amount", 0.0, "greater than 0"),
    "subscription_cancelled": ("reason", "x" * 500, "at most 200"),
    "booking_request": ("subject", "astrology", "algebra"),
    "booking_matched": ("time_to_match_minutes", -1.0, "greater than or equal to 0"),
    "tutor_availability": ("available_hours", 500.0, "less than or equal to 168"),
    "tutor_response": ("response_time_minutes", -3.0, "greater than or equal to 0"),
    "referral_made": ("customer_id", "a" * 200, "at most 128"),
}


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_wrong_type_is_rejected(event_type):
    field, value = WRONG_TYPE[event_type]
    err = expect_error(record(event_type, **{field: value}), field, "valid")
    assert repr(value) in str(err)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_missing_field_is_rejected(event_type):
    field = MISSING[event_type]
    expect_error(record(event_type, **{field: ...}), field, "required field is missing")


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_out_of_range_is_rejected(event_type):
    field, value, fragment = OUT_OF_RANGE[event_type]
    expect_error(record(event_type, **{field: value}), field, fragment)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_naive_timestamp_is_rejected(event_type):
    expect_error(record(event_type, timestamp="2025-01-06T14:30:00"), "timestamp", "naive")


def test_unknown_event_type_lists_the_known_ones():
    err = expect_error({"event_type": "session_started", "event_id": "x", "timestamp": TS},
                       "event_type", "unknown event type 'session_started'")
    assert "session_completed" in str(err)


def test_unknown_field_is_rejected_not_dropped():
    expect_error(record("login", device="ios"), "device", "unknown field")


def test_timestamp_offsets_are_normalised_to_utc():
    ev = parse_event(record("login", timestamp="2025-01-06T09:30:00-05:00"))
    assert ev.to_record()["timestamp"] == "2025-01-06T14:30:00.000000Z"


def test_garbage_timestamp_and_non_object_json():
    expect_error(record("login", timestamp="yesterday"), "timestamp", "ISO-8601")
    with pytest.raises(EventValidationError, match="could not decode"):
        parse_event_json(b"{not json")
    with pytest.raises(EventValidationError, match="expected a JSON object"):
        parse_event_json(b"[1, 2]")


def test_session_status_rules():
    expect_error(record("session_completed", status="cancelled", student_rating=None, duration_minutes=None),
                 "cancelled_by", "required when status is 'cancelled'")
    expect_error(record("session_completed", status="no_show"), "student_rating", "only allowed")
    ok = parse_event(record("session_completed", status="cancelled", cancelled_by="tutor",
                            student_rating=None, duration_minutes=None))
    assert ok.cancelled_by == "tutor"


def test_json_nulls_mean_absent():
    ev = parse_event({**record("login"), "amount": None, "tutor_id": None})
    assert ev.customer_id == "c1"


def _outcome(parse, data):
    try:
        ev = parse(data)
        return "ok", type(ev), ev.model_dump()
    except EventValidationError as exc:
        return "error", exc.event_type, exc.problems, str(exc)


def _bytes_corpus():
    out = []
    for et in EVENT_TYPES:
        out.append(record(et))
        out.append(record(et, timestamp="2025-01-06T14:30:00"))
        out.append(record(et, timestamp="2025-01-06T15:30:00+01:00"))
        out.append(record(et, customer_id=None, tutor_id=None))       # null in a required field: "missing"
        out.append(record(et, schema_version=None, bogus=None))       # nulls mean absent, even unknown ones
        out.append(record(et, bogus=1))
        out.append(record(et, event_id=""))
        out.append(record(et, **{MISSING[et]: ...}))
        field, value = WRONG_TYPE[et]
        out.append(record(et, **{field: value}))
        field, value, _ = OUT_OF_RANGE[et]
        out.append(record(et, **{field: value}))
    data = [json.dumps(r).encode() for r in out]
    login = json.dumps(record("login")).encode()
    data += [b"nope", b"[1]", b"{}", b'{"event_type": null}', b'{"event_type": "x"}', login + b"x", login + b" \n",
             b"\xef\xbb\xbf" + login, login.replace(b'"c1"', b'"c\xff"'), login.replace(b'"c1"', b'"c\\ud800"'),
             login[:-1] + b', "customer_id": "c2"}', login[:-1] + b', "record_type": "day_tick"}',
             json.dumps(record("payment_succeeded", amount=float("nan"))).encode(),
             json.dumps(record("payment_succeeded", amount=1)).encode(),
             json.dumps(record("customer_signup", grade_level=9.0)).encode(),
             json.dumps(record("session_completed", status="cancelled", student_rating=None,
                               duration_minutes=None, cancelled_by="tutor")).encode()]
    return data


def test_parse_event_bytes_is_parse_event_json_without_the_round_trip():
    """The fast entry point gives the same event, or the same error with the same message, on every input."""
    corpus = _bytes_corpus()
    assert sum(_outcome(parse_event_json, d)[0] == "ok" for d in corpus) >= 2 * len(EVENT_TYPES)
    for data in corpus:
        assert _outcome(parse_event_bytes, data) == _outcome(parse_event_json, data), data
