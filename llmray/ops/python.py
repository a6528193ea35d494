"""User-supplied Python steps. The only way a job file runs code of its own, and it has to say so.

A job names an importable function, ``{python: {function: "mypkg.cleaning:strip_footer"}}``; the
function takes a ``pyarrow.Table`` and returns a ``Table`` with the same rows (``kind: map``) or a
boolean keep-mask (``kind: filter``). Nothing else in a job file is ever imported or executed.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa

from llmray.errors import JobError
from llmray.ops.base import KEEP, Filter, register


def resolve(path: str) -> Callable[[pa.Table], Any]:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise JobError(f"python.function: write it as 'package.module:function', got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise JobError(f"python.function: cannot import {module_name!r} ({exc})") from None
    function = getattr(module, attr, None)
    if not callable(function):
        raise JobError(f"python.function: {module_name!r} has no function {attr!r}")
    return function


@register
@dataclasses.dataclass
class PythonStep(Filter):
    """Runs a named Python function over each batch, as a map or as a filter."""

    name: ClassVar[str] = "python"
    summary: ClassVar[str] = "run a user-supplied function 'module:function' on each Arrow batch"
    function: str = ""
    kind: Literal["map", "filter"] = "map"
    #: Drop reason for a filter, reported as ``python.<reason>``.
    reason: str = "rejected"
    _function: Any = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        resolve(self.function)  # fail on the driver, before any worker starts

    def setup(self) -> None:
        if self._function is None:
            self._function = resolve(self.function)

    def reason_names(self) -> list[str]:
        return [f"{self.name}.{self.reason}"]

    def evaluate(self, table: pa.Table) -> np.ndarray:
        self.setup()
        keep = np.asarray(self._function(table), dtype=bool)
        return np.where(keep, KEEP, 0).astype(np.int16)

    def split(self, table: pa.Table) -> tuple[pa.Table, pa.Table, np.ndarray]:
        if self.kind == "filter":
            return super().split(table)
        self.setup()
        out = self._function(table)
        if not isinstance(out, pa.Table) or out.num_rows != table.num_rows:
            raise TypeError(f"{self.function} must return a pyarrow.Table with the same {table.num_rows} rows")
        return out, table.slice(0, 0), np.empty(0, dtype=np.int16)
