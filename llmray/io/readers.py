"""Readers: input paths -> planned chunks of work -> Arrow batches of documents, bad records quarantined.

Files are listed on the driver (fsspec, so any URL works; local paths are taken literally) and
planned into ``Chunk``s by bytes and by the cluster's CPUs, so that every CPU has work: a large
uncompressed JSONL file is cut into byte ranges (each starting at a line start), a large parquet
file into runs of row groups, and small files are grouped. Compressed files (``.gz``, ``.zst``,
``.bz2``, ``.xz``) cannot be entered in the middle, so each is read whole by one task: split big
compressed inputs into several files to spread them over more CPUs. A chunk streams as batches of a
few MB, so a multi-GB file never sits whole in one process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import posixpath
from collections.abc import Iterator
from typing import Any

import fsspec
import fsspec.compression
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from llmray.errors import UserError
from llmray.io.batch import BATCH_ROWS, BatchBuilder, Piece, ReadBatch
from llmray.io.specs import InputSpec
from llmray.io.storage import explain, is_url
from llmray.io.warc import read_html, read_warc
from llmray.kernels import arrow
from llmray.schema import ID, TEXT

MB = 1 << 20
#: Smallest unit worth a task of its own.
MIN_CHUNK_BYTES = 1 * MB
#: Aim for this many chunks per CPU, so the last ones even out the load.
CHUNKS_PER_CPU = 4
#: Text bytes per stored byte of a compressed file (for planning only).
COMPRESSION_RATIO = 3

_EXTENSIONS = {
    ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
    ".parquet": "parquet", ".pq": "parquet",
    ".txt": "text", ".text": "text", ".md": "text",
    ".warc": "warc", ".wet": "warc", ".html": "html", ".htm": "html",
}
_COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2", ".xz": "xz"}


@dataclasses.dataclass(frozen=True)
class Chunk:
    """A unit of work: pieces of one input's files, read in order by one task."""

    key: str
    pieces: tuple[Piece, ...]
    source: str
    input_index: int
    #: Estimated text bytes, for planning and progress.
    est_bytes: int

    @property
    def url(self) -> str:
        return self.pieces[0].url if self.pieces else ""


@dataclasses.dataclass
class Listing:
    """The files of one input, and what was passed over (hidden files, links to folders)."""

    files: list[tuple[str, str, int, str]]  # (url, name, size, version)
    skipped: list[str]


def detect(name: str, declared: str) -> tuple[str | None, str | None]:
    """(format, compression) from the file name; ``declared`` wins unless it is ``auto``."""
    stem, ext = posixpath.splitext(name.lower())
    compression = _COMPRESSIONS.get(ext)
    if compression:
        ext = posixpath.splitext(stem)[1]
    fmt = declared if declared != "auto" else _EXTENSIONS.get(ext)
    return fmt, compression


def _filesystem(given: str, options: dict[str, Any]) -> tuple[Any, str, str]:
    """(file system, path on it, protocol prefix for URLs). Local paths are taken literally."""
    if not is_url(given):
        return fsspec.filesystem("file"), os.path.abspath(given), ""
    try:
        fs, path = fsspec.core.url_to_fs(given, **options)
    except (ImportError, ValueError) as exc:
        raise UserError(f"{given}: cannot open this URL ({exc})") from None
    protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
    return fs, path, "" if protocol in ("file", "local") else f"{protocol}://"


