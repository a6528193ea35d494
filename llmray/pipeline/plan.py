"""A job's steps cut into segments of row-local steps, with the global steps that decide between them.

    [row steps] -> {global group} -> [row steps] -> {global group} -> ... -> [row steps]

A segment runs as one task per unit. A group is a run of global steps that decide over the same
data: its steps' sidecars are gathered by the segment before it, and their decisions are applied
at the start of the segment after it. Dedup steps compose (each ignores what the ones before it
in its group drop); any other global step starts a group of its own.

Where the data is written: the segment before a group writes it to the work location, and the
last segment writes the output. When nothing after a segment changes a document (only
``train_tokenizer`` and ``tokenize`` follow), that segment writes the output itself and the later
ones only read it: the documents are written once.
"""

from __future__ import annotations

import dataclasses
import math

from llmray.dedup.signatures import BAND_ROW_BYTES
from llmray.ops.base import GlobalStep, Step

MB = 1 << 20
#: Rough size of a document, for planning the exchanges before anything is read.
PLANNING_DOC_BYTES = 2000


@dataclasses.dataclass
class Segment:
    index: int
    #: (stage name, step) of its row-local steps.
    steps: list[tuple[str, Step]]
    #: (stage name, step) of the global steps that follow it.
    group: list[tuple[str, GlobalStep]]
    #: "output", "work", or None (reads the output a segment before wrote; changes nothing).
    writes: str | None = "output"


def plan_segments(steps: list[Step]) -> list[Segment]:
    names = _stage_names(steps)
    segments = [Segment(0, [], [])]
    for name, step in zip(names, steps, strict=True):
        current = segments[-1]
        if isinstance(step, GlobalStep):
            if current.group and not step.composes:
                current = _next(segments)
            current.group.append((name, step))
        else:
            if current.group:
                current = _next(segments)
            current.steps.append((name, step))
    if segments[-1].group:
        _next(segments)
    for segment in segments[:-1]:
        segment.writes = "work"
    for k, segment in enumerate(segments[:-1]):
        later = [s for seg in segments[k + 1:] for _, s in seg.steps] + [s for _, s in segment.group] + \
            [s for seg in segments[k + 1:] for _, s in seg.group]
        if all(not s.changes_documents for s in later):
            segment.writes = "output"
            for after in segments[k + 1:]:
                after.writes = None
            break
    return segments


def _next(segments: list[Segment]) -> Segment:
    segments.append(Segment(len(segments), [], []))
    return segments[-1]


def _stage_names(steps: list[Step]) -> list[str]:
    """Each step's stage name: its name, or ``name#2`` ... where a job uses a step twice."""
    names: list[str] = []
    for step in steps:
        name, n = step.name, 2
        while name in names or name in ("read", "write", "intermediate_io"):
            name, n = f"{step.name}#{n}", n + 1
        names.append(name)
    return names


def fine_parts(estimated_bytes: int, asked: list[int | None] = ()) -> int:
    """How many parts exchanged sidecars are cut into before the corpus is read: enough for the
    partitions the exchange will want (about 64 MB each, or as many as a step asks for), so any
    partition count up to it takes contiguous runs of parts."""
    docs = max(1, estimated_bytes // PLANNING_DOC_BYTES)
    partitions = max(4 * docs * 32 * BAND_ROW_BYTES / (64 * MB), *[p for p in asked if p], 1)
    return int(min(65536, max(256, 2 ** math.ceil(math.log2(partitions)))))
