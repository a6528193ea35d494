"""User-supplied Python steps. The only way a job file runs code of its own, and it has to say so.

A job names an importable function, ``{python: {function: "mypkg.cleaning:strip_footer"}}``; the
function takes a ``pyarrow.Table`` and returns a ``Table`` with the same rows (``kind: map``, a
map step) or a boolean keep-mask (``kind: filter``, a filter step). Nothing else in a job file is
ever imported or executed. (A step of your own with parameters is better written as a plugin: see
``llmray.ops`` and the ``plugins:`` key.)
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa

from llmray.errors import JobError
from llmray.ops.base import KEEP, FilterStep, MapStep, Step, register


def resolve(path: str) -> Callable[[pa.Table], Any]:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise JobError(f"function: write it as 'package.module:function', got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise JobError(f"function: cannot import {module_name!r} ({exc})") from None
    function = getattr(module, attr, None)
    if not inspect.isfunction(function) or not _takes_one_argument(function):
        raise JobError(f"function: {path} is not a Python function of one table (def {attr}(table): ...)")
    return function


def _takes_one_argument(function: Callable) -> bool:
    try:
        inspect.signature(function).bind(None)
    except (TypeError, ValueError):
        return False
    return True


@register
@dataclasses.dataclass
class PythonStep(Step):
    """Runs a named Python function over each batch, as a map or as a filter."""

    name: ClassVar[str] = "python"
    summary: ClassVar[str] = "run a user-supplied function 'module:function' on each Arrow batch (map or filter)"
    function: str = ""
    kind: Literal["map", "filter"] = "map"
    #: Drop reason for a filter, reported as ``python.<reason>``.
    reason: str = "rejected"
    _function: Any = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def __new__(cls, *args: Any, **kwargs: Any) -> PythonStep:
        if cls is PythonStep:
            cls = PythonFilter if kwargs.get("kind", args[1] if len(args) > 1 else "map") == "filter" else PythonMap
        return super().__new__(cls)

    def __post_init__(self) -> None:
        super().__post_init__()
        resolve(self.function)  # fail on the driver, before any worker starts

    def setup(self) -> None:
        if self._function is None:
            self._function = resolve(self.function)


@dataclasses.dataclass
class PythonMap(PythonStep, MapStep):
    def map(self, table: pa.Table) -> pa.Table:
        self.setup()
        out = self._function(table)
        if not isinstance(out, pa.Table) or out.num_rows != table.num_rows:
            raise TypeError(f"{self.function} must return a pyarrow.Table with the same {table.num_rows} rows")
        return out


@dataclasses.dataclass
class PythonFilter(PythonStep, FilterStep):
    def reason_names(self) -> list[str]:
        return [f"{self.name}.{self.reason}"]

    def evaluate(self, table: pa.Table) -> np.ndarray:
        self.setup()
        keep = np.asarray(self._function(table), dtype=bool)
        return np.where(keep, KEEP, 0).astype(np.int16)
