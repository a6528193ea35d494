"""The exchange between the stages of a global step, through files rather than Ray objects.

Each sending task writes ONE object holding its rows for every receiver, sorted by receiver, with
the byte offset of each receiver's part in a footer; a receiving task reads only its byte range of
each sender's object. So the driver holds no per-(sender, receiver) state: a stage of U senders and
P receivers makes U objects, not U x P, and what the driver tracks grows as U + P. The objects live
in the run's work location (a local directory or an object store), which also makes every stage's
output survive a crash for resume.

Parts are numpy arrays of one dtype and row width (``raw``), or Arrow tables of one schema
(``arrow``, for rows that carry strings). A receiver may take a contiguous range of parts at once:
senders can cut their rows into many fine parts before the number of receivers is known, and the
receivers then take ``fine_range(p, P, V)``.

Object layout: ``payload | offsets (n+1 x int64) | meta (JSON) | len(meta) | n | MAGIC``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from llmray.io.storage import Storage

MAGIC = b"LLMRAYX1"
_TAIL = struct.Struct("<qq8s")


def write_parts(storage: Storage, rel: str, parts: Sequence[np.ndarray] | Sequence[pa.Table]) -> int:
    """Write the parts (all raw arrays or all tables) as one object; return its size in bytes."""
    if parts and isinstance(parts[0], pa.Table):
        payloads = [_ipc(t) for t in parts]  # type: ignore[arg-type]
        meta = {"kind": "arrow"}
    else:
        arrays = [np.ascontiguousarray(p) for p in parts]
        first = arrays[0] if arrays else np.empty(0, np.uint64)
        payloads = [a.tobytes() for a in arrays]
        meta = {"kind": "raw", "dtype": first.dtype.str, "shape": list(first.shape[1:])}
    offsets = np.zeros(len(payloads) + 1, np.int64)
    np.cumsum([len(p) for p in payloads], out=offsets[1:])
    meta_bytes = json.dumps(meta).encode()
    blob = b"".join([*payloads, offsets.tobytes(), meta_bytes, _TAIL.pack(len(meta_bytes), len(payloads), MAGIC)])
    storage.put(rel, blob)
    return len(blob)


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def part_count(storage: Storage, rel: str) -> int:
    return _footer(storage, rel)[0].size - 1


def _footer(storage: Storage, rel: str) -> tuple[np.ndarray, dict]:
    tail = storage.get_range(rel, -_TAIL.size, 0)
    meta_len, n, magic = _TAIL.unpack(tail)
    if magic != MAGIC:
        raise ValueError(f"{storage.join(rel)}: not an llmray exchange object")
    size = 8 * (n + 1) + meta_len
    footer = storage.get_range(rel, -(_TAIL.size + size), -_TAIL.size) if size else b""
    offsets = np.frombuffer(footer[: 8 * (n + 1)], np.int64)
    return offsets, json.loads(footer[8 * (n + 1):])


def read_parts(storage: Storage, rel: str, lo: int, hi: int | None = None) -> np.ndarray | pa.Table:
    """Parts ``lo .. hi-1`` (``hi`` defaults to ``lo + 1``) of one object, concatenated."""
    offsets, meta = _footer(storage, rel)
    hi = lo + 1 if hi is None else hi
    start, end = int(offsets[lo]), int(offsets[hi])
    data = storage.get_range(rel, start, end) if end > start else b""
    if meta["kind"] == "raw":
        return np.frombuffer(data, np.dtype(meta["dtype"])).reshape(-1, *meta["shape"]).copy()
    tables = [pa.ipc.open_stream(pa.py_buffer(data[int(a - start):int(b - start)])).read_all()
              for a, b in zip(offsets[lo:hi], offsets[lo + 1:hi + 1], strict=True) if b > a]
    return pa.concat_tables(tables) if tables else None  # type: ignore[return-value]


def gather(storage: Storage, rels: Sequence[str], lo: int, hi: int | None = None,
           dtype: np.dtype | type = np.uint64, shape: tuple[int, ...] = ()) -> np.ndarray:
    """The same raw parts of many senders' objects, concatenated (empty with ``dtype``/``shape``)."""
    arrays = [a for a in (read_parts(storage, r, lo, hi) for r in rels) if a is not None and len(a)]
    return np.concatenate(arrays) if arrays else np.empty((0, *shape), dtype)


def gather_tables(storage: Storage, rels: Sequence[str], lo: int, hi: int | None = None) -> pa.Table | None:
    tables = [t for t in (read_parts(storage, r, lo, hi) for r in rels) if t is not None and t.num_rows]
    return pa.concat_tables(tables) if tables else None


def split(rows: np.ndarray, part: np.ndarray, n: int) -> list[np.ndarray]:
    """``rows`` (along axis 0) grouped into ``n`` arrays by part number, order kept within each."""
    order = np.argsort(part, kind="stable")
    bounds = np.cumsum(np.bincount(part.astype(np.int64), minlength=n))[:-1]
    return np.split(rows[order], bounds)


def split_table(table: pa.Table, part: np.ndarray, n: int) -> list[pa.Table]:
    order = np.argsort(part, kind="stable")
    table = table.take(order)
    ends = np.cumsum(np.bincount(part.astype(np.int64), minlength=n))
    return [table.slice(int(a), int(b - a)) for a, b in zip(np.r_[0, ends[:-1]], ends, strict=True)]


def hash_part(keys: np.ndarray, n: int) -> np.ndarray:
    """Part of each well-mixed uint64 key, from its high 32 bits (monotone in the key)."""
    return ((keys >> np.uint64(32)) * np.uint64(n)) >> np.uint64(32)


def fine_range(p: int, coarse: int, fine: int) -> tuple[int, int]:
    """The fine parts ``[lo, hi)`` that receiver ``p`` of ``coarse`` takes when senders cut their rows
    into ``fine`` parts: contiguous runs, so each receiver makes one range read per sender."""
    return p * fine // coarse, (p + 1) * fine // coarse
