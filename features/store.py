"""Opening the Feast store for a profile (docs/architecture.md, "Profiles"): one code path, configuration only.

| profile   | online   | offline data + registry                      |
|-----------|----------|----------------------------------------------|
| local     | SQLite (Feast's store, batched guarded writes: ``features.feast_online``) | local Parquet (DuckDB), local registry |
| aws-local | DynamoDB (Feast's store, conditional writes: ``features.feast_dynamodb``) | Parquet + registry on S3, all on a moto server |
| aws       | DynamoDB (the same)  | Parquet + registry on S3                     |

Both online stores are Feast's with guarded writes: a row never replaces a newer row of the same
entity (the clock is the row's event timestamp).

``feature_repo/feature_store.yaml`` is the same embedded configuration for
the ``feast`` CLI; ``feature_repo/feature_store.aws.yaml`` the AWS one.
"""
from __future__ import annotations

import os
from pathlib import Path

from feast import FeatureStore
from feast.repo_config import RepoConfig

from core import aws
from features import feast_dynamodb, feast_online

from . import feast_objects

PROFILES = ("local", "aws-local", "aws")
PROJECT = "marketplace_health"
ONLINE_STORE_TYPE = feast_online.TYPE   # the embedded profile's online store
AWS_ONLINE_STORE_TYPE = feast_dynamodb.TYPE   # the AWS profiles' online store
#: every profile's offline store: Feast's DuckDB store with ASOF-join retrieval and s3:// sources
OFFLINE_STORE_TYPE = "features.feast_offline.S3DuckDBOfflineStore"


class ProfileError(ValueError):
    pass


#: the deployed stack's Feast table names (deploy/template.yaml output FeastTableNameTemplate)
TABLE_TEMPLATE_ENV = "MHP_FEAST_TABLE_TEMPLATE"


def repo_config(profile: str, state_dir: str | os.PathLike, data_uri: str | None = None,
                table_name_template: str | None = None) -> dict:
    """Feast's repo configuration. ``state_dir``: local dir for the embedded registry and online DB;
    ``data_uri``: s3://bucket/prefix holding the registry for the AWS profiles;
    ``table_name_template``: the DynamoDB tables' names (default: env MHP_FEAST_TABLE_TEMPLATE, else
    Feast's ``{project}.{table_name}``)."""
    if profile not in PROFILES:
        raise ProfileError(f"profile: expected one of {', '.join(PROFILES)}, got {profile!r}")
    state_dir = Path(state_dir).resolve()
    if profile == "local":
        return {
            "project": PROJECT, "provider": "local", "entity_key_serialization_version": 3,
            "registry": str(state_dir / "registry.db"),
            "online_store": {"type": ONLINE_STORE_TYPE, "path": str(state_dir / "online.db")},
            "offline_store": {"type": OFFLINE_STORE_TYPE},
        }
    if not (data_uri or "").startswith("s3://"):
        raise ProfileError(f"data location: profile {profile!r} expects an s3:// URI, got {data_uri!r}")

    endpoint = aws.endpoint_url() if profile == "aws-local" else None
    if profile == "aws-local" and not endpoint:
        raise ProfileError("profile 'aws-local' expects AWS_ENDPOINT_URL to point at a moto server")
    online = {"type": AWS_ONLINE_STORE_TYPE, "region": aws.region()}
    template = table_name_template or os.environ.get(TABLE_TEMPLATE_ENV)
    if template:
        if "{project}" not in template or "{table_name}" not in template:
            raise ProfileError(f"{TABLE_TEMPLATE_ENV}: expected a template with {{project}} and {{table_name}}, "
                               f"got {template!r}")
        online["table_name_template"] = template
    offline = {"type": OFFLINE_STORE_TYPE}
    if endpoint:
        online["endpoint_url"] = endpoint
        offline["s3_endpoint_url"] = endpoint
    return {
        "project": PROJECT, "provider": "aws", "entity_key_serialization_version": 3,
        "registry": {"registry_type": "file", "path": f"{data_uri.rstrip('/')}/registry/registry.pb",
                     "cache_ttl_seconds": 60},
        "online_store": online, "offline_store": offline,
    }


def open_store(profile: str, state_dir: str | os.PathLike, data_uri: str | None = None,
               table_name_template: str | None = None) -> FeatureStore:
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    return FeatureStore(repo_path=str(state_dir),
                        config=RepoConfig(**repo_config(profile, state_dir, data_uri, table_name_template)))


def apply(store: FeatureStore, features_uri: str) -> list[str]:
    """Register every definition (the Python-API equivalent of ``feast apply``)."""
    if not features_uri.startswith("s3://"):
        # Feast resolves a relative source path against the repo folder, not the working directory.
        features_uri = str(Path(features_uri).resolve())
    objs = feast_objects.build(features_uri)
    store.apply(list(objs.values()))
    return sorted(objs)
