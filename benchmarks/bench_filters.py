"""Heuristic quality filters: throughput on real text, and agreement with reference implementations.

    python -m benchmarks.bench_filters [--input CORPUS.jsonl[.gz]] [--docs N] [--output DIR]
                                       [--repeats N] [--agreement-docs N] [--batch-rows N]

Throughput: ``gopher_repetition``, ``gopher_quality``, ``c4_quality`` and ``fineweb_quality`` over
in-memory Arrow batches in one process pinned to one core (no Ray), after a warm-up batch (compiled
kernels load from numba's cache). Each filter alone sees every document; the chain passes only the
survivors on, in datatrove's FineWeb order (repetition, quality, C4, FineWeb). MB/s per core is
text MB / wall time; ``cpu_mb_per_s`` uses the process's CPU time, which a busy shared machine
disturbs less.

Agreement, on the first ``--agreement-docs`` documents, each filter deciding on every document:
- with ``tests/ops/reference_filters.py``, a plain per-document Python version of the same rules
  (identical decisions expected: it checks the compiled kernels on real text);
- with datatrove's GopherRepetitionFilter, GopherQualityFilter, C4QualityFilter and
  FineWebQualityFilter at their defaults, when ``datatrove`` is importable (it is not a dependency:
  run this module with an interpreter that has both, e.g. ``PYTHONPATH=. /venv/bin/python -m ...``).
  Disagreements are listed as (llmray reason, datatrove reason) pairs, datatrove's reasons renamed
  to llmray's (``DATATROVE_REASONS``).

Writes ``filters.json`` to the output directory (default ``benchmarks/results``). The default input is
the research corpus at ``../shared/data/neardup/corpus_20k.jsonl.gz`` when present.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from llmray.bench import measure
from llmray.ops.base import KEEP, FilterStep
from llmray.ops.filters.c4_quality import C4Quality
from llmray.ops.filters.fineweb_quality import FineWebQuality
from llmray.ops.filters.gopher_quality import GopherQuality
from llmray.ops.filters.gopher_repetition import GopherRepetition
from llmray.schema import TEXT
from tests.ops import reference_filters

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = ROOT.parent / "shared" / "data" / "neardup" / "corpus_20k.jsonl.gz"
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results"
TARGET_MB_PER_S_PER_CORE = 20.0
#: datatrove's figure for the same four filters on this machine (research notes, perf.md).
DATATROVE_MB_PER_S_PER_CORE = 0.23

Decisions = dict[str, list[str | None]]

#: datatrove's reason names in llmray's terms, so that "same reason" compares like with like.
DATATROVE_REASONS = {
    "gopher_short_doc": "too_few_words", "gopher_long_doc": "too_many_words",
    "gopher_below_avg_threshold": "mean_word_too_short", "gopher_above_avg_threshold": "mean_word_too_long",
    "gopher_too_many_hashes": "too_many_hashes", "gopher_too_many_ellipsis": "too_many_ellipses",
    "gopher_too_many_bullets": "too_many_bullet_lines", "gopher_too_many_end_ellipsis": "too_many_ellipsis_lines",
    "gopher_below_alpha_threshold": "too_few_alpha_words", "gopher_enough_stop_words": "too_few_stop_words",
    "dup_para_frac": "too_many_duplicate_paragraphs", "dup_para_char_frac": "too_many_duplicate_paragraph_chars",
    "dup_line_frac": "too_many_duplicate_lines", "dup_line_char_frac": "too_many_duplicate_line_chars",
    **{f"top_{n}_gram": f"top_{n}gram_too_frequent" for n in (2, 3, 4)},
    **{f"duplicated_{n}_n_grams": f"too_many_duplicate_{n}grams" for n in range(5, 11)},
    "lorem_ipsum": "contains_lorem_ipsum", "curly_bracket": "contains_curly_bracket",
    "too_few_sentences": "too_few_sentences", "empty": "empty", "line_punct_ratio": "too_few_punctuated_lines",
    "short_line_ratio": "too_many_short_lines", "char_dup_ratio": "too_many_duplicate_line_chars",
    "list_ratio": "too_many_newlines",
}


def filters() -> list[FilterStep]:
    """The four filters at their defaults, in FineWeb's order."""
    return [GopherRepetition(), GopherQuality(), C4Quality(), FineWebQuality()]


