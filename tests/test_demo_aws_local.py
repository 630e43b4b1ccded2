"""`mhp demo --profile aws-local` at a tiny size, on the stack deploy/template.yaml creates on moto:
the live records go through Kinesis and the deployed entry points (mhp.lambdas) in-process."""
import json

import pytest

from mhp.cli import main

pytestmark = [pytest.mark.aws, pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")]


def test_aws_local_demo_runs_on_the_stack(tmp_path, capsys):
    ws = tmp_path / "demo"
    assert main(["demo", "--profile", "aws-local", "--workspace", str(ws), "--customers", "150", "--days", "90",
                 "--live-days", "1", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "== deploy the stack (deploy/template.yaml) on the moto server" in out
    assert "data under s3://mhp-demo-data-123456789012-us-east-1/data" in out
    assert "written to the stack's state table" in out
    days = [line for line in out.splitlines() if line.strip().startswith("live day ")]
    assert len(days) == 1 and all("records through Kinesis -> ingest_handler" in d for d in days)
    live = out.split("live days:")[1].splitlines()[1]
    applied, scorings = int(live.split()[0].replace(",", "")), int(live.split(" event-triggered")[0].split()[-1].replace(",", ""))
    assert applied > 0 and scorings > 0
    # every scoring went through the endpoint and the served log, at live-day event times
    served = [json.loads(line) for line in (ws / "serving" / "served.jsonl").read_text().splitlines()]
    assert len(served) >= scorings and "demo finished" in out
