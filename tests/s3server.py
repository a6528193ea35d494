"""A real S3-compatible server on 127.0.0.1 for the tests: moto's server mode, in its own process.

The tests reach it through s3fs exactly as a user reaches S3: an ``endpoint_url`` (in
``storage_options`` or ``AWS_ENDPOINT_URL``) and credentials (moto accepts any).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest


@dataclasses.dataclass
class S3:
    endpoint: str

    @property
    def options(self) -> dict[str, Any]:
        """storage_options for a job file or a Storage."""
        return {"endpoint_url": self.endpoint, "key": "testing", "secret": "testing"}

    @property
    def env(self) -> dict[str, str]:
        """Environment for a child process (the CLI) to reach the server."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}

    def fs(self) -> Any:
        import s3fs

        return s3fs.S3FileSystem(**{"endpoint_url": self.endpoint, "key": "testing", "secret": "testing",
                                    "use_listings_cache": False})

    def bucket(self) -> str:
        """A new, empty bucket (its name)."""
        name = f"b-{uuid.uuid4().hex[:12]}"
        self.fs().mkdir(name)
        return name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def moto_server() -> Iterator[S3]:
    """moto's S3 server on a free port of 127.0.0.1 in a process group of its own, ended on exit."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    server = S3(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the S3 test server did not start") from None
                time.sleep(0.2)
        yield server
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="session")
def s3():
    with moto_server() as server:
        yield server
