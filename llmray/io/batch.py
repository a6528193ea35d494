"""Records of one unit of input collected into Arrow batches of bounded size, bad ones set aside.

Every record a reader meets ends up in exactly one place: the batch's table, ``quarantined`` (with
file, line and error) or ``too_large`` (dropped by the ``read.too_large`` rule without being held in
memory). Readers of every format share this builder, so the rules are the same for all of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow as pa

from llmray.kernels import arrow
from llmray.schema import ID, SOURCE, TEXT

BATCH_BYTES = 8 << 20
BATCH_ROWS = 8192
RAW_SNIPPET = 500
TOO_LARGE = "read.too_large"


@dataclasses.dataclass(frozen=True)
class Piece:
    """A file, or a part of one: a byte range [start, end) of a line-oriented file, or row groups
    [start, end) of a parquet file. ``size`` and ``version`` (modification time or ETag) identify
    the file's content, so a resumed run notices a changed input."""

    url: str
    #: The file's path relative to the input's root: derived ids are ``name:line``.
    name: str
    format: str
    compression: str | None
    size: int
    version: str
    start: int = 0
    end: int | None = None


@dataclasses.dataclass
class ReadBatch:
    table: pa.Table
    quarantined: list[dict[str, Any]]
    #: (id, size in bytes) of documents dropped as too large.
    too_large: list[tuple[str, int]]


class BatchBuilder:
    """Collects the records of one unit into batches of at most BATCH_BYTES / BATCH_ROWS."""

    def __init__(self, source: str, keep_fields: list[str]):
        self.source = source
        self.keep_fields = keep_fields
        self.piece: Piece | None = None
        self.columns: dict[str, list] = {f: [] for f in self._fields()}
        self.quarantined: list[dict[str, Any]] = []
        self.too_large: list[tuple[str, int]] = []
        self.nbytes = 0

    def _fields(self) -> list[str]:
        return [ID, TEXT, *self.keep_fields]

    @property
    def url(self) -> str:
        return self.piece.url if self.piece else ""

    def derived_id(self, line: int | None) -> str:
        name = self.piece.name if self.piece else ""
        return f"{name}:{line}" if line is not None else name

    def add(self, doc_id: str, text: str, extra: dict[str, Any]) -> None:
        self.columns[ID].append(doc_id)
        self.columns[TEXT].append(text)
        for field in self.keep_fields:
            self.columns[field].append(extra.get(field))
        self.nbytes += len(text)

    def quarantine(self, line: int | None, error: str, raw: bytes, rows: int = 1) -> None:
        where = self.url + (f":{line}" if line is not None else "")
        self.quarantined.append({
            "file": self.url, "line": line, "rows": rows, "error": f"{where}: {error}",
            "raw": raw[:RAW_SNIPPET].decode("utf-8", errors="replace"),
        })

    def drop_too_large(self, doc_id: str, size: int) -> None:
        self.too_large.append((doc_id, size))

    def emit(self, table: pa.Table) -> Iterator[ReadBatch]:
        """Pass on a batch built in Arrow (columns id, text and the kept fields) with what is pending."""
        yield from self.flush(final=True)
        source = arrow.repeat(self.source, table.num_rows)
        yield ReadBatch(table.append_column(SOURCE, source), self.quarantined, self.too_large)
        self.quarantined, self.too_large = [], []

    def flush(self, final: bool = False) -> Iterator[ReadBatch]:
        if not final and self.nbytes < BATCH_BYTES and len(self.columns[TEXT]) < BATCH_ROWS:
            return
        if not (self.columns[TEXT] or self.quarantined or self.too_large):
            return
        n = len(self.columns[TEXT])
        arrays = {ID: arrow.strings(self.columns[ID]), TEXT: arrow.strings(self.columns[TEXT]),
                  SOURCE: arrow.repeat(self.source, n)}
        for field in self.keep_fields:
            arrays[field] = loose_array(self.columns[field])
        yield ReadBatch(pa.Table.from_pydict(arrays), self.quarantined, self.too_large)
        self.columns = {f: [] for f in self._fields()}
        self.quarantined, self.too_large, self.nbytes = [], [], 0


def loose_array(values: list) -> pa.Array:
    """Extra fields keep their type when it is consistent, else become JSON strings."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else orjson.dumps(v).decode() for v in values], pa.string())
