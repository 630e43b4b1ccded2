"""Stream records: what travels on the Kinesis stream, and how one Kinesis record is decoded.

Two record kinds share the stream, both JSON objects partitioned by their entity key:

* **events** (``events.contract``): ``{"event_id", "event_type", "timestamp", ...}``;
  partition key = ``customer_id`` (``tutor_id`` for tutor-keyed types);
* **day ticks** (control records that advance a customer's clock to a UTC midnight so
  windows decay online)::

      {"record_type": "day_tick", "customer_id": "c0000001", "timestamp": "2025-01-02T00:00:00.000000Z"}

  partition key = ``customer_id``; ``timestamp`` must be an exact UTC midnight.

:func:`decode` turns one Kinesis record (``kinesis.data`` base64, ``partitionKey``,
``sequenceNumber``, ``approximateArrivalTimestamp``) into a :class:`Decoded` or raises
:class:`DeadLetter` with a stable ``reason`` code (see :data:`REASONS`). Everything a
:class:`DeadLetter` names is permanent: the same bytes fail the same way on every retry.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from core.times import DAY_US, EPOCH, from_us, to_us
from events.contract import (
    EVENT_MODELS,
    TUTOR_KEYED_TYPES,
    EventValidationError,
    format_timestamp,
    parse_event,
    try_parse_event_bytes,
)

TICK_TYPE = "day_tick"
MAX_RECORD_BYTES = 16 * 1024          # contract events are < 1 KiB; anything this big is hostile
FUTURE_TOLERANCE_US = 3_600_000_000   # event time may lead the arrival time by at most 1 h (producer clock skew)

#: dead-letter reason codes (permanent failures)
REASONS = {
    "bad_base64": "kinesis data is not valid base64",
    "oversized": f"record larger than the limit ({MAX_RECORD_BYTES} bytes by default)",
    "bad_json": "data is not a UTF-8 JSON object (other encodings, a byte-order mark, nesting too deep)",
    "unknown_type": "event_type / record_type not in the contract",
    "missing_field": "a required field is missing",
    "naive_timestamp": "timestamp without a UTC offset",
    "invalid_field": "a field has the wrong type, an out-of-range value, or is not part of the contract",
    "far_future": "timestamp later than the record's approximateArrivalTimestamp + tolerance",
    "bad_tick": "a day_tick that is not exactly at a UTC midnight or has extra fields",
    "partition_key_mismatch": "partitionKey differs from the record's entity key (ordering not guaranteed)",
    "bad_envelope": "the Kinesis record's data, sequenceNumber or approximateArrivalTimestamp is missing or of the "
                    "wrong type",
    "too_late": "an event whose UTC day is the allowed lateness (default 30 days) or more before its customer's "
                "clock: the state no longer holds that day (it may also be a resend of an event applied then)",
    "undecodable": "decoding or validating the record raised an unexpected error (the same bytes fail the same way)",
    "retries_exhausted": "a record the poller gave up on after max_retries (on-failure destination)",
}


class DeadLetter(Exception):
    """A permanently bad record: dead-lettered with ``reason`` (a code of REASONS) and ``detail``."""

    def __init__(self, reason: str, detail: str):
        assert reason in REASONS, reason
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}")


@dataclass(slots=True)
class Decoded:
    """One good record. ``kind``: "event" (customer event), "tick", or "tutor" (tutor-keyed event)."""

    kind: str
    key: str                 # customer id (tutor id for kind "tutor")
    ts_us: int
    seq: int                 # the Kinesis sequence number (per-shard, increasing)
    event_id: str | None = None
    event_type: str | None = None
    record: dict | None = None   # the validated event's fields (name -> value) for kind "event"


def tick_record(customer_id: str, midnight_us: int) -> dict:
    return {"record_type": TICK_TYPE, "customer_id": customer_id, "timestamp": format_timestamp(from_us(midnight_us))}


def _reason_for(exc: EventValidationError) -> str:
    msgs = [(f, m) for f, m in exc.problems]
    if any(f == "record" for f, _ in msgs):
        return "bad_json"
    if any(f == "event_type" and "unknown event type" in m for f, m in msgs):
        return "unknown_type"
    if any(f == "timestamp" and "naive" in m for f, m in msgs):
        return "naive_timestamp"
    if any("required field is missing" in m for _, m in msgs):
        return "missing_field"
    return "invalid_field"


def _parse_tick(obj: dict, partition_key: str | None, seq: int) -> Decoded:
    extra = set(obj) - {"record_type", "customer_id", "timestamp"}
    if extra:
        raise DeadLetter("bad_tick", f"unknown field(s) {sorted(extra)}; a day_tick has record_type, customer_id, "
                                     "timestamp")
    cid, ts = obj.get("customer_id"), obj.get("timestamp")
    if not isinstance(cid, str) or not cid:
        raise DeadLetter("missing_field" if cid is None else "invalid_field", "customer_id: expected a string")
    if not isinstance(ts, str):
        raise DeadLetter("missing_field" if ts is None else "invalid_field", "timestamp: expected an ISO-8601 string")
    try:
        t = datetime.fromisoformat(ts.replace("Z", "+00:00") if ts.endswith("Z") else ts)
    except ValueError:
        raise DeadLetter("invalid_field", f"timestamp: expected an ISO-8601 timestamp, got {ts!r}") from None
    if t.tzinfo is None or t.utcoffset() is None:
        raise DeadLetter("naive_timestamp", f"timestamp: expected a UTC offset, got {ts!r}")
    ts_us = to_us(t)
    if ts_us % DAY_US:
        raise DeadLetter("bad_tick", f"timestamp: a day_tick must be exactly at a UTC midnight, got {ts!r}")
    if partition_key is not None and partition_key != cid:
        raise DeadLetter("partition_key_mismatch", f"partitionKey {partition_key!r} != customer_id {cid!r}")
    return Decoded("tick", cid, ts_us, seq)


# A day tick in its canonical spellings (what the tick producers write), with or without spaces.
# Anything else takes the full path; a match gives exactly what the full path would.
_TICK_RE = re.compile(rb'\{"record_type": ?"day_tick", ?"customer_id": ?"([A-Za-z0-9_.:\-]{1,128})", ?'
                      rb'"timestamp": ?"(\d{4})-(\d{2})-(\d{2})T00:00:00(?:\.000000)?(?:Z|\+00:00)"\}')
_EPOCH_ORDINAL = EPOCH.date().toordinal()


def _fast_tick(data: bytes, partition_key: str | None, seq: int) -> Decoded | None:
    m = _TICK_RE.fullmatch(data)
    if m is None:
        return None
    try:
        day = date(int(m[2]), int(m[3]), int(m[4])).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None
    cid = m[1].decode()
    if partition_key is not None and partition_key != cid:
        return None
    return Decoded("tick", cid, day * DAY_US, seq)


def _event_decoded(ev, partition_key: str | None, seq: int) -> Decoded:
    key = ev.partition_key
    if partition_key is not None and partition_key != key:
        raise DeadLetter("partition_key_mismatch", f"partitionKey {partition_key!r} != entity key {key!r}")
    ts_us = to_us(ev.timestamp)
    if ev.event_type in TUTOR_KEYED_TYPES:
        return Decoded("tutor", key, ts_us, seq, ev.event_id, ev.event_type)
    # the frozen model's field dict: the same names and values as model_dump() (flat models), no copy
    return Decoded("event", key, ts_us, seq, ev.event_id, ev.event_type, ev.__dict__)


_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


def _decode_slow(data: bytes, partition_key: str | None, seq: int) -> Decoded:
    # the contract says UTF-8: json.loads(bytes) would also accept UTF-16/32 and a UTF-8 BOM
    if data.startswith(_BOMS):
        raise DeadLetter("bad_json", "data starts with a byte-order mark; the contract's encoding is UTF-8 without one")
    try:
        obj = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DeadLetter("bad_json", f"data is not UTF-8: {exc}") from None
    except RecursionError:
        raise DeadLetter("bad_json", "JSON nested too deeply to decode") from None
    except ValueError as exc:
        raise DeadLetter("bad_json", f"could not decode JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise DeadLetter("bad_json", f"expected a JSON object, got {type(obj).__name__}")
    if "record_type" in obj:
        if obj["record_type"] != TICK_TYPE:
            raise DeadLetter("unknown_type", f"record_type {obj['record_type']!r}; expected {TICK_TYPE!r}")
        return _parse_tick(obj, partition_key, seq)
    etype = obj.get("event_type")
    if isinstance(etype, str) and etype not in EVENT_MODELS:
        raise DeadLetter("unknown_type", f"event_type {etype!r} is not one of the contract's event types")
    try:
        ev = parse_event(obj)
    except EventValidationError as exc:
        raise DeadLetter(_reason_for(exc), str(exc)) from None
    except RecursionError:
        raise DeadLetter("invalid_field", "a field's value is nested too deeply to validate") from None
    return _event_decoded(ev, partition_key, seq)


def decode_payload(data: bytes, partition_key: str | None, seq: int, arrival_us: int | None,
                   max_bytes: int = MAX_RECORD_BYTES, future_tolerance_us: int = FUTURE_TOLERANCE_US) -> Decoded:
    """Validate one record's bytes; raise DeadLetter with the reason."""
    if len(data) > max_bytes:
        raise DeadLetter("oversized", f"{len(data)} bytes > limit {max_bytes}")
    # fast path: a valid event validates straight from the bytes in one pass (no json.loads/dumps);
    # anything else takes the full path below, which names the precise reason
    if data.startswith(_BOMS):
        raise DeadLetter("bad_json", "data starts with a byte-order mark; the contract's encoding is UTF-8 without one")
    if b'"record_type"' in data:
        d = _fast_tick(data, partition_key, seq) or _decode_slow(data, partition_key, seq)
    else:
        ev = try_parse_event_bytes(data)
        d = _event_decoded(ev, partition_key, seq) if ev is not None else _decode_slow(data, partition_key, seq)
    if arrival_us is not None and d.ts_us > arrival_us + future_tolerance_us:
        raise DeadLetter("far_future", f"timestamp {format_timestamp(from_us(d.ts_us))} is more than "
                                       f"{future_tolerance_us / 3.6e9:g} h after the arrival time "
                                       f"{format_timestamp(from_us(arrival_us))}")
    return d


