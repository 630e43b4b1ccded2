"""The console on the aws-local profile (moto): Feast on DynamoDB, the event log on S3, through the
same wiring as `mhp score`; the scores shown equal `mhp score --profile aws-local` at the same time."""
from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from console.server import build_console, start
from core import aws, local_aws, storage
from core.times import isoformat_z
from core.workspace import Workspace
from mhp.cli import main
from serving.server import InferenceServer
from testing.toy_model import train_toy_model
from tests.eventlog import aws_local_feature_store, ts, write_log
from tests.test_serving_e2e import AS_OF, history

pytestmark = pytest.mark.aws


@pytest.fixture(scope="module")
def aws_world(moto_server_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console-aws")
    with local_aws.patched_env(local_aws.moto_env(moto_server_url)):
        aws.ensure_bucket("mhp-console")
        data = "s3://mhp-console/ws"
        events = write_log(history(), tmp / "local-events")
        # the event log on S3 as one object (dozens of daily objects through moto cost ~1 s each)
        table = pa.concat_tables([pq.read_table(p) for p in sorted(Path(events).rglob("*.parquet"))],
                                 promote_options="permissive")
        storage.write_parquet(table.drop_columns([c for c in table.column_names if c == "date"]),
                              storage.join(data, "events", "date=2025-01-01", "all.parquet"))
        store = aws_local_feature_store(tmp, events, AS_OF, data)
        store.materialize(start_date=ts("2024-12-01T00:00:00Z"), end_date=AS_OF)
        server = InferenceServer(train_toy_model(tmp / "model"), port=0).start()
        try:
            yield Workspace(root=data, state=tmp, profile="aws-local"), server.url
        finally:
            server.stop()
            local_aws.reset_moto(moto_server_url)


def test_customer_page_on_aws_local_equals_mhp_score(aws_world, moto_server_url, capsys):
    ws, endpoint = aws_world
    with local_aws.patched_env(local_aws.moto_env(moto_server_url)):
        console, _ = build_console(ws, endpoint_url=endpoint, at=AS_OF)
        running = start(console)
        try:
            with urllib.request.urlopen(f"{running.url}/customers/bad") as resp:
                body = resp.read().decode()
        finally:
            running.stop()
        shown = {h: float(v) for h, v in re.findall(r'id="score-(\w+)" data-value="([^"]+)"', body)}
        assert main(["score", "--customer", "bad", "--at", isoformat_z(AS_OF), "--no-alerts", "--profile", "aws-local",
                     "--workspace", str(ws.state), "--data-uri", ws.root, "--endpoint-url", endpoint]) == 0
    expected = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(shown) == 3
    for head, value in shown.items():
        assert value == pytest.approx(expected[head], abs=1e-6), head
    assert "inbound_call" in body and "issue_category=billing" in body      # events read from S3
    assert re.search(r"<td>ib_call_count_14d</td><td>\d+</td>", body)        # a window feature from DynamoDB
