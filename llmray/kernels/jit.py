"""numba's ``njit``, imported through here so that numba sets itself up without scipy.

On its first compiled call in a process numba loads its NumPy implementations, and one of them
(``numba.np.arraymath``) checks for a BLAS by importing ``scipy.linalg``: about 0.15 s in every Ray
worker, for a BLAS that no llmray kernel calls. Importing that module first, with scipy's BLAS
module marked missing, skips the check. In these processes numba's inner products (``np.cov``,
``np.correlate``) then run without BLAS; its linear algebra (``np.dot``, ``np.linalg``) still imports
scipy when something compiles a call to it.
"""

from __future__ import annotations

import importlib
import sys

_BLAS = "scipy.linalg.cython_blas"

if "numba.np.arraymath" not in sys.modules and _BLAS not in sys.modules:
    sys.modules[_BLAS] = None  # type: ignore[assignment]  (an import of it fails at once)
    try:
        importlib.import_module("numba.np.arraymath")
    finally:
        del sys.modules[_BLAS]

from numba import njit  # noqa: E402

__all__ = ["njit"]
