"""Peer tools on the same corpus, in the same run: datasketch, rensa and datatrove.

Runs as a child process (``python -m llmray.bench.peers REQUEST RESULT``), one per tool and task, pinned
to one core, so each figure is per core and each peak RSS is that tool's own. It imports nothing of
llmray: the peers may live in a virtual environment of their own (``llmray bench --peers-python``),
because datatrove pins versions that llmray's environment does not want.

Settings are matched to llmray where that is meaningful: the same word 5-shingles, the same number
of LSH bands and rows (so the same S-curve; comparing tools at different thresholds would mostly
compare thresholds), clusters scored against the same truth.

* ``signatures``: text in memory -> a 128-slot signature per document, shingling included.
* ``neardup``: text in memory -> signatures -> LSH candidate pairs -> clusters -> one kept per cluster.
  datatrove runs its four MinHash stages on the JSONL file instead (reading included), as it is used.
* ``filters`` (datatrove only): Gopher repetition, Gopher quality, C4 and FineWeb quality filters at
  their defaults, in that order, the set llmray's quality filters reimplement, called on documents in
  memory (compared with llmray's ``filters:datatrove-set``).
* ``dedup_job`` (datasketch): beside ``jobs/dedup.yaml``, as its users run it: read the JSONL file, then
  ``MinHashLSH`` at the job's threshold (datasketch picks its own bands and rows), reading timed too.
"""

from __future__ import annotations

import importlib
import json
import re
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from llmray.bench import accuracy, measure

TOOLS = {"datasketch": ("signatures", "neardup"), "rensa": ("signatures", "neardup"),
         "datatrove": ("signatures", "neardup", "filters")}
#: Modules a tool needs besides itself (datatrove's English word tokenizer is spaCy).
REQUIRES = {"datatrove": ("spacy",)}
_WORD = re.compile(r"\w+")


def probe(_: dict[str, Any]) -> dict[str, Any]:
    """Which peers this interpreter can run: version, or the reason it cannot."""
    found: dict[str, Any] = {}
    for tool in TOOLS:
        try:
            for module in (tool, *REQUIRES.get(tool, ())):
                importlib.import_module(module)
            found[tool] = {"version": metadata.version(tool)}
        except ImportError as exc:
            found[tool] = {"version": None, "reason": f"not importable: {exc}"}
    return found


def load(path: str, limit: int | None) -> tuple[list[str], list[str]]:
    ids, texts = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            ids.append(str(record["id"]))
            texts.append(record["text"])
            if limit and len(ids) >= limit:
                break
    return ids, texts


def word_shingles(text: str, n: int) -> list[str]:
    words = _WORD.findall(text.lower())
    if len(words) <= n:
        return [" ".join(words)]
    return [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]


# --- datasketch ------------------------------------------------------------------------------------


def _datasketch_signatures(texts: list[str], req: dict[str, Any], seed: int) -> list:
    from datasketch import LeanMinHash, MinHash

    shingled = [[s.encode() for s in word_shingles(t, req["ngram"])] for t in texts]
    return [LeanMinHash(m) for m in MinHash.bulk(shingled, num_perm=req["num_perm"], seed=seed)]


def datasketch_lsh(ids: list[str], texts: list[str], req: dict[str, Any], seed: int, **lsh: Any):
    """Signatures into ``MinHashLSH(num_perm, **lsh)``, every document queried: (id -> cluster, removed ids)."""
    from datasketch import MinHashLSH

    sigs = _datasketch_signatures(texts, req, seed)
    index = MinHashLSH(num_perm=req["num_perm"], **lsh)
    for i, sig in enumerate(sigs):
        index.insert(i, sig)
    pairs = [(i, j) for i, sig in enumerate(sigs) for j in index.query(sig) if j != i]
    return accuracy.clusters_from_pairs(ids, pairs)


def _datasketch_neardup(ids: list[str], texts: list[str], req: dict[str, Any], seed: int):
    return datasketch_lsh(ids, texts, req, seed, params=(req["bands"], req["rows"]))


def _datasketch_job(ids: list[str], texts: list[str], req: dict[str, Any], seed: int):
    ids, texts = load(req["corpus_file"], req["docs"])
    return datasketch_lsh(ids, texts, req, seed, threshold=req["threshold"])


# --- rensa -----------------------------------------------------------------------------------------


def _rensa_signatures(texts: list[str], req: dict[str, Any], seed: int) -> list:
    from rensa import RMinHash

    sigs = []
    for text in texts:
        sig = RMinHash(num_perm=req["num_perm"], seed=seed)
        sig.update(word_shingles(text, req["ngram"]))
        sigs.append(sig)
    return sigs


def _rensa_neardup(ids: list[str], texts: list[str], req: dict[str, Any], seed: int):
    from rensa import RMinHashLSH

    sigs = _rensa_signatures(texts, req, seed)
    lsh = RMinHashLSH(threshold=req["threshold"], num_perm=req["num_perm"], num_bands=req["bands"])
    for i, sig in enumerate(sigs):
        lsh.insert(i, sig)
    pairs = [(i, j) for i, sig in enumerate(sigs) for j in lsh.query(sig) if j != i]
    return accuracy.clusters_from_pairs(ids, pairs)


# --- datatrove -------------------------------------------------------------------------------------


def _datatrove_config(req: dict[str, Any], seed: int):
    from datatrove.pipeline.dedup.minhash import MinhashConfig

    return MinhashConfig(n_grams=req["ngram"], num_buckets=req["bands"], hashes_per_bucket=req["rows"],
                         seed=seed)


