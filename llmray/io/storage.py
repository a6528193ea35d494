"""Where a run writes: a local directory or any fsspec URL (s3://, gs://, az://, file://), one interface.

Object stores have no rename, so nothing here relies on one: a small object is written in one put
(``put``: atomic on object stores, a temporary file and ``os.replace`` on disk) and a large one is
streamed to its final, attempt-unique name (``open_write``), which a later commit marker makes
official (see :mod:`llmray.io.writers`). A ``Storage`` pickles as its URL and options, so Ray tasks
on any node reopen it themselves; no node's local disk is assumed to be visible to another.
"""

from __future__ import annotations

import functools
import json
import os
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import fsspec

from llmray.errors import UserError

LOCAL_PROTOCOLS = ("file", "local")
#: Packages behind each protocol, and the extra that installs them.
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure", "abfss": "azure"}
#: Object-store clients retry for minutes by default; a probe should answer in seconds.
_FAST_FAIL = {"s3": {"config_kwargs": {"connect_timeout": 5, "read_timeout": 20, "retries": {"max_attempts": 2}}}}


def is_url(path: str) -> bool:
    """A path with a protocol (``s3://b/k``), as opposed to a local path."""
    return "://" in path


class Storage:
    """A directory tree at ``url``; every path argument is relative to it, ``/``-separated."""

    def __init__(self, url: str, options: dict[str, Any] | None = None):
        self.options = dict(options or {})
        if is_url(url) and url.split("://", 1)[0] in LOCAL_PROTOCOLS:
            url = url.split("://", 1)[1]
        self.local = not is_url(url)
        self.url = os.path.abspath(url) if self.local else url.rstrip("/")
        if self.protocol in EXTRAS:
            # Other processes write here too: a cached listing would hide their objects.
            self.options.setdefault("use_listings_cache", False)
        self._fs: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "options": self.options, "local": self.local, "_fs": None}

    def __repr__(self) -> str:
        return f"Storage({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Storage) and (self.url, self.options) == (other.url, other.options)

    def __hash__(self) -> int:
        return hash(self.url)

    @property
    def protocol(self) -> str:
        return "file" if not is_url(self.url) else self.url.split("://", 1)[0]

    @property
    def fs(self) -> Any:
        if self._fs is None:
            if self.local:
                self._fs = fsspec.filesystem("file")
            else:
                try:
                    self._fs = fsspec.core.url_to_fs(self.url, **self.options)[0]
                except (ImportError, ValueError) as exc:
                    raise UserError(f"cannot open {self.url}: {explain(exc, self.protocol)}") from None
        return self._fs

    def probe(self) -> None:
        """Write and delete a small object, so that a place the run cannot write to (no such bucket,
        no credentials, no permission, nothing answering, no space) stops it here in one line."""
        probe = self if self.local else Storage(self.url, {**_FAST_FAIL.get(self.protocol, {}), **self.options})
        rel = f"_llmray-probe-{uuid.uuid4().hex[:8]}"
        try:
            probe.put(rel, b"llmray")
            probe.delete(rel)
        except UserError:
            raise
        except Exception as exc:  # any client's error: say what it means for this URL
            raise UserError(f"cannot write to {self.url}: {explain(exc, self.protocol)}") from None

    def child(self, *parts: str) -> Storage:
        child = Storage.__new__(Storage)
        child.options, child.local, child._fs = self.options, self.local, self._fs
        child.url = self.join(*parts)
        return child

    def join(self, *parts: str) -> str:
        """The full URL (or absolute local path) of a relative path."""
        rel = "/".join(p.strip("/") for p in parts if p)
        return self.url if not rel else (os.path.join(self.url, rel) if self.local else f"{self.url}/{rel}")

    def _path(self, rel: str) -> str:
        full = self.join(rel)
        return full if self.local else self.fs._strip_protocol(full)

    # -- writing ---------------------------------------------------------------------------------

    def put(self, rel: str, data: bytes | Sequence[bytes | memoryview]) -> None:
        """Write a whole object at once: readers see the old one or the new one, never a part.
        ``data`` may come in pieces (an exchange object's header and parts), written one after the
        other without joining them first."""
        path = self._path(rel)
        pieces = [data] if isinstance(data, (bytes, bytearray, memoryview)) else data
        if self.local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
            with open(tmp, "wb") as f:
                f.writelines(pieces)
            os.replace(tmp, path)
        else:
            self.fs.pipe_file(path, pieces[0] if len(pieces) == 1 else b"".join(pieces))

    def put_json(self, rel: str, payload: Any) -> None:
        self.put(rel, json.dumps(payload, default=str).encode())

    def open_write(self, rel: str, buffered: bool = True) -> IO[bytes]:
        """A stream to a new object (on object stores it appears when closed, whole). Writers that
        hand over large buffers of their own (Arrow's) take a local file unbuffered: Python's buffer
        in between made them 6-8x slower (282 MB as Arrow IPC in 0.75 s, unbuffered 0.09 s)."""
        path = self._path(rel)
        if self.local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            return open(path, "wb", buffering=-1 if buffered else 0)
        return self.fs.open(path, "wb")

    # -- reading ---------------------------------------------------------------------------------

    def get(self, rel: str) -> bytes:
        path = self._path(rel)
        if self.local:
            with open(path, "rb") as f:
                return f.read()
        return self.fs.cat_file(path)

    def get_json(self, rel: str) -> Any:
        return json.loads(self.get(rel))

    def get_range(self, rel: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of an object. A negative ``start`` counts from the object's end, and
        then so does ``end`` (0 meaning the end itself)."""
        path = self._path(rel)
        if start < 0:
            size = self.size(rel)
            start, end = size + start, size + end
        if self.local:
            with open(path, "rb") as f:
                f.seek(start)
                return f.read(end - start)
        return self.fs.cat_file(path, start=start, end=end)

    def open_read(self, rel: str) -> IO[bytes]:
        path = self._path(rel)
        return open(path, "rb") if self.local else self.fs.open(path, "rb")

    def exists(self, rel: str = "") -> bool:
        path = self._path(rel)
        return os.path.exists(path) if self.local else self.fs.exists(path)

    def size(self, rel: str) -> int:
        path = self._path(rel)
        return os.path.getsize(path) if self.local else int(self.fs.size(path))

    def find(self, rel: str = "") -> list[str]:
        """Every file below ``rel``, as paths relative to this storage's root, sorted."""
        base = self._path(rel)
        if self.local:
            if not os.path.isdir(base):
                return []
            found = [os.path.relpath(os.path.join(d, f), self.url) for d, _, files in os.walk(base) for f in files]
            return sorted(p.replace(os.sep, "/") for p in found)
        root = self.fs._strip_protocol(self.url).rstrip("/")
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return []
        return sorted(posixpath.relpath(p, root) for p in found)

    def listdir(self, rel: str = "") -> list[str]:
        """Names directly below ``rel`` (files and folders)."""
        base = self._path(rel)
        if self.local:
            return sorted(os.listdir(base)) if os.path.isdir(base) else []
        try:
            return sorted(posixpath.basename(p.rstrip("/")) for p in self.fs.ls(base, detail=False))
        except FileNotFoundError:
            return []

    # -- removing --------------------------------------------------------------------------------

    def delete(self, rel: str) -> None:
        path = self._path(rel)
        try:
            os.unlink(path) if self.local else self.fs.rm_file(path)
        except FileNotFoundError:
            pass

    def delete_many(self, rels: list[str]) -> None:
        if not rels:
            return
        if self.local:
            for rel in rels:
                self.delete(rel)
        else:
            self.fs.rm([self._path(r) for r in rels])

    def delete_tree(self, rel: str = "") -> None:
        path = self._path(rel)
        if self.local:
            import shutil

            shutil.rmtree(path, ignore_errors=True)
            return
        try:
            self.fs.rm(path, recursive=True)
        except FileNotFoundError:
            pass


COPY_BYTES = 8 << 20


def download(store: Storage, target: Path) -> Path:
    """Copy the file at ``store``, or every file under it, into the local directory ``target``;
    returns the local copy (``target``, or the file in it). Nothing there is a UserError."""
    try:
        if store.fs.isfile(store.fs._strip_protocol(store.url)):
            name = store.url.rpartition("/")[2]
            with store.fs.open(store.url, "rb") as src, open(target / name, "wb") as dst:
                shutil.copyfileobj(src, dst, COPY_BYTES)
            return target / name
        names = store.find()
        if not names:
            raise UserError(f"no such file or directory: {store.url}")
        for rel in names:
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            with store.open_read(rel) as src, open(target / rel, "wb") as dst:
                shutil.copyfileobj(src, dst, COPY_BYTES)
    except UserError:
        raise
    except Exception as exc:  # any client's error (no bucket, no credentials, nothing answering)
        raise UserError(f"cannot read {store.url}: {explain(exc, store.protocol)}") from None
    return target


def local_copy(path: str, options: dict[str, Any] | None = None) -> str:
    """A local path holding what is at ``path``: the path itself, or for a URL a copy downloaded once
    per process (models, tokenizers: every Ray task, actor and replica that loads one)."""
    store = Storage(path, options)
    return store.url if store.local else _cached_copy(store.url, json.dumps(store.options, sort_keys=True, default=str))


@functools.lru_cache(maxsize=8)
def _cached_copy(url: str, options: str) -> str:
    return str(download(Storage(url, json.loads(options)), Path(tempfile.mkdtemp(prefix="llmray-"))))


def explain(exc: BaseException, protocol: str = "file") -> str:
    """What a storage client's exception means for the user, in a few words with what to do."""
    name = type(exc).__name__
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), name)
    if isinstance(exc, ImportError):
        extra = EXTRAS.get(protocol)
        return f"the {protocol}:// file system is not installed (pip install 'llmray[{extra}]')" if extra else text
    if "NoCredentials" in name or "credential" in text.lower():
        return ("no credentials found: set them in the environment (e.g. AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or a profile) or in the job's storage_options")
    if isinstance(exc, PermissionError) or "AccessDenied" in text or "Forbidden" in text:
        return "access denied: check the credentials and that they may write there"
    if isinstance(exc, FileNotFoundError) and protocol != "file":
        return f"{text}: create the bucket (or container), or fix the URL"
    if "Connect" in name or isinstance(exc, (ConnectionError, TimeoutError)):
        return f"nothing answers ({text}): check the endpoint URL and that the server is up"
    if isinstance(exc, OSError) and exc.errno == 28:
        return "no space left on the device: free space, or choose another place"
    if isinstance(exc, OSError) and exc.errno == 30:
        return "read-only file system: choose another place"
    return f"{name}: {text}"
