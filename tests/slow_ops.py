"""User steps for the reliability tests: a slow one, so a run can be interrupted midway, a filter,
and one that kills its own worker on a marked document, as an out-of-memory on one huge document
would."""

import os
import time

import pyarrow as pa


def slow_identity(table: pa.Table) -> pa.Table:
    time.sleep(0.5)
    return table


def keep_even_length(table: pa.Table) -> list[bool]:
    return [len(t) % 2 == 0 for t in table.column("text").to_pylist()]


def die_on_poison(table: pa.Table) -> pa.Table:
    if any("POISON" in t for t in table.column("text").to_pylist()):
        os._exit(3)
    return table
