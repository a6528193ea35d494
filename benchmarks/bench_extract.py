"""Main-text extraction accuracy: ``html_to_text`` against pages whose article text is known.

Data: the article-extraction benchmark (181 news pages, gzipped HTML, with hand-checked article
bodies in ``ground-truth.json``; MIT licence, the page texts belong to their publishers, so it is
read from ``shared/`` and never shipped). Each page goes through the same code as a crawl job: bytes
decoded by the WARC/HTML reader's ``decode``, then the ``html_to_text`` step.

Scores per page, averaged over all pages (a page dropped as ``no_content`` scores 0):
- ``token``: precision, recall and F1 of the multiset of lowercased word tokens;
- ``shingle``: the same over 4-token shingles, which also punishes text out of order (the
  benchmark's own evaluation uses shingles; the numbers compare in spirit, not digit for digit).

    python -m benchmarks.bench_extract [--data DIR] [--extractors trafilatura resiliparse] [--limit N]
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa

from llmray.bench.measure import machine
from llmray.io.warc import decode
from llmray.ops.base import KEEP
from llmray.ops.clean.html import HtmlToText
from llmray.schema import TEXT

ROOT = Path(__file__).resolve().parents[1]
DATA_NAME = Path("data/web/article-extraction-benchmark")
#: Where a checkout finds shared/: inside it, or beside it (CI clones next to a copy of shared/).
DATA_CANDIDATES = [ROOT / "shared" / DATA_NAME, ROOT.parent / "shared" / DATA_NAME]
#: Each extractor with the parameters it is measured with (the job file's choices).
CONFIGS: dict[str, dict[str, Any]] = {
    "trafilatura": {"extractor": "trafilatura"},
    "trafilatura_precision": {"extractor": "trafilatura", "favor_precision": True},
    "trafilatura_fast": {"extractor": "trafilatura", "fast": True},
    "resiliparse": {"extractor": "resiliparse"},
}
_TOKEN = re.compile(r"\w+")


def find_data() -> Path | None:
    return next((p for p in DATA_CANDIDATES if (p / "ground-truth.json").is_file()), None)


def load_pages(data: Path, limit: int | None = None) -> tuple[list[str], list[str], list[str]]:
    """(ids, decoded HTML, gold text) of the benchmark pages, in id order."""
    truth = json.loads((data / "ground-truth.json").read_text(encoding="utf-8"))
    ids = sorted(truth)[:limit]
    html = []
    for page in ids:
        text = decode(gzip.decompress((data / "html" / f"{page}.html.gz").read_bytes()), None)[0]
        html.append(text or "")
    return ids, html, [truth[page]["articleBody"] for page in ids]


def prf(gold: Counter, predicted: Counter) -> tuple[float, float, float]:
    """Precision, recall and F1 of two multisets."""
    common = sum((gold & predicted).values())
    precision = common / sum(predicted.values()) if predicted else 0.0
    recall = common / sum(gold.values()) if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def shingles(tokens: list[str], n: int = 4) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(max(len(tokens) - n + 1, 1)))


def score(golds: list[str], extracted: list[str | None]) -> dict[str, Any]:
    """Mean token and shingle precision/recall/F1 over pages, with the F1 standard error."""
    per_page: dict[str, list[tuple[float, float, float]]] = {"token": [], "shingle": []}
    for gold, text in zip(golds, extracted, strict=True):
        gold_tokens, tokens = _TOKEN.findall(gold.lower()), _TOKEN.findall((text or "").lower())
        per_page["token"].append(prf(Counter(gold_tokens), Counter(tokens)))
        per_page["shingle"].append(prf(shingles(gold_tokens), shingles(tokens) if tokens else Counter()))
    result: dict[str, Any] = {}
    for kind, values in per_page.items():
        precision, recall, f1 = (list(column) for column in zip(*values, strict=True))
        result[kind] = {"precision": _mean(precision), "recall": _mean(recall), "f1": _mean(f1),
                        "f1_stderr": round(statistics.stdev(f1) / len(f1) ** 0.5, 4) if len(f1) > 1 else 0.0}
    return result


def _mean(values: list[float]) -> float:
    return round(statistics.fmean(values), 4)


def evaluate(params: dict[str, Any], ids: list[str], html: list[str], golds: list[str]) -> dict[str, Any]:
    """Run ``html_to_text`` with ``params`` over the pages and score the text it keeps."""
    op = HtmlToText(**params)
    op.setup()
    table = pa.table({"id": ids, TEXT: html})
    started = time.perf_counter()
    out, codes = op.map_rows(table)
    seconds = time.perf_counter() - started
    kept = out if codes is None else out.filter(pa.array(codes == KEEP))
    texts = dict(zip(kept.column("id").to_pylist(), kept.column(TEXT).to_pylist(), strict=True))
    reasons = Counter(op.reason_names()[c] for c in ([] if codes is None else codes[codes != KEEP]))
    return {"params": params, **score(golds, [texts.get(page) for page in ids]), "pages": len(ids),
            "dropped": dict(reasons), "seconds": round(seconds, 2),
            "pages_per_s": round(len(ids) / seconds, 1)}


def run(data: Path | None = None, extractors: list[str] | None = None, limit: int | None = None,
        output_dir: Path | None = ROOT / "benchmarks" / "results") -> dict[str, Any]:
    """Score each configuration on the benchmark pages; ``{"skipped": why}`` when the data is absent."""
    data = data or find_data()
    if data is None or not (data / "ground-truth.json").is_file():
        return {"skipped": f"benchmark pages not found (looked in {', '.join(map(str, DATA_CANDIDATES))})"}
    ids, html, golds = load_pages(data, limit)
    results: dict[str, Any] = {"data": str(data), "pages": len(ids), "machine": machine(),
                               "extractors": {name: evaluate(CONFIGS[name], ids, html, golds)
                                              for name in extractors or list(CONFIGS)}}
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "extract.json").write_text(json.dumps(results, indent=2))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="the benchmark folder (with ground-truth.json and html/)")
    parser.add_argument("--extractors", nargs="+", choices=list(CONFIGS), help="default: all")
    parser.add_argument("--limit", type=int, help="score only the first N pages")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    results = run(args.data, args.extractors, args.limit, args.output)
    summary = {name: {"token_f1": r["token"]["f1"], "shingle_f1": r["shingle"]["f1"],
                      "pages_per_s": r["pages_per_s"]} for name, r in results.get("extractors", {}).items()}
    print(json.dumps(summary or results, indent=2))


if __name__ == "__main__":
    main()
