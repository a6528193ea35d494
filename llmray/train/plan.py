"""Preflight: everything a run needs, checked and resolved on the driver before any worker starts.

Each problem the user can fix is one ``UserError`` line naming the key or file: an output the run
cannot write to (probed first, by writing and deleting a small object: no bucket, no credentials,
nothing answering), missing or empty data, a missing label column, labels of mixed types, a model
directory without weights, a sequence length beyond the model's positions, an output that already
holds another run. What comes out is a ``Plan``: absolute paths or URLs, labels, vocabulary and
step counts, small and picklable, shipped as is to Ray workers (which fetch what lives at a URL
themselves: no node's disk is assumed to be visible to another).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import json
import os
import posixpath
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from llmray import tokenizer as toks
from llmray.errors import UserError
from llmray.io.storage import Storage, is_url, local_copy
from llmray.train.config import TrainSpec
from llmray.train.data import Collate, Featurizer, Files, holdout_mask, read_json, read_tables, resolve
from llmray.train.model import build, has_weights, latest_checkpoint
from llmray.train.transfer import staging


@dataclasses.dataclass
class Plan:
    spec: TrainSpec
    #: An absolute local path or a URL, as are the other locations below.
    output: str
    #: "text" (tokenized on the fly) or "tokens" (shards of the tokenize step).
    kind: str
    train: Files
    eval: Files | None
    columns: list[str]
    eval_columns: list[str]
    tokenizer_dir: str
    vocab_size: int
    special: toks.SpecialIds
    model_path: str | None
    sizes: dict[str, Any]
    labels: list
    total_steps: int
    epochs: int | None
    train_rows: int | None
    #: The checkpoint to continue from (``--resume``), if any.
    resume_from: str | None

    @property
    def has_eval(self) -> bool:
        return self.eval is not None or self.spec.eval_fraction > 0

    def featurizer(self, side: str) -> Featurizer:
        """Rows of one side: "train" (without held-out rows) or "eval" (eval files, or held-out rows)."""
        s = self.spec
        holdout = s.eval_fraction if self.eval is None else 0.0
        return Featurizer(
            task=s.task,
            kind=self.kind,
            tokenizer_dir=self.tokenizer_dir,
            seq_len=s.seq_len,
            text_field=s.text_field,
            label_field=s.label_field,
            id_field=s.id_field,
            labels=self.labels,
            holdout=holdout,
            side=side,
            seed=s.seed,
            storage_options=s.storage_options,
        )

    def output_storage(self) -> Storage:
        return Storage(self.output, self.spec.storage_options)

    def eval_source(self) -> tuple[Files, list[str]]:
        return (self.eval, self.eval_columns) if self.eval is not None else (self.train, self.columns)

    def collate(self, seed: int) -> Collate:
        return Collate(self.spec.task, self.special, self.vocab_size, self.spec.mlm_probability, seed)

    def new_model(self) -> Any:
        return build(
            self.spec.task,
            path=local_copy(self.model_path, self.spec.storage_options) if self.model_path else None,
            sizes=self.sizes,
            vocab_size=self.vocab_size,
            pad_id=self.special.pad,
            labels=self.labels,
            seed=self.spec.seed,
        )


def prepare(spec: TrainSpec, resume: bool = False) -> Plan:
    """Check the spec against the output, data and model; train a tokenizer if the run needs one."""
    options = spec.storage_options
    out = Storage(os.path.expanduser(spec.output), options)
    out.probe()
    resume_from = _check_output(out, resume)
    train = resolve(spec.data, "train.data", options)
    evals = resolve(spec.eval_data, "train.eval_data", options) if spec.eval_data else None
    kind = "tokens" if train.format == "parquet" and "input_ids" in train.columns(train.paths[0]) else "text"
    columns, rows = _check_data(spec, train, kind, "train.data")
    eval_columns = _check_data(spec, evals, kind, "train.eval_data")[0] if evals else columns
    labels: list = []
    if spec.task == "classification":
        labels, rows = _labels(spec, train, evals)
    model_path, sizes, positions, model_vocab = _check_model(spec)
    if spec.seq_len > positions:
        raise UserError(
            f"train.seq_len: {spec.seq_len} is beyond the model's {positions} positions "
            f"(max_position_embeddings); use seq_len <= {positions}"
        )
    if kind == "tokens":
        tokenizer_dir, rows = _check_token_shards(spec, train)
    else:
        tokenizer_dir = _tokenizer_dir(spec, model_path, train, columns, out, resume_from is not None)
    tok = toks.load(local_copy(tokenizer_dir, options))
    special = toks.special_ids(tok, tokenizer_dir)
    vocab_size = tok.get_vocab_size()
    if model_vocab is not None and vocab_size > model_vocab:
        raise UserError(
            f"train.tokenizer: {tokenizer_dir} has {vocab_size} tokens but the model's vocabulary "
            f"holds {model_vocab}; use the model's own tokenizer"
        )
    total_steps, epochs = _steps(spec, kind, rows, evals is None)
    return Plan(
        spec=spec,
        output=out.url,
        kind=kind,
        train=train,
        eval=evals,
        columns=columns,
        eval_columns=eval_columns,
        tokenizer_dir=tokenizer_dir,
        vocab_size=vocab_size,
        special=special,
        model_path=model_path,
        sizes=sizes,
        labels=labels,
        total_steps=total_steps,
        epochs=epochs,
        train_rows=rows,
        resume_from=resume_from,
    )


def resolve_dir(path: str, where: str, options: dict[str, Any] | None = None) -> str:
    """A local directory, a URL (fetched once to check that it holds something), or
    ``package://<python package>/<dir>`` inside an installed package (found without importing it)."""
    if path.startswith("package://"):
        package, _, rest = path.removeprefix("package://").partition("/")
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise UserError(f"{where}: package {package!r} is not installed (pip install it first)")
        directory = Path(list(found.submodule_search_locations)[0]) / rest
    elif is_url(path):
        try:
            local_copy(path, options)
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from None
        return path
    else:
        directory = Path(path).expanduser().resolve()
    if not directory.is_dir():
        raise UserError(f"{where}: no such directory: {directory}")
    return str(directory)


