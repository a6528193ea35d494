"""User steps for the reliability tests: a slow one, so a run can be interrupted midway, one that
waits for the test's word, a filter,
and one that kills its own worker on a marked document, as an out-of-memory on one huge document
would; and a global step whose sidecar is slow, for the stage times."""

import os
import time

import pyarrow as pa

from llmray.dedup.exact import HashSidecar
from llmray.ops import UniqueIds


def slow_identity(table: pa.Table) -> pa.Table:
    time.sleep(0.25)
    return table


#: The file whose appearance lets ``wait_for_release`` go on (set by the test that starts the run).
RELEASE_ENV = "LLMRAY_TEST_RELEASE"


def wait_for_release(table: pa.Table) -> pa.Table:
    """Holds a run until the test creates the file named by LLMRAY_TEST_RELEASE (at most 120 s),
    so the test decides how long the run lasts."""
    release = os.environ[RELEASE_ENV]
    deadline = time.monotonic() + 120
    while not os.path.exists(release):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release} never appeared")
        time.sleep(0.05)
    return table


def keep_even_length(table: pa.Table) -> list[bool]:
    return [len(t) % 2 == 0 for t in table.column("text").to_pylist()]


def die_on_poison(table: pa.Table) -> pa.Table:
    if any("POISON" in t for t in table.column("text").to_pylist()):
        os._exit(3)
    return table


#: Seconds the slow sidecar takes per batch.
SIDECAR_S = 0.3


class _SlowSidecar(HashSidecar):
    def add(self, table: pa.Table, first_row: int) -> None:
        time.sleep(SIDECAR_S)
        super().add(table, first_row)


class SlowIdCheck(UniqueIds):
    """The id check, gathering its hashes slowly (not registered: a test puts it in a job)."""

    def sidecar(self, fine: int = 1) -> HashSidecar:
        return _SlowSidecar(False, fine, column="id")