def decode(kinesis: dict, max_bytes: int = MAX_RECORD_BYTES,
           future_tolerance_us: int = FUTURE_TOLERANCE_US) -> Decoded:
    """Decode the ``kinesis`` part of a Lambda Kinesis event record."""
    data, seq = kinesis.get("data"), kinesis.get("sequenceNumber")
    if not isinstance(data, str) or not isinstance(seq, str) or not seq.isdigit():
        raise DeadLetter("bad_envelope", "expected string 'data' and a numeric 'sequenceNumber'")
    if len(data) > (max_bytes * 4) // 3 + 4:
        raise DeadLetter("oversized", f"~{len(data) * 3 // 4} bytes > limit {max_bytes}")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DeadLetter("bad_base64", str(exc)) from None
    arrival = kinesis.get("approximateArrivalTimestamp")
    # the far-future check needs it: a missing or odd one (a string, a bool, NaN) must not skip it
    if isinstance(arrival, bool) or not isinstance(arrival, (int, float)) or not math.isfinite(arrival):
        raise DeadLetter("bad_envelope", f"approximateArrivalTimestamp: expected epoch seconds as a number, "
                                         f"got {arrival!r:.80}")
    arrival_us = round(float(arrival) * 1_000_000)
    return decode_payload(raw, kinesis.get("partitionKey"), int(seq), arrival_us, max_bytes, future_tolerance_us)


