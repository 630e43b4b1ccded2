"""Dead-letter destinations for permanently bad records (embedded: SQLite or JSONL; AWS: SQS).

Each dead letter is a JSON object::

    {"reason": "<code of ingestion.records.REASONS>", "detail": "<what exactly was wrong>",
     "sequence_number": "...", "partition_key": "...", "shard": "...",
     "approximate_arrival": <epoch seconds>, "data": "<the original base64 data, truncated to 64 KiB>"}

``put_many`` writes one invocation's dead letters in one go and raises if it could not: the
handler then reports those records in ``batchItemFailures`` so Lambda retries them (a dead
letter is never lost silently).
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Protocol

from core import aws

MAX_DATA_CHARS = 64 * 1024


class DeadLetterSink(Protocol):
    def put_many(self, letters: list[dict]) -> None: ...


def letter(reason: str, detail: str, kinesis: dict, shard: str | None = None) -> dict:
    data = kinesis.get("data")
    return {"reason": reason, "detail": detail[:2000], "sequence_number": kinesis.get("sequenceNumber"),
            "partition_key": kinesis.get("partitionKey"), "shard": shard,
            "approximate_arrival": kinesis.get("approximateArrivalTimestamp"),
            "data": data[:MAX_DATA_CHARS] if isinstance(data, str) else None}


class SQLiteDeadLetters:
    def __init__(self, path: str | os.PathLike):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.con = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("CREATE TABLE IF NOT EXISTS dead_letters (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                         "reason TEXT NOT NULL, detail TEXT, sequence_number TEXT, partition_key TEXT, "
                         "shard TEXT, approximate_arrival REAL, data TEXT)")
        self.con.commit()

    def put_many(self, letters: list[dict]) -> None:
        if not letters:
            return
        cols = ("reason", "detail", "sequence_number", "partition_key", "shard", "approximate_arrival", "data")
        with self._lock, self.con:
            self.con.executemany(f"INSERT INTO dead_letters ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                                 [tuple(d.get(c) for c in cols) for d in letters])

    def all(self) -> list[dict]:
        with self._lock:
            cur = self.con.execute("SELECT reason, detail, sequence_number, partition_key, shard, "
                                   "approximate_arrival, data FROM dead_letters ORDER BY id")
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
