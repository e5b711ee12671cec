"""Fixtures for the batch tests: one S3 server and one real local Ray for the whole session."""

from __future__ import annotations

import pytest

from tests.helpers.buckets import moto_s3


@pytest.fixture(scope="session")
def s3_env():
    with moto_s3() as env:
        yield env


@pytest.fixture(scope="session")
def ray_cluster(s3_env):
    """A local Ray sized for the CI machine (2 CPUs, a small object store); its workers see the S3 server."""
    import logging

    import ray

    ray.init(num_cpus=2, object_store_memory=100 * 1024 * 1024, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
