"""`mhp simulate --out s3://...` writes the same bytes to S3 (a moto server on 127.0.0.1) as to a folder."""
import hashlib

import boto3
import pytest
from moto.server import ThreadedMotoServer

from events.contract import parse_event_json
from mhp.cli import main
from simulator.output import filesystem


@pytest.fixture()
def s3_endpoint(monkeypatch):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    for key, value in dict(AWS_ENDPOINT_URL=f"http://{host}:{port}", AWS_ACCESS_KEY_ID="testing",
                           AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1").items():
        monkeypatch.setenv(key, value)
    boto3.client("s3").create_bucket(Bucket="mhp-sim")
    yield f"http://{host}:{port}"
    server.stop()


def test_s3_output_is_byte_identical_to_local_output(s3_endpoint, tmp_path):
    args = ["simulate", "--customers", "60", "--days", "12", "--seed", "4", "--no-progress"]
    assert main([*args, "--out", "s3://mhp-sim/runs/a"]) == 0
    assert main([*args, "--out", str(tmp_path)]) == 0

    keys = boto3.client("s3").list_objects_v2(Bucket="mhp-sim", Prefix="runs/a/")["Contents"]
    remote = {k["Key"].removeprefix("runs/a/"): k for k in keys}
    local = {str(p.relative_to(tmp_path)): p for p in tmp_path.rglob("*") if p.is_file()}
    assert set(remote) == set(local)
    assert any(k.startswith("events/date=2025-01-12/") for k in remote)
    s3 = boto3.client("s3")
    for key, path in local.items():
        body = s3.get_object(Bucket="mhp-sim", Key=f"runs/a/{key}")["Body"].read()
        assert hashlib.sha256(body).digest() == hashlib.sha256(path.read_bytes()).digest(), key

    fs, root = filesystem("s3://mhp-sim/runs/a")
    lines = fs.cat(f"{root}/stream.jsonl").decode().splitlines()
    assert lines and all(parse_event_json(line) for line in lines)


def test_s3_filesystem_uses_the_endpoint_from_the_environment(s3_endpoint):
    fs, root = filesystem("s3://mhp-sim/prefix/")
    assert root == "mhp-sim/prefix"
    fs.pipe(f"{root}/probe", b"ok")
    assert boto3.client("s3").get_object(Bucket="mhp-sim", Key="prefix/probe")["Body"].read() == b"ok"
