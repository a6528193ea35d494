"""Readers: input paths -> chunks of work -> Arrow batches of documents, bad records quarantined.

Files are listed on the driver (fsspec, so any URL works) and cut into ``Chunk``s: one per file,
or byte ranges of ``chunk_mb`` for uncompressed JSONL. A chunk is read as a stream of batches of a
few MB, so a multi-GB file never sits whole in one process. Every record ends up in exactly one
place: the batch's table, ``quarantined`` (with file, line and error) or ``too_large`` (dropped by
the ``read.too_large`` rule without being held in memory).
"""

from __future__ import annotations

import dataclasses
import io
import posixpath
from collections.abc import Iterator
from typing import Any

import fsspec
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from llmray.config import InputSpec
from llmray.errors import UserError
from llmray.ops.base import ID, SOURCE, TEXT

BATCH_BYTES = 8 << 20
BATCH_ROWS = 8192
RAW_SNIPPET = 500
TOO_LARGE = "read.too_large"

_EXTENSIONS = {
    ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
    ".parquet": "parquet", ".pq": "parquet",
    ".txt": "text", ".text": "text", ".md": "text",
    ".warc": "warc", ".wet": "warc", ".html": "html", ".htm": "html",
}
_COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2", ".xz": "xz"}


@dataclasses.dataclass(frozen=True)
class Chunk:
    """A unit of work: one file, or a byte range [start, end) of an uncompressed JSONL file."""

    key: str
    url: str
    name: str
    format: str
    compression: str | None
    source: str
    input_index: int
    start: int = 0
    end: int | None = None


@dataclasses.dataclass
class ReadBatch:
    table: pa.Table
    quarantined: list[dict[str, Any]]
    #: (id, size in bytes) of documents dropped as too large.
    too_large: list[tuple[str, int]]


def detect(name: str, declared: str) -> tuple[str | None, str | None]:
    """(format, compression) from the file name; ``declared`` wins unless it is ``auto``."""
    stem, ext = posixpath.splitext(name.lower())
    compression = _COMPRESSIONS.get(ext)
    if compression:
        ext = posixpath.splitext(stem)[1]
    fmt = declared if declared != "auto" else _EXTENSIONS.get(ext)
    return fmt, compression


def plan_chunks(spec: InputSpec, input_index: int) -> list[Chunk]:
    """List the files of one input and cut them into chunks. Missing paths stop the run here."""
    chunks: list[Chunk] = []
    for given in spec.paths:
        for url, name, size in _expand(given):
            fmt, compression = detect(name, spec.format)
            if fmt is None:
                raise UserError(f"{url}: cannot tell the format from the name; set input.format "
                                f"(one of jsonl, parquet, text, warc, html)")
            base = f"i{input_index}-{len(chunks):05d}"
            step = int(spec.chunk_mb * (1 << 20))
            if fmt == "jsonl" and compression is None and size > step > 0:
                for k, start in enumerate(range(0, size, step)):
                    chunks.append(Chunk(f"{base}-{k:04d}", url, name, fmt, None, spec.source,
                                        input_index, start, min(start + step, size)))
                continue
            chunks.append(Chunk(base, url, name, fmt, compression, spec.source, input_index))
    return chunks


def _expand(given: str) -> list[tuple[str, str, int]]:
    """(url, name used in ids, size) for every file a path, directory or glob names."""
    try:
        fs, path = fsspec.core.url_to_fs(given)
    except (ImportError, ValueError) as exc:
        raise UserError(f"{given}: cannot open this path ({exc})") from None
    protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol

    def url(p: str) -> str:
        return p if protocol in ("file", "local") else f"{protocol}://{p}"

    try:
        if any(ch in path for ch in "*?["):
            root = path[: min(path.index(ch) for ch in "*?[" if ch in path)].rsplit("/", 1)[0]
            found = sorted(p for p in fs.glob(path) if fs.isfile(p))
        elif fs.isdir(path):
            root = path.rstrip("/")
            found = sorted(p for p in fs.find(path) if not posixpath.basename(p).startswith((".", "_")))
        elif fs.isfile(path):
            root, found = posixpath.dirname(path), [path]
        else:
            raise UserError(f"input not found: {given} (check the path, or pass --input)")
        files = [(url(p), posixpath.relpath(p, root) if root else p, fs.size(p)) for p in found]
    except PermissionError:
        raise UserError(f"input not readable: {given} (permission denied)") from None
    if not files:
        raise UserError(f"no input files match {given}")
    return files


def read_chunk(chunk: Chunk, spec: InputSpec) -> Iterator[ReadBatch]:
    """Stream a chunk as batches of documents. Never raises for bad data: it quarantines it."""
    from llmray.io.warc import read_html, read_warc  # imports this module, so not at the top

    readers = {"jsonl": _read_jsonl, "text": _read_text, "parquet": _read_parquet, "warc": read_warc,
               "html": read_html}
    builder = _BatchBuilder(chunk, spec)
    try:
        yield from readers[chunk.format](chunk, spec, builder)
    except OSError as exc:
        builder.quarantine(None, f"cannot read file: {exc}", b"")
    yield from builder.flush(final=True)