def list_input(given: str, options: dict[str, Any] | None = None) -> Listing:
    """Every file a path, directory or glob names, with (url, name used in ids, size, version).

    In a directory, names starting with ``.`` or ``_`` are skipped (and listed as skipped), and so
    are links to folders; a glob takes what it matches."""
    fs, path, prefix = _filesystem(given, options or {})
    skipped: list[str] = []
    try:
        if any(ch in path for ch in "*?["):
            root = path[: min(path.index(ch) for ch in "*?[" if ch in path)].rsplit("/", 1)[0]
            found = {p: i for p, i in fs.glob(path, detail=True).items() if i.get("type") == "file"}
        elif fs.isdir(path):
            root = path.rstrip("/")
            if prefix:
                entries = fs.find(path, detail=True, withdirs=False).items()
            else:
                entries = _walk_local(root, skipped)
            found = {}
            for p, info in entries:
                rel = posixpath.relpath(p, root)
                if any(part.startswith((".", "_")) for part in rel.split("/")):
                    skipped.append(f"{prefix}{p} (hidden)")
                elif info.get("type") == "file":
                    found[p] = info
        elif fs.isfile(path):
            root, found = posixpath.dirname(path), {path: fs.info(path)}
        else:
            raise UserError(f"input not found: {given} (check the path, or pass --input)")
    except UserError:
        raise
    except Exception as exc:  # any client's error (no bucket, no credentials, nothing answering)
        raise UserError(f"input cannot be listed: {given}: {explain(exc, protocol_of(given))}") from None
    files = [(prefix + p, posixpath.relpath(p, root) if root else p, int(info.get("size") or 0), _version(info))
             for p, info in sorted(found.items())]
    if not files:
        raise UserError(f"no input files match {given}")
    return Listing(files, skipped)


