"""`mhp demo --profile aws-local` on the stack deploy/template.yaml creates on the moto server.

The demo deploys the stack (``core.stack``, as `mhp stack deploy --profile aws-local`), keeps its
data under the stack's bucket (``DataUri``: event log, feature tables, Feast registry) and runs
the live days through the deployed functions' entry points (``mhp.lambdas``), each invoked
in-process with the environment the stack gave its function plus the aws-local overlay
(``MHP_PROFILE=aws-local``, ``MHP_ENDPOINT_URL`` = our inference server standing in for
SageMaker runtime, ``MHP_STATE_DIR`` = the demo folder): moto runs no Lambda code.

* The ingester's state is first rebuilt from the history stream in process (SQLite, no pushes,
  no scoring: the online store already holds the history through materialization), caught up
  to the history's end and written to the stack's state table: one conditional put per customer,
  where replaying the history through DynamoDB on moto would cost a request per customer per batch.
* Each live day: the day's stream records are put on the stack's Kinesis stream and
  ``ingestion.kinesis_poller.KinesisPoller`` delivers them to ``ingest_handler`` with the event
  source mapping's semantics (batches, partial failures, checkpoints); at the midnight
  ``tick_handler`` puts the due day ticks on the stream (delivered the same way),
  ``materialize_handler`` loads the batch views and ``batch_score_handler`` scores every active
  customer. Alerts go to the stack's SNS topic and are read back through an SQS subscription.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

from core import aws, local_aws
from core import stack as cfn
from core.times import isoformat_z, to_us
from mhp import lambdas
from mhp.commands.stack import TEMPLATE, local_parameters

STAGE = "demo"
FUNCTIONS = {"ingest": "ingester", "tick": "day-ticks", "materialize": "materialize", "batch": "batch-score"}
DAY = timedelta(days=1)


def _ts_us(line: bytes) -> int | None:
    """A stream line's event time (None for a line the ingester will dead-letter)."""
    try:
        return to_us(datetime.fromisoformat(json.loads(line)["timestamp"].replace("Z", "+00:00")))
    except Exception:  # noqa: BLE001 - any unreadable line goes with the current day
        return None


class DemoStack:
    def __init__(self, root: Path):
        self.root = root
        res = cfn.deploy(f"mhp-{STAGE}", TEMPLATE.read_text(), local_parameters(STAGE), poll=0.2)
        self.outputs = res.outputs
        self.seconds = res.seconds
        lam = aws.boto3_client("lambda")
        # Lambda's environment is strings (moto hands Number parameters back as numbers)
        self.base_env = {k: {n: str(v) for n, v in lam.get_function_configuration(
            FunctionName=f"mhp-{STAGE}-{suffix}")["Environment"]["Variables"].items()} for k, suffix in FUNCTIONS.items()}
        self.envs = {k: {**e, "MHP_PROFILE": "aws-local", "MHP_STATE_DIR": str(root)} for k, e in self.base_env.items()}
        self.log_path = root / "lambda-logs.jsonl"
        lambdas.reset()

    @property
    def data_uri(self) -> str:
        return self.outputs["DataUri"]

    def feature_store(self):
        """The stack's Feast store (its table names), as the functions open it."""
        with local_aws.patched_env(self.envs["materialize"]):
            return lambdas.open_feature_store(self.envs["materialize"])

    def serve_with(self, endpoint_url: str) -> None:
        for e in self.envs.values():
            e["MHP_ENDPOINT_URL"] = endpoint_url

    def invoke(self, name: str, handler, event):
        # a function's stdout (Powertools' EMF metric lines) is its CloudWatch log: kept in a file
        with local_aws.patched_env(self.envs[name]), open(self.log_path, "a") as log, \
                contextlib.redirect_stdout(log):
            return handler(event, None)

    def subscribe_readback(self) -> str:
        """An SQS queue subscribed to the stack's alert topic (moto's CloudFormation cannot subscribe)."""
        sqs = aws.boto3_client("sqs")
        url = sqs.create_queue(QueueName=f"mhp-{STAGE}-alerts-readback")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        aws.boto3_client("sns").subscribe(TopicArn=self.outputs["AlertTopicArn"], Protocol="sqs", Endpoint=arn,
                                          Attributes={"RawMessageDelivery": "true"})
        return url


class _Function:
    """The ingester function as the event source mapping invokes it (KinesisPoller's ``ingester``)."""

    def __init__(self, stack: DemoStack):
        self.stack = stack

    def handle(self, event: dict) -> dict:
        return self.stack.invoke("ingest", lambdas.ingest_handler, event)

    @property
    def dead_letters(self):
        return lambdas.built("ingester").dead_letters


