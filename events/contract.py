"""The event contract: typed, versioned schemas for every marketplace event.

All events travel as JSON records on one Kinesis stream, partitioned by their
entity key (``customer_id`` for customer events, ``tutor_id`` for tutor
events). Every record carries a unique ``event_id``, an ISO-8601 UTC
``timestamp`` with an explicit offset, its ``event_type`` and the
``schema_version`` it was written with.

``parse_event`` / ``parse_event_json`` are the only entry points; they raise
``EventValidationError`` whose message names each bad field and what was
expected.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, Union

import pyarrow as pa
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

SCHEMA_VERSION = 1

SUBJECTS: tuple[str, ...] = (
    "algebra", "geometry", "calculus", "statistics", "chemistry",
    "physics", "biology", "computer_science", "english", "writing",
    "literature", "history", "economics", "psychology", "spanish",
    "french", "sat_prep", "act_prep", "gre_prep", "ap_prep",
)
SUBJECT_CATEGORY: dict[str, str] = {
    **{s: "STEM" for s in SUBJECTS[:9]},
    **{s: "humanities" for s in SUBJECTS[9:16]},
    **{s: "test_prep" for s in SUBJECTS[16:]},
}
TIERS = ("budget", "standard", "premium")
CHANNELS = ("organic", "paid", "referral")
CATEGORIES = ("STEM", "humanities", "test_prep")
REGIONS = ("northeast", "southeast", "midwest", "southwest", "west", "international")
SESSION_STATUSES = ("completed", "cancelled", "no_show")
CANCELLERS = ("student", "tutor")
CALL_CATEGORIES = ("billing", "tutor_complaint", "scheduling", "technical", "other")

Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]
Money = Annotated[float, Field(gt=0, le=100_000, allow_inf_nan=False)]
Subject = Literal[SUBJECTS]  # type: ignore[valid-type]


class EventValidationError(ValueError):
    """A record that does not satisfy the contract. ``problems`` lists (field, message)."""

    def __init__(self, problems: list[tuple[str, str]], event_type: str | None = None):
        self.problems = problems
        self.event_type = event_type
        prefix = f"invalid {event_type} event" if event_type else "invalid event"
        super().__init__(prefix + ": " + "; ".join(f"{f}: {m}" for f, m in problems))


class _Event(BaseModel):
    # strict: "5" is not a rating; extra=forbid: a misspelt field is an error, not silently dropped.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    event_id: Id
    timestamp: datetime
    schema_version: Literal[1] = SCHEMA_VERSION

    @field_validator("timestamp", mode="before")
    @classmethod
    def _parse_timestamp(cls, v: Any) -> Any:
        if isinstance(v, str):
            try:
                v = datetime.fromisoformat(v.replace("Z", "+00:00") if v.endswith("Z") else v)
            except ValueError:
                raise ValueError(f"expected an ISO-8601 timestamp, got {v!r}") from None
        if isinstance(v, datetime):
            if v.tzinfo is None or v.utcoffset() is None:
                raise ValueError("expected a timezone-aware UTC timestamp (e.g. '2025-01-06T14:30:00Z'), got a naive one")
            return v.astimezone(timezone.utc)
        return v

    @property
    def partition_key(self) -> str:
        return getattr(self, "customer_id")

    def to_record(self) -> dict[str, Any]:
        """The JSON-ready dict written to the stream (timestamps as ...Z strings)."""
        d = self.model_dump(exclude_none=True)
        d["timestamp"] = format_timestamp(self.timestamp)
        return d


class CustomerSignup(_Event):
    event_type: Literal["customer_signup"] = "customer_signup"
    customer_id: Id
    tier: Literal[TIERS]  # type: ignore[valid-type]
    acquisition_channel: Literal[CHANNELS]  # type: ignore[valid-type]
    grade_level: Annotated[int, Field(ge=1, le=13)]
    subject_category: Literal[CATEGORIES]  # type: ignore[valid-type]
    primary_subject: Subject
    region: Literal[REGIONS]  # type: ignore[valid-type]
    referrer_id: Id | None = None


class SessionCompleted(_Event):
    """A scheduled session reached its end: held, cancelled, or missed (no_show)."""

    event_type: Literal["session_completed"] = "session_completed"
    customer_id: Id
    session_id: Id
    tutor_id: Id
    subject: Subject
    status: Literal[SESSION_STATUSES]  # type: ignore[valid-type]
    cancelled_by: Literal[CANCELLERS] | None = None  # type: ignore[valid-type]
    student_rating: Annotated[float, Field(ge=1, le=5, allow_inf_nan=False)] | None = None
    duration_minutes: Annotated[float, Field(ge=0, le=600, allow_inf_nan=False)] | None = None

    @model_validator(mode="after")
    def _status_rules(self) -> "SessionCompleted":
        if self.status == "cancelled" and self.cancelled_by is None:
            raise ValueError("cancelled_by: required when status is 'cancelled' (expected 'student' or 'tutor')")
        if self.status != "cancelled" and self.cancelled_by is not None:
            raise ValueError(f"cancelled_by: only allowed when status is 'cancelled', status is {self.status!r}")
        if self.status != "completed" and self.student_rating is not None:
            raise ValueError(f"student_rating: only allowed when status is 'completed', status is {self.status!r}")
        if self.status == "completed" and self.duration_minutes is None:
            raise ValueError("duration_minutes: required when status is 'completed'")
        return self


class InboundCall(_Event):
    event_type: Literal["inbound_call"] = "inbound_call"
    customer_id: Id
    duration_seconds: Annotated[float, Field(ge=0, le=86_400, allow_inf_nan=False)]
    sentiment_score: Annotated[float, Field(ge=-1, le=1, allow_inf_nan=False)]
    issue_category: Literal[CALL_CATEGORIES]  # type: ignore[valid-type]
    escalated: StrictBool


class Login(_Event):
    event_type: Literal["login"] = "login"
    customer_id: Id


class MessageSent(_Event):
    event_type: Literal["message_sent"] = "message_sent"
    customer_id: Id
    tutor_id: Id | None = None


class PaymentSucceeded(_Event):
    event_type: Literal["payment_succeeded"] = "payment_succeeded"
    customer_id: Id
    amount: Money


class PaymentFailed(_Event):
    event_type: Literal["payment_failed"] = "payment_failed"
    customer_id: Id
    amount: Money
    failure_reason: Annotated[str, Field(max_length=200)] | None = None


class SubscriptionCancelled(_Event):
    event_type: Literal["subscription_cancelled"] = "subscription_cancelled"
    customer_id: Id
    reason: Annotated[str, Field(max_length=200)] | None = None


class BookingRequest(_Event):
    event_type: Literal["booking_request"] = "booking_request"
    customer_id: Id
    request_id: Id
    subject: Subject


class BookingMatched(_Event):
    event_type: Literal["booking_matched"] = "booking_matched"
    customer_id: Id
    request_id: Id
    subject: Subject
    tutor_id: Id
    time_to_match_minutes: Annotated[float, Field(ge=0, le=43_200, allow_inf_nan=False)]


class TutorAvailability(_Event):
    """A tutor publishes hours they can teach a subject (tutor-keyed)."""

    event_type: Literal["tutor_availability"] = "tutor_availability"
    tutor_id: Id
    subject: Subject
    available_hours: Annotated[float, Field(gt=0, le=168, allow_inf_nan=False)]

    @property
    def partition_key(self) -> str:
        return self.tutor_id


class TutorResponse(_Event):
    """A tutor answered a customer's message."""

    event_type: Literal["tutor_response"] = "tutor_response"
    customer_id: Id
    tutor_id: Id
    response_time_minutes: Annotated[float, Field(ge=0, le=43_200, allow_inf_nan=False)]


