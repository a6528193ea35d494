"""The dedup job at terabyte-scale task counts, on small data: does the driver stay flat?

A terabyte corpus in 64 MB units is ~16,000 units and wants ~1,000 partitions per exchange. Here
the same 48 MB of real text is cut into ever more units (``input.chunk_mb``) and partitions (the
dedup steps' ``partitions``), and ``jobs/dedup.yaml``'s steps (exact, then near duplicates) run
through the runner on 2 CPUs, in this process, so the driver's memory can be sampled: its peak RSS
above the baseline, the most object references it held at once, and the wall time per phase.
Then a projection to 1, 10 and 100 TB from the measured per-byte costs and exchanged bytes.

    python -m benchmarks.bench_scale [--input CORPUS.jsonl.gz] [--output benchmarks/results]
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from llmray.dedup.layout import second_level_ranges
from llmray.dedup.workflow import Layout

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = ROOT.parent / "shared" / "data" / "neardup" / "corpus_20k.jsonl.gz"
#: (units, partitions) as in the issue that asked for this: 15 x 2 up to 930 x 512.
LAYOUTS = [(15, 2), (95, 64), (466, 256), (930, 512)]
STEPS = ["exact_dedup", "minhash_dedup"]


class DriverWatch:
    """Peak RSS of this process and the most object references it holds, sampled every 50 ms."""

    def __init__(self) -> None:
        import ray

        self.core = ray._private.worker.global_worker.core_worker
        self.process = psutil.Process()
        self.peak_rss = self.peak_refs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)
            self.peak_refs = max(self.peak_refs, len(self.core.get_all_reference_counts()))
            time.sleep(0.05)

    def __enter__(self) -> DriverWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def corpus(source: Path, target: Path, megabytes: float) -> tuple[int, int]:
    """The first ``megabytes`` of the source's texts as one JSONL file; (documents, text bytes)."""
    docs = size = 0
    with gzip.open(source, "rt", encoding="utf-8") as f, open(target, "w", encoding="utf-8") as out:
        for line in f:
            record = json.loads(line)
            out.write(json.dumps({"id": record["id"], "text": record["text"]}) + "\n")
            docs += 1
            size += len(record["text"].encode())
            if size >= megabytes * 1e6:
                break
    return docs, size


def run_layout(path: Path, out: Path, units: int, partitions: int, size: int) -> dict[str, Any]:
    from llmray.config import parse_job
    from llmray.pipeline.runner import RunOptions, run_job

    chunk_mb = size / units / (1 << 20)
    steps = [{name: {"partitions": partitions}} for name in STEPS]
    job = {"input": {"paths": [str(path)], "chunk_mb": chunk_mb}, "steps": steps, "output": {"path": str(out)}}
    baseline = psutil.Process().memory_info().rss
    started = time.perf_counter()
    with DriverWatch() as watch:
        stats = run_job(parse_job(job), RunOptions(overwrite=True, progress=False))
    wall = time.perf_counter() - started
    details = stats["global_steps"]
    return {
        "units": details["minhash_dedup"]["units"], "partitions": details["minhash_dedup"]["partitions"],
        "wall_s": round(wall, 2), "pipeline_s": stats["wall_s"],
        "driver_peak_mb": round(watch.peak_rss / 1e6, 1),
        "driver_growth_mb": round((watch.peak_rss - baseline) / 1e6, 1),
        "driver_peak_object_refs": watch.peak_refs,
        "decide_s": {name: d["wall_s"] for name, d in details.items()},
        "phases_s": {name: d.get("seconds", {}) for name, d in details.items()},
        "docs_out": stats["docs_out"], "dropped": stats["dropped"],
    }


def exchange_reads(units: int, partitions: int, group: int | None = Layout.combine_group) -> dict[str, int]:
    """Range reads of each exchange of a near-duplicate step (verify apart), with senders' objects
    combined in groups of ``group`` past twice that many, rank tasks over groups of units and choose
    tasks over runs of partitions, as ``llmray.dedup.workflow`` does (``group=None``: as it did
    before, every sender read by every receiver, a rank task per unit and a choose task per partition)."""
    def combined(senders: int, receivers: int) -> int:
        if group is None or senders <= 2 * group:
            return senders * receivers
        return senders + math.ceil(senders / group) * receivers

    twice = _second_level(units, partitions, group)
    if twice is None:
        sidecars = combined(units, partitions)
    else:  # units to the first level, first-level objects to the second by range, the second to receivers
        first, groups, ranges = twice
        sidecars = units + first * ranges + groups * partitions
    rank, choose = _keep_tasks(units, partitions, group)
    return {"sidecars": sidecars, "buckets": combined(partitions, partitions),
            "components": combined(partitions, rank), "rank": rank * choose, "decision": combined(choose, units)}


def _second_level(units: int, partitions: int, group: int | None) -> tuple[int, int, int] | None:
    """(first-level objects, their groups, receiver ranges) where the units' sidecars are combined
    twice, as ``llmray.dedup.workflow`` does; None where they are not."""
    if group is None or math.ceil(units / group) <= 2 * group:
        return None
    first = math.ceil(units / group)
    return first, math.ceil(first / group), second_level_ranges(partitions, group)[1]


