"""Tokenization as data-side steps: ``train_tokenizer`` (a WordPiece vocabulary from the corpus)
and ``tokenize`` (token ids packed into fixed-length sequences for MLM pretraining).

Both are global steps that pass every document through unchanged (docs_out == docs_in, nothing
dropped) and write their product beside the data: ``<output>/tokenizer/`` and ``<output>/tokens/``.
Work runs as one Ray task per parquet file of the previous segment; each streams its file in
batches, so no process holds the corpus and the driver only sees counts.

    steps:
      - train_tokenizer: {vocab_size: 30522}
      - tokenize: {tokenizer: trained, seq_len: 128}

``tokens/`` holds parquet shards with ``input_ids`` (list<int32>, each ``[CLS] ... [SEP]`` of
``seq_len``, documents joined by [SEP], the last row of a batch padded), ``attention_mask``
(list<int8>) and ``num_tokens``; ``_meta.json`` (sequence length, counts) and ``_tokenizer/`` (a copy
of the tokenizer), so ``llmray train --data <output>/tokens`` needs nothing else. The leading
underscores keep them out of parquet dataset readers (pyarrow skips such names).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from llmray.errors import JobError, UserError
from llmray.ops.base import TEXT, GlobalOp, register
from llmray.pipeline.context import GlobalContext, GlobalResult
from llmray.train import tokenizer as toks
from llmray.train.tokenizer import TOKENS_META, TOKENS_TOKENIZER

#: Documents encoded per call of the tokenizer (it parallelizes within a call).
BATCH_DOCS = 1024
TOKEN_SCHEMA = pa.schema(
    [("input_ids", pa.list_(pa.int32())), ("attention_mask", pa.list_(pa.int8())), ("num_tokens", pa.int32())]
)


def _files(ctx: GlobalContext) -> list[str]:
    return sorted(str(p) for p in ctx.input_dir.rglob("*.parquet"))


def _pass_through(path: str, ctx_output: str, index: int) -> None:
    """The step keeps every document unchanged: its input file is its output file."""
    target = Path(ctx_output) / f"{index:05d}-{Path(path).name}"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(path, target)
    except OSError:
        shutil.copyfile(path, target)


def _texts(path: str) -> Iterator[pa.Array]:
    """The text column of one parquet file, batch by batch."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_DOCS, columns=[TEXT], use_threads=False):
        yield batch.column(0)


def _text_bytes(column: pa.Array) -> int:
    return int(pc.sum(pc.binary_length(column)).as_py() or 0)


def _run_tasks(fn: Any, args: list[tuple]) -> list[dict[str, int]]:
    import ray

    task = ray.remote(num_cpus=1)(fn)
    return ray.get([task.remote(*a) for a in args])


def _result(parts: list[dict[str, int]], details: dict[str, Any]) -> GlobalResult:
    docs, size = sum(p["docs"] for p in parts), sum(p["bytes"] for p in parts)
    return GlobalResult(
        docs_in=docs, docs_out=docs, dropped={}, bytes_in=size, bytes_out=size, details=details
    )


def _sample_file(path: str, index: int, output_dir: str, sample_dir: str, stride: int) -> dict[str, int]:
    """Pass one file through and write every ``stride``-th text to the sample for the vocabulary."""
    _pass_through(path, output_dir, index)
    docs = size = 0
    kept: list[pa.Array] = []
    for column in _texts(path):
        rows = np.arange(docs, docs + len(column))
        kept.append(column.filter(pa.array(rows % stride == 0)))
        docs += len(column)
        size += _text_bytes(column)
    if kept:
        pq.write_table(pa.table({TEXT: pa.concat_arrays(kept)}), Path(sample_dir) / f"{index:05d}.parquet")
    return {"docs": docs, "bytes": size}


def _train_vocabulary(
    sample_dir: str, out_dir: str, vocab_size: int, min_frequency: int, lowercase: bool, max_length: int
) -> dict[str, int]:
    """Train on the sample, streamed shard by shard; runs as one task (the trainer is multi-threaded)."""

    def batches() -> Iterator[list[str]]:
        for shard in sorted(Path(sample_dir).glob("*.parquet")):
            for column in _texts(str(shard)):
                yield pc.fill_null(column, "").to_pylist()

    toks.train_wordpiece(batches(), Path(out_dir), vocab_size, min_frequency, lowercase, max_length)
    return {"vocab_size": toks.load(out_dir).get_vocab_size()}


