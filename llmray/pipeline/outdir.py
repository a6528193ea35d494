"""What a run owns in its output location: the lease, the plan, the manifest, and nothing else.

* **Where a run may write.** Not ``/``, the home directory, the current directory, the checkout's
  own ``data/``, or a folder that holds the run's input: one line and exit status 2.
* **Lease.** A run holds ``_progress/lease.json`` (owner and heartbeat) while it works; a second run
  on the same output stops at once naming the holder. A lease whose holder is gone (a dead process
  on this host, or no heartbeat for ``STALE_S``) is taken over.
* **Overwrite.** ``--overwrite`` removes only what llmray wrote there: the files its manifest or
  unit markers list, llmray-named leftovers of failed attempts in its folders, and its own
  top-level files. A file it did not write inside its folders (``data/mine.txt``) makes it refuse
  instead; files beside its folders are never touched.
* **Manifest.** A finished run lists every file it wrote with its size (``_progress/manifest.json``);
  a rerun checks them, so a finished output whose data was deleted is redone, not reported done.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from llmray.errors import UserError
from llmray.io.storage import Storage, is_url

#: Top-level names a run writes.
OWNED_FILES = ("stats.json", "report.html", "job.json", "README.md")
OWNED_DIRS = ("data", "rejects", "quarantine", "clusters", "tokens", "tokenizer", "_progress", "_work")
#: Folders whose files are committed by unit markers (anything else in them is a leftover).
COMMITTED = ("data", "rejects", "quarantine", "tokens")
#: Names llmray gives files in its folders: unit shards, global-step outputs, product indexes.
_LLMRAY_NAME = re.compile(r"(^|/)(i\d+-[0-9a-f]{12}-[0-9a-f]{8}(-\d{4})?\.(parquet|jsonl\.gz|jsonl)"
                          r"|[a-z_0-9-]+-\d{5}\.parquet|_meta\.json|_tokenizer/.*"
                          r"|tokenizer\.json|vocab\.txt|tokenizer_config\.json|special_tokens_map\.json)$")
LEASE = "_progress/lease.json"
MANIFEST = "_progress/manifest.json"
HEARTBEAT_S = 10.0
#: How long a claimed lease must stand before the run may rely on it.
SETTLE_S = 0.2
STALE_S = 60.0


def check_location(output: Storage, input_paths: list[str]) -> None:
    """Refuse outputs that would mix the run's files with others' or overwrite its own input."""
    if output.local:
        path = Path(output.url).resolve()
        home = Path.home().resolve()
        checkout = Path(__file__).resolve().parents[2]
        refused = {Path("/"): "the root directory", home: "your home directory", Path.cwd().resolve():
                   "the current directory", (checkout / "data").resolve(): "the checkout's shipped data"}
        if path in refused:
            raise UserError(f"{output.url} is {refused[path]}: write into a folder of its own "
                            f"(e.g. --output out/run)")
        for given in input_paths:
            if is_url(given):
                continue
            source = Path(given.split("*", 1)[0] or ".").resolve()
            if source == path or path in source.parents:
                raise UserError(f"{output.url} holds the input {given}: choose an output outside it")
            if source in path.parents and source.is_dir():
                raise UserError(f"{output.url} is inside the input folder {given} (a rerun would read the "
                                f"output as input): choose an output outside it")
    else:
        for given in (g.rstrip("/") for g in input_paths if is_url(g)):
            if given == output.url or given.startswith(output.url + "/") or output.url.startswith(given + "/"):
                raise UserError(f"{output.url} and the input {given} overlap: choose an output outside it")


def foreign_files(output: Storage) -> list[str]:
    """Files in llmray's folders of the output that llmray did not write. (Files beside its
    folders are never touched, so they do not matter.)"""
    listed = set(_listed(output))
    foreign = []
    for rel in output.find():
        top = rel.split("/", 1)[0]
        if top not in OWNED_DIRS or top in ("_progress", "_work") or rel in listed or _LLMRAY_NAME.search(rel):
            continue
        foreign.append(rel)
    return foreign


def _listed(output: Storage) -> list[str]:
    """Every file the run's manifest or unit markers say it wrote."""
    files = []
    if output.exists(MANIFEST):
        files += [f["path"] for f in output.get_json(MANIFEST)["files"]]
    for rel in output.find("_progress"):
        if re.fullmatch(r"_progress/s\d+/[^/]+\.json", rel):
            try:
                marker = output.get_json(rel)
            except (OSError, ValueError):
                continue
            files += [f["path"] for f in marker.get("files", {}).get("output", [])]
    return files


