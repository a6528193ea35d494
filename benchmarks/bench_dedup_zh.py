"""Dedup on Chinese: accuracy of the shipped ``jobs/dedup.yaml`` on Chinese near duplicates, per
shingle mode, and its MB/s per core on Chinese beside English, in one run on one machine.

    python -m benchmarks.bench_dedup_zh [--set DIR] [--reference DEB] [--english CORPUS.jsonl.gz]
                                        [--cpus 2] [--repeats 3] [--zh-mb 60] [--output benchmarks/results]

* **Set**: ``benchmarks/neardup_zh/build.py`` (real Chinese prose from the Debian handbook and, with
  ``--reference``, the Debian Reference; near duplicates by 1-4% character edits, a dropped or
  swapped paragraph, boilerplate, cosmetic changes; exact copies). Built under ``--set`` (default
  /tmp/llmray-neardup-zh) when missing; never shipped.
* **Accuracy**: ``jobs/dedup.yaml`` as shipped (exact_dedup, then minhash_dedup with its defaults),
  its input replaced as ``llmray run jobs/dedup.yaml --input DIR`` does; then the same job with
  ``minhash_dedup``'s ``shingle`` (and ``cjk_ngram``) set otherwise. Removal (and pair) scores of
  the ids missing from ``data/`` against the truth (``llmray.bench.accuracy``, as ``eval_dedup.py``).
* **Throughput**: the same job on the English near-dup corpus (``--english``, default the research
  ``corpus_20k``: 3% exact copies, 20% near duplicates) and on about as many MB of Chinese: copies
  of a second build of the set with those shares (``<set>-throughput``), copy r with its CJK
  ideographs and ASCII letters through permutations of its own (duplicates stay inside a copy; the
  truth scales and is scored too). One untimed run of each, then ``--repeats`` runs alternating
  English and Chinese; figures are stats.json's ``wall_s`` (Ray start-up apart), MB/s per core =
  input bytes / wall_s / CPUs, median and spread over the repeats. ``kernel_mb_s``: the dedup
  kernels alone (signatures of ``shingle: auto``, normalized exact hashes) on one core, in process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from llmray.bench import accuracy, corpus, measure

ROOT = Path(__file__).resolve().parents[1]
JOB = ROOT / "jobs" / "dedup.yaml"
DEFAULT_SET = Path("/tmp/llmray-neardup-zh")
DEFAULT_ENGLISH = ROOT.parent / "shared" / "data" / "neardup" / "corpus_20k.jsonl.gz"
ROWS_PER_GROUP = 2000
#: Shingle settings compared on the Chinese set (the first is the job as shipped).
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("auto (shipped)", {}), ("word", {"shingle": "word"}), ("char", {"shingle": "char"}),
    *[(f"auto cjk_ngram={n}", {"cjk_ngram": n}) for n in (2, 4, 5, 6, 9)],
]


def cjk_cipher(r: int) -> dict[int, int]:
    """Copy r's permutation of the CJK unified ideographs, composed with the ASCII letter cipher."""
    block = list(range(0x4E00, 0xA000))
    shuffled = block[:]
    random.Random(10_000 + r).shuffle(shuffled)
    return {**dict(zip(block, shuffled, strict=True)), **corpus._cipher(r)}


def write_copies(docs: list[dict[str, Any]], truth: dict[str, str] | None, copies: int,
                 directory: Path) -> tuple[dict[str, str] | None, int]:
    """Parquet input of ``copies`` permuted copies; (their truth, text bytes)."""
    directory.mkdir(parents=True)
    scaled: dict[str, str] | None = None if truth is None else {}
    nbytes = 0
    for r in range(copies):
        table = cjk_cipher(r) if r else None
        part = [{"id": f"{d['id']}-r{r}" if r else str(d["id"]),
                 "text": d["text"].translate(table) if table else d["text"]} for d in docs]
        if scaled is not None and truth is not None:
            scaled.update({f"{k}-r{r}" if r else k: f"{v}-r{r}" if r else v for k, v in truth.items()})
        nbytes += sum(len(d["text"].encode()) for d in part)
        for k in range(0, len(part), 4 * ROWS_PER_GROUP):
            rows = part[k:k + 4 * ROWS_PER_GROUP]
            pq.write_table(pa.table({"id": [d["id"] for d in rows], "text": [d["text"] for d in rows]}),
                           directory / f"r{r:03d}-{k:07d}.parquet", row_group_size=ROWS_PER_GROUP)
    return scaled, nbytes


