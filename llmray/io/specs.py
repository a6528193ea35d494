"""What to read and where to write: the ``input`` and ``output`` sections of a job file."""

from __future__ import annotations

import dataclasses
from typing import Any

from llmray.errors import JobError
from llmray.params import validate

FORMATS = ("auto", "jsonl", "parquet", "text", "warc", "html")
OUTPUT_FORMATS = ("parquet", "jsonl.gz")


@dataclasses.dataclass
class InputSpec:
    """One source of documents."""

    paths: list[str]
    format: str = "auto"
    text_field: str = "text"
    id_field: str = "id"
    source: str = "default"
    #: Extra input fields carried through to the output as columns.
    keep_fields: list[str] = dataclasses.field(default_factory=list)
    #: Documents larger than this are dropped as ``read.too_large`` without being held in memory.
    max_doc_mb: float = 128.0
    #: Upper bound of the text in one unit of work; large files are cut (uncompressed JSONL and text
    #: by byte ranges at line starts, parquet by row groups), small ones grouped.
    chunk_mb: float = 64.0
    #: Target share of this source in the output (by text bytes); see the ``mix`` step.
    share: float | None = None
    #: fsspec options for the input's file system (e.g. ``{endpoint_url: ..., anon: true}``).
    storage_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Keep only the first document of each id (others: ``unique_ids.duplicate``); without it,
    #: documents that share an id are counted in stats.json and kept.
    dedupe_ids: bool = False

    def __post_init__(self) -> None:
        validate(self)
        if self.format not in FORMATS:
            raise JobError(f"format: {self.format!r} is not one of {', '.join(FORMATS)}")
        if self.chunk_mb <= 0 or self.max_doc_mb <= 0:
            raise JobError("chunk_mb and max_doc_mb must be positive")
        reserved = {"id", "text", "source", "reason"} & set(self.keep_fields)
        if reserved:
            raise JobError(f"keep_fields: {', '.join(sorted(reserved))} is a column llmray writes itself; "
                           f"name only extra fields")


@dataclasses.dataclass
class OutputSpec:
    """Where a run writes: a local directory or any fsspec URL."""

    path: str = "out"
    format: str = "parquet"
    #: A shard rolls over once it holds this many MB of text.
    shard_mb: float = 128.0
    #: Write dropped documents to ``rejects/`` with their reason.
    rejects: bool = False
    #: fsspec options for the output's (and work location's) file system.
    storage_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Intermediate data between segments and global-step scratch; default ``<path>/_work``.
    work_dir: str | None = None

    def __post_init__(self) -> None:
        validate(self)
        if self.format not in OUTPUT_FORMATS:
            raise JobError(f"format: {self.format!r} is not one of {', '.join(OUTPUT_FORMATS)}")
        if self.shard_mb <= 0:
            raise JobError("shard_mb must be positive")
