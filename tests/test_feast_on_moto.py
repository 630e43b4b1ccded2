"""Feast behaviours the product relies on, pinned on a toy repo (so an upgrade that changes them fails here):

* the `aws-local` recipe works: DynamoDB online, registry and Parquet on s3:// through
  `features.feast_offline.S3DuckDBOfflineStore` (test_profiles_are_what_they_claim);
* the duckdb offline store never drops an entity row, even outside TTL or in the future, and
  joins point in time (test_historical_keeps_every_row_and_is_point_in_time);
* ttl=0 / None mean "no expiry" offline, which the snapshot views use (test_ttl_semantics);
* online pushes are unconditional batched puts, which is why only the ordered per-customer path
  writes customer rows and guards them (test_push_online_is_batched_and_unconditional).

Two profiles built from the same definitions (written into a tmp repo dir):

* embedded: SQLite online, stock `duckdb` offline store, local Parquet, local registry
* aws-local: DynamoDB online (moto), Parquet + registry on s3:// (moto),
  `features.feast_offline.S3DuckDBOfflineStore` (stock duckdb store + s3fs reader)

See docs/notes/feast-on-moto.md.
"""
from __future__ import annotations

import importlib.util
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import aws, local_aws, storage

UTC = timezone.utc
BUCKET = "mhp-feast-toy"


def ts(*a):
    return datetime(*a, tzinfo=UTC)


# ---------------------------------------------------------------- toy data ---
CUSTOMER_ROWS = [
    # customer_id, event_timestamp, created, sessions_7d, avg_rating_7d, last_session_ts
    ("c1", ts(2025, 1, 1), ts(2025, 1, 1), 1, 4.0, ts(2025, 1, 1)),
    ("c1", ts(2025, 1, 5, 12), ts(2025, 1, 5, 12), 2, None, ts(2025, 1, 5, 12)),  # avg over nothing: null
    # c2: two rows with the same event_timestamp; the later `created` must win
    ("c2", ts(2025, 1, 2), ts(2025, 1, 2, 1), 5, 3.0, ts(2025, 1, 2)),
    ("c2", ts(2025, 1, 2), ts(2025, 1, 2, 2), 7, 3.5, ts(2025, 1, 2)),
    # c3 has no rows at all
]
MARKET_ROWS = [
    ("all", ts(2025, 1, 1), 10, 0.5),
    ("all", ts(2025, 1, 3), 12, 0.75),
]
END = ts(2025, 1, 10)


def customer_df():
    return pd.DataFrame(
        CUSTOMER_ROWS,
        columns=["customer_id", "event_timestamp", "created", "sessions_7d", "avg_rating_7d", "last_session_ts"],
    ).astype({"avg_rating_7d": "float64"})


def market_df():
    return pd.DataFrame(MARKET_ROWS, columns=["marketplace_id", "event_timestamp", "open_requests", "supply_ratio"])