def check_clearable(output: Storage) -> None:
    """``--overwrite`` removes only llmray's own files: refuse when its folders hold others."""
    foreign = foreign_files(output)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise UserError(f"{output.url} holds files llmray did not write ({shown}): --overwrite removes only "
                        f"llmray's own; move them, or choose another --output")


def clear(output: Storage, work: Storage) -> None:
    """``--overwrite``: remove what a previous run wrote (but this run's lease), or refuse when
    something else is there."""
    check_clearable(output)
    for name in OWNED_DIRS:
        if name == "_progress":
            output.delete_many([f for f in output.find(name) if f != LEASE])
        else:
            output.delete_tree(name)
    for name in OWNED_FILES:
        output.delete(name)
    work.delete_tree()


def leftovers(output: Storage) -> list[str]:
    """llmray's folders and files already in the output, this run's lease apart."""
    found = [name for name in output.listdir() if name in OWNED_DIRS + OWNED_FILES]
    if "_progress" in found and all(f == LEASE for f in output.find("_progress")):
        found.remove("_progress")
    return found


def write_manifest(output: Storage, files: list[str]) -> None:
    output.put_json(MANIFEST, {"files": [{"path": f, "bytes": output.size(f)} for f in sorted(set(files))]})


def missing_files(output: Storage) -> list[str]:
    """Files the finished run's manifest lists that are gone or changed size."""
    if not output.exists(MANIFEST):
        return ["_progress/manifest.json"]
    missing = []
    for entry in output.get_json(MANIFEST)["files"]:
        if not output.exists(entry["path"]) or output.size(entry["path"]) != entry["bytes"]:
            missing.append(entry["path"])
    return missing


class Lease:
    """The run's claim on its output, renewed by a heartbeat thread while it works.

    ``claim`` refuses an output a live run holds and writes this run's lease; ``confirm``, at least
    ``SETTLE_S`` later (Ray starts in between), checks that it is still this run's: of two runs
    that claimed at once, the later write wins and the other stops before it touches anything."""

    def __init__(self, output: Storage):
        self.output = output
        self.owner = {"host": socket.gethostname(), "pid": os.getpid(), "id": uuid.uuid4().hex[:8]}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._claimed = 0.0

    def claim(self) -> None:
        if self.output.exists(LEASE):
            try:
                held = self.output.get_json(LEASE)
            except (OSError, ValueError):
                held = None
            if held and not _stale(held):
                raise UserError(f"{self.output.url} is in use by another llmray run (pid {held['pid']} on "
                                f"{held['host']}, since {held['since']}): wait for it to finish, or stop it")
        self._write(since=time.strftime("%Y-%m-%d %H:%M:%S"))
        self._claimed = time.monotonic()
        self._thread = threading.Thread(target=self._beat, daemon=True)  # however long Ray takes to start
        self._thread.start()

    def confirm(self) -> None:
        time.sleep(max(0.0, SETTLE_S - (time.monotonic() - self._claimed)))
        held = self._held()
        if held.get("id") != self.owner["id"]:
            raise UserError(f"{self.output.url} was just taken by another llmray run (pid {held.get('pid')} on "
                            f"{held.get('host')}): wait for it to finish, or stop it")

    def _held(self) -> dict[str, Any]:
        try:
            return self.output.get_json(LEASE)
        except (OSError, ValueError):
            return {}

    def _write(self, since: str) -> None:
        self._since = since
        self.output.put(LEASE, json.dumps({**self.owner, "since": since, "heartbeat": time.time()}).encode())

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                if self._held().get("id", self.owner["id"]) != self.owner["id"]:
                    return  # another run took the output: never write over its lease
                self._write(self._since)
            except Exception:  # noqa: BLE001  (a missed heartbeat is retried at the next beat)
                continue

    def release(self) -> None:
        """Stop the heartbeat and remove the lease, if it is still this run's."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._held().get("id") == self.owner["id"]:
            self.output.delete(LEASE)


def _stale(held: dict[str, Any]) -> bool:
    if time.time() - float(held.get("heartbeat", 0)) > STALE_S:
        return True
    if held.get("host") == socket.gethostname():
        try:
            os.kill(int(held["pid"]), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return False