class _BatchBuilder:
    """Collects records of one chunk into Arrow batches of bounded size."""

    def __init__(self, chunk: Chunk, spec: InputSpec):
        self.chunk, self.spec = chunk, spec
        self.fields = [ID, TEXT, *spec.keep_fields]
        self.columns: dict[str, list] = {f: [] for f in self.fields}
        self.quarantined: list[dict[str, Any]] = []
        self.too_large: list[tuple[str, int]] = []
        self.nbytes = 0

    def derived_id(self, line: int | None) -> str:
        return f"{self.chunk.name}:{line}" if line is not None else self.chunk.name

    def add(self, doc_id: str, text: str, extra: dict[str, Any]) -> None:
        self.columns[ID].append(doc_id)
        self.columns[TEXT].append(text)
        for field in self.spec.keep_fields:
            self.columns[field].append(extra.get(field))
        self.nbytes += len(text)

    def quarantine(self, line: int | None, error: str, raw: bytes, rows: int = 1) -> None:
        where = f"{self.chunk.url}" + (f":{line}" if line is not None else "")
        self.quarantined.append({
            "file": self.chunk.url, "line": line, "rows": rows, "error": f"{where}: {error}",
            "raw": raw[:RAW_SNIPPET].decode("utf-8", errors="replace"),
        })

    def drop_too_large(self, doc_id: str, size: int) -> None:
        self.too_large.append((doc_id, size))

    def emit(self, table: pa.Table) -> Iterator[ReadBatch]:
        """Pass on a batch built in Arrow (columns id, text and the kept fields) with what is pending."""
        yield from self.flush(final=True)
        source = pa.array([self.chunk.source] * table.num_rows, pa.string())
        yield ReadBatch(table.append_column(SOURCE, source), self.quarantined, self.too_large)
        self.quarantined, self.too_large = [], []

    def flush(self, final: bool = False) -> Iterator[ReadBatch]:
        if not final and self.nbytes < BATCH_BYTES and len(self.columns[TEXT]) < BATCH_ROWS:
            return
        if not (self.columns[TEXT] or self.quarantined or self.too_large):
            return
        n = len(self.columns[TEXT])
        arrays = {ID: pa.array(self.columns[ID], pa.string()), TEXT: pa.array(self.columns[TEXT], pa.string()),
                  SOURCE: pa.array([self.chunk.source] * n, pa.string())}
        for field in self.spec.keep_fields:
            arrays[field] = _loose_array(self.columns[field])
        yield ReadBatch(pa.table(arrays), self.quarantined, self.too_large)
        self.columns = {f: [] for f in self.fields}
        self.quarantined, self.too_large, self.nbytes = [], [], 0


