"""Training data: files -> Arrow tables -> fixed-length token rows -> torch batches.

The same ``Featurizer`` turns Arrow rows into numpy token rows in Ray Data tasks (``ray_dataset``)
and in one process (``local_batches``), so both paths featurize alike (MLM packing restarts with
each batch of documents, whose bounds follow how each path reads). Raw text is tokenized on
the fly (packed for MLM, one truncated row per document for classification); token shards from the
``tokenize`` step are read as they are. ``Collate`` makes torch batches on the training worker and,
for MLM, masks 15% of the tokens (80% [MASK], 10% a random token, 10% unchanged) with a generator
seeded per epoch and worker, so a resumed run masks the same way.

Files are local paths or URLs (s3://, gs://, ...) alike: read through ``llmray.io.storage``, and
handed to Ray Data with the same fsspec file system and options.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import gzip
import os
import posixpath
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq
import torch
import xxhash

from llmray import tokenizer as toks
from llmray.errors import UserError
from llmray.io.storage import Storage, explain, is_url, local_copy
from llmray.train import transfer

if TYPE_CHECKING:
    import ray.data

JSONL = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson", ".ndjson.gz")
READ_ROWS = 2048
IGNORE = -100


@dataclasses.dataclass(frozen=True)
class Files:
    #: Absolute local paths, or full URLs of one protocol.
    paths: list[str]
    format: str  # "parquet" or "json"
    storage_options: dict[str, Any] = dataclasses.field(default_factory=dict)

    @contextlib.contextmanager
    def open(self, path: str) -> Iterator[IO[bytes]]:
        """One of the files as a binary stream, decompressed if it ends in .gz."""
        with Storage(path, self.storage_options).open_read("") as raw:
            yield gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else raw

    def columns(self, path: str) -> list[str]:
        """Column names of a parquet file (from its footer)."""
        with self.open(path) as f:
            return pq.read_schema(f).names

    def rows(self) -> int:
        """Rows of all the parquet files (from their footers)."""
        total = 0
        for path in self.paths:
            with self.open(path) as f:
                total += pq.ParquetFile(f).metadata.num_rows
        return total


def resolve(paths: list[str], where: str, options: dict[str, Any] | None = None) -> Files:
    """Expand files, directories and globs, local or URLs, into one format's files (sorted); a
    missing or unreadable one is one line naming it."""
    found: list[str] = []
    for given in paths:
        store = Storage(os.path.expanduser(given), options)
        try:
            found += _expand(store, given, where)
        except UserError:
            raise
        except Exception as exc:  # any client's error (no bucket, no credentials, nothing answering)
            raise UserError(f"{where}: cannot read {given}: {explain(exc, store.protocol)}") from None
    parquet = [p for p in found if p.endswith(".parquet")]
    jsonl = [p for p in found if p.endswith(JSONL)]
    if len(parquet) + len(jsonl) != len(found):
        odd = next(p for p in found if p not in parquet and p not in jsonl)
        raise UserError(f"{where}: {odd} is neither parquet nor jsonl (.jsonl, .jsonl.gz)")
    if parquet and jsonl:
        raise UserError(f"{where}: mixes parquet and jsonl files; give one format")
    places = sorted({p.split("://", 1)[0] + "://" if is_url(p) else "local" for p in found})
    if len(places) > 1:
        raise UserError(f"{where}: mixes {' and '.join(places)} files; keep the data in one place")
    return Files(parquet or jsonl, "parquet" if parquet else "json", dict(options or {}))


def _expand(store: Storage, given: str, where: str) -> list[str]:
    """The data files one given path, directory or glob stands for."""
    fs = store.fs
    path = fs._strip_protocol(store.url)
    matches = sorted(fs.glob(path)) if glob.has_magic(path) else [path] if fs.exists(path) else []
    if not matches:
        raise UserError(f"{where}: no such file or directory: {given}")
    files: list[str] = []
    for match in matches:
        files += _data_files(fs, match, given, where) if fs.isdir(match) else [match]
    return files if store.local else [fs.unstrip_protocol(f) for f in files]


def _data_files(fs: Any, directory: str, given: str, where: str) -> list[str]:
    """Parquet files under a directory, else JSON lines files; names starting with _ or . are not
    data (``_meta.json``, ``_work/``), as for pyarrow's dataset reader."""
    directory = directory.rstrip("/")
    visible = [
        p
        for p in sorted(fs.find(directory))
        if not any(part.startswith(("_", ".")) for part in posixpath.relpath(p, directory).split("/"))
    ]
    files = [p for p in visible if p.endswith(".parquet")] or [p for p in visible if p.endswith(JSONL)]
    if not files:
        raise UserError(f"{where}: {given} holds no parquet or jsonl files")
    return files


