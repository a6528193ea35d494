"""Scoring deduplication against ground truth (standard library only; peers import it too).

Two views, the same as ``eval_dedup.py`` of the research notes so numbers compare:

* **removal** precision/recall/F1 does not care which copy is kept: for each true cluster C with r of
  its documents removed, TP = min(r, |C| - 1), FP = r - TP, FN = |C| - 1 - TP.
* **pair** precision/recall/F1 over all unordered document pairs "in the same cluster", predicted
  clusters against true ones (only when a tool reports clusters, not just removals).
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llmray.bench.measure import summarize


def load_truth(path: str | Path, ids: Iterable[str] | None = None) -> dict[str, str]:
    """id -> true cluster, from a JSONL (optionally gzipped) file of ``{"id", "cluster", ...}``.

    With ``ids``, only those documents count: a sample of a corpus is scored against its own truth.
    """
    keep = set(ids) if ids is not None else None
    opener = gzip.open if str(path).endswith(".gz") else open
    truth = {}
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            doc = str(record["id"])
            if keep is None or doc in keep:
                truth[doc] = str(record["cluster"])
    return truth


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


def removal_scores(truth: dict[str, str], removed: Iterable[str]) -> dict[str, float | int]:
    removed = {r for r in removed if r in truth}
    sizes = Counter(truth.values())
    removed_per_cluster = Counter(truth[r] for r in removed)
    tp = fp = fn = 0
    for cluster, size in sizes.items():
        r = removed_per_cluster.get(cluster, 0)
        hit = min(r, size - 1)
        tp, fp, fn = tp + hit, fp + r - hit, fn + size - 1 - hit
    return {**_prf(tp, fp, fn), "removed": len(removed), "should_remove": tp + fn}


def pair_scores(truth: dict[str, str], predicted: dict[str, str]) -> dict[str, float | int]:
    """``predicted``: id -> cluster label; ids it does not list are singletons."""
    def pairs(counts: Iterable[int]) -> int:
        return sum(n * (n - 1) // 2 for n in counts)

    labels = {doc: predicted.get(doc, f"\0{doc}") for doc in truth}
    true_pairs = pairs(Counter(truth.values()).values())
    predicted_pairs = pairs(Counter(labels.values()).values())
    tp = pairs(Counter((truth[d], labels[d]) for d in truth).values())
    return {**_prf(tp, predicted_pairs - tp, true_pairs - tp), "true_pairs": true_pairs,
            "predicted_pairs": predicted_pairs}


def clusters_from_pairs(ids: list[str], pairs: Iterable[tuple[int, int]]) -> tuple[dict[str, str], set[str]]:
    """Union-find over candidate pairs of row indices: (id -> cluster label, ids to remove).

    Each cluster keeps its first row (in input order) and removes the others.
    """
    parent = list(range(len(ids)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    labels, removed = {}, set()
    for i, doc in enumerate(ids):
        root = find(i)
        if root != i:
            removed.add(doc)
            labels[doc] = labels[ids[root]] = ids[root]
    return labels, removed


def score(truth: dict[str, str] | None, removed: Iterable[str],
          predicted: dict[str, str] | None = None) -> dict | None:
    """Removal scores, and pair scores when clusters are known; None without ground truth."""
    if truth is None:
        return None
    result: dict = {"removal": removal_scores(truth, removed)}
    if predicted is not None:
        result["pair"] = pair_scores(truth, predicted)
    return result


def summarize_scores(scores: list[dict[str, Any]]) -> dict[str, Any]:
    """Per view (removal, pair): median and spread of precision, recall and F1 over repeats;
    the counts of the last repeat."""
    out: dict[str, Any] = {}
    for view in scores[0]:
        out[view] = {k: summarize([s[view][k] for s in scores]) if k in ("precision", "recall", "f1")
                     else scores[-1][view][k] for k in scores[0][view]}
    return out