class ReferralMade(_Event):
    event_type: Literal["referral_made"] = "referral_made"
    customer_id: Id
    referred_customer_id: Id | None = None


EVENT_MODELS: dict[str, type[_Event]] = {
    m.model_fields["event_type"].default: m
    for m in (
        CustomerSignup, SessionCompleted, InboundCall, Login, MessageSent,
        PaymentSucceeded, PaymentFailed, SubscriptionCancelled, BookingRequest,
        BookingMatched, TutorAvailability, TutorResponse, ReferralMade,
    )
}
EVENT_TYPES: tuple[str, ...] = tuple(EVENT_MODELS)
TUTOR_KEYED_TYPES = frozenset({"tutor_availability"})

Event = Annotated[Union[tuple(EVENT_MODELS.values())], Field(discriminator="event_type")]  # type: ignore[valid-type]
_ADAPTER: TypeAdapter = TypeAdapter(Event)


def format_timestamp(ts: datetime) -> str:
    """ISO-8601 UTC with microseconds and a 'Z' suffix: one canonical spelling."""
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _problems(exc: ValidationError, event_type: str) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err["loc"] if str(p) != event_type]
        field = ".".join(loc) or "record"
        msg = err["msg"].removeprefix("Value error, ")
        if ": " in msg and field == "record":  # model-level rules name their own field
            field, msg = msg.split(": ", 1)
        if err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "extra_forbidden":
            msg = "unknown field (not part of the contract)"
        elif "input" in err and err["type"] not in ("missing",):
            msg = f"{msg} (got {err['input']!r})"
        out.append((field, msg))
    return out