def read_json(files: Files, path: str) -> pa.Table:
    try:
        with files.open(path) as f:
            return pajson.read_json(f)
    except pa.ArrowInvalid as exc:
        raise UserError(f"{path}: cannot be read as JSON lines: {exc}") from None


def read_tables(files: Files, columns: list[str]) -> Iterator[pa.Table]:
    """Stream tables of up to READ_ROWS rows holding ``columns`` (those a file lacks are skipped)."""
    for path in files.paths:
        if files.format == "parquet":
            with files.open(path) as f:
                parquet = pq.ParquetFile(f)
                present = [c for c in columns if c in parquet.schema_arrow.names]
                for batch in parquet.iter_batches(batch_size=READ_ROWS, columns=present):
                    yield pa.Table.from_batches([batch])
        else:
            table = read_json(files, path)
            table = table.select([c for c in columns if c in table.column_names])
            for start in range(0, table.num_rows, READ_ROWS):
                yield table.slice(start, READ_ROWS)


def ray_dataset(files: Files, columns: list[str], featurizer: Featurizer) -> ray.data.Dataset:
    """Featurized rows as a lazy Ray Dataset (``columns`` must be present in every file)."""
    import ray.data

    from llmray.cluster import quiet_ray_data

    quiet_ray_data()
    located = [transfer.arrow(p, files.storage_options) for p in files.paths]
    filesystem, paths = located[0][0], [p for _, p in located]
    if files.format == "parquet":
        ds = ray.data.read_parquet(paths, columns=columns, filesystem=filesystem)
    else:
        ds = ray.data.read_json(paths, filesystem=filesystem).select_columns(columns)
    return ds.map_batches(featurizer, batch_format="pyarrow", batch_size=READ_ROWS)


def holdout_mask(table: pa.Table, key_fields: list[str], fraction: float, seed: int) -> np.ndarray:
    """True for rows held out for evaluation: a hash of the row's key (the first of ``key_fields``
    present: id, then text; token rows hash their ids), so the split never depends on order."""
    if fraction <= 0 or table.num_rows == 0:
        return np.zeros(table.num_rows, dtype=bool)
    key = next((f for f in key_fields if f in table.column_names), None)
    if key is None:
        keys: Iterable[bytes] = (row.tobytes() for row in fixed_rows(table.column("input_ids")))
    else:
        keys = (str(v).encode() for v in table.column(key).to_pylist())
    threshold = int(fraction * 2**64)
    return np.fromiter(
        (xxhash.xxh64_intdigest(k, seed) < threshold for k in keys), dtype=bool, count=table.num_rows
    )


