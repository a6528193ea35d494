"""Derived arrays are the same kinds of array whether derived in this process or read back."""

import numba
import numpy as np

from llmray.kernels.cache import cached_arrays


def test_derived_and_read_back_arrays_are_typed_alike(tmp_path, monkeypatch):
    """numba compiles a kernel per argument type, read-only and strided arrays apart: the process
    that derives the arrays must pass what every later process reads back, or the first compiles a
    variant nobody else uses (lid176's read-only vocabulary cost every run 4.5 s of compilation)."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    built = {"bytes": np.frombuffer(b"read-only bytes", np.uint8), "strided": np.arange(12.0)[::3],
             "plain": np.zeros((2, 3), np.float32)}
    derived = cached_arrays("kinds", lambda: built)
    read_back = cached_arrays("kinds", lambda: {})
    assert sorted(read_back) == sorted(built)
    for key, value in built.items():
        assert numba.typeof(derived[key]) == numba.typeof(read_back[key]), key
        assert np.array_equal(derived[key], value) and np.array_equal(read_back[key], value)
