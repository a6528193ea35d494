"""Tokenization on the data side: ``train_tokenizer`` (a WordPiece vocabulary from the corpus) and
``tokenize`` (token ids packed into fixed-length sequences for MLM pretraining).

Neither changes a document: they read the corpus and write a product beside the data,
``<output>/tokenizer/`` and ``<output>/tokens/``; the documents are written once, as ever.
``train_tokenizer`` is a global step (the vocabulary needs an even sample of the whole corpus);
``tokenize`` runs on each unit as it passes, writing that unit's token shards.

    steps:
      - train_tokenizer: {vocab_size: 30522}
      - tokenize: {tokenizer: trained, seq_len: 128}

``tokens/`` holds parquet shards with ``input_ids`` (list<int32>, each ``[CLS] ... [SEP]`` of
``seq_len``, documents joined by [SEP], the last row of a batch padded), ``attention_mask``
(list<int8>) and ``num_tokens``; ``_meta.json`` (sequence length, counts) and ``_tokenizer/`` (a copy
of the tokenizer), so ``llmray train --data <output>/tokens`` needs nothing else. The leading
underscores keep them out of parquet dataset readers (pyarrow skips such names). In a Ray Data
pipeline, ``ds.map_batches(Tokenize(tokenizer=DIR))`` returns the token rows themselves.
"""

from __future__ import annotations

import dataclasses
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from llmray import tokenizer as toks
from llmray.decisions import ChunkContext, Decision, GlobalContext
from llmray.errors import JobError, UserError
from llmray.io.storage import Storage, is_url
from llmray.io.writers import ShardWriter, read_shard
from llmray.ops.base import GlobalStep, MapStep, register
from llmray.schema import TEXT
from llmray.tokenizer import TOKENS_META, TOKENS_TOKENIZER

#: Documents encoded per call of the tokenizer (it parallelizes within a call).
BATCH_DOCS = 1024
TOKEN_SCHEMA = pa.schema(
    [("input_ids", pa.list_(pa.int32())), ("attention_mask", pa.list_(pa.int8())), ("num_tokens", pa.int32())]
)
#: Where ``train_tokenizer`` leaves the vocabulary, relative to the output.
TRAINED = "tokenizer"


def _unit_texts(output: Storage, work: Storage, marker: str) -> Iterator[pa.Array]:
    """The text column of a unit's shards, batch by batch."""
    shards = output.get_json(marker)["shards"]
    store = output if shards["store"] == "output" else work
    for shard in shards["files"]:
        for table in read_shard(store, shard["path"], [TEXT], BATCH_DOCS):
            yield table.column(0).combine_chunks()


@dataclasses.dataclass
class _Sample:
    output: Storage
    work: Storage
    directory: str
    markers: list[str]
    starts: list[int]
    stride: int


def _sample_unit(shared: _Sample, unit: int) -> int:
    """Task: every ``stride``-th document (by number in the corpus) of one unit, for the vocabulary."""
    kept, row = [], shared.starts[unit]
    for column in _unit_texts(shared.output, shared.work, shared.markers[unit]):
        numbers = np.arange(row, row + len(column))
        kept.append(column.filter(pa.array(numbers % shared.stride == 0)))
        row += len(column)
    sample = pa.table({TEXT: pa.concat_arrays(kept) if kept else pa.array([], pa.string())})
    buffer = io.BytesIO()
    pq.write_table(sample, buffer)
    shared.work.put(f"{shared.directory}/{unit:05d}.parquet", buffer.getvalue())
    return sample.num_rows


def _train_vocabulary(shared: _Sample, vocab_size: int, min_frequency: int, lowercase: bool,
                      max_length: int) -> int:
    """Task: train on the sample, streamed shard by shard (the trainer is multi-threaded)."""

    def batches() -> Iterator[list[str]]:
        for rel in shared.work.find(shared.directory):
            with shared.work.open_read(rel) as f:
                for batch in pq.ParquetFile(f).iter_batches(batch_size=BATCH_DOCS, use_threads=False):
                    yield pc.fill_null(batch.column(0), "").to_pylist()

    with tempfile.TemporaryDirectory(prefix="llmray-vocab-") as local:
        toks.train_wordpiece(batches(), Path(local), vocab_size, min_frequency, lowercase, max_length)
        size = toks.load.__wrapped__(local).get_vocab_size()
        shared.output.delete_tree(TRAINED)
        toks.upload(local, shared.output, TRAINED)
    return size


