"""Near-duplicate removal end to end through Ray: throughput, accuracy, worker memory, datasketch.

    python -m benchmarks.bench_dedup [--input CORPUS.jsonl.gz --truth TRUTH.jsonl.gz] [--output DIR]
                                     [--scales 1,5,50] [--cpus 2]

The corpus (JSONL with id and text) is written as parquet, then a job of ``minhash_dedup`` alone runs
on it through the runner on a local Ray runtime (Ray's start-up and one warm-up run are not timed;
the warm-up starts the workers); the time is the job's ``wall_s``. Scale k > 1 concatenates k
letter-permuted copies of the corpus (``llmray.bench.corpus.permuted_copies``), so the ground truth
scales with it. Accuracy is scored like ``eval_dedup.py`` (``llmray.bench.accuracy``).
datasketch (``MinHash.bulk`` + ``MinHashLSH`` at the same threshold, one process, regex word
5-grams) runs on the same documents in the same run; the ratio compares MB/s per core.
Peak memory is sampled every 0.25 s for each Ray worker process (RSS, and RSS minus shared pages,
which leaves out the object store's shared memory that a worker maps while reading).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from llmray.bench import accuracy, corpus, measure, peers

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "neardup"
DEFAULT_INPUT = SHARED / "corpus_20k.jsonl.gz"
DEFAULT_TRUTH = SHARED / "truth_20k.jsonl.gz"
ROWS_PER_GROUP = 2000


def copies(docs: list[dict[str, Any]], truth: dict[str, str] | None, scale: int
           ) -> Iterator[tuple[list[dict[str, Any]], dict[str, str] | None]]:
    """(documents, truth) of each of ``scale`` letter-permuted copies in turn."""
    records = [{"id": str(d["id"]), "text": d["text"]} for d in docs]
    truth_records = None if truth is None else [{"id": k, "cluster": v} for k, v in truth.items()]
    for r in range(scale):
        part, part_truth = corpus.permuted_copy(records, truth_records, r)
        yield part, None if part_truth is None else {t["id"]: t["cluster"] for t in part_truth}


def write_scaled(docs: list[dict[str, Any]], truth: dict[str, str] | None, scale: int,
                 directory: Path) -> tuple[dict[str, str] | None, int]:
    """Parquet input of ``scale`` letter-permuted copies; (scaled truth, text bytes)."""
    directory.mkdir(parents=True)
    scaled: dict[str, str] | None = None if truth is None else {}
    nbytes = 0
    for r, (part, part_truth) in enumerate(copies(docs, truth, scale)):
        nbytes += sum(len(d["text"].encode()) for d in part)
        if scaled is not None and part_truth is not None:
            scaled.update(part_truth)
        for k in range(0, len(part), 4 * ROWS_PER_GROUP):
            rows = part[k:k + 4 * ROWS_PER_GROUP]
            table = pa.table({"id": [d["id"] for d in rows], "text": [d["text"] for d in rows],
                              "source": ["bench"] * len(rows)})
            pq.write_table(table, directory / f"r{r:03d}-{k:07d}.parquet", row_group_size=ROWS_PER_GROUP)
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
    """One timed job of ``minhash_dedup``: (wall seconds, its stats, (kept ids, id -> cluster))."""
    from llmray.config import parse_job
    from llmray.pipeline.runner import RunOptions, run_job

    step = {"minhash_dedup": {"threshold": threshold, "write_clusters": True}}
    spec = parse_job({"input": {"paths": [str(input_dir)]}, "steps": [step], "output": {"path": str(work)}})
    stats = run_job(spec, RunOptions(num_cpus=cpus, overwrite=True, progress=False))
    kept = set(pq.read_table(work / "data", columns=["id"]).column("id").to_pylist())
    clusters = pq.read_table(work / "clusters", columns=["id", "cluster_id"]).to_pydict()
    labels = dict(zip(clusters["id"], clusters["cluster_id"], strict=True))
    return stats["wall_s"], stats, (kept, labels)


def run_datasketch(docs: list[dict[str, Any]], threshold: float) -> tuple[float, dict[str, str], set[str], Any]:
    """datasketch as its users run it: regex 5-word shingles, MinHash.bulk, MinHashLSH(threshold)."""
    from datasketch import MinHashLSH

    req = {"ngram": 5, "num_perm": 128}
    started = time.perf_counter()
    labels, removed = peers.datasketch_lsh([str(d["id"]) for d in docs], [d["text"] for d in docs], req, 1,
                                           threshold=threshold)
    lsh = MinHashLSH(threshold=threshold, num_perm=req["num_perm"])
    return time.perf_counter() - started, labels, removed, lsh.b, lsh.r


def run(input_path: str | None = None, truth_path: str | None = None, output_dir: str | Path | None = None,
        quick: bool = False, repeats: int = 3, cpus: int | list[int] | None = None,
        scales: list[int] | None = None, thresholds: list[float] | None = None,
        datasketch_max_docs: int = 100_000) -> dict[str, Any]:
    """Benchmark ``minhash_dedup``; writes ``dedup.json`` to ``output_dir`` and returns the same dict."""
    import ray

    from llmray import cluster

    source = Path(input_path) if input_path else DEFAULT_INPUT
    if not source.is_file():
        return {"skipped": f"no corpus at {source}"}
    truth_file = Path(truth_path) if truth_path else (DEFAULT_TRUTH if not input_path else None)
    cores = max(cpus) if isinstance(cpus, list) else (cpus or 2)
    scales = scales or ([1] if quick else [1, 5])
    thresholds = thresholds or ([0.8] if quick else [0.8, 0.7])
    repeats = 1 if quick else repeats
    docs = corpus.read_jsonl(source)
    truth = accuracy.load_truth(truth_file) if truth_file and truth_file.is_file() else None
    results: dict[str, Any] = {"input": str(source), "truth": str(truth_file) if truth else None,
                               "cpus": cores, "machine": measure.machine(), "runs": []}
    results["ray_init_s"] = round(cluster.connect(None, cores), 2)
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
        "mb_s_per_core": round(nbytes / 1e6 / wall / cores, 1), "removed": result["docs_in"] - result["docs_out"],
        "details": result["global_steps"]["minhash_dedup"], **memory.figures()}
    if truth is not None:
        removed = set(truth) - kept
        entry["scores"] = accuracy.score(truth, removed, labels)
    return entry


def _datasketch(docs: list[dict[str, Any]], truth: dict[str, str] | None, scale: int, threshold: float,
                nbytes: int) -> dict[str, Any]:
    parts = list(copies(docs, truth, scale))
    wall, labels, removed, bands, rows = run_datasketch([d for part, _ in parts for d in part], threshold)
    scaled = None if truth is None else {k: v for _, part_truth in parts for k, v in (part_truth or {}).items()}
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