def kinesis_record(data: bytes, partition_key: str, seq: int | str, arrival_us: int,
                   shard_id: str = "shardId-000000000000", stream_arn: str = "arn:aws:kinesis:us-east-1:000000000000:stream/mhp-events") -> dict:
    """A record of a Lambda Kinesis event, exactly as the event source mapping delivers it."""
    sn = seq if isinstance(seq, str) else f"{seq:056d}"
    return {
        "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": partition_key, "sequenceNumber": sn,
                    "data": base64.b64encode(data).decode("ascii"),
                    "approximateArrivalTimestamp": arrival_us / 1_000_000},
        "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": f"{shard_id}:{sn}",
        "eventName": "aws:kinesis:record", "invokeIdentityArn": "arn:aws:iam::000000000000:role/mhp-ingester",
        "awsRegion": "us-east-1", "eventSourceARN": stream_arn,
    }


def shard_id(raw: dict) -> str:
    """The shard id part of a Lambda Kinesis event record's eventID ("" if it has none)."""
    eid = raw.get("eventID")
    return eid.split(":", 1)[0] if isinstance(eid, str) else ""


def horizon_key(raw: dict) -> str:
    """The shard a Lambda Kinesis event record came from (stream ARN + shard id): the key of the
    shard's tick horizon. A customer's records all travel through one shard (partition key)."""
    arn = raw.get("eventSourceARN")
    return f"{arn if isinstance(arn, str) else ''}/{shard_id(raw)}"


def partition_key_of(obj: dict[str, Any]) -> str:
    """The entity key a producer partitions a record by (records are dicts as written to the stream)."""
    if obj.get("event_type") in TUTOR_KEYED_TYPES:
        return obj["tutor_id"]
    return obj["customer_id"]
