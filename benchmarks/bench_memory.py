"""Memory on huge inputs: one multi-GB JSONL file, and one 100 MB document, through `llmray run`.

Runs the real command in a subprocess and samples the resident memory of its whole process tree
(driver, Ray's own processes and workers) every 0.2 s. Peak memory should not grow with the file:
run with --gb 0.5 and --gb 2 and compare.

    python -m benchmarks.bench_memory --gb 2 --output benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from llmray.bench.measure import TreeMemory

ROOT = Path(__file__).resolve().parents[1]
PARAGRAPH = ("The committee met on Tuesday to review the annual budget and the plans for the new library. "
             "Members agreed that the reading rooms should stay open later in the evening. ")
STEPS = "[unicode_normalize, clean_whitespace, pii_redact]"
#: jobs/clean.yaml's steps: every cleaning step and quality filter.
CLEAN_STEPS = ("[unicode_normalize, fix_mojibake, clean_whitespace, c4_lines, length, {language: {languages: [en]}}, "
               "gopher_repetition, gopher_quality, c4_quality, fineweb_quality, pii_redact]")


def make_jsonl(path: Path, total_bytes: int, doc_bytes: int = 3000) -> int:
    """A JSONL file of about ``total_bytes``, documents of about ``doc_bytes``; returns the count."""
    body = (PARAGRAPH * (doc_bytes // len(PARAGRAPH) + 1))[:doc_bytes]
    block = "".join(json.dumps({"id": f"d{i}", "text": f"{i} {body}"}) + "\n" for i in range(1000))
    n = 0
    with open(path, "w") as f:
        while f.tell() < total_bytes:
            f.write(block.replace('"id": "d', f'"id": "b{n}-'))
            n += 1000
    return n


def measure(job: Path, extra: list[str]) -> dict:
    """Run `llmray run` and sample the RSS of its process tree until it exits (MB = 10^6 bytes)."""
    cmd = [sys.executable, "-m", "llmray.cli", "run", str(job), "--overwrite", "--quiet", *extra]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with TreeMemory(proc.pid, interval_s=0.2) as memory:
        output, _ = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"llmray run failed:\n{output}")
    return {"elapsed_s": round(time.perf_counter() - started, 2), **memory.figures()}


def run(gb: float, output_dir: Path, num_cpus: int = 2) -> dict:
    results: dict = {"machine": {"cpus": os.cpu_count(), "ram_gb": round(psutil.virtual_memory().total / 2**30)}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        big = work / "big.jsonl"
        docs = make_jsonl(big, int(gb * 2**30))
        job = work / "big.yaml"
        job.write_text(f"input: {big}\nsteps: {STEPS}\noutput: {{path: {work / 'out'}}}\n")
        run_stats = measure(job, ["--num-cpus", str(num_cpus)])
        stats = json.loads((work / "out" / "stats.json").read_text())
        results["huge_file"] = {"gb": gb, "docs": docs, **run_stats, "wall_s": stats["wall_s"],
                                "mb_per_s": stats["throughput_mb_s"], "docs_out": stats["docs_out"]}
        big.unlink()
        one = work / "one.jsonl"
        with open(one, "w") as f:
            f.write(json.dumps({"id": "huge", "text": PARAGRAPH * (100 * 2**20 // len(PARAGRAPH))}) + "\n")
            f.write(json.dumps({"id": "small", "text": PARAGRAPH}) + "\n")
        job = work / "one.yaml"
        job.write_text(f"input: {{paths: {one}, max_doc_mb: 128}}\nsteps: {STEPS}\n"
                       f"output: {{path: {work / 'one-out'}}}\n")
        run_stats = measure(job, ["--num-cpus", str(num_cpus)])
        stats = json.loads((work / "one-out" / "stats.json").read_text())
        results["document_100mb"] = {**run_stats, "docs_out": stats["docs_out"], "dropped": stats["dropped"]}
        job = work / "one-clean.yaml"  # the same document through every cleaning step and quality filter
        job.write_text(f"input: {{paths: {one}, max_doc_mb: 128}}\nsteps: {CLEAN_STEPS}\n"
                       f"output: {{path: {work / 'one-clean-out'}}}\n")
        run_stats = measure(job, ["--num-cpus", str(num_cpus)])
        stats = json.loads((work / "one-clean-out" / "stats.json").read_text())
        results["document_100mb_every_filter"] = {**run_stats, "docs_out": stats["docs_out"],
                                                  "dropped": stats["dropped"], "steps": CLEAN_STEPS}
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "memory.json").write_text(json.dumps(results, indent=2))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=2.0, help="size of the generated JSONL file")
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    print(json.dumps(run(args.gb, args.output, args.num_cpus), indent=2))


if __name__ == "__main__":
    main()