def run_job(input_dir: Path, work: Path, cpus: int, minhash: dict[str, Any] | None = None
            ) -> tuple[dict[str, Any], set[str], dict[str, str]]:
    """``jobs/dedup.yaml`` on ``input_dir`` (``minhash`` overrides minhash_dedup's parameters):
    (stats, kept ids, id -> predicted cluster of every removed document and the one it was kept for)."""
    from llmray.config import load_job
    from llmray.ops.dedup import MinhashDedup
    from llmray.pipeline.runner import RunOptions, inputs_from_paths
    from llmray.pipeline.runner import run_job as run

    spec = load_job(JOB)
    spec.inputs = inputs_from_paths([str(input_dir)], spec)
    spec.output = dataclasses.replace(spec.output, path=str(work))
    if minhash:
        spec.steps = [dataclasses.replace(s, **minhash) if isinstance(s, MinhashDedup) else s for s in spec.steps]
    stats = run(spec, RunOptions(num_cpus=cpus, overwrite=True, progress=False))
    kept = set(pq.read_table(work / "data", columns=["id"]).column("id").to_pylist())
    labels: dict[str, str] = {}
    if (work / "rejects").exists():  # the job writes rejects: each names the document kept for it
        rejects = pq.read_table(work / "rejects", columns=["id", "duplicate_of"]).to_pydict()
        parent = dict(zip(rejects["id"], rejects["duplicate_of"], strict=True))

        def root(doc: str) -> str:
            while doc in parent and parent[doc] is not None:
                doc = parent[doc]
            return doc

        labels = {doc: root(doc) for doc in parent} | {root(doc): root(doc) for doc in parent}
    return stats, kept, labels


def _scores(truth: dict[str, str], kept: set[str], labels: dict[str, str]) -> dict[str, Any]:
    return accuracy.score(truth, set(truth) - kept, labels) or {}


def _spread(values: list[float]) -> dict[str, Any]:
    med = statistics.median(values)
    return {"median": round(med, 2), "min": round(min(values), 2), "max": round(max(values), 2),
            "spread_pct": round(100 * (max(values) - min(values)) / med, 1) if med else None,
            "runs": [round(v, 2) for v in values]}


def _by_jaccard(truth_path: Path, labels: dict[str, str]) -> dict[str, Any]:
    """Share of the near duplicates found (in the predicted cluster of their source, as
    ``eval_dedup.py``'s recall by Jaccard), by their reference Jaccard to the source; exact copies."""
    rows = corpus.read_jsonl(truth_path)
    buckets = {f"[{lo:.2f},{min(hi, 1.0):.2f})": (lo, hi) for lo, hi in ((0.5, 0.7), (0.7, 0.85), (0.85, 1.01))}
    found: dict[str, list[bool]] = {name: [] for name in [*buckets, "exact"]}
    for r in rows:
        doc, src = str(r["id"]), str(r["src"])
        same = labels.get(doc, doc) == labels.get(src, src)
        if r["kind"] == "exact":
            found["exact"].append(same)
        elif r["kind"].startswith("near"):
            found[next(b for b, (lo, hi) in buckets.items() if lo <= r["jaccard_to_src"] < hi)].append(same)
    return {name: {"docs": len(hits), "found": round(sum(hits) / max(1, len(hits)), 4)} for name, hits in found.items()}