def read_texts(path: Path, docs: int | None) -> list[str]:
    """The ``text`` field of the first ``docs`` records of a JSONL file (optionally gzip)."""
    opener = gzip.open if path.suffix == ".gz" else open
    texts: list[str] = []
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if docs is not None and len(texts) >= docs:
                break
            if line.strip():
                texts.append(json.loads(line)[TEXT])
    return texts


def batches(texts: list[str], rows: int) -> list[pa.Table]:
    return [pa.table({TEXT: pa.array(texts[i:i + rows], pa.string())}) for i in range(0, len(texts), rows)]


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], list[float], Any]:
    """Wall and CPU seconds of each repeat, and the last result."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus, result


def _rates(walls: list[float], cpus: list[float], docs: int, nbytes: int) -> dict[str, Any]:
    out = measure.rates(walls, docs, nbytes, cores=1)
    out["cpu_mb_per_s"] = measure.summarize([nbytes / measure.MB / t for t in cpus if t > 0])
    return out


def chain(ops: Sequence[FilterStep], tables: list[pa.Table]) -> dict[str, int]:
    """Run the filters one after another on each batch; documents dropped per op (in order)."""
    dropped: Counter = Counter()
    for table in tables:
        for op in ops:
            kept, removed, _ = op.split(table)
            dropped[op.name] += removed.num_rows
            table = kept
    return dict(dropped)


def throughput(ops: Sequence[FilterStep], tables: list[pa.Table], repeats: int) -> dict[str, Any]:
    docs = sum(t.num_rows for t in tables)
    text_bytes = sum(pc.sum(pc.binary_length(t.column(TEXT))).as_py() or 0 for t in tables)
    warm = time.perf_counter()
    chain(ops, tables[:1])
    out: dict[str, Any] = {"warmup_s": round(time.perf_counter() - warm, 3), "docs": docs,
                           "text_mb": round(text_bytes / measure.MB, 2)}
    walls, cpus, dropped = _timed(lambda: chain(ops, tables), repeats)
    out["chain"] = {"order": [op.name for op in ops], "dropped": dropped,
                    "kept": docs - sum(dropped.values()), **_rates(walls, cpus, docs, text_bytes)}
    out["alone"] = {}
    for op in ops:
        walls, cpus, _ = _timed(lambda op=op: [op.evaluate(t) for t in tables], repeats)
        out["alone"][op.name] = _rates(walls, cpus, docs, text_bytes)
    return out


def llmray_decisions(ops: Sequence[FilterStep], texts: list[str], rows: int) -> Decisions:
    """Each filter's reason (None: kept) for every document."""
    out: Decisions = {op.name: [] for op in ops}
    for table in batches(texts, rows):
        for op in ops:
            out[op.name] += [None if c == KEEP else op.reasons[c] for c in op.codes(table)]
    return out


def reference_decisions(texts: list[str]) -> Decisions:
    return {name: [fn(text) for text in texts] for name, fn in reference_filters.FILTERS.items()}


def datatrove_decisions(texts: list[str]) -> Decisions | None:
    """datatrove's four filters at their defaults, each on every document; None without datatrove."""
    try:
        from datatrove.data import Document
        from datatrove.pipeline.filters import (
            C4QualityFilter,
            FineWebQualityFilter,
            GopherQualityFilter,
            GopherRepetitionFilter,
        )
    except ImportError:
        return None
    peers = {"gopher_repetition": GopherRepetitionFilter(), "gopher_quality": GopherQualityFilter(),
             "c4_quality": C4QualityFilter(), "fineweb_quality": FineWebQualityFilter()}
    out: Decisions = {name: [] for name in peers}
    for i, text in enumerate(texts):
        for name, peer in peers.items():
            verdict = peer.filter(Document(text=text, id=str(i)))  # C4 rewrites the text: a fresh doc each
            reason = verdict[1] if isinstance(verdict, tuple) else "dropped"
            out[name].append(None if verdict is True else DATATROVE_REASONS.get(reason, reason))
    return out