def bootstrap(stack: DemoStack, stream: Path, history_end: datetime, progress=None) -> tuple[int, int]:
    """Rebuild the ingester state from the history part of the stream in process and write it to the
    stack's state table. Returns (stream lines consumed, history events applied)."""
    from features import state as S  # lazy: loaded only when this command runs (keeps `mhp --help` light)
    from ingestion.dead_letters import SQLiteDeadLetters  # lazy: as above
    from ingestion.dynamodb_state_store import DynamoDBStateStore  # lazy: as above
    from ingestion.handler import Ingester  # lazy: as above
    from ingestion.push import MemoryPusher  # lazy: as above
    from ingestion.replay import StreamReplay  # lazy: as above
    from ingestion.state_store import SQLiteStateStore  # lazy: as above

    folder = stack.root / "ingestion-bootstrap"
    local = SQLiteStateStore(folder / "state.db")
    ingester = Ingester(local, MemoryPusher(), SQLiteDeadLetters(folder / "dead_letters.db"))
    replay = StreamReplay(ingester, stream, batch_size=500, progress=progress)
    replay.run_until(to_us(history_end))
    items = local.load_many(local.live_customers(0))
    end_us = to_us(history_end)
    for it in items.values():
        S.catch_up(it.state, end_us)   # the ticks the history's last midnights owe it
    remote = DynamoDBStateStore(stack.envs["ingest"]["MHP_STATE_TABLE"], create=False)
    conflicts = remote.save_many([dataclasses.replace(it, version=0) for it in items.values()])
    if conflicts:
        raise RuntimeError(f"state table {remote.table}: {len(conflicts)} customers already there")
    return replay.lines, ingester.totals.get("applied", 0)


def live_days(stack: DemoStack, stream: Path, skip_lines: int, history_end: datetime, end: datetime,
              progress=None) -> dict:
    """The live days through the stack: Kinesis -> ingest_handler; at each midnight the ticks,
    the materialization and the batch scoring. Returns totals, daily counts and per-day seconds."""
    from ingestion.dynamodb_state_store import DynamoDBStateStore  # lazy: loaded only when this command runs
    from ingestion.kinesis_poller import KinesisPoller, put_stream_lines  # lazy: as above

    lines = [ln for ln in (raw.strip() for raw in stream.read_bytes().splitlines()) if ln][skip_lines:]
    kinesis = aws.boto3_client("kinesis")
    name = stack.outputs["StreamName"]
    state = DynamoDBStateStore(stack.envs["ingest"]["MHP_STATE_TABLE"], create=False)
    poller = KinesisPoller(_Function(stack), kinesis, name, state, batch_size=500, max_retries=3)
    daily, seconds, i, day = Counter(), [], 0, history_end
    while day < end:
        t0 = time.perf_counter()
        nxt = day + DAY
        todo = []
        while i < len(lines):
            ts = _ts_us(lines[i])
            if ts is not None and ts >= to_us(nxt):
                break
            todo.append(lines[i])
            i += 1
        put_stream_lines(kinesis, name, todo)
        poller.poll()
        if progress is not None:
            progress.update(len(todo))
        t1 = time.perf_counter()
        ticks = stack.invoke("tick", lambdas.tick_handler, {"time": isoformat_z(nxt), "detail-type": "Scheduled Event"})
        poller.poll()
        t2 = time.perf_counter()
        stack.invoke("materialize", lambdas.materialize_handler, {"time": isoformat_z(nxt + timedelta(minutes=15))})
        t3 = time.perf_counter()
        out = stack.invoke("batch", lambdas.batch_score_handler, {"time": isoformat_z(nxt + timedelta(minutes=45))})
        t4 = time.perf_counter()
        daily["ticks"] += ticks["ticks"]
        daily["scored"] += out["scored"]
        daily["alerts"] += out["alerts"]
        seconds.append((day.date().isoformat(), len(todo), {"stream": t1 - t0, "ticks": t2 - t1,
                                                             "materialize": t3 - t2, "batch score": t4 - t3}))
        day = nxt
    rest = lines[i:]
    put_stream_lines(kinesis, name, rest)
    poller.poll()
    ingester = lambdas.built("ingester")
    return {"totals": dict(ingester.totals) if ingester else {}, "daily": dict(daily), "days": seconds,
            "poll": dataclasses.asdict(poller.stats)}