def run(output_dir: str | Path | None = None, quick: bool = False, repeats: int = 3, cpus: int | None = None,
        set_dir: str | Path | None = None, reference: str | Path | None = None,
        english_path: str | Path | None = None, zh_mb: float = 60.0) -> dict[str, Any]:
    """Benchmark dedup on Chinese; writes ``dedup_zh.json`` to ``output_dir`` and returns the same dict."""
    import ray

    from benchmarks.neardup_zh import build
    from llmray import cluster

    cores = cpus or 2
    set_dir = Path(set_dir) if set_dir else DEFAULT_SET
    if not (set_dir / "corpus.jsonl.gz").is_file():
        if not build.HANDBOOK.is_dir():
            return {"skipped": f"no Chinese set at {set_dir} and no {build.HANDBOOK} (apt-get install debian-handbook)"}
        build.build(set_dir, 2024, build.HANDBOOK, Path(reference) if reference else None, 0.35, 0.05)
    english = Path(english_path) if english_path else DEFAULT_ENGLISH
    repeats = 1 if quick else repeats
    docs = corpus.read_jsonl(set_dir / "corpus.jsonl.gz")
    truth = accuracy.load_truth(set_dir / "truth.jsonl.gz")
    build_stats = json.loads((set_dir / "build_stats.json").read_text())
    results: dict[str, Any] = {
        "set": {"path": str(set_dir), **{k: build_stats[k] for k in ("docs", "text_mb", "should_remove", "sources",
                                                                     "near_jaccard", "cjk_share_of_chars")}},
        "job": "jobs/dedup.yaml", "cpus": cores, "machine": measure.machine(), "accuracy": [], "throughput": {}}
    results["ray_init_s"] = round(cluster.connect(None, cores), 2)
    tmp = Path(tempfile.mkdtemp(prefix="bench_dedup_zh_"))
    try:
        zh1 = tmp / "zh-x1"
        write_copies(docs, truth, 1, zh1)
        run_job(zh1, tmp / "out", cores)  # warm-up: workers started, kernels loaded
        for name, minhash in VARIANTS[:3] if quick else VARIANTS:
            stats, kept, labels = run_job(zh1, tmp / "out", cores, minhash)
            entry = {"variant": name, "minhash_dedup": minhash, **_scores(truth, kept, labels),
                     "dropped": stats["dropped"], "wall_s": stats["wall_s"]}
            if name == "auto (shipped)":
                entry["found_by_reference_jaccard"] = _by_jaccard(set_dir / "truth.jsonl.gz", labels)
            results["accuracy"].append(entry)
            print(f"{name}: {entry['removal']}", flush=True)
        if english.is_file():
            # The throughput corpus has the English set's share of duplicates (3% exact, 20% near):
            # the eval set's 40% would time the removal of duplicates, not the reading of Chinese.
            t_dir = set_dir.with_name(set_dir.name + "-throughput")
            if not (t_dir / "corpus.jsonl.gz").is_file():
                build.build(t_dir, 2024, build.HANDBOOK, Path(reference) if reference else None, 0.20, 0.03)
            t_docs = corpus.read_jsonl(t_dir / "corpus.jsonl.gz")
            t_truth = accuracy.load_truth(t_dir / "truth.jsonl.gz")
            results["throughput"] = _throughput(t_docs, t_truth, english, tmp, cores, repeats, zh_mb)
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "dedup_zh.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return results


