"""Documents that share an id: reported in stats.json, and dropped with ``input.dedupe_ids``.

Ids come from the input (strings as they are, integers as their decimal text) or are derived from
file and line, so two documents can only share one when the input gives them the same id. Such
ids break every later join on ``id`` (rejects, clusters, training splits), so every run counts
them (``global_steps.unique_ids``: how many documents repeat an id, a few examples) at the cost of
a hash per id; ``dedupe_ids: true`` keeps the first document of each id (in input order) and
drops the others as ``unique_ids.duplicate``.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from llmray.decisions import Decision, GlobalContext
from llmray.dedup.exact import HashSidecar
from llmray.dedup.keep import KeepRule
from llmray.dedup.workflow import decide_exact
from llmray.ops.base import FilterStep, GlobalStep, register
from llmray.ops.dedup import DropDuplicates
from llmray.schema import ID


@register
@dataclasses.dataclass
class UniqueIds(GlobalStep):
    """Finds documents whose id an earlier document already has; with ``drop``, removes them."""

    name: ClassVar[str] = "unique_ids"
    summary: ClassVar[str] = "count documents that repeat an id; with drop, keep the first of each id"
    reasons: ClassVar[tuple[str, ...]] = ("duplicate",)
    composes: ClassVar[bool] = True
    drop: bool = True

    @property
    def changes_documents(self) -> bool:  # type: ignore[override]
        return self.drop

    def sidecar(self, fine: int = 1) -> HashSidecar:
        return HashSidecar(False, fine, column=ID)

    def decide(self, ctx: GlobalContext) -> Decision:
        return decide_exact(ctx, KeepRule(), None)

    def applier(self, decision: Decision) -> FilterStep | None:
        if not self.drop:
            return None
        return DropDuplicates(step=decision.step, decision_dir=decision.payload["dir"],
                              senders=decision.payload["senders"])
