"""Dead-letter destinations for permanently bad records (embedded: SQLite or JSONL; AWS: SQS).

Each dead letter is a JSON object::

    {"reason": "<code of ingestion.records.REASONS>", "detail": "<what exactly was wrong>",
     "sequence_number": "...", "partition_key": "...", "shard": "...",
     "approximate_arrival": <epoch seconds>, "data": "<the original base64 data, truncated to 64 KiB>",
     "letter_id": "<stream ARN>/<eventID>: the record's identity (null if the envelope lacks it)"}

``put_many`` writes one invocation's dead letters in one go and raises if it could not: the
handler then reports those records in ``batchItemFailures`` so Lambda retries them (a dead
letter is never lost silently).
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Protocol

from core import aws

from .state_store import open_sqlite

MAX_DATA_CHARS = 64 * 1024


class DeadLetterSink(Protocol):
    def put_many(self, letters: list[dict]) -> None: ...


def _text(v):
    return v if v is None or isinstance(v, str) else repr(v)[:200]


def letter(reason: str, detail: str, kinesis: dict, shard: str | None = None, letter_id: str | None = None) -> dict:
    """A dead letter; envelope fields of odd types are kept as their repr (the letter stays valid)."""
    data = kinesis.get("data")
    arrival = kinesis.get("approximateArrivalTimestamp")
    return {"reason": reason, "detail": detail[:2000], "sequence_number": _text(kinesis.get("sequenceNumber")),
            "partition_key": _text(kinesis.get("partitionKey")), "shard": _text(shard),
            "approximate_arrival": arrival if isinstance(arrival, (int, float)) and not isinstance(arrival, bool)
            else _text(arrival),
            "data": data[:MAX_DATA_CHARS] if isinstance(data, str) else None, "letter_id": letter_id}


def letter_id(raw: dict) -> str | None:
    """A Lambda Kinesis record's identity across redeliveries: stream ARN + eventID (shard + sequence number)."""
    arn, eid = raw.get("eventSourceARN"), raw.get("eventID")
    return f"{arn}/{eid}" if isinstance(arn, str) and isinstance(eid, str) and eid else None


class SQLiteDeadLetters:
    def __init__(self, path: str | os.PathLike):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.con = open_sqlite(path, 30.0)
        self.con.execute("CREATE TABLE IF NOT EXISTS dead_letters (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                         "reason TEXT NOT NULL, detail TEXT, sequence_number TEXT, partition_key TEXT, "
                         "shard TEXT, approximate_arrival REAL, data TEXT, letter_id TEXT)")
        if "letter_id" not in {r[1] for r in self.con.execute("PRAGMA table_info(dead_letters)")}:
            self.con.execute("ALTER TABLE dead_letters ADD COLUMN letter_id TEXT")   # a file from before letter ids
        self.con.commit()

    def put_many(self, letters: list[dict]) -> None:
        if not letters:
            return
        cols = ("reason", "detail", "sequence_number", "partition_key", "shard", "approximate_arrival", "data",
                "letter_id")
        with self._lock, self.con:
            self.con.executemany(f"INSERT INTO dead_letters ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                                 [tuple(d.get(c) for c in cols) for d in letters])

    def all(self) -> list[dict]:
        with self._lock:
            cur = self.con.execute("SELECT reason, detail, sequence_number, partition_key, shard, "
                                   "approximate_arrival, data, letter_id FROM dead_letters ORDER BY id")
            names = [c[0] for c in cur.description]
            return [dict(zip(names, row)) for row in cur]


class JsonlDeadLetters:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def put_many(self, letters: list[dict]) -> None:
        if not letters:
            return
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(d, sort_keys=True) + "\n" for d in letters))
            f.flush()
            os.fsync(f.fileno())

    def all(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


class SQSDeadLetters:
    """One SendMessageBatch per 10 letters; any failed entry raises (the records are retried)."""

    def __init__(self, queue_url: str, client=None):

        self.queue_url = queue_url
        self.sqs = client or aws.boto3_client("sqs")

    @classmethod
    def create(cls, name: str, client=None) -> "SQSDeadLetters":

        sqs = client or aws.boto3_client("sqs")
        return cls(sqs.create_queue(QueueName=name)["QueueUrl"], sqs)

    def put_many(self, letters: list[dict]) -> None:
        for i in range(0, len(letters), 10):
            chunk = letters[i:i + 10]
            resp = self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(j), "MessageBody": json.dumps(d, sort_keys=True),
                 "MessageAttributes": {"reason": {"DataType": "String", "StringValue": d["reason"]}}}
                for j, d in enumerate(chunk)])
            if resp.get("Failed"):
                raise RuntimeError(f"SQS dead-letter queue rejected {len(resp['Failed'])} message(s): "
                                   f"{resp['Failed'][0]}")

    def all(self) -> list[dict]:
        out = []
        while True:
            resp = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            msgs = resp.get("Messages", [])
            if not msgs:
                return out
            out += [json.loads(m["Body"]) for m in msgs]
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(j), "ReceiptHandle": m["ReceiptHandle"]} for j, m in enumerate(msgs)])
