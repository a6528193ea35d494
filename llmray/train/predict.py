"""``llmray predict``: label documents with a fine-tuned classification model, one JSON line each.

Runs in this process (torch uses every core), streaming the input in batches: memory holds one
batch, whatever the input's size. Output lines are ``{"id", "label", "score"}`` in input order;
``score`` is the softmax probability of the chosen label. The model is a Hugging Face
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
) -> int:
    """Write one prediction per input document to ``output``; return how many. ``storage_options``
    serve every URL (default: credentials from the environment)."""
    with fetched(os.path.expanduser(model_dir), storage_options) as directory:
        return _predict(directory, model_dir, inputs, output, batch_size, storage_options)


def _predict(
    directory: Path,
    model_dir: str,
    inputs: list[str],
    output: str,
    batch_size: int,
    options: dict[str, Any] | None,
) -> int:
    kind = models.require_classifier(directory, model_dir)
    model = models.load(directory, given=model_dir, kind=kind)
    labels = model.labels
    files = resolve(inputs, "--input", options)
    count = 0
    with _create(output, options) as f:
        for ids, texts in _documents(files, model.text_field, model.id_field, batch_size):
            best, probs = models.classify(model, texts, batch_size)
            f.write(
                "".join(
                    json.dumps({"id": i, "label": labels[k], "score": round(float(p[k]), 6)}) + "\n"
                    for i, k, p in zip(ids, best, probs, strict=True)
                ).encode()
            )
            count += len(ids)
    return count


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
    files: Files, text_field: str, id_field: str, batch_size: int
) -> Iterator[tuple[list, list[str]]]:
    """(ids, texts) in batches; a document without an id is named ``<file>:<row>``."""
    for path in files.paths:
        row = 0
        for table in read_tables(Files([path], files.format), [id_field, text_field]):
            if text_field not in table.column_names:
                raise UserError(f"--input: {path} has no text column {text_field!r}")
            texts = pc.fill_null(table.column(text_field), "").to_pylist()
            ids = (
                table.column(id_field).to_pylist()
                if id_field in table.column_names
                else [f"{posixpath.basename(path)}:{r}" for r in range(row, row + table.num_rows)]
            )
            row += table.num_rows
            for start in range(0, len(texts), batch_size):
                yield ids[start : start + batch_size], texts[start : start + batch_size]