def _keep_tasks(units: int, partitions: int, group: int | None) -> tuple[int, int]:
    if group is None:
        return units, partitions
    return math.ceil(units / group), math.ceil(partitions / group) if partitions > 2 * group else partitions


def job_cost_terms(units: int, partitions: int, group: int | None = Layout.combine_group) -> tuple[int, int]:
    """(range reads, tasks) of the decisions of ``jobs/dedup.yaml``: exact_dedup and unique_ids (no
    buckets), then minhash_dedup (verify and components apart: a few tasks)."""
    reads = exchange_reads(units, partitions, group)
    rank, choose = _keep_tasks(units, partitions, group)

    def combines(senders: int) -> int:
        return math.ceil(senders / group) if group is not None and senders > 2 * group else 0

    keep = rank + choose + combines(partitions) + combines(choose)
    twice = _second_level(units, partitions, group)
    sidecars = combines(units) + (twice[1] * twice[2] if twice else 0)
    exact = partitions + sidecars + keep
    minhash = 2 * partitions + sidecars + combines(partitions) + keep
    return 3 * sum(reads.values()) - 2 * reads["buckets"], 2 * exact + minhash


def decision_costs(layouts: list[dict[str, Any]], cpus: int) -> tuple[float, float]:
    """CPU-seconds of the decisions per range read and per task: least squares of the decisions'
    wall time x CPUs against both counts (``job_cost_terms``) over the measured layouts."""
    import numpy as np

    terms = np.array([job_cost_terms(r["units"], r["partitions"]) for r in layouts], float)
    decide = np.array([sum(r["decide_s"].values()) for r in layouts], float) * cpus
    (per_read, per_task), *_ = np.linalg.lstsq(terms, decide, rcond=None)
    return float(max(per_read, 0.0)), float(max(per_task, 0.0))


def projection(measured: dict[str, Any]) -> list[dict[str, Any]]:
    """1, 10, 100 TB on clusters of 16-CPU nodes, from the smallest layout's per-byte costs and the
    measured costs per range read and per task of the decisions (``decision_costs``).

    Time = task-seconds per byte (measured on one of these CPUs) x bytes / CPUs, plus the decisions'
    range reads and tasks x their measured costs / CPUs (on local disk; on an object store each read
    is a request); exchanged bytes from the rows each stage writes per document.
    """
    base = measured["layouts"][0]
    per_byte = base["pipeline_s"] * measured["cpus"] / measured["text_bytes"]
    per_read, per_task = measured["read_cpu_s"], measured["task_cpu_s"]
    doc_bytes = measured["text_bytes"] / measured["docs"]
    rows = []
    for terabytes, nodes in ((1, 10), (10, 50), (100, 250)):
        total = terabytes * 1e12
        docs = total / doc_bytes
        units = round(total / (64 * 2**20))
        partitions = round(min(65536, max(nodes * 16, docs * 32 * 24 / (64 * 2**20))))
        cpus = nodes * 16
        reads, tasks = job_cost_terms(units, partitions)
        old_reads, old_tasks = job_cost_terms(units, partitions, group=None)
        rows.append({"corpus_tb": terabytes, "nodes": nodes, "cpus": cpus, "docs": round(docs),
                     "units": units, "partitions": partitions,
                     "hours": round(per_byte * total / cpus / 3600, 2),
                     "exchange_hours": round((per_read * reads + per_task * tasks) / cpus / 3600, 2),
                     "exchange_hours_uncombined": round((per_read * old_reads + per_task * old_tasks) / cpus / 3600, 2),
                     "band_rows_gb": round(docs * 32 * 24 / 1e9), "signatures_gb": round(docs * 128 * 4 / 1e9),
                     "range_reads_m": round(reads / 1e6, 1), "range_reads_uncombined_m": round(old_reads / 1e6, 1),
                     "largest_exchange_reads_m": round(max(exchange_reads(units, partitions).values()) / 1e6, 1),
                     "decision_tasks": tasks, "driver_entries": round(units + partitions)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("--megabytes", type=float, default=48.0)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    import ray

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    results: dict[str, Any] = {"cpus": args.cpus, "input": str(args.input), "layouts": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corpus.jsonl"
        results["docs"], results["text_bytes"] = corpus(args.input, path, args.megabytes)
        run_layout(path, Path(tmp) / "warm", 4, 2, results["text_bytes"])  # workers and kernels warm
        for units, partitions in LAYOUTS:
            figures = run_layout(path, Path(tmp) / f"u{units}", units, partitions, results["text_bytes"])
            results["layouts"].append(figures)
            print(json.dumps(figures), flush=True)
    ray.shutdown()
    kept = {json.dumps(r["dropped"], sort_keys=True) for r in results["layouts"]}
    results["same_result_in_every_layout"] = len(kept) == 1
    results["read_cpu_s"], results["task_cpu_s"] = decision_costs(results["layouts"], args.cpus)
    results["projection"] = projection(results)
    results["machine"] = {"cpus": os.cpu_count(), "ram_gb": round(psutil.virtual_memory().total / 2**30)}
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "scale.json").write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results["projection"], indent=1))


if __name__ == "__main__":
    main()