def compare(ours: Decisions, theirs: Decisions, top: int = 12) -> dict[str, Any]:
    """Keep/drop agreement per filter and for the whole chain, with the disagreeing reason pairs."""
    out: dict[str, Any] = {}
    names = [name for name in ours if name in theirs]
    for name in names:
        a, b = ours[name], theirs[name]
        same = sum((x is None) == (y is None) for x, y in zip(a, b, strict=True))
        pairs = Counter((x or "keep", y or "keep") for x, y in zip(a, b, strict=True) if (x is None) != (y is None))
        out[name] = {
            "docs": len(a),
            "same_decision_pct": round(100 * same / len(a), 2),
            "same_reason_pct": round(100 * sum(x == y for x, y in zip(a, b, strict=True)) / len(a), 2),
            "dropped_pct": {"llmray": round(100 * sum(x is not None for x in a) / len(a), 2),
                            "other": round(100 * sum(y is not None for y in b) / len(b), 2)},
            "disagreements": [{"llmray": x, "other": y, "docs": n} for (x, y), n in pairs.most_common(top)],
        }
    kept_ours = [all(ours[n][i] is None for n in names) for i in range(len(ours[names[0]]))]
    kept_theirs = [all(theirs[n][i] is None for n in names) for i in range(len(kept_ours))]
    out["all_four"] = {
        "same_decision_pct": round(100 * sum(x == y for x, y in zip(kept_ours, kept_theirs, strict=True))
                                   / len(kept_ours), 2),
        "kept_pct": {"llmray": round(100 * sum(kept_ours) / len(kept_ours), 2),
                     "other": round(100 * sum(kept_theirs) / len(kept_theirs), 2)},
    }
    return out


def run(input_path: str | Path | None = None, docs: int | None = None, output_dir: str | Path | None = None,
        repeats: int = 3, agreement_docs: int = 2000, batch_rows: int = 1000, quick: bool = False) -> dict[str, Any]:
    """Measure and write ``filters.json``; returns the same dict (``{"skipped": why}`` without input)."""
    path = Path(input_path) if input_path else DEFAULT_INPUT
    if not path.is_file():
        return {"skipped": f"no input corpus at {path} (pass input_path / --input)"}
    if quick:
        repeats, agreement_docs = 1, min(agreement_docs, 500)
    measure.pin_to_cores(1)
    texts = read_texts(path, docs)
    ops = filters()
    tables = batches(texts, batch_rows)
    result: dict[str, Any] = {
        "input": str(path), "docs": len(texts), "batch_rows": batch_rows, "repeats": repeats,
        "machine": measure.machine(),
        "target_mb_per_s_per_core": TARGET_MB_PER_S_PER_CORE,
        "datatrove_mb_per_s_per_core": DATATROVE_MB_PER_S_PER_CORE,
        "throughput": throughput(ops, tables, repeats),
    }
    sample = texts[:agreement_docs]
    ours = llmray_decisions(ops, sample, batch_rows)
    result["agreement"] = {"docs": len(sample), "reference": compare(ours, reference_decisions(sample))}
    theirs = datatrove_decisions(sample)
    if theirs is None:
        result["agreement"]["datatrove"] = {"skipped": "datatrove is not importable here"}
    else:
        result["agreement"]["datatrove"] = {"version": importlib.metadata.version("datatrove"), **compare(ours, theirs)}
    out_dir = Path(output_dir) if output_dir else DEFAULT_OUTPUT
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "filters.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", help=f"JSONL(.gz) with a text field (default {DEFAULT_INPUT})")
    parser.add_argument("--docs", type=int, help="first N documents (default all)")
    parser.add_argument("--output", help=f"directory for filters.json (default {DEFAULT_OUTPUT})")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--agreement-docs", type=int, default=2000)
    parser.add_argument("--batch-rows", type=int, default=1000)
    args = parser.parse_args(argv)
    result = run(args.input, args.docs, args.output, args.repeats, args.agreement_docs, args.batch_rows)
    if "skipped" in result:
        raise SystemExit(result["skipped"])
    tp = result["throughput"]
    print(f"{tp['docs']} docs, {tp['text_mb']} MB; chain {tp['chain']['mb_per_s_per_core']['median']} MB/s per core "
          f"(CPU time: {tp['chain']['cpu_mb_per_s']['median']} MB/s), kept {tp['chain']['kept']}")
    for name, rates in tp["alone"].items():
        print(f"  {name}: {rates['mb_per_s_per_core']['median']} MB/s per core "
              f"(CPU time: {rates['cpu_mb_per_s']['median']})")
    for peer in ("reference", "datatrove"):
        report = result["agreement"][peer]
        print(f"agreement with {peer}: " + (report.get("skipped") or ", ".join(
            f"{name} {r['same_decision_pct']}%" for name, r in report.items() if isinstance(r, dict))))


if __name__ == "__main__":
    main()