# --------------------------------------------------------- toy definitions ---
DEFINITIONS = '''
from datetime import timedelta

import pandas as pd

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, RequestSource, ValueType
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, UnixTimestamp

DATA_ROOT = "{data_root}"

customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)
# entityless views cannot be materialized by the duckdb store: a constant key instead
marketplace = Entity(name="marketplace", join_keys=["marketplace_id"], value_type=ValueType.STRING)

customer_source = FileSource(
    name="customer_stats_source",
    path=DATA_ROOT + "/customer_stats/*.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)
customer_push = PushSource(name="customer_stats_push", batch_source=customer_source)
market_source = FileSource(
    name="marketplace_stats_source",
    path=DATA_ROOT + "/marketplace_stats.parquet",
    timestamp_field="event_timestamp",
)

customer_stats = FeatureView(
    name="customer_stats",
    entities=[customer],
    ttl=timedelta(0),  # 0 = no expiry: latest row at or before t, however old
    schema=[
        Field(name="customer_id", dtype=__STR__),
        Field(name="sessions_7d", dtype=Int64),
        Field(name="avg_rating_7d", dtype=Float64),
        Field(name="last_session_ts", dtype=UnixTimestamp),
    ],
    source=customer_push,
    online=True,
)
marketplace_stats = FeatureView(
    name="marketplace_stats",
    entities=[marketplace],
    ttl=None,
    schema=[
        Field(name="marketplace_id", dtype=__STR__),
        Field(name="open_requests", dtype=Int64),
        Field(name="supply_ratio", dtype=Float64),
    ],
    source=market_source,
    online=True,
)

# same rows with a 1-day ttl (offline only), to pin down Feast's ttl semantics
customer_stats_ttl1d = FeatureView(
    name="customer_stats_ttl1d",
    entities=[customer],
    ttl=timedelta(days=1),
    schema=[Field(name="customer_id", dtype=__STR__), Field(name="sessions_7d", dtype=Int64)],
    source=customer_source,
    online=False,
)

request = RequestSource(name="request", schema=[Field(name="request_ts", dtype=UnixTimestamp)])


@on_demand_feature_view(
    sources=[customer_stats, request],
    schema=[Field(name="days_since_last_session", dtype=Float64)],
    mode="pandas",
)
def customer_recency(inputs: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd  # imports inside the body: the function is serialized into the registry

    now = pd.to_datetime(inputs["request_ts"], utc=True)
    last = pd.to_datetime(inputs["last_session_ts"], utc=True)
    out = pd.DataFrame(index=inputs.index)
    out["days_since_last_session"] = ((now - last).dt.total_seconds() / 86400.0).astype("float64")
    return out


toy_v1 = FeatureService(name="toy_v1", features=[customer_stats, marketplace_stats, customer_recency])
'''.replace("__STR__", "String").replace("from feast.types import Float64", "from feast.types import String, Float64")

EMBEDDED_YAML = """
project: toy
provider: local
registry: {root}/registry.db
online_store:
  type: sqlite
  path: {root}/online.db
offline_store:
  type: duckdb
entity_key_serialization_version: 3
"""

# every endpoint comes from the environment (Feast runs os.path.expandvars on the yaml)
AWS_YAML = """
project: toy
provider: aws
registry:
  registry_type: file
  path: s3://${MHP_BUCKET}/registry/registry.pb
  cache_ttl_seconds: 60
online_store:
  type: dynamodb
  region: ${AWS_DEFAULT_REGION}
  endpoint_url: ${MHP_AWS_ENDPOINT_URL}
offline_store:
  type: features.feast_offline.S3DuckDBOfflineStore
  s3_endpoint_url: ${MHP_AWS_ENDPOINT_URL}
entity_key_serialization_version: 3
"""


