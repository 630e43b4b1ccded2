"""Shared pytest fixtures. Several rooms add fixtures here: append, don't reorder."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import settings

from core import local_aws

# --- tiers ---------------------------------------------------------------------
# The fast lane (`make test-fast`, <= 2 minutes on 2 cores): contract, catalog, the two feature
# engines, the ingester's handler and state, the inference server, the model, the architecture.
# `make test` runs everything, this lane included.
FAST_LANE = {
    "test_architecture.py", "test_contract.py", "test_events_doc.py", "test_features_doc.py",
    "test_feature_declarations.py", "test_state_snapshot.py",
    "test_feature_engines.py", "test_backfill_partitions.py", "test_feast_online.py", "test_online_encoding.py",
    "test_ingestion_handler.py", "test_ingestion_state.py",
    "test_ingestion_properties.py", "test_ingestion_disorder.py", "test_serving_server.py", "test_serving_alerts.py",
    "test_serving_rule_quality.py",
    "test_training_preprocess.py", "test_training_model.py", "test_training_launcher.py",
}


# CI runs the property tests on a fixed sequence of examples (same inputs, same outputs); locally
# Hypothesis keeps exploring new ones.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_configure(config):
    # Tests never reach past 127.0.0.1: botocore's credential chain must not probe the EC2 metadata
    # address (the SageMaker SDK builds a default session at import); subprocesses inherit this.
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


def _java_missing() -> bool:
    java = os.path.join(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else shutil.which("java")
    return not java or not os.path.exists(java)


def pytest_collection_modifyitems(config, items):
    # The Spark tier needs Java 17+: .ci/run installs it, so under CI a missing Java fails the tier;
    # elsewhere it is skipped with the reason.
    no_java = not os.environ.get("CI") and _java_missing()
    for item in items:
        if Path(str(item.fspath)).name in FAST_LANE:
            item.add_marker(pytest.mark.fast)
        if no_java and item.get_closest_marker("spark"):
            item.add_marker(pytest.mark.skip(reason="Java 17+ not installed (apt-get install openjdk-17-jre-headless; "
                                                    ".ci/run does)"))


# --- AWS (moto on 127.0.0.1) -------------------------------------------------
# One moto server per test session (starting one costs ~0.3 s); each test that
# asks for `moto_endpoint` gets the AWS env vars pointing at it for the duration
# of the test (restored afterwards) and an empty moto afterwards (state reset).

@pytest.fixture(scope="session")
def moto_server_url():
    """Session-scoped moto server URL. Sets NO env vars; prefer `moto_endpoint`."""
    with local_aws.moto_server(set_env=False) as endpoint:
        yield endpoint


@pytest.fixture
def moto_endpoint(moto_server_url):
    """Function-scoped: endpoint URL of a clean moto server, with AWS_ENDPOINT_URL,
    FEAST_S3_ENDPOINT_URL, MHP_AWS_ENDPOINT_URL, dummy credentials and region set
    for the test and restored after it; all moto state is reset after the test."""
    with local_aws.patched_env(local_aws.moto_env(moto_server_url)):
        try:
            yield moto_server_url
        finally:
            local_aws.reset_moto(moto_server_url)
            # boto3's default session caches the dummy credentials (a bare boto3.client(...) in a test):
            # later tests must see the environment as it is again.
            import boto3

            boto3.DEFAULT_SESSION = None


# --- the console (tests/test_console*.py) ------------------------------------
@pytest.fixture(scope="session")
def console_workspace(tmp_path_factory):
    """A small demo workspace (150 customers x 90 days, 3 live days; ~30 s) with an untrusted
    customer added: (folder, the simulation's end, that customer's alert line)."""
    from testing import console_workspace as cw

    root = tmp_path_factory.mktemp("console") / "demo"
    end = cw.build(root)
    return root, end, cw.add_untrusted(root, end)


@pytest.fixture(scope="module")
def running(console_workspace):
    """The console (and the inference server it starts) on the console workspace, per test module."""
    from console.server import build_console, start
    from core.workspace import Workspace

    root, end, _ = console_workspace
    console, inference = build_console(Workspace.local(root), at=end)
    r = start(console, inference)
    yield r
    r.stop()
