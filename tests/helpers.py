"""Small builders shared by the tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from llmray.ops.base import KEEP

#: Whether the install could compile the kernels ahead of time (numba's pycc calls a C compiler).
HAS_C_COMPILER = shutil.which("cc") is not None or shutil.which("gcc") is not None

ENGLISH = (
    "The committee met on Tuesday to review the annual budget and the plans for the new library. "
    "Members agreed that the reading rooms should stay open later in the evening, and that the "
    "children's section needs more space. A final vote will take place at the next meeting."
)


def table(texts: list[str], ids: list[str] | None = None) -> pa.Table:
    ids = ids or [f"d{i}" for i in range(len(texts))]
    return pa.table({"id": ids, "text": texts, "source": ["test"] * len(texts)})


def write_jsonl(path: Path, records: list[dict | str]) -> Path:
    """Records may be dicts (serialized) or raw strings (written as they are, for broken lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write((record if isinstance(record, str) else json.dumps(record)) + "\n")
    return path


def job(input_path: Path | str, out: Path, steps: list | None = None, chunk_mb: float | None = None,
        **output) -> dict:
    """A job mapping; ``chunk_mb`` small cuts even a small input into many units (one per file)."""
    source = {"paths": [str(input_path)], **({"chunk_mb": chunk_mb} if chunk_mb else {})}
    return {"input": source, "steps": steps or [], "output": {"path": str(out), **output}}


def split_map(step, batch: pa.Table):
    """A map step's (rewritten rows kept, input rows dropped, their reason codes), as the runner sees it."""
    out, codes = step.map_rows(batch)
    if codes is None:
        return out, batch.slice(0, 0), np.empty(0, np.int16)
    keep = codes == KEEP
    return out.filter(pa.array(keep)), batch.filter(pa.array(~keep)), codes[~keep]


def run_isolated(args: list[str], timeout: float, **kwargs: Any) -> subprocess.CompletedProcess:
    """A child process in its own process group, and every process it started (a Ray cluster, its
    workers) killed with it when it times out or the test fails: nothing outlives the test."""
    proc = subprocess.Popen(args, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        kill_group(proc)
        raise
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def kill_group(proc: subprocess.Popen) -> None:
    """Kill a child started with ``start_new_session`` and everything in its process group."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