def fixed_rows(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A list column of equal-length rows (token shards) as a 2-D numpy array."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(array) == 0:
        return np.zeros((0, 0), dtype=np.int32)
    return array.flatten().to_numpy(zero_copy_only=False).reshape(len(array), -1)


@dataclasses.dataclass
class Featurizer:
    """Arrow rows -> {input_ids, attention_mask[, labels]} numpy rows of ``seq_len`` tokens."""

    task: str
    #: "text" (tokenize here) or "tokens" (shards written by the tokenize step).
    kind: str
    #: A local directory or a URL.
    tokenizer_dir: str
    seq_len: int
    text_field: str = "text"
    label_field: str = "label"
    id_field: str = "id"
    #: Classification labels; a label's index is its class id.
    labels: list = dataclasses.field(default_factory=list)
    #: Share of rows held out for evaluation, and which side of that split this featurizer keeps.
    holdout: float = 0.0
    side: str = "all"
    seed: int = 0
    #: For a tokenizer at a URL (each Ray task's process downloads it once).
    storage_options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __call__(self, table: pa.Table) -> dict[str, np.ndarray]:
        if self.side != "all" and self.holdout > 0:
            held = holdout_mask(table, [self.id_field, self.text_field], self.holdout, self.seed)
            table = table.filter(pa.array(held if self.side == "eval" else ~held))
        if self.kind == "tokens":
            return {
                "input_ids": fixed_rows(table.column("input_ids")).astype(np.int32).reshape(-1, self.seq_len),
                "attention_mask": fixed_rows(table.column("attention_mask"))
                .astype(np.int8)
                .reshape(-1, self.seq_len),
            }
        tok = toks.load(local_copy(self.tokenizer_dir, self.storage_options))
        ids = toks.special_ids(tok, self.tokenizer_dir)
        texts = pc.fill_null(table.column(self.text_field), "").to_pylist()
        flat, lengths = toks.encode(tok, texts)
        if self.task == "mlm":
            input_ids, mask = toks.pack(flat, lengths, self.seq_len, ids)
            return {"input_ids": input_ids, "attention_mask": mask}
        input_ids, mask = toks.truncate(flat, lengths, self.seq_len, ids)
        return {"input_ids": input_ids, "attention_mask": mask, "labels": self.label_ids(table)}

    def label_ids(self, table: pa.Table) -> np.ndarray:
        column = table.column(self.label_field)
        index = pc.index_in(column, value_set=pa.array(self.labels, type=column.type))
        if index.null_count:
            raise UserError(
                f"label column {self.label_field!r}: a value outside the labels seen before training"
            )
        return index.to_numpy(zero_copy_only=False).astype(np.int64)


def seed_for(*parts: int) -> int:
    """One well-mixed 63-bit seed from several integers (seed, epoch, rank, ...)."""
    return int(np.random.SeedSequence([p & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0] >> 1)


class Collate:
    """numpy rows -> torch batch; for MLM, masks tokens and sets labels (-100 where not masked)."""

    def __init__(
        self, task: str, special: toks.SpecialIds, vocab_size: int, mlm_probability: float, seed: int
    ):
        self.task, self.special, self.vocab_size, self.p = task, special, vocab_size, mlm_probability
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        out = {
            k: torch.from_numpy(np.array(batch[k], dtype=np.int64)) for k in ("input_ids", "attention_mask")
        }
        if self.task == "classification":
            out["labels"] = torch.from_numpy(np.array(batch["labels"], dtype=np.int64))
        else:
            out["input_ids"], out["labels"] = self.mask(out["input_ids"])
        return out

    def mask(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, g = self.special, self.generator
        eligible = (ids != s.pad) & (ids != s.cls) & (ids != s.sep)
        chosen = (torch.rand(ids.shape, generator=g) < self.p) & eligible
        if not chosen.any() and eligible.any():
            chosen[eligible.nonzero()[0].unbind()] = True  # never a batch without a target
        labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
        roll = torch.rand(ids.shape, generator=g)
        masked = ids.clone()
        masked[chosen & (roll < 0.8)] = s.mask
        swap = chosen & (roll >= 0.8) & (roll < 0.9)
        masked[swap] = torch.randint(self.vocab_size, ids.shape, generator=g)[swap]
        return masked, labels


def rebatch(
    chunks: Iterable[dict[str, np.ndarray]], batch_size: int, shuffle_buffer: int, seed: int, drop_last: bool
) -> Iterator[dict[str, np.ndarray]]:
    """Re-cut row chunks into batches, shuffling within a buffer of ``shuffle_buffer`` rows."""
    rng = np.random.default_rng(seed)
    pending: list[dict[str, np.ndarray]] = []
    held = 0

    def flush(final: bool) -> Iterator[dict[str, np.ndarray]]:
        nonlocal pending, held
        rows = {k: np.concatenate([c[k] for c in pending]) for k in pending[0]}
        if shuffle_buffer:
            order = rng.permutation(held)
            rows = {k: v[order] for k, v in rows.items()}
        full = held - held % batch_size
        for start in range(0, full, batch_size):
            yield {k: v[start : start + batch_size] for k, v in rows.items()}
        pending = [{k: v[full:] for k, v in rows.items()}] if held > full else []
        held -= full
        if final and held and not drop_last:
            yield pending[0]

    for chunk in chunks:
        n = len(next(iter(chunk.values())))
        if n:
            pending.append(chunk)
            held += n
        if held >= max(shuffle_buffer, batch_size):
            yield from flush(final=False)
    if pending:
        yield from flush(final=True)


def local_batches(
    files: Files,
    columns: list[str],
    featurizer: Featurizer,
    collate: Collate,
    batch_size: int,
    shuffle_buffer: int,
    seed: int,
    drop_last: bool,
) -> Iterator[dict[str, torch.Tensor]]:
    """The plain (no Ray) path: read, featurize, batch and collate in this process."""
    chunks = (featurizer(table) for table in read_tables(files, columns))
    for batch in rebatch(chunks, batch_size, shuffle_buffer, seed, drop_last):
        yield collate(batch)


class BatchStream:
    """Batches over epochs that knows its place (epoch, batches taken), so a checkpoint resumes at
    the next unseen batch: on resume the epoch is replayed in the same order and its first
    ``offset`` batches skipped."""

    def __init__(
        self,
        epoch_batches: Callable[[int], Iterable[Any]],
        epochs: int | None,
        position: dict[str, int] | None = None,
    ):
        self.epoch_batches, self.epochs = epoch_batches, epochs
        self.epoch = position["epoch"] if position else 0
        self.offset = position["offset"] if position else 0

    def __iter__(self) -> Iterator[Any]:
        while self.epochs is None or self.epoch < self.epochs:
            taken = 0
            for i, batch in enumerate(self.epoch_batches(self.epoch)):
                if i < self.offset:
                    continue
                self.offset = i + 1
                taken += 1
                yield batch
            if taken == 0 and self.offset == 0:
                return  # an epoch without a single batch: stop instead of spinning
            self.epoch, self.offset = self.epoch + 1, 0

    def position(self) -> dict[str, int]:
        return {"epoch": self.epoch, "offset": self.offset}
