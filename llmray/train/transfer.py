"""Training's files between this machine and where a run lives: a local directory or an fsspec URL,
through :class:`llmray.io.storage.Storage` (one ``storage_options`` for data and output).

torch, transformers and tokenizers read and write local directories only, so a model, tokenizer
or checkpoint is built in a local directory and published whole (``staging``), and read from a
local copy (``io.storage.local_copy``, ``fetched``). Ray Data and Ray Train get the same file system, with the
same options (endpoint, credentials), as a pyarrow one (``arrow``). Nothing here imports Ray.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from llmray.io.storage import COPY_BYTES, Storage, download


def arrow(url: str, options: dict[str, Any] | None = None) -> tuple[pafs.FileSystem | None, str]:
    """(file system, path) for pyarrow readers, Ray Data and ``RunConfig.storage_filesystem``: None and
    the absolute path for a local place; else the Storage's fsspec file system wrapped for pyarrow,
    and the path without its protocol (how Ray wants it next to a custom file system)."""
    store = Storage(url, options)
    if store.local:
        return None, store.url
    return pafs.PyFileSystem(pafs.FSSpecHandler(store.fs)), store.fs._strip_protocol(store.url)


def upload(directory: Path, store: Storage, last: str | None = None) -> None:
    """Copy a local directory's files to ``store``, streamed; ``last`` (the file that marks the
    copy complete, e.g. a checkpoint's state.json) goes last."""
    files = sorted((p for p in directory.rglob("*") if p.is_file()), key=lambda p: (p.name == last, str(p)))
    for path in files:
        with open(path, "rb") as src, store.open_write(path.relative_to(directory).as_posix()) as dst:
            shutil.copyfileobj(src, dst, COPY_BYTES)


@contextlib.contextmanager
def fetched(path: str, options: dict[str, Any] | None = None) -> Iterator[Path]:
    """A local copy of the directory at ``path`` for the duration of the block (itself if local)."""
    store = Storage(path, options)
    if store.local:
        yield Path(store.url)
        return
    with tempfile.TemporaryDirectory(prefix="llmray-") as tmp:
        yield download(store, Path(tmp))


@contextlib.contextmanager
def staging(store: Storage, rel: str, last: str | None = None) -> Iterator[Path]:
    """A local directory to fill; when the block ends it replaces ``rel`` on ``store`` whole. Locally
    it is a sibling renamed into place; on an object store (no rename) it is uploaded with
    ``last`` last, so a reader that waits for ``last`` never sees part of it."""
    if store.local:
        final = Path(store.join(rel))
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        yield tmp
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        return
    with tempfile.TemporaryDirectory(prefix="llmray-") as tmp:
        yield Path(tmp)
        store.delete_tree(rel)
        upload(Path(tmp), store.child(rel), last)
