"""Writers: sharded outputs committed atomically, and completion markers for resume.

A shard is written under a temporary name and renamed when complete, so a reader (or a resumed
run) never takes a half-written file for a finished one. A chunk's marker is written last, after
all of its shards are in place: a chunk without a marker is redone from scratch on resume.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from llmray.ops.base import TEXT

TMP_SUFFIX = ".tmp"


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + TMP_SUFFIX)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class ShardWriter:
    """Writes tables for one chunk as ``{prefix}-{k:04d}.{ext}`` shards of about ``shard_bytes`` text."""

    def __init__(self, directory: Path, prefix: str, fmt: str = "parquet", shard_bytes: int = 128 << 20):
        self.directory, self.prefix, self.fmt, self.shard_bytes = directory, prefix, fmt, shard_bytes
        self.ext = "parquet" if fmt == "parquet" else "jsonl.gz"
        self.index = 0
        self.rows = 0
        self._writer: Any = None
        self._tmp: Path | None = None
        self._bytes = 0
        self.paths: list[Path] = []

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self._writer is None:
            self._open(table.schema)
        if self.fmt == "parquet":
            if table.schema != self._writer.schema:
                table = table.cast(self._writer.schema)
            self._writer.write_table(table, row_group_size=64 << 10)
        else:
            for record in table.to_pylist():
                self._writer.write(orjson.dumps(record) + b"\n")
        self.rows += table.num_rows
        self._bytes += table.column(TEXT).nbytes if TEXT in table.column_names else table.nbytes
        if self._bytes >= self.shard_bytes:
            self._commit()

    def _open(self, schema: pa.Schema) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / f"{self.prefix}-{self.index:04d}.{self.ext}"
        self._tmp = final.with_name(final.name + TMP_SUFFIX)
        if self.fmt == "parquet":
            others = [path for field in schema if field.name != TEXT for path in _leaf_paths(field.name, field.type)]
            # No dictionary attempt and no min/max for the text: it is unique and long (a footer
            # would hold two whole documents per row group).
            self._writer = pq.ParquetWriter(self._tmp, schema, compression="zstd", use_dictionary=others,
                                            write_statistics=others)
        else:
            self._writer = gzip.open(self._tmp, "wb", compresslevel=5)

    def _commit(self) -> None:
        if self._writer is None or self._tmp is None:
            return
        self._writer.close()
        final = self._tmp.with_name(self._tmp.name[: -len(TMP_SUFFIX)])
        os.replace(self._tmp, final)
        self.paths.append(final)
        self._writer, self._tmp, self._bytes = None, None, 0
        self.index += 1

    def close(self) -> list[Path]:
        self._commit()
        return self.paths


class JsonlWriter:
    """Small line-oriented outputs (quarantine): one file per chunk, committed on close."""

    def __init__(self, path: Path):
        self.path = path
        self._file: Any = None

    def write(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path.with_name(self.path.name + TMP_SUFFIX), "wb")
        for record in records:
            self._file.write(orjson.dumps(record) + b"\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            os.replace(self._file.name, self.path)
            self._file = None


def _leaf_paths(name: str, kind: pa.DataType) -> list[str]:
    """Parquet column paths under a field (what the writer's per-column options name)."""
    if pa.types.is_struct(kind):
        return [p for i in range(kind.num_fields) for p in _leaf_paths(f"{name}.{kind.field(i).name}",
                                                                        kind.field(i).type)]
    if pa.types.is_map(kind):
        return _leaf_paths(f"{name}.key_value.key", kind.key_type) + _leaf_paths(f"{name}.key_value.value",
                                                                                 kind.item_type)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _leaf_paths(f"{name}.list.element", kind.value_type)
    return [name]


def remove_partial(directories: list[Path], prefix: str) -> None:
    """Delete whatever an interrupted attempt at a chunk left behind, finished shards included."""
    for directory in directories:
        if directory.is_dir():
            for path in directory.glob(f"{prefix}-*"):
                path.unlink()
            for path in directory.glob(f"{prefix}.*"):
                path.unlink()


def write_marker(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(payload))