def _loose_array(values: list) -> pa.Array:
    """Extra fields keep their type when it is consistent, else become JSON strings."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else orjson.dumps(v).decode() for v in values], pa.string())


def _open(chunk: Chunk):
    return fsspec.open(chunk.url, "rb", compression=chunk.compression).open()


def _read_jsonl(chunk: Chunk, spec: InputSpec, out: _BatchBuilder) -> Iterator[ReadBatch]:
    limit = int(spec.max_doc_mb * (1 << 20))
    with _open(chunk) as raw:
        # Decompressors that read ahead in big blocks would turn a truncated tail into the loss of
        # every line in the last block: only add a (small) buffer where the stream has none.
        stream = raw if isinstance(raw, io.BufferedIOBase) else io.BufferedReader(raw, 64 << 10)
        line_no, pos = _seek_chunk(stream, chunk)
        while chunk.end is None or pos < chunk.end:
            try:
                line = stream.readline(limit + 1)
            except (EOFError, OSError, ValueError) as exc:
                out.quarantine(line_no + 1, f"file ends early or is corrupt ({exc}); the rest of it is lost", b"")
                return
            if not line:
                if pos == 0:
                    out.quarantine(None, "empty file", b"")
                return
            line_no += 1
            pos += len(line)
            if len(line) > limit and not line.endswith(b"\n"):
                size = len(line) + _skip_line(stream, limit)
                pos += size - len(line)
                out.drop_too_large(_peek_id(line, spec.id_field) or out.derived_id(line_no), size)
            elif line.strip():
                _parse_json_line(line, line_no, spec, out)
            yield from out.flush()


def _seek_chunk(stream: io.BufferedReader, chunk: Chunk) -> tuple[int, int]:
    """Position at the first line that starts inside the chunk; return (lines before it, offset)."""
    if chunk.start == 0:
        return 0, 0
    stream.seek(chunk.start - 1)
    stream.readline()  # the line that began before the chunk belongs to the previous chunk
    pos = stream.tell()
    stream.seek(0)
    lines, remaining = 0, pos
    while remaining:
        block = stream.read(min(remaining, 8 << 20))
        lines += block.count(b"\n")
        remaining -= len(block)
    return lines, pos


def _skip_line(stream: io.BufferedReader, limit: int) -> int:
    """Consume the rest of an over-long line without holding it; return how many bytes it had."""
    skipped = 0
    while True:
        part = stream.readline(limit)
        skipped += len(part)
        if not part or part.endswith(b"\n"):
            return skipped


def _peek_id(line: bytes, id_field: str) -> str | None:
    """Best-effort id of an over-long record from its first bytes (ids usually come first)."""
    head = line[:4096]
    key = b'"' + id_field.encode() + b'"'
    at = head.find(key)
    if at < 0:
        return None
    rest = head[at + len(key):].lstrip(b" :\t")
    end = rest.find(b'"', 1) if rest.startswith(b'"') else min((rest.find(c) for c in b",}" if c in rest), default=-1)
    return rest[1:end].decode("utf-8", "replace") if rest.startswith(b'"') else rest[:end].decode().strip()


def _parse_json_line(line: bytes, line_no: int, spec: InputSpec, out: _BatchBuilder) -> None:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        out.quarantine(line_no, f"not valid JSON: {exc}", line)
        return
    if not isinstance(record, dict):
        out.quarantine(line_no, f"expected a JSON object, got {type(record).__name__}", line)
        return
    text = record.get(spec.text_field)
    if text is None:
        out.quarantine(line_no, f"missing text field {spec.text_field!r}", line)
        return
    if not isinstance(text, str):
        out.quarantine(line_no, f"text field {spec.text_field!r} is {type(text).__name__}, expected a string",
                       line)
        return
    doc_id = record.get(spec.id_field)
    out.add(out.derived_id(line_no) if doc_id is None else str(doc_id), text, record)


def _read_text(chunk: Chunk, spec: InputSpec, out: _BatchBuilder) -> Iterator[ReadBatch]:
    limit = int(spec.max_doc_mb * (1 << 20))
    with _open(chunk) as stream:
        try:
            data = stream.read(limit + 1)
        except (EOFError, OSError, ValueError) as exc:
            out.quarantine(None, f"file ends early or is corrupt ({exc})", b"")
            return
        if len(data) > limit:
            size = len(data)
            while part := stream.read(8 << 20):
                size += len(part)
            out.drop_too_large(chunk.name, size)
            return
    if not data:
        out.quarantine(None, "empty file", b"")
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        out.quarantine(line, f"invalid UTF-8 at byte {exc.start}: {exc.reason}", data[max(0, exc.start - 100):])
        return
    out.add(chunk.name, text, {})
    yield from out.flush()


def _read_parquet(chunk: Chunk, spec: InputSpec, out: _BatchBuilder) -> Iterator[ReadBatch]:
    limit = int(spec.max_doc_mb * (1 << 20))
    with _open(chunk) as stream:
        try:
            pf = pq.ParquetFile(stream)
        except (pa.ArrowException, OSError) as exc:
            out.quarantine(None, f"not a readable parquet file: {exc}", b"")
            return
        names = pf.schema_arrow.names
        rows = pf.metadata.num_rows
        if rows == 0:
            out.quarantine(None, "empty file", b"")
            return
        if spec.text_field not in names:
            out.quarantine(None, f"no column {spec.text_field!r} (columns: {', '.join(names)})", b"", rows=rows)
            return
        text_type = pf.schema_arrow.field(spec.text_field).type
        if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)):
            out.quarantine(None, f"column {spec.text_field!r} is {text_type}, expected a string", b"", rows=rows)
            return
        columns = [c for c in dict.fromkeys([spec.text_field, spec.id_field, *spec.keep_fields]) if c in names]
        first_row = 1
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=columns, use_threads=False):
            yield from out.emit(_parquet_batch(pa.Table.from_batches([batch]), first_row, spec, out, limit))
            first_row += batch.num_rows


def _parquet_batch(table: pa.Table, first_row: int, spec: InputSpec, out: _BatchBuilder, limit: int) -> pa.Table:
    """Vectorized: derive missing ids, quarantine null texts, drop oversized ones; Python only per bad row."""
    text = table.column(spec.text_field)
    rows = np.arange(first_row, first_row + table.num_rows)
    ids = (table.column(spec.id_field).cast(pa.string()) if spec.id_field in table.column_names
           else pa.nulls(table.num_rows, pa.string()))
    missing = ids.is_null().to_numpy(zero_copy_only=False)
    if missing.any():
        derived = np.array(ids.to_pylist(), dtype=object)
        derived[missing] = [out.derived_id(int(r)) for r in rows[missing]]
        ids = pa.array(derived, pa.string())
    null = text.is_null().to_numpy(zero_copy_only=False)
    sizes = pc.binary_length(text).fill_null(0).to_numpy(zero_copy_only=False)
    big = sizes > limit
    for i in np.flatnonzero(null):
        out.quarantine(int(rows[i]), f"text field {spec.text_field!r} is null", b"")
    for i in np.flatnonzero(big):
        out.drop_too_large(ids[int(i)].as_py(), int(sizes[i]))
    keep = pa.array(~(null | big))
    columns = {ID: pc.filter(ids, keep), TEXT: pc.filter(text, keep).cast(pa.string())}
    for field in spec.keep_fields:
        columns[field] = (pc.filter(table.column(field), keep) if field in table.column_names
                          else pa.nulls(int(pc.sum(keep).as_py() or 0)))
    return pa.table(columns)