@register
@dataclasses.dataclass
class TrainTokenizer(GlobalOp):
    """Trains a BERT WordPiece vocabulary (HF ``tokenizers``) on an even sample of at most
    ``max_docs`` documents and saves it to ``<output>/tokenizer`` (loadable by transformers'
    ``AutoTokenizer``). Documents pass through unchanged."""

    name: ClassVar[str] = "train_tokenizer"
    summary: ClassVar[str] = (
        "train a WordPiece vocabulary on the corpus into <output>/tokenizer (keeps every doc)"
    )
    vocab_size: int = 30522
    min_frequency: int = 2
    lowercase: bool = True
    max_docs: int = 1_000_000
    #: model_max_length written into the tokenizer config.
    max_length: int = 512

    def __post_init__(self) -> None:
        if self.vocab_size < 16 or self.min_frequency < 1 or self.max_docs < 1:
            raise JobError("train_tokenizer: vocab_size >= 16, min_frequency >= 1 and max_docs >= 1, please")

    def run(self, ctx: GlobalContext) -> GlobalResult:
        import ray

        files = _files(ctx)
        total = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        stride = max(1, -(-total // self.max_docs))
        sample = ctx.work_dir / "tokenizer-sample"
        shutil.rmtree(sample, ignore_errors=True)
        sample.mkdir(parents=True)
        parts = _run_tasks(
            _sample_file, [(f, i, str(ctx.output_dir), str(sample), stride) for i, f in enumerate(files)]
        )
        target = ctx.output_root / "tokenizer"
        shutil.rmtree(target, ignore_errors=True)
        trainer = ray.remote(num_cpus=1)(_train_vocabulary)
        trained = ray.get(
            trainer.remote(
                str(sample), str(target), self.vocab_size, self.min_frequency, self.lowercase, self.max_length
            )
        )
        shutil.rmtree(sample, ignore_errors=True)
        return _result(
            parts, {"vocab_size": trained["vocab_size"], "sampled_every": stride, "tokenizer": str(target)}
        )


def _tokenize_file(
    path: str, index: int, output_dir: str, tokens_dir: str, tokenizer_dir: str, seq_len: int
) -> dict[str, int]:
    """Pass one file through and write its packed token rows as one shard (temporary name, then rename)."""
    _pass_through(path, output_dir, index)
    tok = toks.load(tokenizer_dir)
    special = toks.special_ids(tok, tokenizer_dir)
    target = Path(tokens_dir) / f"{index:05d}-{Path(path).stem}.parquet"
    tmp = target.with_name(target.name + ".tmp")
    counts = {"docs": 0, "bytes": 0, "sequences": 0, "tokens": 0}
    with pq.ParquetWriter(tmp, TOKEN_SCHEMA) as writer:
        for column in _texts(path):
            flat, lengths = toks.encode(tok, pc.fill_null(column, "").to_pylist())
            input_ids, mask = toks.pack(flat, lengths, seq_len, special)
            n = mask.sum(axis=1, dtype=np.int32)
            offsets = pa.array(np.arange(0, input_ids.size + 1, seq_len, dtype=np.int32))
            writer.write_table(
                pa.table(
                    {
                        "input_ids": pa.ListArray.from_arrays(offsets, pa.array(input_ids.ravel())),
                        "attention_mask": pa.ListArray.from_arrays(offsets, pa.array(mask.ravel())),
                        "num_tokens": pa.array(n),
                    },
                    schema=TOKEN_SCHEMA,
                )
            )
            counts["docs"] += len(column)
            counts["bytes"] += _text_bytes(column)
            counts["sequences"] += len(input_ids)
            counts["tokens"] += int(n.sum())
    os.replace(tmp, target)
    return counts


@register
@dataclasses.dataclass
class Tokenize(GlobalOp):
    """Encodes every document with a WordPiece tokenizer and packs the ids into rows of ``seq_len``
    (``[CLS] ... [SEP]``, documents joined by [SEP]) in ``<output>/tokens``, ready for
    ``llmray train``. Documents pass through unchanged."""

    name: ClassVar[str] = "tokenize"
    summary: ClassVar[str] = (
        "encode and pack into fixed-length token rows in <output>/tokens (keeps every doc)"
    )
    #: A tokenizer directory, or "trained" for the one a train_tokenizer step wrote before this step.
    tokenizer: str = "trained"
    seq_len: int = 128

    def __post_init__(self) -> None:
        if self.seq_len < 8:
            raise JobError(f"tokenize.seq_len: {self.seq_len} is too short (at least 8)")
        if self.tokenizer != "trained" and not Path(self.tokenizer).is_dir():
            raise JobError(f"tokenize.tokenizer: no such directory: {self.tokenizer}")

    def run(self, ctx: GlobalContext) -> GlobalResult:
        source = (
            ctx.output_root / "tokenizer" if self.tokenizer == "trained" else Path(self.tokenizer).resolve()
        )
        if not source.is_dir():
            raise UserError("tokenize: tokenizer 'trained' needs a train_tokenizer step before it")
        toks.special_ids(toks.load(str(source)), str(source))  # a clear error before any task starts
        tokens_dir = ctx.output_root / "tokens"
        shutil.rmtree(tokens_dir, ignore_errors=True)
        tokens_dir.mkdir(parents=True)
        shutil.copytree(source, tokens_dir / TOKENS_TOKENIZER)
        files = _files(ctx)
        parts = _run_tasks(
            _tokenize_file,
            [
                (f, i, str(ctx.output_dir), str(tokens_dir), str(source), self.seq_len)
                for i, f in enumerate(files)
            ],
        )
        counts = {k: sum(p[k] for p in parts) for k in ("sequences", "tokens")}
        meta = {
            "seq_len": self.seq_len,
            "tokenizer": TOKENS_TOKENIZER,
            **counts,
            "padding": round(1 - counts["tokens"] / max(1, counts["sequences"] * self.seq_len), 4),
        }
        (tokens_dir / TOKENS_META).write_text(json.dumps(meta, indent=2) + "\n")
        return _result(parts, {**meta, "tokens_dir": str(tokens_dir)})