@register
@dataclasses.dataclass
class TrainTokenizer(GlobalStep):
    """Trains a BERT WordPiece vocabulary (HF ``tokenizers``) on an even sample of at most
    ``max_docs`` documents and saves it to ``<output>/tokenizer`` (loadable by transformers'
    ``AutoTokenizer``). Documents pass through unchanged."""

    name: ClassVar[str] = "train_tokenizer"
    summary: ClassVar[str] = "train a WordPiece vocabulary on the corpus into <output>/tokenizer (keeps every doc)"
    changes_documents: ClassVar[bool] = False
    vocab_size: int = 30522
    min_frequency: int = 2
    lowercase: bool = True
    max_docs: int = 1_000_000
    #: model_max_length written into the tokenizer config.
    max_length: int = 512

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.vocab_size < 16 or self.min_frequency < 1 or self.max_docs < 1:
            raise JobError("vocab_size >= 16, min_frequency >= 1 and max_docs >= 1, please")

    def decide(self, ctx: GlobalContext) -> Decision:
        total = sum(u.docs for u in ctx.units)
        stride = max(1, -(-total // self.max_docs))
        shared = _Sample(ctx.output, ctx.data, f"{ctx.work_dir}/sample", [u.marker for u in ctx.units],
                         [u.start for u in ctx.units], stride)
        ctx.engine.map(_sample_unit, [(u.index,) for u in ctx.units], "sample", shared=shared)
        (size,) = ctx.engine.map(_train_vocabulary, [(self.vocab_size, self.min_frequency, self.lowercase,
                                                      self.max_length)], "vocabulary", shared=shared)
        return Decision(step=ctx.name, details={"vocab_size": size, "sampled_every": stride,
                                                "tokenizer": ctx.output.join(TRAINED)})


@register
@dataclasses.dataclass
class Tokenize(MapStep):
    """Encodes every document with a WordPiece tokenizer and packs the ids into rows of ``seq_len``
    (``[CLS] ... [SEP]``, documents joined by [SEP]) in ``<output>/tokens``, ready for
    ``llmray train``. Documents pass through unchanged."""

    name: ClassVar[str] = "tokenize"
    summary: ClassVar[str] = "encode and pack into fixed-length token rows in <output>/tokens (keeps every doc)"
    changes_documents: ClassVar[bool] = False
    #: A tokenizer directory or URL, or "trained" for the one a train_tokenizer step wrote before this step.
    tokenizer: str = "trained"
    seq_len: int = 128
    _tok: Any = dataclasses.field(default=None, init=False, repr=False, compare=False)
    _writer: Any = dataclasses.field(default=None, init=False, repr=False, compare=False)
    _counts: dict = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.seq_len < 8:
            raise JobError(f"seq_len: {self.seq_len} is too short (at least 8)")
        if self.tokenizer != "trained" and not is_url(self.tokenizer) and not Path(self.tokenizer).is_dir():
            raise JobError(f"tokenizer: no such directory: {self.tokenizer}")

    def _load(self, output: Storage | None) -> None:
        if self.tokenizer == "trained":
            if output is None:
                raise UserError("tokenize: tokenizer 'trained' works in a job after train_tokenizer; "
                                "give a tokenizer directory here")
            if not output.exists(f"{TRAINED}/tokenizer.json"):
                raise UserError("tokenize: tokenizer 'trained' needs a train_tokenizer step before it")
            directory = toks.local_copy(output, TRAINED)
        else:
            directory = toks.local_copy(Storage(self.tokenizer), "")
        tok = toks.load(directory)
        self._tok = (tok, toks.special_ids(tok, directory), directory)

    def begin_chunk(self, ctx: ChunkContext) -> None:
        self._load(ctx.output)
        self._writer = ShardWriter(ctx.output, f"tokens/{ctx.key}-{ctx.attempt}")
        self._counts = {"sequences": 0, "tokens": 0}

    def _rows(self, table: pa.Table) -> pa.Table:
        tok, special, _ = self._tok
        parts = []
        for start in range(0, table.num_rows, BATCH_DOCS):
            column = table.column(TEXT).slice(start, BATCH_DOCS)
            flat, lengths = toks.encode(tok, pc.fill_null(column, "").to_pylist())
            input_ids, mask = toks.pack(flat, lengths, self.seq_len, special)
            offsets = pa.array(np.arange(0, input_ids.size + 1, self.seq_len, dtype=np.int32))
            parts.append(pa.table({
                "input_ids": pa.ListArray.from_arrays(offsets, pa.array(input_ids.ravel())),
                "attention_mask": pa.ListArray.from_arrays(offsets, pa.array(mask.ravel())),
                "num_tokens": pa.array(mask.sum(axis=1, dtype=np.int32)),
            }, schema=TOKEN_SCHEMA))
        return pa.concat_tables(parts) if parts else TOKEN_SCHEMA.empty_table()

    def map(self, table: pa.Table) -> pa.Table:
        rows = self._rows(table)
        self._writer.write(rows)
        self._counts["sequences"] += rows.num_rows
        self._counts["tokens"] += int(pc.sum(rows.column("num_tokens")).as_py() or 0)
        return table

    def transform(self, table: pa.Table) -> pa.Table:
        """As a Ray Data batch function: the batch's token rows (documents in, sequences out)."""
        if self._tok is None:
            self._load(None)
        return self._rows(table)

    def end_chunk(self) -> dict[str, Any]:
        files = self._writer.close()
        return {"files": files, **self._counts}

    def finish(self, output: Storage, products: dict[str, Any]) -> dict[str, Any]:
        """Write ``tokens/_meta.json`` and a copy of the tokenizer, so the folder trains by itself."""
        if self._tok is None:
            self._load(output)
        sequences, tokens = int(products.get("sequences", 0)), int(products.get("tokens", 0))
        meta = {"seq_len": self.seq_len, "tokenizer": TOKENS_TOKENIZER, "sequences": sequences, "tokens": tokens,
                "padding": round(1 - tokens / max(1, sequences * self.seq_len), 4)}
        toks.upload(self._tok[2], output, f"tokens/{TOKENS_TOKENIZER}")
        output.put_json(f"tokens/{TOKENS_META}", meta)
        return {**meta, "tokens_dir": output.join("tokens")}
