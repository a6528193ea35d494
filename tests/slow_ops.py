"""A deliberately slow user step, so reliability tests can interrupt a run midway."""

import time

import pyarrow as pa


def slow_identity(table: pa.Table) -> pa.Table:
    time.sleep(0.5)
    return table


def keep_even_length(table: pa.Table) -> list[bool]:
    return [len(t) % 2 == 0 for t in table.column("text").to_pylist()]
