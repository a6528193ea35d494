"""The exchange between the stages of a global step, through files rather than Ray objects.

Each sending task writes ONE object holding its rows for every receiver, sorted by receiver, with
the byte offset of each receiver's part in a header; a receiving task reads only its byte range of
each sender's object. So the driver holds no per-(sender, receiver) state: a stage of U senders and
P receivers makes U objects, not U x P, and what the driver tracks grows as U + P. The objects live
in the run's work location (a local directory or an object store), which also makes every stage's
output survive a crash for resume.

Parts are numpy arrays of one dtype and row width (``raw``), or Arrow tables of one schema
(``arrow``, for rows that carry strings). A receiver may take a contiguous range of parts at once:
senders can cut their rows into many fine parts before the number of receivers is known, and the
receivers then take ``fine_range(p, P, V)``.

``combine`` merges several senders' objects into one of the same parts, for exchanges of many
senders and many receivers: each receiver then reads one range per group of senders.

Object layout: ``MAGIC | n | meta (64 bytes of JSON) | offsets (n+1 int64, absolute) | parts``. A
receiver reads its two offsets (one small range), then its part (one range): two reads per sender
on disk, and on object stores two rounds of concurrent range requests for all its senders at once.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from llmray.io.storage import Storage
from llmray.kernels import arrow
from llmray.kernels.partition import grouped, part_order

MAGIC = b"LLMRAYX2"
META_BYTES = 64
_HEAD = struct.Struct("<8sq")
OFFSETS_AT = _HEAD.size + META_BYTES


def write_parts(storage: Storage, rel: str, parts: Sequence[np.ndarray] | Sequence[pa.Table]) -> int:
    """Write the parts (all raw arrays or all tables) as one object; return its size in bytes."""
    if parts and isinstance(parts[0], pa.Table):
        payloads = [_ipc(t) for t in parts]  # type: ignore[arg-type]
        meta: dict[str, Any] = {"kind": "arrow"}
    else:
        arrays = [np.ascontiguousarray(p) for p in parts]
        first = arrays[0] if arrays else np.empty(0, np.uint64)
        payloads = [memoryview(a.reshape(-1).view(np.uint8)) for a in arrays]  # written as they are
        meta = {"kind": "raw", "dtype": first.dtype.str, "shape": list(first.shape[1:])}
    return _write(storage, rel, payloads, meta)


def combine(storage: Storage, rels: Sequence[str], rel: str,
            transform: Callable[[int, np.ndarray], np.ndarray] | None = None,
            lo: int = 0, hi: int | None = None) -> int:
    """One object whose part i holds part ``lo + i`` of each object in ``rels``, in their order: a
    merge level between many senders and many receivers, after which each receiver makes one range
    read per group of senders instead of one per sender. ``transform(k, rows)`` may rewrite the raw
    rows of ``rels[k]`` first. By default every part (each object is read whole, once); with
    ``lo``/``hi`` only that range of parts, so a second merge level can be cut by receivers and no
    task holds more than a first-level task did."""
    if hi is None:  # whole objects: one read each
        blobs = [storage.get(r) for r in rels]
        heads = [_parse_head(b, storage.join(r)) for b, r in zip(blobs, rels, strict=True)]
        spans = [_span(b, n, lo) for b, (_, n) in zip(blobs, heads, strict=True)]
    else:  # a range of parts: its offsets, then its bytes
        heads = [_parse_head(h, storage.join(r)) for h, r in zip(_heads(storage, rels), rels, strict=True)]
        spans = _read_ranges(storage, rels, lo, hi)
    objects = [_split_parts(offsets, data) for offsets, data in spans]
    count = heads[0][1] if heads else 0
    for other, (meta, n) in zip(rels, heads, strict=True):
        if n != count or meta["kind"] != heads[0][0]["kind"]:
            raise ValueError(f"cannot combine exchange objects of different shapes: {rels[0]} has {count} "
                             f"{heads[0][0]['kind']} parts, {other} {n} {meta['kind']} parts")
    hi = count if hi is None else hi
    raw = heads[0][0]["kind"] == "raw" if heads else False
    if raw:
        meta = heads[0][0]
        dtype, shape = np.dtype(meta["dtype"]), tuple(meta["shape"])
        if transform is None:
            payloads = [b"".join(parts[i] for parts in objects) for i in range(hi - lo)]
        else:
            payloads = [b"".join(transform(k, _raw(parts[i], dtype, shape)).astype(dtype, copy=False).tobytes()
                                 for k, parts in enumerate(objects)) for i in range(hi - lo)]
        return _write(storage, rel, payloads, meta)
    payloads = []
    for i in range(hi - lo):
        tables = [t for parts in objects if parts[i] and (t := _decode(parts[i])).num_rows]
        payloads.append(_ipc(pa.concat_tables(tables)) if tables else b"")  # as gather_tables reads them
    return _write(storage, rel, payloads, {"kind": "arrow"})


def _heads(storage: Storage, rels: Sequence[str]) -> list[bytes]:
    if storage.local:
        return [storage.get_range(r, 0, OFFSETS_AT) for r in rels]
    paths = [storage.fs._strip_protocol(storage.join(r)) for r in rels]
    return _ranges(storage, paths, [0] * len(paths), [OFFSETS_AT] * len(paths))


def _parse_head(head: bytes, where: str) -> tuple[dict[str, Any], int]:
    """(meta, part count) from an object's first ``OFFSETS_AT`` bytes."""
    magic, count = _HEAD.unpack_from(head)
    if magic != MAGIC:
        raise ValueError(f"{where}: not an llmray exchange object")
    return json.loads(head[_HEAD.size:OFFSETS_AT]), count


