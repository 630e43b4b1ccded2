"""Shared pytest fixtures. Several rooms add fixtures here: append, don't reorder."""
from __future__ import annotations

import pytest

from core import local_aws

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