def _check_output(out: Storage, resume: bool) -> str | None:
    checkpoints = out.child("checkpoints")
    if resume:
        last = latest_checkpoint(checkpoints)
        if last is None:
            raise UserError(f"--resume: no checkpoint in {checkpoints.url} to continue from")
        return last
    if checkpoints.listdir():
        raise UserError(
            f"{out.url} already holds a training run (checkpoints/); pass --resume to continue it, "
            f"or choose another --output"
        )
    return None


def _check_data(spec: TrainSpec, files: Files, kind: str, where: str) -> tuple[list[str], int | None]:
    """Columns to read (present in every file) and the row count when the metadata tells it."""
    if kind == "tokens":
        needed = ["input_ids", "attention_mask"]
        if spec.task != "mlm":
            raise UserError(f"{where}: token shards train mlm only; classification needs text and labels")
    else:
        needed = [spec.text_field] + ([spec.label_field] if spec.task == "classification" else [])
    present: set[str] | None = None
    for path in files.paths:
        if files.format == "parquet":
            names = set(files.columns(path))
        else:
            record = _first_record(files, path)
            if record is None:
                continue  # an empty file: nothing to check
            names = set(record)
        for column in needed:
            if column not in names:
                is_label = column == spec.label_field and kind == "text"
                raise UserError(
                    f"{where}: {path} has no {'label ' if is_label else ''}column {column!r}"
                    + (" (set train.label_field)" if is_label else "")
                )
        present = names if present is None else present & names
    rows = files.rows() if files.format == "parquet" else None
    if rows == 0 or present is None:
        raise UserError(f"{where}: the data is empty (no rows in {', '.join(files.paths[:3])})")
    columns = needed + ([spec.id_field] if kind == "text" and spec.id_field in present else [])
    return columns, rows