def _span(blob: bytes, count: int, lo: int) -> tuple[np.ndarray, memoryview]:
    """(offsets of parts lo.., the bytes they span) of a whole object, as ``_read_ranges`` gives a run."""
    offsets = np.frombuffer(blob, np.int64, count + 1 - lo, OFFSETS_AT + 8 * lo)
    return offsets, memoryview(blob)[int(offsets[0]):]


def _split_parts(offsets: np.ndarray, data: bytes | memoryview) -> list[bytes]:
    """Each part's bytes, from a run of parts (their offsets and the bytes they span)."""
    view = memoryview(data)
    start = int(offsets[0])
    return [bytes(view[int(a) - start:int(b) - start]) for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


def _write(storage: Storage, rel: str, payloads: Sequence[bytes | memoryview], meta: dict[str, Any]) -> int:
    meta_bytes = json.dumps(meta).encode().ljust(META_BYTES)
    if len(meta_bytes) > META_BYTES:
        raise ValueError(f"exchange metadata too long: {meta}")
    offsets = np.zeros(len(payloads) + 1, np.int64)
    np.cumsum([len(p) for p in payloads], out=offsets[1:])
    offsets += OFFSETS_AT + 8 * len(offsets)
    storage.put(rel, [_HEAD.pack(MAGIC, len(payloads)), meta_bytes, offsets.tobytes(), *payloads])
    return int(offsets[-1])


def _decode(payload: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(payload)).read_all()


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def read_parts(storage: Storage, rel: str, lo: int, hi: int | None = None) -> np.ndarray | pa.Table | None:
    """Parts ``lo .. hi-1`` (``hi`` defaults to ``lo + 1``) of one object, concatenated."""
    meta, _ = _parse_head(storage.get_range(rel, 0, OFFSETS_AT), storage.join(rel))
    (offsets, data), = _read_ranges(storage, [rel], lo, lo + 1 if hi is None else hi)
    if meta["kind"] == "raw":
        return _raw(data, np.dtype(meta["dtype"]), tuple(meta["shape"]))
    return _tables(data, offsets)


def gather_counted(storage: Storage, rels: Sequence[str], lo: int, hi: int | None = None,
                   dtype: np.dtype | type = np.uint64, shape: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """The same raw parts of many senders' objects, concatenated, and how many rows came from each.

    The bytes land in the result directly (read into it from local files; one copy from an object
    store's responses), not in a buffer per sender that is then copied twice."""
    dtype = np.dtype(dtype)
    row_bytes = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    hi = lo + 1 if hi is None else hi
    if storage.local:
        spans = [_local_span(storage.join(rel), lo, hi) for rel in rels]
        sizes = np.array([end - start for start, end in spans], np.int64)
    else:
        bodies = [data for _, data in _read_ranges(storage, rels, lo, hi)]
        sizes = np.array([len(b) for b in bodies], np.int64)
    out = np.empty(int(sizes.sum()) // dtype.itemsize, dtype)
    flat = memoryview(out.view(np.uint8))
    at = 0
    for k, size in enumerate(sizes.tolist()):
        if size:
            target = flat[at:at + size]
            if storage.local:
                _read_into(storage.join(rels[k]), spans[k][0], target)
            else:
                target[:] = bodies[k]
        at += size
    return out.reshape(-1, *shape), sizes // row_bytes


def gather(storage: Storage, rels: Sequence[str], lo: int, hi: int | None = None,
           dtype: np.dtype | type = np.uint64, shape: tuple[int, ...] = ()) -> np.ndarray:
    """The same raw parts of many senders' objects, concatenated (empty with ``dtype``/``shape``)."""
    return gather_counted(storage, rels, lo, hi, dtype, shape)[0]


def _local_span(path: str, lo: int, hi: int) -> tuple[int, int]:
    """Byte range of parts lo..hi-1 in a local object."""
    fd = os.open(path, os.O_RDONLY)
    try:
        first = OFFSETS_AT + 8 * lo
        offsets = np.frombuffer(os.pread(fd, 8 * (hi + 1 - lo), first), np.int64)
        return int(offsets[0]), int(offsets[-1])
    finally:
        os.close(fd)


def _read_into(path: str, start: int, target: memoryview) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        done = 0
        while done < len(target):
            got = os.preadv(fd, [target[done:]], start + done)
            if got == 0:
                raise ValueError(f"{path}: exchange object ends early")
            done += got
    finally:
        os.close(fd)


def gather_tables(storage: Storage, rels: Sequence[str], lo: int, hi: int | None = None) -> pa.Table | None:
    """The same Arrow parts of many senders' objects, concatenated (None when all are empty)."""
    tables = [t for offsets, data in _read_ranges(storage, rels, lo, lo + 1 if hi is None else hi)
              if (t := _tables(data, offsets)) is not None and t.num_rows]
    return pa.concat_tables(tables) if tables else None


def _raw(data: bytes, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(data, dtype).reshape(-1, *shape).copy()


def _tables(data: bytes, offsets: np.ndarray) -> pa.Table | None:
    start = offsets[0]
    tables = [_decode(data[int(a - start):int(b - start)]) for a, b in zip(offsets[:-1], offsets[1:], strict=True)
              if b > a]
    return pa.concat_tables(tables) if tables else None


def _read_ranges(storage: Storage, rels: Sequence[str], lo: int, hi: int) -> list[tuple[np.ndarray, bytes]]:
    """(offsets lo..hi, bytes of parts lo..hi-1) of every sender."""
    first, last = OFFSETS_AT + 8 * lo, OFFSETS_AT + 8 * (hi + 1)
    if storage.local:
        out = []
        for rel in rels:
            fd = os.open(storage.join(rel), os.O_RDONLY)
            try:
                offsets = np.frombuffer(os.pread(fd, last - first, first), np.int64)
                out.append((offsets, os.pread(fd, int(offsets[-1] - offsets[0]), int(offsets[0]))))
            finally:
                os.close(fd)
        return out
    paths = [storage.fs._strip_protocol(storage.join(rel)) for rel in rels]
    offsets = [np.frombuffer(h, np.int64) for h in _ranges(storage, paths, [first] * len(paths), [last] * len(paths))]
    full = [i for i, o in enumerate(offsets) if o[-1] > o[0]]  # an empty range is no request at all
    bodies = [b""] * len(paths)
    found = _ranges(storage, [paths[i] for i in full], [int(offsets[i][0]) for i in full],
                    [int(offsets[i][-1]) for i in full])
    for i, body in zip(full, found, strict=True):
        bodies[i] = body
    return list(zip(offsets, bodies, strict=True))


def _ranges(storage: Storage, paths: list[str], starts: list[int], ends: list[int]) -> list[bytes]:
    """Concurrent range reads; the first failure is raised, not returned among the results."""
    if not paths:
        return []
    out = storage.fs.cat_ranges(paths, starts, ends, on_error="raise")
    return list(out)


def split(rows: np.ndarray, part: np.ndarray, n: int) -> list[np.ndarray]:
    """``rows`` (along axis 0) grouped into ``n`` arrays by part number, order kept within each."""
    out, counts = grouped(rows, part, n)
    return np.split(out, np.cumsum(counts)[:-1])


def split_table(table: pa.Table, part: np.ndarray, n: int) -> list[pa.Table]:
    order, counts = part_order(part, n)
    table = table.take(arrow.from_numpy(order))
    ends = np.cumsum(counts)
    return [table.slice(int(a), int(b - a)) for a, b in zip(np.r_[0, ends[:-1]], ends, strict=True)]


def hash_part(keys: np.ndarray, n: int) -> np.ndarray:
    """Part of each well-mixed uint64 key, from its high 32 bits (monotone in the key)."""
    return ((keys >> np.uint64(32)) * np.uint64(n)) >> np.uint64(32)


def fine_range(p: int, coarse: int, fine: int) -> tuple[int, int]:
    """The fine parts ``[lo, hi)`` that receiver ``p`` of ``coarse`` takes when senders cut their rows
    into ``fine`` parts: contiguous runs, so each receiver makes one range read per sender."""
    return p * fine // coarse, (p + 1) * fine // coarse