def _walk_local(root: str, skipped: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """Files below a local folder. Links to files are followed; links to folders (which may loop
    back) and broken links are skipped and listed as such."""
    entries = []
    for folder, dirs, files in os.walk(root):
        for name in sorted(dirs):
            if os.path.islink(os.path.join(folder, name)):
                skipped.append(f"{os.path.join(folder, name)} (link to a folder)")
        for name in sorted(files):
            path = os.path.join(folder, name)
            try:
                info = os.stat(path)
            except OSError as exc:
                skipped.append(f"{path} ({'link that loops' if exc.errno == 40 else 'broken link'})")
                continue
            entries.append((path, {"type": "file", "size": info.st_size, "mtime": info.st_mtime}))
    return entries


def protocol_of(path: str) -> str:
    return path.split("://", 1)[0] if is_url(path) else "file"


def _version(info: dict[str, Any]) -> str:
    for key in ("ETag", "etag", "md5_hash", "mtime", "LastModified", "last_modified", "updated"):
        if info.get(key) is not None:
            return str(info[key]).strip('"')
    return ""


def list_inputs(inputs: list[InputSpec]) -> list[list[Listing]]:
    """The files of every input (a missing or unreadable one stops the run here, in one line)."""
    return [[list_input(given, spec.storage_options) for given in spec.paths] for spec in inputs]


def plan_chunks(inputs: list[InputSpec], num_cpus: int,
                listings: list[list[Listing]] | None = None) -> tuple[list[Chunk], list[str]]:
    """Cut every input into chunks sized so that each CPU gets about four; (chunks, skipped files)."""
    listings = listings if listings is not None else list_inputs(inputs)
    skipped = [s for per_input in listings for listing in per_input for s in listing.skipped]
    pieces_per_input: list[list[Piece]] = []
    for spec, per_input in zip(inputs, listings, strict=True):
        pieces = []
        for listing in per_input:
            for url, name, size, version in listing.files:
                fmt, compression = detect(name, spec.format)
                if fmt is None:
                    raise UserError(f"{url}: cannot tell the format from the name; set input.format "
                                    f"(one of jsonl, parquet, text, warc, html)")
                pieces.append(Piece(url, name, fmt, compression, size, version))
        pieces_per_input.append(pieces)
    total = sum(_estimate(p) for pieces in pieces_per_input for p in pieces)
    chunks: list[Chunk] = []
    for index, (spec, pieces) in enumerate(zip(inputs, pieces_per_input, strict=True)):
        limit = int(spec.chunk_mb * MB)
        # Rounded up, so that one file of N x target bytes makes N chunks, not N + 1.
        target = min(limit, max(MIN_CHUNK_BYTES, -(-total // (CHUNKS_PER_CPU * max(1, num_cpus)))))
        cut = [part for piece in pieces for part in _cut(piece, target, spec.storage_options)]
        chunks += _group(cut, target, spec.source, index)
    return chunks, skipped


def _estimate(piece: Piece) -> int:
    return piece.size * (COMPRESSION_RATIO if piece.compression or piece.format == "parquet" else 1)


def _cut(piece: Piece, target: int, options: dict[str, Any]) -> list[Piece]:
    """A file as pieces of about ``target`` bytes, where its format allows entering it midway."""
    if piece.compression is None and piece.format == "jsonl" and piece.size > target:
        n = -(-piece.size // target)
        bounds = [piece.size * k // n for k in range(n + 1)]
        return [dataclasses.replace(piece, start=a, end=b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    if piece.format == "parquet" and piece.compression is None and _estimate(piece) > target:
        try:
            with fsspec.open(piece.url, "rb", **options) as f:
                meta = pq.ParquetFile(f).metadata
        except (OSError, pa.ArrowException):
            return [piece]  # the reader will quarantine it with the reason
        sizes = [meta.row_group(g).total_byte_size for g in range(meta.num_row_groups)]
        runs, start, acc = [], 0, 0
        for g, size in enumerate(sizes):
            if acc and acc + size > target:
                runs.append((start, g))
                start, acc = g, 0
            acc += size
        runs.append((start, len(sizes)))
        if len(runs) > 1:
            return [dataclasses.replace(piece, start=a, end=b) for a, b in runs]
    return [piece]


def _group(pieces: list[Piece], target: int, source: str, input_index: int) -> list[Chunk]:
    """Consecutive pieces gathered into chunks of up to ``target`` estimated bytes."""
    chunks, current, size = [], [], 0

    def close() -> None:
        nonlocal current, size
        if current:
            identity = [[p.url, p.size, p.version, p.start, p.end] for p in current]
            digest = hashlib.sha1(json.dumps([input_index, identity]).encode()).hexdigest()[:12]
            chunks.append(Chunk(f"i{input_index}-{digest}", tuple(current), source, input_index, size))
            current, size = [], 0

    for piece in pieces:
        est = _estimate(piece) if piece.end is None else (
            piece.end - piece.start if piece.format == "jsonl" else _estimate(piece) // 2)
        if current and size + est > target:
            close()
        current.append(piece)
        size += est
    close()
    return chunks


# -- reading -------------------------------------------------------------------------------------

def read_chunk(chunk: Chunk, spec: InputSpec) -> Iterator[ReadBatch]:
    """Stream a chunk as batches of documents. Never raises for bad data: it quarantines it."""
    readers = {"jsonl": _read_jsonl, "text": _read_text, "parquet": _read_parquet, "warc": read_warc,
               "html": read_html}
    builder = BatchBuilder(chunk.source, spec.keep_fields)
    for piece in chunk.pieces:
        builder.piece = piece
        try:
            with _open(piece, spec) as stream:
                yield from readers[piece.format](stream, piece, spec, builder)
        except OSError as exc:
            builder.quarantine(None, f"cannot read file: {exc}", b"")
        yield from builder.flush(final=True)


@contextlib.contextmanager
def _open(piece: Piece, spec: InputSpec) -> Iterator[Any]:
    """The piece's file, decompressed. A local path is opened as it is named (``a::b.jsonl`` is no
    fsspec chain); a URL through fsspec."""
    with (fsspec.open(piece.url, "rb", **spec.storage_options) if is_url(piece.url) else open(piece.url, "rb")) as raw:
        if piece.compression == "zstd":  # fsspec's zstd reader ends quietly at a cut: this one says so
            yield _ZstdStream(raw)
        elif piece.compression:
            with fsspec.compression.compr[piece.compression](raw, mode="rb") as stream:
                yield stream
        else:
            yield raw


class _ZstdStream(io.RawIOBase):
    """A zstd file decompressed frame after frame; a file cut inside a frame raises EOFError, as
    Python's gzip does, so the records before the cut are kept and the cut is reported."""

    def __init__(self, raw: Any):
        import zstandard

        self.raw, self.zstd = raw, zstandard
        self.decoder = zstandard.ZstdDecompressor().decompressobj()
        self.pending = b""
        self._started = False  # inside a frame

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending:
            block = self.raw.read(1 << 17)
            if not block:
                if not self.decoder.eof and self._started:
                    raise EOFError("the zstd stream ends inside a frame: the file is truncated")
                return 0
            self._started = True
            while block:
                self.pending += self.decoder.decompress(block)
                block = self.decoder.unused_data
                if self.decoder.eof:
                    self.decoder = self.zstd.ZstdDecompressor().decompressobj()
                    self._started = bool(block)
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n



def _read_jsonl(raw: Any, piece: Piece, spec: InputSpec, out: BatchBuilder) -> Iterator[ReadBatch]:
    """Blocks of whole lines, each parsed by Arrow's JSON reader in one call; a block Arrow cannot
    take as it is (a bad or blank line, a text that is not a string, ids of mixed types, an
    over-long line, ``keep_fields``) is read line by line, so every record is kept, dropped or
    quarantined exactly as it would be alone."""
    limit = int(spec.max_doc_mb * MB)
    # Decompressors that read ahead in big blocks would turn a truncated tail into the loss of
    # every line in the last block: only add a (small) buffer where the stream has none.
    stream = raw if isinstance(raw, io.BufferedIOBase) else io.BufferedReader(raw, 64 << 10)
    lines = _LineNumbers(stream, _seek_line(stream, piece.start))
    id_types = [pa.string(), pa.int64()]  # the one that parsed the last block is tried first
    for block, ends, first in _line_blocks(stream, piece, limit, spec.id_field, out, lines):
        table = None if spec.keep_fields else _arrow_block(block, ends, first, limit, spec, out, lines, id_types)
        if table is not None:
            yield from out.emit(table)
            continue
        parts = block.split(b"\n")
        if block.endswith(b"\n"):
            parts.pop()
        for local, line in enumerate(parts, first):
            if len(line) > limit:
                size = len(line) + (local - first < len(parts) - 1 or block.endswith(b"\n"))
                out.drop_too_large(_peek_id(line, spec.id_field) or out.derived_id(lines.absolute(local)), size)
            elif line.strip():
                _parse_json_line(line, lines, local, spec, out)
            yield from out.flush()


#: Bytes of JSONL handed to Arrow's JSON reader at once (about one batch of documents).
JSONL_BLOCK = 8 << 20
_BOM = b"\xef\xbb\xbf"


def _line_blocks(stream: Any, piece: Piece, limit: int, id_field: str, out: BatchBuilder,
                 lines: _LineNumbers) -> Iterator[tuple[bytes, np.ndarray, int]]:
    """(block, offsets of its newlines, piece-local number of its first line): the piece's lines
    (those that start before its end) in blocks of about JSONL_BLOCK bytes, each scanned for its
    newlines once (they number its lines and cut it into records). A line longer than ``limit``
    that has not ended within ``limit`` bytes is dropped as too large without being held; a read
    that fails (a truncated or corrupt file) quarantines the rest after passing on every whole line
    before it."""
    pos = start = lines.start
    buffer = bytearray()
    local = 0  # lines passed on so far
    while piece.end is None or pos < piece.end:
        try:
            data = stream.read1(JSONL_BLOCK)
            error = None
        except (EOFError, OSError, ValueError) as exc:
            data, error = b"", exc
        if pos == 0 and not buffer and data.startswith(_BOM):
            data, pos = data[3:], 3  # a byte-order mark is not part of the first record
        buffer += data
        done = not data
        cut = -1
        if piece.end is not None and piece.end - pos <= len(buffer):  # the piece's last line is in view
            cut = buffer.find(b"\n", max(piece.end - pos - 1, 0))
            done = done or cut >= 0
        if done or len(buffer) >= JSONL_BLOCK:
            cut = cut if cut >= 0 else len(buffer) - 1 if done and error is None else buffer.rfind(b"\n")
            if cut >= 0:
                block = bytes(memoryview(buffer)[:cut + 1])
                del buffer[:cut + 1]
                ends = np.flatnonzero(np.frombuffer(block, np.uint8) == 10)
                yield block, ends, local + 1
                local += len(ends) + (not block.endswith(b"\n"))
                pos += len(block)
            elif not done and len(buffer) > limit:  # one line, longer than any document may be
                size = len(buffer) + _skip_line(stream, limit)
                local += 1
                out.drop_too_large(_peek_id(bytes(buffer[:4096]), id_field) or out.derived_id(lines.absolute(local)),
                                   size)
                pos += size
                buffer.clear()
        if error is not None:
            out.quarantine(lines.absolute(local + 1), f"file ends early or is corrupt ({error}); the rest of it "
                                                     f"is lost", b"")
            return
        if done:
            if pos == start == 0 and local == 0:
                out.quarantine(None, "empty file", b"")
            return


def _arrow_block(block: bytes, ends: np.ndarray, first: int, limit: int, spec: InputSpec, out: BatchBuilder,
                 lines: _LineNumbers, id_types: list[pa.DataType]) -> pa.Table | None:
    """The block's records as a table of id and text, when every line is one JSON object with a
    string text and all ids are strings, all integers or all absent (ids then derived from line
    numbers); else None."""
    import pyarrow.json as pj

    view = np.frombuffer(block, np.uint8)
    if not block.endswith(b"\n"):
        ends = np.append(ends, len(block))
    starts = np.r_[0, ends[:-1] + 1]
    longest = int((ends - starts).max())
    if longest > limit or not (view[starts] == ord("{")).all():  # blank, odd or over-long lines
        return None
    for id_type in list(id_types):
        schema = pa.schema([(spec.id_field, id_type), (spec.text_field, pa.string())])
        try:
            table = pj.read_json(pa.BufferReader(block),
                                 read_options=pj.ReadOptions(use_threads=False, block_size=max(1 << 20, longest + 2)),
                                 parse_options=pj.ParseOptions(explicit_schema=schema,
                                                               unexpected_field_behavior="ignore"))
        except (pa.ArrowException, UnicodeDecodeError):  # the per-line reader says what is wrong
            continue
        id_types.sort(key=lambda t: t != id_type)
        break
    else:
        return None
    ids, texts = table.column(0), table.column(1)
    if table.num_rows != len(starts) or texts.null_count or 0 < ids.null_count < len(ids):
        return None
    if ids.null_count:
        numbers = arrow.from_numpy(np.arange(lines.absolute(first), lines.absolute(first) + len(ids)))
        ids = pc.binary_join_element_wise(out.derived_id(None), pc.cast(numbers, pa.string()), ":")
    return pa.Table.from_pydict({ID: pc.cast(ids, pa.string()), TEXT: texts}).combine_chunks()


class _LineNumbers:
    """Line numbers of a piece that starts midway in its file, counted only when first needed (an
    id derived from a line number, or a quarantine record): counting means reading the file from
    its start, which most pieces never have to do."""

    def __init__(self, stream: Any, start: int):
        self.stream, self.start, self.before = stream, start, None if start else 0

    def absolute(self, local: int) -> int:
        if self.before is None:
            here = self.stream.tell()
            self.stream.seek(0)
            count, remaining = 0, self.start
            while remaining:
                block = self.stream.read(min(remaining, 8 << 20))
                if not block:
                    break
                count += block.count(b"\n")
                remaining -= len(block)
            self.stream.seek(here)
            self.before = count
        return self.before + local


def _seek_line(stream: io.BufferedReader, start: int) -> int:
    """Position at the first line that starts at or after ``start``; return that offset."""
    if start == 0:
        return 0
    stream.seek(start - 1)
    stream.readline()  # the line that began before the piece belongs to the previous piece
    return stream.tell()


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


def _parse_json_line(line: bytes, lines: _LineNumbers, local: int, spec: InputSpec, out: BatchBuilder) -> None:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        out.quarantine(lines.absolute(local), f"not valid JSON: {exc}", line)
        return
    if not isinstance(record, dict):
        out.quarantine(lines.absolute(local), f"expected a JSON object, got {type(record).__name__}", line)
        return
    text = record.get(spec.text_field)
    problem = (f"missing text field {spec.text_field!r}" if text is None else None if isinstance(text, str)
               else f"text field {spec.text_field!r} is {type(text).__name__}, expected a string")
    if problem:
        out.quarantine(lines.absolute(local), problem, line)
        return
    doc_id = record.get(spec.id_field)
    if doc_id is None:
        doc_id = out.derived_id(lines.absolute(local))
    elif isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)
    elif not isinstance(doc_id, str):
        out.quarantine(lines.absolute(local), f"id field {spec.id_field!r} is {_json_type(doc_id)}: ids must be "
                                              f"strings or integers (or name another with input.id_field)", line)
        return
    out.add(doc_id, text, record)


def _json_type(value: Any) -> str:
    names = {bool: "true or false", float: "a number with a fraction", list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _read_text(stream: Any, piece: Piece, spec: InputSpec, out: BatchBuilder) -> Iterator[ReadBatch]:
    limit = int(spec.max_doc_mb * MB)
    try:
        data = stream.read(limit + 1)
    except (EOFError, OSError, ValueError) as exc:
        out.quarantine(None, f"file ends early or is corrupt ({exc})", b"")
        return
    if len(data) > limit:
        size = len(data)
        while part := stream.read(8 << 20):
            size += len(part)
        out.drop_too_large(piece.name, size)
        return
    if not data:
        out.quarantine(None, "empty file", b"")
        return
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        out.quarantine(line, f"invalid UTF-8 at byte {exc.start}: {exc.reason}", data[max(0, exc.start - 100):])
        return
    out.add(piece.name, text, {})
    yield from out.flush()


def _read_parquet(stream: Any, piece: Piece, spec: InputSpec, out: BatchBuilder) -> Iterator[ReadBatch]:
    limit = int(spec.max_doc_mb * MB)
    try:
        pf = pq.ParquetFile(stream)
    except (pa.ArrowException, OSError) as exc:
        out.quarantine(None, f"not a readable parquet file: {exc}", b"")
        return
    names = pf.schema_arrow.names
    groups = list(range(piece.start, pf.metadata.num_row_groups if piece.end is None else piece.end))
    rows = sum(pf.metadata.row_group(g).num_rows for g in groups)
    if pf.metadata.num_rows == 0:
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
    id_type = pf.schema_arrow.field(spec.id_field).type if spec.id_field in names else pa.string()
    if not _id_type_ok(id_type):
        out.quarantine(None, f"id column {spec.id_field!r} is {id_type}: ids must be strings or integers "
                             f"(or name another with input.id_field)", b"", rows=rows)
        return
    first_row = 1 + sum(pf.metadata.row_group(g).num_rows for g in range(piece.start))
    for group in groups:  # one row group at a time: a corrupt one loses only its own rows
        size, done = pf.metadata.row_group(group).num_rows, 0
        try:
            for batch in pf.iter_batches(batch_size=BATCH_ROWS, row_groups=[group], columns=columns,
                                         use_threads=False):
                yield from out.emit(_parquet_batch(pa.Table.from_batches([batch]), first_row + done, spec, out,
                                                   limit))
                done += batch.num_rows
        except (pa.ArrowException, OSError) as exc:
            out.quarantine(first_row + done, f"row group {group} cannot be read ({_short(exc)}): its "
                                             f"{size - done} remaining rows are lost", b"", rows=size - done)
        first_row += size


def _id_type_ok(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."


def _parquet_batch(table: pa.Table, first_row: int, spec: InputSpec, out: BatchBuilder, limit: int) -> pa.Table:
    """Vectorized: derive missing ids, quarantine null texts, drop oversized ones; Python only per bad row."""
    text = table.column(spec.text_field)
    rows = np.arange(first_row, first_row + table.num_rows)
    ids = (table.column(spec.id_field).cast(pa.string()) if spec.id_field in table.column_names
           else pa.nulls(table.num_rows, pa.string()))
    missing = arrow.to_numpy(ids.is_null())
    if missing.any():
        derived = np.array(ids.to_pylist(), dtype=object)
        derived[missing] = [out.derived_id(int(r)) for r in rows[missing]]
        ids = pa.array(derived, pa.string())
    null = arrow.to_numpy(text.is_null())
    sizes = arrow.to_numpy(pc.binary_length(text), fill=0)
    big = sizes > limit
    for i in np.flatnonzero(null):
        out.quarantine(int(rows[i]), f"text field {spec.text_field!r} is null", b"")
    for i in np.flatnonzero(big):
        out.drop_too_large(ids[int(i)].as_py(), int(sizes[i]))
    keep = arrow.from_numpy(~(null | big))
    columns = {ID: pc.filter(ids, keep), TEXT: pc.filter(text, keep).cast(pa.string())}
    for field in spec.keep_fields:
        columns[field] = (pc.filter(table.column(field), keep) if field in table.column_names
                          else pa.nulls(int(pc.sum(keep).as_py() or 0)))
    return pa.Table.from_pydict(columns)
