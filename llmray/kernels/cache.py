"""Where compiled kernels and other derived data (the decoded language model, character tables)
are kept."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np


def cache_folder() -> Path:
    """numba's cache directory when NUMBA_CACHE_DIR names one, else beside the package's kernels."""
    cache = os.environ.get("NUMBA_CACHE_DIR")
    return Path(cache) if cache else Path(__file__).parent / "__pycache__"


def cached_arrays(name: str, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Arrays that take a while to derive in Python, derived once and read back from
    ``cache_folder()/name.npz`` by every later process (``name`` says what they were derived from).
    A read-only install derives them again in each process. Derived or read back, the arrays are of
    the same kinds (C-contiguous, writable), so a kernel compiled on one serves the other: numba types
    a read-only array apart, and the process that first derived the language model used to compile
    its kernel for that kind only, leaving every later run to compile it again (4.5 s)."""
    cached = cache_folder() / f"{name}.npz"
    try:
        with np.load(cached, allow_pickle=False) as saved:
            return {key: saved[key] for key in saved.files}
    except Exception:  # noqa: BLE001  (missing, truncated, corrupt: derive them again, below)
        pass
    arrays = {key: np.require(value, requirements=("C", "W")) for key, value in build().items()}
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{os.getpid()}.npz")
        np.savez(partial, **arrays)
        partial.replace(cached)
    except OSError:
        pass
    return arrays


def source_version(module_file: str) -> str:
    """A short hash of a module's source, for the names of arrays derived by its code."""
    return hashlib.sha1(Path(module_file).read_bytes()).hexdigest()[:12]