def _datatrove_reader(req: dict[str, Any]):
    from datatrove.pipeline.readers import JsonlReader

    path = Path(req["corpus_file"])
    return JsonlReader(str(path.parent), glob_pattern=path.name, limit=req["docs"] or -1)


def _datatrove_run(steps: list, work: Path, name: str, tasks: int = 1) -> None:
    from datatrove.executor import LocalPipelineExecutor

    LocalPipelineExecutor(pipeline=steps, tasks=tasks, workers=1, logging_dir=str(work / "logs" / name),
                          skip_completed=False).run()


def _datatrove_signatures(texts: list[str], req: dict[str, Any], seed: int) -> None:
    from datatrove.pipeline.dedup.minhash import MinhashDedupSignature

    work = Path(tempfile.mkdtemp(dir=req["work_dir"]))
    signatures = MinhashDedupSignature(str(work / "sigs"), config=_datatrove_config(req, seed))
    _datatrove_run([_datatrove_reader(req), signatures], work, "sigs")


def _datatrove_neardup(ids: list[str], texts: list[str], req: dict[str, Any], seed: int):
    from datatrove.pipeline.dedup.minhash import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.writers import JsonlWriter

    config = _datatrove_config(req, seed)
    work = Path(tempfile.mkdtemp(dir=req["work_dir"]))
    _datatrove_run([_datatrove_reader(req), MinhashDedupSignature(str(work / "sigs"), config=config)],
                   work, "1")
    _datatrove_run([MinhashDedupBuckets(str(work / "sigs"), str(work / "buckets"), config=config)], work, "2",
                   tasks=config.num_buckets)
    _datatrove_run([MinhashDedupCluster(str(work / "buckets"), str(work / "remove"), config=config,
                                        save_cluster_id=True)], work, "3")
    _datatrove_run([_datatrove_reader(req), MinhashDedupFilter(str(work / "remove")),
                    JsonlWriter(str(work / "out"))], work, "4")
    return _datatrove_clusters(ids, work / "remove")


def _datatrove_clusters(ids: list[str], folder: Path) -> tuple[dict[str, str], set[str]]:
    """Read stage 3's ``.remove`` (row indices) and ``.clusters`` ((row, cluster) pairs) of the one task."""
    import struct

    removed_rows = folder / "000000.remove"
    raw = removed_rows.read_bytes() if removed_rows.exists() else b""
    removed = {ids[row] for (row,) in struct.iter_unpack("<I", raw)}
    cluster_file = folder / "000000.clusters"
    raw = cluster_file.read_bytes() if cluster_file.exists() else b""
    labels = {ids[row]: str(cluster) for row, cluster in struct.iter_unpack("<2I", raw)}
    return labels, removed


def _datatrove_filters(ids: list[str], texts: list[str], req: dict[str, Any], seed: int) -> int:
    """Run the four quality filters in order on each document; return how many documents pass."""
    from datatrove.data import Document
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    filters = [GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter(), FineWebQualityFilter()]
    kept = 0
    for doc_id, text in zip(ids, texts, strict=True):
        doc = Document(text=text, id=doc_id)
        if all(_passes(f.filter(doc)) for f in filters):
            kept += 1
    return kept


def _passes(verdict: bool | tuple) -> bool:
    return bool(verdict[0] if isinstance(verdict, tuple) else verdict)


TASKS: dict[tuple[str, str], Callable] = {
    ("datasketch", "signatures"): lambda ids, texts, req, seed: _datasketch_signatures(texts, req, seed),
    ("datasketch", "neardup"): _datasketch_neardup,
    ("datasketch", "dedup_job"): _datasketch_job,
    ("rensa", "signatures"): lambda ids, texts, req, seed: _rensa_signatures(texts, req, seed),
    ("rensa", "neardup"): _rensa_neardup,
    ("datatrove", "signatures"): lambda ids, texts, req, seed: _datatrove_signatures(texts, req, seed),
    ("datatrove", "neardup"): _datatrove_neardup,
    ("datatrove", "filters"): _datatrove_filters,
}


def run_task(req: dict[str, Any]) -> dict[str, Any]:
    """One tool, one task, ``repeats`` times (the seed changes per repeat, so accuracy has a spread)."""
    measure.pin_to_cores(1)
    ids, texts = load(req["corpus_file"], req["docs"])
    truth = accuracy.load_truth(req["truth"], ids) if req.get("truth") else None
    fn = TASKS[(req["tool"], req["task"])]
    warm = max(1, min(len(ids) // 20, 100))
    fn(ids[:warm], texts[:warm], {**req, "docs": warm}, req["seed"])
    times, scores, kept = [], [], None
    measure.reset_peak_rss()
    for r in range(req["repeats"]):
        started = time.perf_counter()
        out = fn(ids, texts, req, req["seed"] + r)
        times.append(time.perf_counter() - started)
        if req["task"] in ("neardup", "dedup_job"):
            labels, removed = out
            scores.append(accuracy.score(truth, removed, labels))
        elif req["task"] == "filters":
            kept = out
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    result: dict[str, Any] = {"tool": req["tool"], "task": req["task"], "docs": len(ids),
                              "text_mb": round(nbytes / measure.MB, 2), "cores": 1,
                              **measure.rates(times, len(ids), nbytes, 1),
                              "peak_rss_mb": measure.peak_rss_mb()}
    if kept is not None:
        result["docs_out"] = kept
    if scores and scores[0] is not None:
        result["accuracy"] = accuracy.summarize_scores(scores)
    return result


def main_handler(req: dict[str, Any]) -> dict[str, Any]:
    return probe(req) if req.get("probe") else run_task(req)


if __name__ == "__main__":
    measure.child_main(main_handler)
