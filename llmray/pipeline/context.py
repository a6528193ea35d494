"""What a GlobalOp (deduplication, tokenization) gets from the runner and gives back."""

from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class GlobalContext:
    """Directories and resources for one global step.

    ``input_dir`` holds parquet files (at least ``id``, ``text``, ``source``) written by the previous
    segment. The op writes the rows it keeps, all columns unchanged, as parquet under ``output_dir``
    and, when ``rejects_dir`` is set, the rows it drops with a ``reason`` column there. ``work_dir``
    is scratch space that survives a crash (for resume); ``output_root`` is the run's output directory
    for optional extra outputs (``clusters/``, ``tokens/``).
    """

    input_dir: Path
    output_dir: Path
    work_dir: Path
    output_root: Path
    rejects_dir: Path | None
    num_cpus: int


@dataclasses.dataclass
class GlobalResult:
    docs_in: int
    docs_out: int
    dropped: dict[str, int]
    bytes_in: int = 0
    bytes_out: int = 0
    #: Free-form figures for stats.json (e.g. candidate pairs, components, iterations).
    details: dict = dataclasses.field(default_factory=dict)