def _throughput(docs: list[dict[str, Any]], truth: dict[str, str], english: Path, tmp: Path, cores: int,
                repeats: int, zh_mb: float) -> dict[str, Any]:
    en_docs = corpus.read_jsonl(english)
    en_truth_path = Path(str(english).replace("corpus", "truth"))
    en_truth = accuracy.load_truth(en_truth_path) if en_truth_path.is_file() and en_truth_path != english else None
    set_mb = sum(len(d["text"].encode()) for d in docs) / 1e6
    copies = max(1, round(zh_mb / set_mb))
    inputs = {}
    inputs["english"] = (tmp / "en", *write_copies(en_docs, en_truth, 1, tmp / "en"))
    inputs["chinese"] = (tmp / "zh", *write_copies(docs, truth, copies, tmp / "zh"))
    walls: dict[str, list[float]] = {k: [] for k in inputs}
    last: dict[str, Any] = {}
    for name, (path, _, _) in inputs.items():
        run_job(path, tmp / f"out-{name}", cores)  # untimed
    for _ in range(repeats):
        for name, (path, _, _) in inputs.items():
            stats, kept, labels = run_job(path, tmp / f"out-{name}", cores)
            walls[name].append(stats["wall_s"])
            last[name] = (stats, kept, labels)
    out: dict[str, Any] = {"chinese_copies": copies}
    for name, (_, scaled_truth, nbytes) in inputs.items():
        stats, kept, labels = last[name]
        steps = stats["global_steps"]
        out[name] = {
            "docs": stats["docs_in"], "text_mb": round(nbytes / 1e6, 1), "wall_s": _spread(walls[name]),
            "mb_s_per_core": _spread([nbytes / 1e6 / w / cores for w in walls[name]]),
            "step_seconds": {step: details.get("seconds") for step, details in steps.items()},
            "scores": _scores(scaled_truth, kept, labels) if scaled_truth else None}
    out["kernel_mb_s"] = _kernel_rates({"english": en_docs, "chinese": docs})
    en, zh = out["english"]["mb_s_per_core"]["median"], out["chinese"]["mb_s_per_core"]["median"]
    out["english_over_chinese"] = round(en / zh, 2) if zh else None
    return out


def _kernel_rates(sets: dict[str, list[dict[str, Any]]], repeats: int = 5) -> dict[str, Any]:
    """MB/s of the dedup kernels alone (this process, one core, best of ``repeats``): the
    signatures of ``shingle: auto`` and the normalized exact hashes."""
    import time

    from llmray.kernels import minhash

    out: dict[str, Any] = {}
    for name, docs in sets.items():
        mb = sum(len(d["text"].encode()) for d in docs) / 1e6
        times = max(1, round(50 / mb))  # about 50 MB, so that a run takes long enough to time
        texts = pa.array([d["text"] for d in docs] * times, pa.large_string())
        mb *= times
        rates = {}
        for what, fn in (("signatures_auto", lambda t: minhash.signatures(t, 128, 5, minhash.Auto(), 42)),
                         ("exact_hashes", lambda t: minhash.text_hashes(t, True))):
            fn(texts.slice(0, 10))
            best = float("inf")
            for _ in range(repeats):
                started = time.perf_counter()
                fn(texts)
                best = min(best, time.perf_counter() - started)
            rates[what] = round(mb / best, 1)
        out[name] = {"docs_per_mb": round(len(texts) / mb), **rates}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", type=Path, help=f"folder of the Chinese set (default {DEFAULT_SET}; built if missing)")
    parser.add_argument("--reference", type=Path, help="debian-reference-zh-cn_2.100_all.deb, used when building")
    parser.add_argument("--english", type=Path, help=f"English corpus for the throughput (default {DEFAULT_ENGLISH})")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--zh-mb", type=float, default=60.0, help="MB of Chinese for the throughput")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    results = run(args.output, args.quick, args.repeats, args.cpus, args.set, args.reference, args.english, args.zh_mb)
    print(json.dumps({"accuracy": [{k: r.get(k) for k in ("variant", "removal")} for r in results.get("accuracy", [])],
                      "throughput": {k: v.get("mb_s_per_core", v) if isinstance(v, dict) else v
                                     for k, v in results.get("throughput", {}).items()}}, indent=1))


if __name__ == "__main__":
    main()
