"""core.storage: one API for local paths and s3:// (moto on 127.0.0.1), DuckDB reading s3:// via s3fs."""
import pandas as pd
import pyarrow as pa
import pytest

from core import aws, local_aws, storage


def _df(n, start=0):
    return pd.DataFrame({"k": [f"c{i}" for i in range(start, start + n)], "v": range(start, start + n)})


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    if request.param == "local":
        yield str(tmp_path / "data")
    else:
        ep = request.getfixturevalue("moto_endpoint")
        assert ep.startswith("http://127.0.0.1:")
        aws.ensure_bucket("mhp-test")
        yield "s3://mhp-test/data"


def test_roundtrip_exists_join(root):
    uri = storage.join(root, "a", "x.parquet")
    assert uri == root + "/a/x.parquet"
    assert not storage.exists(uri)
    storage.write_parquet(_df(3), uri)
    assert storage.exists(uri)
    assert storage.exists(storage.join(root, "a", "*.parquet"))
    t = storage.read_parquet(uri)
    assert isinstance(t, pa.Table) and t.column("v").to_pylist() == [0, 1, 2]


def test_duckdb_reads_globs_and_hive_partitions(root):
    storage.write_parquet(_df(2), storage.join(root, "flat", "p1.parquet"))
    storage.write_parquet(_df(3, 2), storage.join(root, "flat", "p2.parquet"))
    for day, n in [("2025-01-01", 2), ("2025-01-02", 4)]:
        storage.write_parquet(_df(n), storage.join(root, "hive", f"day={day}", "part.parquet"))
    con = storage.duckdb_connect(for_uris=[root])
    flat = storage.join(root, "flat", "*.parquet")
    assert con.execute(f"SELECT count(*), sum(v) FROM read_parquet('{flat}')").fetchone() == (5, 10)
    hive = storage.join(root, "hive", "*", "*.parquet")
    rows = con.execute(
        f"SELECT day::VARCHAR, count(*) FROM read_parquet('{hive}', hive_partitioning=true) GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert rows == [("2025-01-01", 2), ("2025-01-02", 4)]
    # recursive glob, and a file written after the connection was made is seen (no stale listing)
    storage.write_parquet(_df(1), storage.join(root, "hive", "day=2025-01-03", "part.parquet"))
    rec = storage.join(root, "hive", "**", "*.parquet")
    assert con.execute(f"SELECT count(*) FROM read_parquet('{rec}')").fetchone() == (7,)
    # pyarrow reader: directory with hive partitions, and globs
    assert storage.read_parquet(storage.join(root, "hive")).num_rows == 7
    assert storage.read_parquet(flat).num_rows == 5


def test_moto_endpoint_env_and_boto3_client(moto_endpoint):
    import os

    assert os.environ["AWS_ENDPOINT_URL"] == moto_endpoint
    assert os.environ["FEAST_S3_ENDPOINT_URL"] == moto_endpoint
    s3 = aws.boto3_client("s3")
    assert s3.meta.endpoint_url == moto_endpoint
    aws.ensure_bucket("mhp-other")
    aws.ensure_bucket("mhp-other")  # idempotent
    assert "mhp-other" in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_moto_state_is_reset_between_tests(moto_endpoint):
    names = [b["Name"] for b in aws.boto3_client("s3").list_buckets()["Buckets"]]
    assert "mhp-other" not in names and "mhp-test" not in names


def test_moto_server_context_restores_env():
    import os

    before = os.environ.get("AWS_ENDPOINT_URL")
    with local_aws.moto_server() as ep:
        assert os.environ["AWS_ENDPOINT_URL"] == ep
        aws.ensure_bucket("mhp-ctx")
        ddb = aws.boto3_client("dynamodb")
        assert ddb.list_tables()["TableNames"] == []
    assert os.environ.get("AWS_ENDPOINT_URL") == before