def parse_event(record: Any) -> _Event:
    """Validate one decoded record (a dict) against the contract."""
    if not isinstance(record, dict):
        raise EventValidationError([("record", f"expected a JSON object, got {type(record).__name__}")])
    event_type = record.get("event_type")
    if event_type is None:
        raise EventValidationError([("event_type", "required field is missing")])
    if event_type not in EVENT_MODELS:
        raise EventValidationError(
            [("event_type", f"unknown event type {event_type!r}; expected one of {', '.join(EVENT_TYPES)}")]
        )
    model = EVENT_MODELS[event_type]
    # JSON null means "absent": columnar writers emit every column of the log.
    record = {k: v for k, v in record.items() if v is not None}
    try:
        # JSON mode: strict types, but ISO strings are accepted for datetimes.
        return model.model_validate_json(json.dumps(record, allow_nan=True))
    except ValidationError as exc:
        raise EventValidationError(_problems(exc, event_type), event_type) from None


def parse_event_json(data: bytes | str) -> _Event:
    """Validate one raw JSON record (as read from the stream)."""
    try:
        record = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventValidationError([("record", f"expected a JSON object, could not decode: {exc}")]) from None
    return parse_event(record)


def _log_columns() -> dict[str, pa.DataType]:
    """The event log's columns: the union of every event type's fields."""
    types = {str: pa.string(), float: pa.float64(), int: pa.int64(), bool: pa.bool_()}
    cols: dict[str, pa.DataType] = {
        "event_id": pa.string(),
        "event_type": pa.string(),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "schema_version": pa.int64(),
        "customer_id": pa.string(),
        "tutor_id": pa.string(),
    }
    for model in EVENT_MODELS.values():
        for name, info in model.model_fields.items():
            if name in cols:
                continue
            ann = info.annotation
            base = next((t for t in types if _is_of(ann, t)), str)
            cols[name] = types[base]
    return cols


def _is_of(annotation: Any, t: type) -> bool:
    import typing

    args = [annotation]
    seen = []
    while args:
        a = args.pop()
        seen.append(a)
        origin = typing.get_origin(a)
        if origin is Literal:
            return all(isinstance(x, t) and not (t is int and isinstance(x, bool)) for x in typing.get_args(a))
        if origin is not None:
            args.extend(x for x in typing.get_args(a) if x is not type(None))
    return any(a is t for a in seen)


EVENT_LOG_SCHEMA = pa.schema([pa.field(n, t) for n, t in _log_columns().items()])


def try_parse_event_bytes(data: bytes | str) -> _Event | None:
    """The fast path of :func:`parse_event_bytes`: one validation straight from the JSON bytes (the
    discriminated union picks the model by ``event_type``), or None if that is not a valid event.

    A success here is exactly a success of ``parse_event_json`` with the same event: the union's
    models are strict and forbid unknown fields, and a JSON null is only accepted where the field's
    default is None (what ``parse_event`` turns an absent/null field into). Anything else (errors,
    nulls in required fields, non-JSON, ...) returns None, so the caller can take the full path.
    """
    try:
        return _ADAPTER.validate_json(data)
    except (ValidationError, ValueError, TypeError):
        return None


def parse_event_bytes(data: bytes | str) -> _Event:
    """Validate one raw JSON record, like :func:`parse_event_json` (same results, same errors), but
    without the json.loads / json.dumps round trip when the record is valid."""
    ev = try_parse_event_bytes(data)
    if ev is not None:
        return ev
    return parse_event_json(data)
