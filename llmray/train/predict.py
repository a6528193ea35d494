"""``llmray predict``: label documents with a fine-tuned classification model, one JSON line each.

Runs in this process (torch uses every core), streaming the input in batches: memory holds one
batch, whatever the input's size. Output lines are ``{"id", "label", "score"}`` in input order;
``score`` is the softmax probability of the chosen label. Where the input has a label column
(``label_field``), the summary adds accuracy and macro F1 over the documents that carry one. The model is a Hugging Face
sequence-classification directory or a fastText model (``llmray.models``: the same code as
``llmray serve`` and the ``classify`` step, so all three give the same labels; long texts are cut
to the model's sequence length as described there). The model, the inputs and the output may
each be a local path or a URL (a model at a URL is downloaded to a temporary directory first). The
output appears only complete: locally it is written under a temporary name and renamed, on an
object store it is one object made when the stream closes (and deleted if the run fails).
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pyarrow.compute as pc

from llmray import models
from llmray.errors import UserError
from llmray.io.storage import Storage
from llmray.train.data import Files, read_tables, resolve
from llmray.train.transfer import fetched


def predict(
    model_dir: str,
    inputs: list[str],
    output: str,
    batch_size: int = 64,
    storage_options: dict[str, Any] | None = None,
    label_field: str = "label",
) -> dict[str, Any]:
    """Write one prediction per input document to ``output``; return how many (``documents``) and,
    for inputs with labels, ``labelled``, ``accuracy`` and ``f1`` (macro). ``storage_options``
    serve every URL (default: credentials from the environment)."""
    with fetched(os.path.expanduser(model_dir), storage_options) as directory:
        return _predict(directory, model_dir, inputs, output, batch_size, storage_options, label_field)


def _predict(
    directory: Path,
    model_dir: str,
    inputs: list[str],
    output: str,
    batch_size: int,
    options: dict[str, Any] | None,
    label_field: str,
) -> dict[str, Any]:
    kind = models.require_classifier(directory, model_dir)
    model = models.load(directory, given=model_dir, kind=kind)
    labels = model.labels
    files = resolve(inputs, "--input", options)
    count, pairs = 0, Counter()
    with _create(output, options) as f:
        for ids, texts, truth in _documents(files, model.text_field, model.id_field, label_field, batch_size):
            best, probs = models.classify(model, texts, batch_size)
            f.write(
                "".join(
                    json.dumps({"id": i, "label": labels[k], "score": round(float(p[k]), 6)}) + "\n"
                    for i, k, p in zip(ids, best, probs, strict=True)
                ).encode()
            )
            pairs.update((str(t), str(labels[k])) for t, k in zip(truth, best, strict=True) if t is not None)
            count += len(ids)
    return {"documents": count, **scores(pairs)}


def scores(pairs: Counter) -> dict[str, Any]:
    """Accuracy and macro F1 from counts of (true label, predicted label); {} without labels."""
    total = sum(pairs.values())
    if not total:
        return {}
    classes = {t for t, _ in pairs} | {p for _, p in pairs}
    f1 = []
    for c in sorted(classes):
        tp = pairs[(c, c)]
        predicted = sum(n for (_, p), n in pairs.items() if p == c)
        actual = sum(n for (t, _), n in pairs.items() if t == c)
        f1.append(2 * tp / (predicted + actual) if predicted + actual else 0.0)
    correct = sum(n for (t, p), n in pairs.items() if t == p)
    return {"labelled": total, "accuracy": round(correct / total, 5), "f1": round(sum(f1) / len(f1), 5)}


@contextlib.contextmanager
def _create(output: str, options: dict[str, Any] | None) -> Iterator[IO[bytes]]:
    """A stream to ``output`` that appears only complete (see the module's docstring)."""
    parent, name = posixpath.split(os.path.expanduser(output).rstrip("/"))
    place = Storage(parent or ".", options)
    if place.local:
        tmp = f"{name}.tmp"
        with place.open_write(tmp) as f:
            yield f
        os.replace(place.join(tmp), place.join(name))
        return
    stream = place.open_write(name)
    try:
        yield stream
    except BaseException:
        stream.close()
        place.delete(name)
        raise
    stream.close()


def _documents(
    files: Files, text_field: str, id_field: str, label_field: str, batch_size: int
) -> Iterator[tuple[list, list[str], list]]:
    """(ids, texts, true labels or None) in batches; a document without an id is named
    ``<file>:<row>``."""
    for path in files.paths:
        row = 0
        for table in read_tables(Files([path], files.format), [id_field, text_field, label_field]):
            if text_field not in table.column_names:
                raise UserError(f"--input: {path} has no text column {text_field!r}")
            texts = pc.fill_null(table.column(text_field), "").to_pylist()
            ids = (
                table.column(id_field).to_pylist()
                if id_field in table.column_names
                else [f"{posixpath.basename(path)}:{r}" for r in range(row, row + table.num_rows)]
            )
            truth = (table.column(label_field).to_pylist() if label_field in table.column_names
                     else [None] * table.num_rows)
            row += table.num_rows
            for start in range(0, len(texts), batch_size):
                end = start + batch_size
                yield ids[start:end], texts[start:end], truth[start:end]
