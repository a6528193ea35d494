"""The dedup job writing to object storage beside local disk: the same file, the same command.

Starts a real S3-compatible server on 127.0.0.1 (moto's server mode, as the tests do), generates a
corpus with near duplicates (``llmray.bench.corpus``), and runs ``llmray run jobs/dedup.yaml`` twice
on it: input and output on local disk, then input and output (and so the work directory) in a
bucket. Figures are stats.json's (pipeline time, Ray start-up apart); the kept ids must be the same.
The local server runs on the same two cores as the job, so the S3 figure is a floor for a real store
and measures what the protocol costs: no rename, puts of whole objects, listings.

    python -m benchmarks.bench_object_storage --docs 20000 --output benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from llmray.bench.corpus import GeneratorParams, generate, write_jsonl
from tests.s3server import moto_server

ROOT = Path(__file__).resolve().parents[1]


def llmray_run(job: str, source: str, output: str, env: dict[str, str], cpus: int) -> None:
    cmd = [sys.executable, "-m", "llmray.cli", "run", job, "--input", source, "--output", output,
           "--num-cpus", str(cpus), "--quiet", "--overwrite"]
    subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, **env}, capture_output=True, timeout=1800)


def figures(stats: dict, cpus: int) -> dict:
    mb = stats["bytes_in"] / 1e6
    return {"wall_s": stats["wall_s"], "startup_s": stats["startup_s"], "mb": round(mb, 2),
            "mb_per_s_per_core": round(mb / stats["wall_s"] / cpus, 2), "docs_in": stats["docs_in"],
            "docs_out": stats["docs_out"]}


def run(docs: int = 20000, output_dir: Path = ROOT / "benchmarks" / "results", cpus: int = 2) -> dict:
    job = str(ROOT / "jobs" / "dedup.yaml")
    results: dict = {"job": "jobs/dedup.yaml", "docs": docs, "cpus": cpus}
    with tempfile.TemporaryDirectory() as tmp, moto_server() as s3:
        work = Path(tmp)
        corpus = write_jsonl(work / "corpus.jsonl", generate(GeneratorParams(docs=docs))[0])
        llmray_run(job, str(corpus), str(work / "out"), {}, cpus)
        local = json.loads((work / "out" / "stats.json").read_text())
        results["local_disk"] = figures(local, cpus)
        fs, bucket = s3.fs(), s3.bucket()
        fs.put(str(corpus), f"{bucket}/in/corpus.jsonl")
        llmray_run(job, f"s3://{bucket}/in/corpus.jsonl", f"s3://{bucket}/out", s3.env, cpus)
        remote = json.loads(fs.cat(f"{bucket}/out/stats.json"))
        results["s3_local_server"] = figures(remote, cpus)
        kept_local = sorted(pq.read_table(work / "out" / "data", columns=["id"]).column("id").to_pylist())
        kept_s3 = sorted(pq.read_table(f"{bucket}/out/data", columns=["id"], filesystem=fs).column("id").to_pylist())
        results["same_kept_ids"] = kept_local == kept_s3
        results["objects_written"] = len(fs.find(f"{bucket}/out"))
    results["s3_over_local"] = round(results["s3_local_server"]["mb_per_s_per_core"]
                                     / results["local_disk"]["mb_per_s_per_core"], 3)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "object_storage.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=20000)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    print(json.dumps(run(args.docs, args.output, args.cpus), indent=2))


if __name__ == "__main__":
    main()
