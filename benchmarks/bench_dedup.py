"""Near-duplicate removal end to end through Ray: throughput, accuracy, worker memory, datasketch.

    python -m benchmarks.bench_dedup [--input CORPUS.jsonl.gz --truth TRUTH.jsonl.gz] [--output DIR]
                                     [--scales 1,5,50] [--cpus 2]

The corpus (JSONL with id and text) is written as parquet, then ``minhash_dedup`` runs on it through
a local Ray runtime (``ray.init`` and one warm-up run are not timed; the warm-up starts the workers).
Scale k > 1 concatenates k copies of the corpus, copy r with its ASCII letters put through a letter
permutation of its own: lengths, word boundaries and every duplicate relation stay as they were
inside a copy, while copies share no words (ids and true clusters get the suffix ``-r<r>``), so the
ground truth scales with it. Accuracy is scored like ``eval_dedup.py`` (benchmarks.accuracy).
datasketch (``MinHash.bulk`` + ``MinHashLSH`` at the same threshold, one process, regex word
5-grams) runs on the same documents in the same run; the ratio compares MB/s per core.
Peak memory is sampled every 0.25 s for each Ray worker process (RSS, and RSS minus shared pages,
which leaves out the object store's shared memory that a worker maps while reading).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import shutil
import statistics
import string
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks import accuracy, measure, peers

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "neardup"
DEFAULT_INPUT = SHARED / "corpus_20k.jsonl.gz"
DEFAULT_TRUTH = SHARED / "truth_20k.jsonl.gz"
ROWS_PER_GROUP = 2000


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _cipher(r: int) -> dict[int, int]:
    letters = list(string.ascii_lowercase)
    random.Random(r).shuffle(letters)
    lower = "".join(letters)
    return str.maketrans(string.ascii_lowercase + string.ascii_uppercase, lower + lower.upper())


def write_scaled(docs: list[dict[str, Any]], truth: dict[str, str] | None, scale: int,
                 directory: Path) -> tuple[dict[str, str] | None, int]:
    """Parquet input of ``scale`` disguised copies; (scaled truth, text bytes)."""
    directory.mkdir(parents=True)
    scaled: dict[str, str] | None = {} if truth is not None else None
    nbytes = 0
    for r in range(scale):
        table = _cipher(r) if r else None
        suffix = f"-r{r}" if r else ""
        ids = [f"{d['id']}{suffix}" for d in docs]
        texts = [d["text"].translate(table) if table else d["text"] for d in docs]
        nbytes += sum(len(t.encode()) for t in texts)
        if scaled is not None and truth is not None:
            scaled.update({f"{doc}{suffix}": f"{cluster}{suffix}" for doc, cluster in truth.items()})
        for k in range(0, len(docs), 4 * ROWS_PER_GROUP):
            part = pa.table({"id": ids[k:k + 4 * ROWS_PER_GROUP], "text": texts[k:k + 4 * ROWS_PER_GROUP],
                             "source": ["bench"] * len(ids[k:k + 4 * ROWS_PER_GROUP])})
            pq.write_table(part, directory / f"r{r:03d}-{k:07d}.parquet", row_group_size=ROWS_PER_GROUP)
    return scaled, nbytes


class WorkerMemory:
    """Peak RSS (and RSS minus shared pages) of any single Ray worker process of this driver."""

    def __init__(self, interval_s: float = 0.25):
        self.interval_s = interval_s
        self.peak_rss = self.peak_private = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        driver = psutil.Process()
        while not self._stop.is_set():
            for proc in driver.children(recursive=True):  # this run's workers, not other Ray sessions'
                try:
                    name, mem = proc.name(), proc.memory_info()
                except psutil.Error:
                    continue
                if name.startswith("ray::"):
                    self.peak_rss = max(self.peak_rss, mem.rss)
                    self.peak_private = max(self.peak_private, mem.rss - mem.shared)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> WorkerMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def figures(self) -> dict[str, float]:
        return {"peak_worker_rss_mb": round(self.peak_rss / 1e6, 1),
                "peak_worker_private_mb": round(self.peak_private / 1e6, 1)}


def run_ours(input_dir: Path, work: Path, threshold: float, cpus: int) -> tuple[float, dict[str, Any], Any]:
    """One timed ``minhash_dedup`` run: (wall seconds, its result, (kept ids, id -> cluster))."""
    from llmray.ops.dedup import MinhashDedup
    from llmray.pipeline.context import GlobalContext

    shutil.rmtree(work, ignore_errors=True)
    ctx = GlobalContext(input_dir=input_dir, output_dir=work / "data", work_dir=work / "work", output_root=work,
                        rejects_dir=None, num_cpus=cpus)
    started = time.perf_counter()
    result = MinhashDedup(threshold=threshold, write_clusters=True).run(ctx)
    wall = time.perf_counter() - started
    kept = set(pq.read_table(ctx.output_dir, columns=["id"]).column("id").to_pylist())
    clusters = pq.read_table(work / "clusters", columns=["id", "cluster_id"]).to_pydict()
    labels = dict(zip(clusters["id"], clusters["cluster_id"], strict=True))
    return wall, result, (kept, labels)


def run_datasketch(docs: list[dict[str, Any]], threshold: float) -> tuple[float, dict[str, str], set[str], Any]:
    """datasketch as its users run it: regex 5-word shingles, MinHash.bulk, MinHashLSH(threshold)."""
    from datasketch import LeanMinHash, MinHash, MinHashLSH

    ids = [str(d["id"]) for d in docs]
    started = time.perf_counter()
    shingled = [[s.encode() for s in peers.word_shingles(d["text"], 5)] for d in docs]
    sigs = [LeanMinHash(m) for m in MinHash.bulk(shingled, num_perm=128, seed=1)]
    lsh = MinHashLSH(threshold=threshold, num_perm=128)
    for i, sig in enumerate(sigs):
        lsh.insert(i, sig)
    pairs = [(i, j) for i, sig in enumerate(sigs) for j in lsh.query(sig) if j != i]
    labels, removed = accuracy.clusters_from_pairs(ids, pairs)
    return time.perf_counter() - started, labels, removed, lsh.b, lsh.r


def run(input_path: str | None = None, truth_path: str | None = None, output_dir: str | Path | None = None,
        quick: bool = False, repeats: int = 3, cpus: int | list[int] | None = None,
        scales: list[int] | None = None, thresholds: list[float] | None = None,
        datasketch_max_docs: int = 100_000) -> dict[str, Any]:
    """Benchmark ``minhash_dedup``; writes ``dedup.json`` to ``output_dir`` and returns the same dict."""
    import ray

    source = Path(input_path) if input_path else DEFAULT_INPUT
    if not source.is_file():
        return {"skipped": f"no corpus at {source}"}
    truth_file = Path(truth_path) if truth_path else (DEFAULT_TRUTH if not input_path else None)
    cores = max(cpus) if isinstance(cpus, list) else (cpus or 2)
    scales = scales or ([1] if quick else [1, 5])
    thresholds = thresholds or ([0.8] if quick else [0.8, 0.7])
    repeats = 1 if quick else repeats
    docs = _read_jsonl(source)
    truth = accuracy.load_truth(truth_file) if truth_file and truth_file.is_file() else None
    results: dict[str, Any] = {"input": str(source), "truth": str(truth_file) if truth else None,
                               "cpus": cores, "machine": measure.machine(), "runs": []}
    started = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, configure_logging=False)
    results["ray_init_s"] = round(time.perf_counter() - started, 2)
    tmp = Path(tempfile.mkdtemp(prefix="bench_dedup_"))
    try:
        for scale in scales:
            input_dir = tmp / f"in-x{scale}"
            scaled_truth, nbytes = write_scaled(docs, truth, scale, input_dir)
            for threshold in thresholds if scale == 1 else thresholds[:1]:
                results["runs"].append(_measure(input_dir, tmp / "out", scaled_truth, nbytes, scale, len(docs),
                                                threshold, cores, repeats if scale == 1 else 1))
                if scale * len(docs) <= datasketch_max_docs:
                    results["runs"][-1]["datasketch"] = _datasketch(docs, truth, scale, threshold, nbytes)
            shutil.rmtree(input_dir)
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "dedup.json").write_text(json.dumps(results, indent=2))
    return results


def _measure(input_dir: Path, work: Path, truth: dict[str, str] | None, nbytes: int, scale: int, n_docs: int,
             threshold: float, cores: int, repeats: int) -> dict[str, Any]:
    cold, _, _ = run_ours(input_dir, work, threshold, cores)  # starts workers, loads kernels
    walls = []
    with WorkerMemory() as memory:
        for _ in range(repeats):
            wall, result, (kept, labels) = run_ours(input_dir, work, threshold, cores)
            walls.append(wall)
    wall = statistics.median(walls)
    entry: dict[str, Any] = {
        "scale": scale, "docs": n_docs * scale, "text_mb": round(nbytes / 1e6, 1), "threshold": threshold,
        "wall_s": round(wall, 3), "walls_s": [round(w, 3) for w in walls], "cold_wall_s": round(cold, 3),
        "mb_s_per_core": round(nbytes / 1e6 / wall / cores, 1), "removed": result.docs_in - result.docs_out,
        "details": result.details, **memory.figures()}
    if truth is not None:
        removed = set(truth) - kept
        entry["scores"] = accuracy.score(truth, removed, labels)
    return entry


def _datasketch(docs: list[dict[str, Any]], truth: dict[str, str] | None, scale: int, threshold: float,
                nbytes: int) -> dict[str, Any]:
    batch = docs if scale == 1 else [
        {"id": f"{d['id']}-r{r}" if r else d["id"], "text": d["text"].translate(_cipher(r)) if r else d["text"]}
        for r in range(scale) for d in docs]
    wall, labels, removed, bands, rows = run_datasketch(batch, threshold)
    scaled = None if truth is None else {f"{k}-r{r}" if r else k: f"{v}-r{r}" if r else v
                                         for r in range(scale) for k, v in truth.items()}
    return {"wall_s": round(wall, 2), "mb_s_per_core": round(nbytes / 1e6 / wall, 2), "bands": bands, "rows": rows,
            "scores": accuracy.score(scaled, removed, labels) if scaled else None}


def summary(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for r in results.get("runs", []):
        row = {"docs": r["docs"], "threshold": r["threshold"], "wall_s": r["wall_s"],
               "mb_s_per_core": r["mb_s_per_core"],
               "removal_f1": r.get("scores", {}).get("removal", {}).get("f1"),
               "peak_worker_private_mb": r["peak_worker_private_mb"]}
        if "datasketch" in r:
            ds = r["datasketch"]
            row["datasketch_mb_s_per_core"] = ds["mb_s_per_core"]
            row["datasketch_removal_f1"] = (ds["scores"] or {}).get("removal", {}).get("f1")
            row["speedup_per_core"] = round(r["mb_s_per_core"] / ds["mb_s_per_core"], 1)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", help=f"JSONL(.gz) with id and text (default {DEFAULT_INPUT})")
    parser.add_argument("--truth", help="ground truth JSONL(.gz) with id and cluster")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--scales", default="1,5", help="comma-separated corpus multiples (1,5,50 = 20k,100k,1M)")
    parser.add_argument("--thresholds", default="0.8,0.7", help="the first is also used at larger scales")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--datasketch-max-docs", type=int, default=100_000)
    args = parser.parse_args()
    results = run(args.input, args.truth, args.output, repeats=args.repeats, cpus=args.cpus,
                  scales=[int(s) for s in args.scales.split(",")],
                  thresholds=[float(t) for t in args.thresholds.split(",")],
                  datasketch_max_docs=args.datasketch_max_docs)
    print(json.dumps(summary(results) or results, indent=2))


if __name__ == "__main__":
    main()
