"""The kernels' ``njit``: machine code compiled ahead of time where the install built it, numba's
JIT (and its cache) otherwise.

A Ray worker that loads numba's cached kernels pays for numba before its first batch: importing
it (0.19 s), its typing and lowering registries on the first call (0.1-0.18 s) and linking each
cached kernel (0.11 s for the clean job's). ``python -m llmray.kernels`` (``make setup``) also
compiles every kernel's signatures into one extension module (:mod:`llmray.kernels.aot`); a
process that finds it valid for these sources and this CPU calls it and never imports numba. Each
``@njit`` function is then a :class:`Kernel` that picks the export matching its arguments' types.
When none does (a type the install did not see, ``LLMRAY_KERNELS=jit``, no module), the process
switches to numba for good: every kernel becomes its numba dispatcher, as without a module.

On its first compiled call in a process numba loads its NumPy implementations, and one of them
(``numba.np.arraymath``) checks for a BLAS by importing ``scipy.linalg``: about 0.15 s in every Ray
worker, for a BLAS that no llmray kernel calls. Importing that module first, with scipy's BLAS
module marked missing, skips the check. In these processes numba's inner products (``np.cov``,
``np.correlate``) then run without BLAS; its linear algebra (``np.dot``, ``np.linalg``) still imports
scipy when something compiles a call to it.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

from llmray.kernels.aot import arg_key

#: ``jit`` makes every process use numba's JIT even where the install compiled the kernels ahead.
MODE_ENV = "LLMRAY_KERNELS"
_BLAS = "scipy.linalg.cython_blas"

_numba_njit: Callable[..., Any] | None = None  # set once the process uses numba
_exports: dict[tuple, Callable[..., Any]] | None = None  # (kernel, argument types) -> compiled export


def njit(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """numba's ``njit(**options)`` where this process uses numba; else a :class:`Kernel`."""
    def decorate(func: Callable[..., Any]) -> Any:
        if ahead_of_time():
            return Kernel(func, options)
        return _numba()(**options)(func)
    return decorate


class Kernel:
    """A kernel called through its ahead-of-time export for its arguments' types."""

    def __init__(self, func: Callable[..., Any], options: dict[str, Any]):
        self.py_func = func
        self.options = options
        self.name = f"{func.__module__}.{func.__qualname__}"
        self.dispatcher: Any = None  # numba's, once the process switched

    def __call__(self, *args: Any) -> Any:
        if self.dispatcher is None:
            if _exports is not None:
                export = _exports.get((self.name, tuple(map(arg_key, args))))
                if export is not None:
                    return export(*args)
            _use_numba()
            self._jit()
        return self.dispatcher(*args)

    def _jit(self) -> Any:
        if self.dispatcher is None:
            self.dispatcher = _numba()(**self.options)(self.py_func)
        return self.dispatcher

    def __repr__(self) -> str:
        return f"Kernel({self.name})"


def ahead_of_time() -> bool:
    """Whether this process calls the install's ahead-of-time exports (and has not switched)."""
    return _numba_njit is None and _ahead_of_time() is not None


def _use_numba() -> None:
    """Switch this process to numba: every kernel of every loaded kernel module becomes its numba
    dispatcher, in each module that holds it, so that numba's code calls (and inlines) numba's."""
    global _exports
    _numba()
    _exports = None
    for name, module in list(sys.modules.items()):
        if module is not None and name.startswith("llmray.kernels"):
            for attr, value in list(vars(module).items()):
                if isinstance(value, Kernel):
                    setattr(module, attr, value._jit())


def _numba() -> Callable[..., Any]:
    global _numba_njit
    if _numba_njit is None:
        if "numba.np.arraymath" not in sys.modules and _BLAS not in sys.modules:
            sys.modules[_BLAS] = None  # type: ignore[assignment]  (an import of it fails at once)
            try:
                importlib.import_module("numba.np.arraymath")
            finally:
                del sys.modules[_BLAS]
        from numba import njit as numba_njit

        _numba_njit = numba_njit
    return _numba_njit


def _ahead_of_time() -> dict[tuple, Callable[..., Any]] | None:
    """The install's exports, loaded on the first kernel's definition; None where there are none."""
    global _exports
    if _exports is None and os.environ.get(MODE_ENV, "") != "jit":
        from llmray.kernels import aot

        _exports = aot.load()
        if _exports is None:
            _numba()  # decided once: no module here, so numba from the start
    return _exports