def _first_record(files: Files, path: str) -> dict | None:
    """The first record of a JSON lines file (its keys stand for the file's columns), reading no further."""
    with files.open(path) as raw:
        for line in io.TextIOWrapper(raw, encoding="utf-8"):
            if line.strip():
                try:
                    record = json.loads(line)
                except ValueError:
                    raise UserError(f"{path}: the first record is not valid JSON") from None
                return record if isinstance(record, dict) else None
    return None


def _label_columns(spec: TrainSpec, files: Files) -> Iterator[tuple[str, pa.ChunkedArray]]:
    for path in files.paths:
        if files.format == "parquet":
            with files.open(path) as f:
                yield path, pq.read_table(f, columns=[spec.label_field]).column(0)
            continue
        try:
            yield path, read_json(files, path).column(spec.label_field)
        except UserError as exc:
            if f"/{spec.label_field})" in str(exc):
                raise UserError(
                    f"{path}: labels of mixed types in column {spec.label_field!r} "
                    f"(e.g. strings and numbers); use one type"
                ) from None
            raise


def _labels(spec: TrainSpec, train: Files, evals: Files | None) -> tuple[list, int]:
    """(sorted label values of the training and eval data, training rows); every row needs a label,
    all of one type."""
    kinds: dict[str, str] = {}
    values: list = []
    rows = 0
    for files in [train] + ([evals] if evals else []):
        for path, column in _label_columns(spec, files):
            rows += len(column) if files is train else 0
            kind = (
                "string"
                if pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
                else ("integer" if pa.types.is_integer(column.type) else str(column.type))
            )
            if kind not in ("string", "integer"):
                raise UserError(
                    f"{path}: labels must be strings or integers, got {kind} in {spec.label_field!r}"
                )
            if column.null_count:
                raise UserError(f"{path}: {column.null_count} rows have no label in {spec.label_field!r}")
            kinds.setdefault(kind, path)
            values += pc.unique(column).to_pylist()
    if len(kinds) > 1:
        found = ", ".join(f"{kind} in {path}" for kind, path in kinds.items())
        raise UserError(f"train.data: labels of mixed types ({found}); use one type")
    labels = sorted(set(values))
    if len(labels) < 2:
        raise UserError(
            f"train.data: only one label value ({labels[0]!r}) in {spec.label_field!r}; "
            f"classification needs at least two"
        )
    return labels, rows


def _check_model(spec: TrainSpec) -> tuple[str | None, dict[str, Any], int, int | None]:
    """(checkpoint location, sizes of a new model, position limit, model vocabulary size or None)."""
    if not spec.model.path:
        sizes = dict(spec.model.config)
        sizes.setdefault("max_position_embeddings", max(512, spec.seq_len))
        return None, sizes, sizes["max_position_embeddings"], None
    location = resolve_dir(spec.model.path, "train.model.path", spec.storage_options)
    directory = Path(local_copy(location, spec.storage_options))
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise UserError(f"train.model.path: {location} is not a model directory (no config.json)")
    if not has_weights(directory):
        raise UserError(
            f"train.model.path: {location} has no weights (model.safetensors or pytorch_model.bin)"
        )
    config = json.loads(config_file.read_text())
    positions = int(config.get("max_position_embeddings", 512))
    if "roberta" in str(config.get("model_type", "")):
        positions -= int(config.get("pad_token_id", 1)) + 1  # RoBERTa offsets positions past padding
    return location, {}, positions, config.get("vocab_size")


