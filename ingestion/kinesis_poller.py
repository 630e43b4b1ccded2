"""Polling a Kinesis stream the way Lambda's event source mapping does (for aws-local / tests).

Per shard: resume after the checkpoint stored in the state store (else TRIM_HORIZON), read up
to ``batch_size`` records, invoke the handler with a Lambda Kinesis event, then:

* no failures: checkpoint the last sequence number;
* ``batchItemFailures`` (ReportBatchItemFailures): checkpoint before the lowest failed sequence
  number and retry the batch from there;
* a function error (the handler raised): with ``bisect_on_error`` split the batch in halves
  and retry each (BisectBatchOnFunctionError), else retry it whole;
* after ``max_retries`` retries of the same records: send them to the dead-letter destination
  with reason "retries_exhausted" (the on-failure destination), checkpoint past them, go on.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from .dead_letters import letter
from .records import kinesis_record, partition_key_of, to_us


@dataclass
class PollStats:
    records: int = 0
    invocations: int = 0
    retries: int = 0
    bisections: int = 0
    given_up: int = 0


class KinesisPoller:
    def __init__(self, ingester, kinesis, stream_name: str, state_store, batch_size: int = 100,
                 max_retries: int = 3, bisect_on_error: bool = True):
        self.ingester, self.kinesis, self.stream = ingester, kinesis, stream_name
        self.store = state_store
        self.batch_size, self.max_retries, self.bisect = batch_size, max_retries, bisect_on_error
        self.stats = PollStats()
        desc = kinesis.describe_stream(StreamName=stream_name)["StreamDescription"]
        self.arn = desc["StreamARN"]

    def shards(self) -> list[str]:
        out, kwargs = [], {"StreamName": self.stream}
        while True:
            resp = self.kinesis.list_shards(**kwargs)
            out += [s["ShardId"] for s in resp["Shards"]]
            if not resp.get("NextToken"):
                return out
            kwargs = {"NextToken": resp["NextToken"]}

    def _iterator(self, shard: str) -> str:
        cp = self.store.get_checkpoint(self.stream, shard)
        kw = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": cp} if cp else \
            {"ShardIteratorType": "TRIM_HORIZON"}
        return self.kinesis.get_shard_iterator(StreamName=self.stream, ShardId=shard, **kw)["ShardIterator"]

    def _event(self, shard: str, recs: list[dict]) -> dict:
        return {"Records": [kinesis_record(r["Data"], r["PartitionKey"], r["SequenceNumber"],
                                           to_us(r["ApproximateArrivalTimestamp"]), shard, self.arn) for r in recs]}

    def poll_shard(self, shard: str) -> int:
        """Drain one shard up to its current end; returns the records delivered."""
        it, n = self._iterator(shard), 0
        while it:
            resp = self.kinesis.get_records(ShardIterator=it, Limit=self.batch_size)
            recs = resp["Records"]
            if not recs:
                break
            self._deliver(shard, recs)
            n += len(recs)
            it = resp.get("NextShardIterator")
        return n

    def poll(self) -> int:
        return sum(self.poll_shard(s) for s in self.shards())

    def _deliver(self, shard: str, recs: list[dict]) -> None:
        self.stats.records += len(recs)
        queue: list[tuple[list[dict], int]] = [(recs, 0)]
        while queue:
            batch, attempt = queue.pop(0)
            self.stats.invocations += 1
            try:
                resp = self.ingester.handle(self._event(shard, batch))
                failed = {f["itemIdentifier"] for f in resp.get("batchItemFailures", [])}
                error = False
            except Exception:  # noqa: BLE001 - a function error, as Lambda sees it
                failed, error = {r["SequenceNumber"] for r in batch}, True
            if not failed:
                self.store.put_checkpoint(self.stream, shard, batch[-1]["SequenceNumber"])
                continue
            first = min(i for i, r in enumerate(batch) if r["SequenceNumber"] in failed)
            if first:
                self.store.put_checkpoint(self.stream, shard, batch[first - 1]["SequenceNumber"])
            rest = batch[first:]
            if attempt >= self.max_retries:
                self._give_up(shard, rest)
                continue
            self.stats.retries += 1
            if error and self.bisect and len(rest) > 1:
                self.stats.bisections += 1
                mid = len(rest) // 2
                queue[:0] = [(rest[:mid], attempt + 1), (rest[mid:], attempt + 1)]
            else:
                queue.insert(0, (rest, attempt + 1))

    def _give_up(self, shard: str, recs: list[dict]) -> None:
        ev = self._event(shard, recs)["Records"]
        self.ingester.dead_letters.put_many([
            letter("retries_exhausted", f"gave up after {self.max_retries} retries", r["kinesis"], shard) for r in ev])
        self.store.put_checkpoint(self.stream, shard, recs[-1]["SequenceNumber"])
        self.stats.given_up += len(recs)


def put_stream_lines(kinesis, stream_name: str, lines: list[bytes]) -> int:
    """Producer helper: put JSON lines on the stream, partitioned by their entity key, in order."""

    n = 0
    for i in range(0, len(lines), 500):
        chunk = lines[i:i + 500]
        entries = []
        for line in chunk:
            try:
                key = partition_key_of(json.loads(line))
            except Exception:  # noqa: BLE001 - a malformed line still goes on the stream
                key = "unknown"
            entries.append({"Data": line, "PartitionKey": key})
        resp = kinesis.put_records(StreamName=stream_name, Records=entries)
        if resp.get("FailedRecordCount"):
            raise RuntimeError(f"{resp['FailedRecordCount']} records rejected by {stream_name}")
        n += len(entries)
    return n
