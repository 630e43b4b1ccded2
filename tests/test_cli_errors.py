"""Every `mhp` command fails with one clear line on stderr and a non-zero exit: bad arguments,
missing prerequisites (the command to run first), unreachable services. Run in-process through
``mhp.cli.main`` over a table of bad invocations."""
import shutil

import pytest

from mhp.cli import main
from testing.net_faults import closed_port

AWS_ENV = ("AWS_ENDPOINT_URL", "FEAST_S3_ENDPOINT_URL", "MHP_AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
           "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """empty: a folder with nothing; sim: a simulation only; backfilled: feature tables, no Feast
    registry; applied: registered and materialized; plus a file that is not a model tarball."""
    root = tmp_path_factory.mktemp("cli_errors")
    (root / "empty").mkdir()
    assert main(["simulate", "--customers", "30", "--days", "15", "--seed", "1", "--out", str(root / "sim"),
                 "--no-progress"]) == 0
    shutil.copytree(root / "sim", root / "backfilled")
    assert main(["backfill", "--workspace", str(root / "backfilled"), "--no-validate"]) == 0
    shutil.copytree(root / "backfilled", root / "applied")
    assert main(["apply", "--workspace", str(root / "applied")]) == 0
    assert main(["materialize", "--workspace", str(root / "applied")]) == 0
    (root / "notatar.tar.gz").write_text("not a tarball")
    (root / "dataset").mkdir()
    return root


@pytest.fixture
def no_aws(monkeypatch, tmp_path):
    for name in AWS_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


CLOSED = f"http://127.0.0.1:{closed_port()}"

# (argv, exit code, what the one line must say); {P} is the fixture folder, {CLOSED} a closed port
CASES = [
    # arguments
    ([], 2, "required: COMMAND"),
    (["nosuch"], 2, "invalid choice: 'nosuch'"),
    (["simulate", "--bogus"], 2, "mhp simulate: error: unrecognized arguments: --bogus"),
    (["simulate", "--customers", "abc"], 2, "--customers"),
    (["simulate", "--days", "0"], 2, "--days"),
    (["simulate", "--customers", "5", "--days", "2", "--out", "/proc/mhp-nowhere/sim"], 2, "--out: cannot create"),
    (["validate"], 2, "TARGET"),
    (["validate", "events", "--input", "/no/such/events.parquet"], 2, "--input"),
    (["drift", "--reference", "/no/ref.parquet", "--serving", "/no/served.jsonl"], 2, "--reference"),
    (["ingest"], 2, "--from --kinesis is required"),
    (["ingest", "--from", "/no/stream.jsonl", "--workspace", "{P}/sim"], 2, "--from"),
    (["ingest", "--from", "{P}/sim/stream.jsonl", "--batch-size", "-3", "--workspace", "{P}/sim"], 2, "--batch-size"),
    (["serve"], 2, "required: --model"),
    (["serve", "--model", "{P}/notatar.tar.gz", "--port", "70000"], 2, "--port: expected 0-65535"),
    (["serve", "--model", "{P}/notatar.tar.gz", "--port", "eighty"], 2, "--port: invalid int value"),
    (["serve", "--model", "{P}/notatar.tar.gz", "--port", "0"], 2, "is not a model.tar.gz"),
    (["serve", "--model", "/no/model.tar.gz", "--port", "0"], 2, "--model"),
    (["train", "--dataset", "{P}/dataset", "--epochs", "-1"], 2, "--epochs: must be > 0"),
    (["train", "--dataset", "{P}/dataset", "--epochs", "x"], 2, "--epochs: invalid int value"),
    (["deploy"], 2, "required: --model, --endpoint"),
    (["deploy", "--model", "m.tar.gz", "--endpoint", "e", "--steps", "0.5,0.7"], 2, "--steps"),
    (["demo", "--customers", "-1"], 2, "--customers"),
    (["features-doc", "--out", "/proc/mhp-nowhere/features.md"], 2, "--out: cannot write"),
    (["score", "--all", "--workspace", "{P}/applied"], 2, "--at: required"),
    # prerequisites: the command to run first
    (["backfill", "--workspace", "{P}/empty"], 2, "run `mhp simulate"),
    (["apply", "--workspace", "{P}/empty"], 2, "`mhp backfill --workspace"),
    (["materialize", "--workspace", "{P}/empty"], 2, "`mhp backfill --workspace"),
    (["materialize", "--workspace", "{P}/sim"], 2, "`mhp backfill --workspace"),
    (["materialize", "--workspace", "{P}/backfilled"], 2, "`mhp apply --workspace"),
    (["feature-server", "--workspace", "{P}/applied", "--port", "70000"], 2, "--port: expected 0-65535"),
    (["feature-server", "--workspace", "{P}/empty"], 2, "`mhp backfill --workspace"),
    (["feature-server", "--workspace", "{P}/backfilled"], 2, "`mhp apply --workspace"),
    (["ingest", "--from", "{P}/sim/stream.jsonl", "--workspace", "{P}/sim", "--no-progress"], 2, "`mhp backfill"),
    (["ingest", "--from", "{P}/sim/stream.jsonl", "--workspace", "{P}/backfilled", "--no-progress"], 2,
     "`mhp apply --workspace"),
    (["score", "--customer", "c1", "--workspace", "{P}/empty"], 2, "`mhp backfill --workspace"),
    (["score", "--customer", "c1", "--at", "2025-01-10T00:00:00Z", "--workspace", "{P}/backfilled"], 2,
     "`mhp apply --workspace"),
    # services
    (["ingest", "--from", "{P}/sim/stream.jsonl", "--profile", "aws-local", "--data-uri", "s3://b/p"], 2,
     "set AWS_ENDPOINT_URL"),
    (["stack", "outputs"], 2, "no AWS credentials found"),
    (["score", "--customer", "c1", "--at", "2025-01-10T00:00:00Z", "--workspace", "{P}/applied",
      "--endpoint-url", "{CLOSED}"], 1, "unreachable"),
]


def _run(argv, places, capsys):
    argv = [a.replace("{P}", str(places)).replace("{CLOSED}", CLOSED) for a in argv]
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("argv, code, needle", CASES, ids=[" ".join(c[0])[:60] or "(none)" for c in CASES])
def test_a_bad_invocation_fails_with_one_clear_line(argv, code, needle, places, capsys, no_aws):
    rc, out, err = _run(argv, places, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == code, (rc, out[-500:], err[-500:])
    assert len(lines) == 1, err
    assert lines[0].startswith("mhp") and ": error: " in lines[0] and needle in lines[0], lines[0]
    assert "Traceback" not in out + err


def test_aws_local_with_the_endpoint_on_a_closed_port_fails_before_any_aws_call(places, capsys, no_aws,
                                                                               monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", CLOSED)
    rc, out, err = _run(["ingest", "--from", "{P}/sim/stream.jsonl", "--profile", "aws-local", "--data-uri",
                         "s3://b/p"], places, capsys)
    assert rc == 2 and err.count("\n") == 1
    assert f"cannot reach the moto server at {CLOSED} (AWS_ENDPOINT_URL)" in err and out == ""


def test_an_unexpected_error_is_one_line_naming_its_type_and_the_debug_switch(places, capsys, monkeypatch):
    import mhp.commands.features as F

    monkeypatch.setattr(F, "require_backfill", lambda ws: (_ for _ in ()).throw(TypeError("boom\nsecond line")))
    rc, out, err = _run(["apply", "--workspace", "{P}/empty"], places, capsys)
    assert rc == 1 and err == "mhp apply: error: TypeError: boom (set MHP_TRACEBACK=1 for the traceback)\n"
    monkeypatch.setenv("MHP_TRACEBACK", "1")
    with pytest.raises(TypeError, match="boom"):
        main(["apply", "--workspace", str(places / "empty")])


def test_ingest_with_failing_pushes_exits_1_with_a_summary_and_no_tracebacks(places, capsys, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(places / "applied", ws)
    online = ws / "feast" / "online.db"  # the online store cannot be opened: every push fails
    online.unlink()
    online.mkdir()
    rc, out, err = _run(["ingest", "--from", str(ws / "stream.jsonl"), "--workspace", str(ws), "--no-progress"],
                        places, capsys)
    assert rc == 1 and "ingest:" in out and "retried (batchItemFailures)" in out
    assert "Traceback" not in out + err and '"level":"ERROR"' not in out
    assert err.count("\n") == 1 and "record(s) failed and were not applied; first error: state store or push failed" in err


def test_feature_server_serves_a_customer_of_the_workspace(places):
    """The good path of `mhp feature-server`: one GET per customer on the workspace's store."""
    import json
    import subprocess
    import sys
    import time
    import urllib.request

    from testing.net_faults import closed_port as free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mhp.cli", "feature-server", "--workspace",
                             str(places / "applied"), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        body = None
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/features/c0000001"
                                            "?at=2025-01-10T00:00:00Z", timeout=5) as r:
                    body = json.loads(r.read())
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()[1][-2000:]
                time.sleep(0.1)
        assert body is not None and body["customer_id"] == "c0000001"
        assert sum(v is not None for v in body["features"].values()) > 20
    finally:
        proc.terminate()
        proc.wait(10)