def _check_token_shards(spec: TrainSpec, train: Files) -> tuple[str, int]:
    """The tokenizer saved beside the shards, and the sequence count; the shard length must match."""
    tokens = Storage(posixpath.dirname(train.paths[0]), spec.storage_options)
    if not tokens.exists(toks.TOKENS_META):
        raise UserError(
            f"train.data: token shards without {toks.TOKENS_META} beside them ({tokens.url}); "
            f"point train.data at the tokens/ directory the tokenize step wrote"
        )
    meta = tokens.get_json(toks.TOKENS_META)
    if meta["seq_len"] != spec.seq_len:
        raise UserError(
            f"train.seq_len: {spec.seq_len} differs from the token shards' {meta['seq_len']} "
            f"({tokens.join(toks.TOKENS_META)}); set seq_len: {meta['seq_len']}"
        )
    return tokens.join(toks.TOKENS_TOKENIZER), train.rows()


def _tokenizer_dir(
    spec: TrainSpec, model_path: str | None, train: Files, columns: list[str], out: Storage, resuming: bool
) -> str:
    """The tokenizer named by the job, else the model's own, else one trained on the training text
    (into ``<output>/tokenizer``)."""
    if spec.tokenizer.path:
        return resolve_dir(spec.tokenizer.path, "train.tokenizer.path", spec.storage_options)
    if model_path is not None:
        directory = Path(local_copy(model_path, spec.storage_options))
        if not any((directory / f).is_file() for f in ("tokenizer.json", "vocab.txt")):
            raise UserError(f"train.tokenizer.path: {model_path} has no tokenizer; give train.tokenizer.path")
        return model_path
    if resuming and out.exists("tokenizer/tokenizer.json"):
        return out.join("tokenizer")
    featurizer = Featurizer(
        task=spec.task,
        kind="text",
        tokenizer_dir="",
        seq_len=spec.seq_len,
        text_field=spec.text_field,
        id_field=spec.id_field,
        holdout=spec.eval_fraction,
        seed=spec.seed,
    )
    texts = _sample_texts(train, columns, featurizer, spec.tokenizer.max_docs)
    t = spec.tokenizer
    with staging(out, "tokenizer", last="tokenizer.json") as directory:
        toks.train_wordpiece(texts, directory, t.vocab_size, t.min_frequency, t.lowercase, max_length=spec.seq_len)
    return out.join("tokenizer")


def _sample_texts(
    train: Files, columns: list[str], featurizer: Featurizer, max_docs: int
) -> Iterator[list[str]]:
    """Batches of training texts (held-out rows excluded), an even sample of at most ``max_docs``."""
    rows = train.rows() if train.format == "parquet" else None
    stride = max(1, -(-rows // max_docs)) if rows else 1
    taken = seen = 0
    for table in read_tables(train, columns):
        keep = ~holdout_mask(
            table, [featurizer.id_field, featurizer.text_field], featurizer.holdout, featurizer.seed
        )
        keep &= (np.arange(seen, seen + table.num_rows) % stride) == 0
        seen += table.num_rows
        texts = pc.fill_null(table.column(featurizer.text_field).filter(pa.array(keep)), "").to_pylist()
        texts = texts[: max_docs - taken]
        taken += len(texts)
        yield texts
        if taken >= max_docs:
            return


def _steps(spec: TrainSpec, kind: str, rows: int | None, holdout: bool) -> tuple[int, int | None]:
    """(optimizer steps for the schedule, epochs cap); refuses data too small for one batch per worker."""
    per_step = spec.batch_size * spec.num_workers * spec.grad_accum
    known = rows if (kind == "tokens" or spec.task == "classification") else None
    usable = 0
    if known is not None:
        usable = int(known * (1 - spec.eval_fraction)) if holdout else known
        if usable < spec.batch_size * spec.num_workers:
            raise UserError(
                f"train.data: {usable} training rows, fewer than one batch per worker "
                f"(batch_size {spec.batch_size} x num_workers {spec.num_workers})"
            )
    epochs = spec.epochs if spec.epochs is not None or spec.max_steps is not None else 1
    if spec.max_steps is not None:
        return spec.max_steps, epochs
    if known is None:
        raise UserError(
            "train.max_steps: required for mlm on raw text (the number of packed sequences is "
            "not known before tokenizing); or tokenize in the data pipeline first"
        )
    return max(1, usable // per_step) * (epochs or 1), epochs
