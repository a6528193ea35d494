"""One Ray runtime for the whole test session, sized to this machine's cores; an S3 server."""

import os

import pytest

from tests.s3server import s3  # noqa: F401  (the S3-compatible server fixture)

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "1")


@pytest.fixture(scope="session")
def ray_session():
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def children():
    """Child processes a test starts (each in its own process group): killed, with everything they
    started, when the test ends, whether it passed, failed or timed out."""
    from tests.helpers import kill_group

    started: list = []
    yield started
    for proc in started:
        if proc.poll() is None:
            kill_group(proc)
