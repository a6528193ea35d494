"""The document batch contract every layer shares: column names and how text is measured.

A batch is a ``pyarrow.Table`` with at least ``id`` (string), ``text`` (string) and ``source``
(string); steps add columns rather than hiding state. Kept here, below every other module, so that
kernels, readers, writers and dedup stages agree on names without importing the step layer.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llmray.kernels import arrow

TEXT = "text"
ID = "id"
SOURCE = "source"
#: Why a document was dropped, ``<step>.<rule>`` (rejects, and rows of filters with ``annotate``).
REASON = "reason"
#: Rejects of a duplicate: the id of the document kept in its place.
DUPLICATE_OF = "duplicate_of"
#: Rejects of a threshold rule: what the rule measured on the document, and the limit it failed.
VALUE = "value"
THRESHOLD = "threshold"
#: A document's number within its unit of intermediate data; internal, never written to data/.
ROW = "__row"


def text_bytes(table: pa.Table, column: str = TEXT) -> int:
    """UTF-8 bytes of a table's text column."""
    if table.num_rows == 0:
        return 0
    return int(pc.sum(pc.binary_length(table.column(column))).as_py() or 0)


def row_bytes(table: pa.Table, column: str = TEXT) -> np.ndarray:
    """UTF-8 bytes of each row's text (nulls count 0)."""
    return arrow.to_numpy(pc.binary_length(table.column(column)), fill=0)


def per_source(table: pa.Table) -> list[tuple[str, int, int]]:
    """(source, documents, text bytes) of a batch, for every source in it."""
    if table.num_rows == 0:
        return []
    rows, sources = arrow.codes(table.column(SOURCE))
    docs = np.bincount(rows, minlength=len(sources))
    sizes = np.bincount(rows, weights=row_bytes(table), minlength=len(sources))
    return [(source, int(n), int(b)) for source, n, b in zip(sources, docs, sizes, strict=True) if n]