def write_repo(repo: Path, data_root: str, yaml_text: str):
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "feature_store.yaml").write_text(textwrap.dedent(yaml_text))
    (repo / "toy_repo.py").write_text(DEFINITIONS.replace("{data_root}", data_root))
    name = f"toy_repo_{abs(hash(str(repo)))}"
    spec = importlib.util.spec_from_file_location(name, repo / "toy_repo.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    storage.write_parquet(customer_df(), storage.join(data_root, "customer_stats", "part-0.parquet"))
    storage.write_parquet(market_df(), storage.join(data_root, "marketplace_stats.parquet"))
    return mod


def objects(mod):
    return [mod.customer, mod.marketplace, mod.customer_source, mod.customer_push, mod.market_source,
            mod.customer_stats, mod.marketplace_stats, mod.customer_stats_ttl1d, mod.request, mod.customer_recency, mod.toy_v1]


ENTITY_DF = pd.DataFrame(
    [
        ("c1", "all", ts(2024, 12, 31)),          # before any data: nulls
        ("c1", "all", ts(2025, 1, 1)),            # exactly at the first row: counts (at-or-before)
        ("c1", "all", ts(2025, 1, 5, 11, 59)),    # one minute before the second row
        ("c1", "all", ts(2025, 6, 1)),            # long after: ttl 0/None = no expiry
        ("c1", "all", ts(2025, 6, 1)),            # exact duplicate row: must stay two rows
        ("c2", "all", ts(2025, 1, 2)),            # created_timestamp tie-break
        ("c3", "all", ts(2025, 1, 10)),           # unknown customer: nulls, not dropped
    ],
    columns=["customer_id", "marketplace_id", "event_timestamp"],
)
ENTITY_DF["request_ts"] = ENTITY_DF["event_timestamp"]

NAN = np.nan
EXPECTED = pd.DataFrame(
    [
        # sessions_7d, avg_rating_7d, days_since_last_session, open_requests, supply_ratio
        (NAN, NAN, NAN, NAN, NAN),
        (1, 4.0, 0.0, 10, 0.5),
        (1, 4.0, 4 + 719 / 1440, 12, 0.75),
        (2, NAN, (ts(2025, 6, 1) - ts(2025, 1, 5, 12)).total_seconds() / 86400, 12, 0.75),
        (2, NAN, (ts(2025, 6, 1) - ts(2025, 1, 5, 12)).total_seconds() / 86400, 12, 0.75),
        (7, 3.5, 0.0, 10, 0.5),
        (NAN, NAN, NAN, 12, 0.75),
    ],
    columns=["sessions_7d", "avg_rating_7d", "days_since_last_session", "open_requests", "supply_ratio"],
)
FEATURE_COLS = list(EXPECTED.columns)


def _norm(df: pd.DataFrame) -> pd.DataFrame:
    out = df[FEATURE_COLS].copy()
    for c in FEATURE_COLS:
        out[c] = pd.to_numeric(out[c], errors="coerce").astype("float64")
    return out.reset_index(drop=True)


# ------------------------------------------------------------------ stores ---
def build(profile: str, repo: Path, data_root: str, yaml_text: str):
    from feast import FeatureStore

    mod = write_repo(repo, data_root, yaml_text)
    store = FeatureStore(repo_path=str(repo))
    store.apply(objects(mod))
    store.materialize(start_date=ts(2024, 12, 1), end_date=END)
    return store


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    root = tmp_path_factory.mktemp("embedded")
    return build("embedded", root / "repo", str(root / "data"), EMBEDDED_YAML.format(root=root))


@pytest.fixture(scope="module")
def aws_local(tmp_path_factory, moto_server_url):
    root = tmp_path_factory.mktemp("aws")
    env = dict(local_aws.moto_env(moto_server_url), MHP_BUCKET=BUCKET)
    with local_aws.patched_env(env):
        aws.ensure_bucket(BUCKET)
        store = build("aws-local", root / "repo", f"s3://{BUCKET}/toy", AWS_YAML)
        yield store
        local_aws.reset_moto(moto_server_url)


@pytest.fixture(params=["embedded", "aws-local"])
def store(request):
    return request.getfixturevalue("aws_local" if request.param == "aws-local" else "embedded")


def historical(store, entity_df=ENTITY_DF):
    t0 = time.perf_counter()
    df = store.get_historical_features(
        entity_df=entity_df, features=store.get_feature_service("toy_v1")
    ).to_df()
    return df, time.perf_counter() - t0


# ------------------------------------------------------------------- tests ---
def test_profiles_are_what_they_claim(embedded, aws_local):
    from feast.infra.online_stores.dynamodb import DynamoDBOnlineStoreConfig
    from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig

    from features.feast_offline import S3DuckDBOfflineStoreConfig

    assert isinstance(embedded.config.online_store, SqliteOnlineStoreConfig)
    assert isinstance(aws_local.config.online_store, DynamoDBOnlineStoreConfig)
    assert aws_local.config.online_store.endpoint_url.startswith("http://127.0.0.1:")
    assert isinstance(aws_local.config.offline_store, S3DuckDBOfflineStoreConfig)
    assert aws_local.config.registry.path == f"s3://{BUCKET}/registry/registry.pb"
    # the registry really is on (moto) S3, and DynamoDB got one table per feature view
    assert aws.boto3_client("s3").head_object(Bucket=BUCKET, Key="registry/registry.pb")["ContentLength"] > 0
    tables = aws.boto3_client("dynamodb").list_tables()["TableNames"]
    assert sorted(tables) == ["toy.customer_stats", "toy.marketplace_stats"]
    assert sorted(fv.name for fv in aws_local.list_feature_views()) == [
        "customer_stats", "customer_stats_ttl1d", "marketplace_stats"]


def test_historical_keeps_every_row_and_is_point_in_time(store):
    df, _ = historical(store)
    assert len(df) == len(ENTITY_DF)
    # every entity row comes back (order is not guaranteed by Feast: sort by a row key)
    key = ["customer_id", "event_timestamp"]
    got = df.sort_values(key, kind="stable").reset_index(drop=True)
    exp = pd.concat([ENTITY_DF, EXPECTED], axis=1).sort_values(key, kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(_norm(got), _norm(exp), check_exact=False, atol=1e-9)
    assert got["sessions_7d"].isna().tolist() == exp["sessions_7d"].isna().tolist()


def test_ttl_semantics(store):
    """ttl=timedelta(0) and ttl=None both mean "no expiry" offline (the latest row at or
    before t, however old); ttl=1d drops rows older than t - 1d (inclusive bound)."""
    ent = pd.DataFrame(
        [("c1", ts(2025, 1, 1)), ("c1", ts(2025, 1, 2)), ("c1", ts(2025, 1, 2, 0, 0, 1)), ("c1", ts(2030, 1, 1))],
        columns=["customer_id", "event_timestamp"],
    )
    ent["marketplace_id"] = "all"
    df = store.get_historical_features(
        entity_df=ent,
        features=["customer_stats:sessions_7d", "customer_stats_ttl1d:sessions_7d", "marketplace_stats:open_requests"],
        full_feature_names=True,
    ).to_df().sort_values("event_timestamp").reset_index(drop=True)
    assert df["customer_stats__sessions_7d"].tolist() == [1, 1, 1, 2]          # ttl 0: never expires
    assert df["marketplace_stats__open_requests"].tolist() == [10, 10, 10, 12]  # ttl None: never expires
    ttl1d = df["customer_stats_ttl1d__sessions_7d"]
    assert ttl1d[:2].tolist() == [1, 1] and ttl1d[2:].isna().all()              # t - ts > 1d: null


def test_push_online_is_batched_and_unconditional(aws_local):
    """One push = BatchWriteItem calls of <= 25 items (one item per row), no reads,
    no condition: the last row written wins even when it is older (docs/ingestion.md)."""
    from feast.data_source import PushMode

    store = aws_local
    store.get_online_features(features=["customer_stats:sessions_7d"], entity_rows=[{"customer_id": "c1"}])
    online = store._get_provider().online_store
    cfg = store.config.online_store
    client = online._get_dynamodb_resource(cfg.region, cfg.endpoint_url).meta.client
    calls: list[tuple[str, int]] = []

    def hook(params, model, **_):
        n = sum(len(v) for v in params.get("RequestItems", {}).values())
        calls.append((model.name, n))

    client.meta.events.register("provide-client-params.dynamodb.*", hook)
    try:
        def rows(n, when, value):
            return pd.DataFrame({
                "customer_id": [f"p{i}" for i in range(n)], "event_timestamp": when, "created": when,
                "sessions_7d": value, "avg_rating_7d": 1.0, "last_session_ts": when,
            })

        store.push("customer_stats_push", rows(60, ts(2025, 2, 1), 5), to=PushMode.ONLINE)
        assert calls == [("BatchWriteItem", 25), ("BatchWriteItem", 25), ("BatchWriteItem", 10)]
        calls.clear()
        store.write_to_online_store("customer_stats", rows(30, ts(2025, 2, 1), 6))
        assert calls == [("BatchWriteItem", 25), ("BatchWriteItem", 5)]
        calls.clear()
        store.push("customer_stats_push", rows(1, ts(2024, 1, 1), 99), to=PushMode.ONLINE)  # older
        assert calls == [("BatchWriteItem", 1)]
    finally:
        client.meta.events.unregister("provide-client-params.dynamodb.*", hook)
    got = store.get_online_features(features=["customer_stats:sessions_7d"], entity_rows=[{"customer_id": "p0"}])
    assert got.to_dict()["sessions_7d"] == [99]
