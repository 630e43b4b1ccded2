"""feature_repo/feature_store.aws.yaml as Feast loads it: on real AWS (no endpoint variable) and on moto.

Feast expands ``${VAR}`` with ``os.path.expandvars``, which leaves an unset variable's text in
place; so the file names no endpoint at all and the endpoint comes from the environment.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from feast.infra.online_stores.dynamodb import _get_table_name, _initialize_dynamodb_client
from feast.repo_config import load_repo_config

from core import aws, local_aws

ROOT = Path(__file__).resolve().parents[1]
YAML = ROOT / "feature_repo" / "feature_store.aws.yaml"
STACK_ENV = {"MHP_DATA_URI": "s3://mhp-test-data-123456789012-eu-west-1/data", "MHP_STAGE": "test",
             "AWS_DEFAULT_REGION": "eu-west-1"}


def _load(tmp_path):
    return load_repo_config(tmp_path, YAML)


def test_real_aws_no_endpoint_variable(tmp_path):
    env = {**STACK_ENV, **{name: None for name in aws.ENDPOINT_ENV_VARS},
           "AWS_ACCESS_KEY_ID": "unused", "AWS_SECRET_ACCESS_KEY": "unused"}
    with local_aws.patched_env(env):
        config = _load(tmp_path)
        assert config.online_store.endpoint_url is None and config.online_store.region == "eu-west-1"
        assert config.offline_store.s3_endpoint_url is None
        # boto3 goes to the regional endpoint (no literal "${MHP_AWS_ENDPOINT_URL}": "Invalid endpoint")
        client = _initialize_dynamodb_client(config.online_store.region, config.online_store.endpoint_url)
        assert client.meta.endpoint_url == "https://dynamodb.eu-west-1.amazonaws.com"
        assert config.registry.path == "s3://mhp-test-data-123456789012-eu-west-1/data/registry/registry.pb"
        assert _get_table_name(config.online_store, config, _View("customer_features")) == \
            "mhp-test.marketplace_health.customer_features"     # the stack's table (deploy/template.yaml)


class _View:
    def __init__(self, name):
        self.name = name


@pytest.mark.aws
def test_moto_endpoint_from_the_environment(tmp_path, moto_endpoint):
    from feast import Entity, FeatureStore, ValueType

    with local_aws.patched_env({**STACK_ENV, "AWS_DEFAULT_REGION": aws.region(),
                                "MHP_DATA_URI": "s3://mhp-yaml/data"}):
        config = _load(tmp_path)
        client = _initialize_dynamodb_client(config.online_store.region, config.online_store.endpoint_url)
        assert client.meta.endpoint_url == moto_endpoint
        # a registry write goes to the moto server's S3
        aws.ensure_bucket("mhp-yaml")
        FeatureStore(repo_path=str(tmp_path), config=config).apply([Entity(name="customer", join_keys=["customer_id"],
                                                                           value_type=ValueType.STRING)])
        keys = [o["Key"] for o in aws.boto3_client("s3").list_objects_v2(Bucket="mhp-yaml")["Contents"]]
        assert keys == ["data/registry/registry.pb"]


def test_repo_config_names_the_stack_tables(tmp_path, monkeypatch):
    """features.store's AWS configuration takes the stack's table names (argument or env), as the yaml."""
    from features import store as FS

    monkeypatch.delenv(FS.TABLE_TEMPLATE_ENV, raising=False)
    assert "table_name_template" not in FS.repo_config("aws", tmp_path, "s3://b/data")["online_store"]
    monkeypatch.setenv(FS.TABLE_TEMPLATE_ENV, "mhp-qa.{project}.{table_name}")
    assert FS.repo_config("aws", tmp_path, "s3://b/data")["online_store"]["table_name_template"] == \
        "mhp-qa.{project}.{table_name}"
    assert FS.repo_config("aws", tmp_path, "s3://b/data", "x.{project}.{table_name}")["online_store"][
        "table_name_template"] == "x.{project}.{table_name}"
    with pytest.raises(FS.ProfileError, match="MHP_FEAST_TABLE_TEMPLATE"):
        FS.repo_config("aws", tmp_path, "s3://b/data", "mhp-qa")
