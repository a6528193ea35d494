"""Scaling: jobs through llmray's real runner (``run_job``) at a given number of CPUs, or on a cluster.

One child process per CPU count, because a process holds one Ray runtime: ``python -m
benchmarks.scaling REQUEST RESULT``. Locally the child is pinned to that many cores before Ray starts,
so Ray's own processes compete for the same cores, as they would on a machine that size. With an
address it joins that cluster instead and reports its CPUs and nodes.

The clock is the runner's ``wall_s``: Ray's start-up is reported apart (``startup_s``), and one untimed
run of every step over a small file first starts the worker processes and fills the on-disk caches
(compiled kernels, models). Memory is sampled over the whole process
tree: driver, raylet, GCS and workers.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from benchmarks import measure


def _job(steps: list, input_path: str, chunk_mb: float, out: Path) -> Any:
    from llmray.config import parse_job

    return parse_job({"input": {"paths": [input_path], "chunk_mb": chunk_mb}, "steps": steps,
                      "output": {"path": str(out)}})


def run_jobs(req: dict[str, Any]) -> dict[str, Any]:
    """Request: cpus (or address), jobs [{name, steps}], corpus, warmup, chunk_mb, repeats, work_dir."""
    from llmray.pipeline.runner import RunOptions, run_job

    address = req.get("address")
    if not address:
        measure.pin_to_cores(req["cpus"])
    options = RunOptions(address=address, num_cpus=None if address else req["cpus"], overwrite=True,
                         progress=False)
    work = Path(req["work_dir"])
    every_step = list(dict.fromkeys(step for job in req["jobs"] for step in job["steps"]))
    warm = run_job(_job(every_step, req["warmup"], req["chunk_mb"], work / "warmup"), options)
    points = {}
    for job in req["jobs"]:
        runs = []
        try:
            with measure.TreeMemory() as memory:
                for _ in range(req["repeats"]):
                    spec = _job(job["steps"], req["corpus"], req["chunk_mb"], work / job["name"])
                    runs.append(run_job(spec, options))
        except Exception as exc:  # noqa: BLE001  (one failing job must not cost the others)
            points[job["name"]] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            continue
        last = runs[-1]
        cores = last["num_cpus"]
        points[job["name"]] = {
            "cpus": cores, "nodes": last["nodes"], "docs_in": last["docs_in"], "bytes_in": last["bytes_in"],
            "docs_out": last["docs_out"],
            **measure.rates([s["wall_s"] for s in runs], last["docs_in"], last["bytes_in"], cores),
            **memory.figures(),
            "stage_seconds": {s["name"]: s["wall_s"] for s in last["stages"]},
        }
        shutil.rmtree(work / job["name"], ignore_errors=True)
    return {"startup_s": warm["startup_s"], "points": points}


if __name__ == "__main__":
    measure.child_main(run_jobs)
