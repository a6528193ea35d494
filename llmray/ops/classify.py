"""``classify``: label every document with a trained classifier, and keep by label or score.

The model is a directory written by ``llmray train`` (``task: classification`` or ``task: fasttext``),
any Hugging Face sequence-classification directory, or a fastText ``.bin``/``.ftz`` file; local or a
URL (downloaded once per process). It is applied by :mod:`llmray.models`, the code behind
``llmray predict`` and ``llmray serve``, so the three agree on every label. Long documents are cut to
the model's sequence length (what the model reads of a document is its beginning).

Each document gets ``label`` and ``score`` (the softmax probability of that label; the column names
are parameters), and with ``probabilities: true`` one ``<score_column>_<label>`` column per class.
Rows are dropped as ``classify.label`` when ``keep_labels`` is given and their label is not in it,
and as ``classify.below_min_score`` when their score is under ``min_score``; dropped rows carry the
columns too (in rejects/), a ``below_min_score`` drop also ``value`` (its score) and ``threshold``
(``min_score``), as every threshold rule's rejects do.

Where it runs: in ``llmray run`` each unit of data is a Ray task holding one CPU, and the model loads
once per worker process (``setup`` is cheap to call again; the loaded model lives in a per-process
cache that the step's pickled copies share, and never travels with the step). As a Ray Data batch
function, ``ds.map_batches(Classify(model=DIR), batch_format="pyarrow")`` runs it in tasks the same way;
``step.apply(ds)`` runs it in ``concurrency`` actors of ``num_gpus`` GPUs each with ``batch_size``
rows a batch, which is how to put it on a cluster's GPUs. A BERT uses a GPU when ``num_gpus`` > 0 and
the process sees one, else the CPU with ``threads`` torch threads; a fastText model always uses the CPU.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llmray.errors import JobError, UserError
from llmray.ops.base import KEEP, FilterStep, Verdict, register, with_measures
from llmray.schema import REASON, TEXT, THRESHOLD, VALUE

#: (model, GPU wanted, threads) -> loaded model; one per worker process.
_LOADED: dict[tuple[str, bool, int], Any] = {}


def _load(model: str, gpu: bool, threads: int) -> Any:
    key = (model, gpu, threads)
    loaded = _LOADED.get(key)
    if loaded is None:
        from llmray import models

        path = models.local_path(model)
        kind = models.require_classifier(path, model)
        device = models.device_for(kind, "auto" if gpu else "cpu", threads)
        loaded = _LOADED[key] = models.load(path, device=device, given=model, kind=kind)
    return loaded


@register
@dataclasses.dataclass
class Classify(FilterStep):
    """Labels documents with a trained classifier (``label`` and ``score`` columns) and keeps those
    with a wanted label (``keep_labels``) and a high enough score (``min_score``)."""

    name: ClassVar[str] = "classify"
    summary: ClassVar[str] = "label documents with a trained classifier (BERT or fastText); keep by label/score"
    reasons: ClassVar[tuple[str, ...]] = ("label", "below_min_score")
    #: A model directory or file (llmray train's model/, a Hugging Face classifier, a fastText .bin), or a URL.
    model: str = ""
    #: Keep only documents labelled one of these (empty: every label).
    keep_labels: list[str] = dataclasses.field(default_factory=list)
    #: Drop documents whose label's probability is below this (0: keep all).
    min_score: float = 0.0
    label_column: str = "label"
    score_column: str = "score"
    #: Also write one ``<score_column>_<label>`` column per class.
    probabilities: bool = False
    #: Documents per forward pass (and rows per batch with ``apply``).
    batch_size: int = 64
    #: GPUs per model copy with ``apply`` (actors); in ``llmray run`` a GPU is used only where the task sees one.
    num_gpus: float = 0.0
    #: Model copies (actors) with ``apply``; 0: one per GPU, or one per CPU but one.
    concurrency: int = 0
    #: torch threads of the process (0: leave torch's own setting; in Ray tasks that is one per CPU the
    #: task holds, so one in llmray run). Setting it changes the whole process.
    threads: int = 0
    _model: Any = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.model:
            raise JobError("model: missing (a model directory, a fastText .bin, or a URL)")
        if not 0 <= self.min_score <= 1:
            raise JobError(f"min_score: {self.min_score} is not in [0, 1]")
        for key in ("batch_size",):
            if getattr(self, key) < 1:
                raise JobError(f"{key}: must be at least 1")
        for key in ("num_gpus", "concurrency", "threads"):
            if getattr(self, key) < 0:
                raise JobError(f"{key}: must be 0 or more")
        reserved = (TEXT, REASON, VALUE, THRESHOLD)
        if self.label_column == self.score_column or {self.label_column, self.score_column} & set(reserved):
            raise JobError(f"label_column, score_column: two different names, none of {', '.join(reserved)}")
        path = os.path.expanduser(self.model)
        if "://" not in path:  # a local model is checked now, before Ray starts (reads no weights)
            from llmray import models

            try:
                models.require_classifier(Path(path), self.model)
            except UserError as exc:
                raise JobError(f"model: {exc}") from None
            known = models.declared_labels(Path(path))
            missing = sorted({str(x) for x in self.keep_labels} - {str(x) for x in known or []})
            if known and missing:
                raise JobError(f"keep_labels: {missing[0]!r} is not a label of {self.model} "
                               f"(its labels: {', '.join(str(x) for x in known)})")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_model"] = None  # the model never travels; each process loads its own, once
        return state

    def setup(self) -> None:
        if self._model is None:
            self._model = _load(self.model, self.num_gpus > 0, self.threads)

    @property
    def labels(self) -> list:
        self.setup()
        return list(self._model.labels)

    def resources(self) -> dict[str, float]:
        """What one copy of the model needs (a runner that schedules steps by resources can use it)."""
        return {"num_cpus": 1.0, "num_gpus": float(self.num_gpus)}

    # -- the decision ----------------------------------------------------------------------------

    def predict(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """(index of the best label, probabilities) of every row."""
        from llmray import models

        self.setup()
        texts = pc.fill_null(table.column(TEXT), "").to_pylist()
        return models.classify(self._model, texts, self.batch_size)

    def _codes(self, best: np.ndarray, probs: np.ndarray) -> np.ndarray:
        labels = self._model.labels
        codes = np.full(len(best), KEEP, dtype=np.int16)
        if len(best) == 0:
            return codes
        scores = probs[np.arange(len(best)), best]
        if self.keep_labels:
            wanted = {str(x) for x in self.keep_labels}
            known = {str(x) for x in labels}
            missing = sorted(wanted - known)
            if missing:
                raise UserError(f"classify.keep_labels: {missing[0]!r} is not a label of {self.model} "
                                f"(its labels: {', '.join(sorted(known))})")
            allowed = np.array([str(x) in wanted for x in labels])
            codes[~allowed[best]] = 0
        codes[(codes == KEEP) & (scores < self.min_score)] = 1
        return codes

    def _columns(self, table: pa.Table, best: np.ndarray, probs: np.ndarray, live: np.ndarray | None) -> pa.Table:
        """The table with the label, score (and per-class) columns; rows not ``live`` get nulls."""
        labels = self._model.labels
        n = table.num_rows
        full_best = np.zeros(n, np.int64)
        full_probs = np.zeros((n, len(labels)), np.float32)
        if live is None:
            full_best, full_probs = best, probs
        else:
            full_best[live], full_probs[live] = best, probs
        null = None if live is None else pa.array(~live)
        label_values = pa.array([labels[k] for k in full_best]) if n else pa.array([], pa.string())
        if null is not None:
            label_values = pc.if_else(null, pa.nulls(n, label_values.type), label_values)
        columns = {self.label_column: label_values}
        picked = full_probs[np.arange(n), full_best] if n else np.zeros(0, np.float32)
        columns[self.score_column] = pa.array(picked.astype(np.float32), mask=None if live is None else ~live)
        if self.probabilities:
            for i, label in enumerate(labels):
                columns[f"{self.score_column}_{label}"] = pa.array(full_probs[:, i].astype(np.float32),
                                                                   mask=None if live is None else ~live)
        for name, column in columns.items():
            at = table.schema.get_field_index(name)
            table = table.set_column(at, name, column) if at >= 0 else table.append_column(name, column)
        return table

    def _verdict(self, best: np.ndarray, probs: np.ndarray) -> Verdict:
        """The codes, and for ``below_min_score`` the score measured and ``min_score`` (the limit)."""
        codes = self._codes(best, probs)
        low = codes == 1
        value, threshold = np.full(len(codes), np.nan), np.full(len(codes), np.nan)
        if low.any():
            value[low] = probs[np.arange(len(best)), best][low]
            threshold[low] = self.min_score
        return Verdict(codes, value, threshold)

    def evaluate(self, table: pa.Table) -> Verdict:
        best, probs = self.predict(table)
        return self._verdict(best, probs)

    def decide(self, table: pa.Table) -> tuple[pa.Table, Verdict]:
        """The runner's call: every row with the label and score columns, and the verdict (its
        ``value`` and ``threshold``: the score and min_score of a ``below_min_score`` drop, null for a
        ``label`` drop)."""
        best, probs = self.predict(table)
        return self._columns(table, best, probs, None), self._verdict(best, probs)

    def transform(self, table: pa.Table) -> pa.Table:
        """Ray Data batch function: rows already rejected by an earlier step (a ``reason``) are not
        classified (null columns) and pass through; with ``annotate`` every row stays."""
        earlier = table.column(REASON) if REASON in table.column_names else None
        live = earlier.is_null().to_numpy(zero_copy_only=False) if earlier is not None else None
        if live is not None and live.all():
            live = None
        rows = table if live is None else table.filter(pa.array(live))
        best, probs = self.predict(rows)
        verdict = self._verdict(best, probs)
        out = self._columns(table, best, probs, live)
        codes = np.full(table.num_rows, KEEP, np.int32)
        value, threshold = np.full(table.num_rows, np.nan), np.full(table.num_rows, np.nan)
        at = slice(None) if live is None else live
        codes[at], value[at], threshold[at] = verdict.codes, verdict.value, verdict.threshold
        if not self.annotate:
            return out.filter(pa.array(codes == KEEP))
        names = pa.array(self.reason_names(), pa.string())
        column = pa.DictionaryArray.from_arrays(pa.array(codes, mask=codes == KEEP), names).cast(pa.string())
        mine = [pa.array(v, pa.float64(), mask=np.isnan(v)) for v in (value, threshold)]
        if earlier is None:
            return with_measures(out.append_column(REASON, column), *mine)
        first = earlier.is_null()  # a row an earlier step rejected keeps that step's reason and measures
        out = out.set_column(out.schema.get_field_index(REASON), REASON, pc.if_else(first, column, earlier))
        if VALUE in out.column_names:
            mine = [pc.if_else(first, m, out.column(name)) for m, name in zip(mine, (VALUE, THRESHOLD), strict=True)]
        return with_measures(out, *mine)

    # -- Ray Data with actors ------------------------------------------------------------------

    def apply(self, ds: Any) -> Any:
        """``ds`` classified by ``concurrency`` actors (``num_gpus`` GPUs each), ``batch_size`` rows a batch."""
        import ray

        if self.concurrency:
            concurrency = self.concurrency
        elif self.num_gpus:
            concurrency = max(1, int(ray.cluster_resources().get("GPU", 1) // self.num_gpus))
        else:  # one CPU left for the reads and exchanges around it (all of them held by actors can deadlock)
            concurrency = max(1, int(ray.cluster_resources().get("CPU", 1)) - 1)
        return ds.map_batches(_Actor, fn_constructor_args=(self,), batch_format="pyarrow",
                              batch_size=self.batch_size, concurrency=concurrency, num_gpus=self.num_gpus,
                              num_cpus=0 if self.num_gpus else 1)


class _Actor:
    """One model copy in a Ray Data actor."""

    def __init__(self, step: Classify):
        self.step = step
        step.setup()

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.step.transform(batch)
