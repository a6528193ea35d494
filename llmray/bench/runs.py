"""Jobs through llmray's real runner (``run_job``) at one CPU count, or on a cluster, in a child process.

``python -m llmray.bench.runs REQUEST RESULT``: one child per CPU count, because a process holds one
Ray runtime. Locally the child is pinned to that many cores before Ray starts, so Ray's own
processes compete for the same cores, as they would on a machine that size; with an address it
joins that cluster and reports its CPUs and nodes. The whole-job part, the scaling of stage groups
and the one-CPU figures of global stages all come from here.

A job is a shipped job file (its ``input`` replaced, as ``llmray run --input`` does) or a list of
steps. Each runs once over a small file first, untimed (worker processes, compiled kernels, models),
then ``repeats`` times over its input; with ``cold`` (whole jobs, locally) Ray is started afresh
for each of those, so every timed run starts new worker processes, loads the compiled kernels and
the models again, as one ``llmray run`` does. The clock is stats.json's: ``wall_s`` (Ray's start-up apart,
``startup_s``), each stage's task seconds, each global step's decision ``wall_s`` and seconds per
phase. Memory is sampled over the whole process tree: driver, raylet, GCS and workers. With a truth
file, the ids missing from the output's ``data/`` are scored as removals.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from llmray.bench import accuracy, measure


def _spec(job: dict[str, Any], inputs: list[str], out: Path) -> Any:
    from llmray.config import load_job, parse_job
    from llmray.pipeline.runner import inputs_from_paths

    spec = load_job(job["file"]) if job.get("file") else parse_job({"input": {"paths": inputs}, "steps": job["steps"]})
    spec.inputs = inputs_from_paths(inputs, spec)
    spec.output = dataclasses.replace(spec.output, path=str(out))
    return spec


def _kept_ids(out: Path) -> set[str]:
    import pyarrow.parquet as pq

    return set(pq.read_table(out / "data", columns=["id"]).column("id").to_pylist())


def _stage(stats: dict[str, Any], name: str) -> float:
    return next(s["wall_s"] for s in stats["stages"] if s["name"] == name)


def _measure(job: dict[str, Any], req: dict[str, Any], options: Any, work: Path) -> dict[str, Any]:
    from llmray.pipeline.runner import run_job

    baseline = measure.rss_mb()
    warm = run_job(_spec(job, [req["warmup"]], work / "warmup"), options)
    truth = accuracy.load_truth(job["truth"]) if job.get("truth") else None
    runs, scores = [], []
    out = work / job["name"].replace("/", "-")
    cold = req.get("cold") and not req.get("address")
    with measure.TreeMemory() as memory:
        for _ in range(req["repeats"]):
            if cold:
                import ray

                ray.shutdown()
            runs.append(run_job(_spec(job, job["input"], out), options))
            if truth is not None:
                scores.append(accuracy.score(truth, set(truth) - _kept_ids(out)))
    shutil.rmtree(out, ignore_errors=True)
    last = runs[-1]
    cores = last["num_cpus"]
    point: dict[str, Any] = {
        "cpus": cores, "nodes": last["nodes"], "cold": bool(cold),
        "startup_s": runs[-1]["startup_s"] if cold else warm["startup_s"], "warmup_s": warm["wall_s"],
        "docs_in": last["docs_in"], "bytes_in": last["bytes_in"], "docs_out": last["docs_out"],
        "bytes_out": last["bytes_out"], "dropped": last["dropped"],
        **measure.rates([s["wall_s"] for s in runs], last["docs_in"], last["bytes_in"], cores),
        **memory.figures(), "baseline_rss_mb": baseline,
        # Task seconds of each stage summed over units (a global step: what its sidecar gathers as the data
        # passes, its decision, then applying it; the shared pass of two dedups is minhash's).
        "stage_seconds": {stage["name"]: measure.summarize([_stage(r, stage["name"]) for r in runs])
                          for stage in last["stages"]},
        "global_steps": {name: {**details, **({"wall_s": measure.summarize(
            [r["global_steps"][name]["wall_s"] for r in runs])} if "wall_s" in details else {})}
            for name, details in last["global_steps"].items()},
    }
    if scores:
        point["accuracy"] = accuracy.summarize_scores(scores)
    return point


def run_jobs(req: dict[str, Any]) -> dict[str, Any]:
    """Request: cpus (or address), repeats, work_dir, warmup (a small JSONL file), cold, jobs [{name, file or
    steps, input [paths], truth?}]. Result: {name: point, or {"error"} / {"skipped"} with the reason};
    a point's ``startup_s`` is Ray's start-up where its job came first, 0 after."""
    from llmray.errors import UserError
    from llmray.pipeline.runner import RunOptions

    address = req.get("address")
    if not address:
        measure.pin_to_cores(req["cpus"])
    options = RunOptions(address=address, num_cpus=None if address else req["cpus"], overwrite=True,
                         progress=False)
    work = Path(req["work_dir"])
    points: dict[str, Any] = {}
    for job in req["jobs"]:
        try:
            points[job["name"]] = _measure(job, req, options, work)
        except UserError as exc:  # e.g. tokenize alone: its vocabulary comes from train_tokenizer
            points[job["name"]] = {"skipped": measure.last_error(str(exc))}
        except Exception as exc:  # noqa: BLE001  (one failing job must not cost the others)
            points[job["name"]] = {"error": f"{type(exc).__name__}: {measure.last_error(str(exc))}"}
    return points


if __name__ == "__main__":
    measure.child_main(run_jobs)
