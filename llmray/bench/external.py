"""The focused benchmarks of each part (``benchmarks/bench_*.py`` of a checkout), called through their ``run()``.

Each part's owner measures what only they know how to (filter agreement with a reference, dedup
accuracy against datasketch, Ray Train against the plain loop) on the research data beside the
repository, so these scripts stay in the repository: run from a checkout, the harness calls every
``bench_<part>.run`` in ``./benchmarks``, in a child process of its own (the current directory on its
path), and files the returned dict under ``external.<part>``; elsewhere there are none. Arguments
are matched by name from what the harness knows (below); a ``run()`` that needs anything else, is
missing, fails or returns something other than a dict is reported as skipped with the reason, never
as a crash of the whole benchmark.
"""

from __future__ import annotations

import importlib
import inspect
import traceback
from pathlib import Path
from typing import Any

from llmray.bench import measure

#: What the harness can hand to a ``run()``: input_path, truth_path (str), docs, output_dir (Path), quick,
#: repeats, cpus (the scaling CPU counts), peers, seed. A ``run()`` may return ``{"skipped": why}``.
KNOWN_ARGS = ("input_path", "truth_path", "docs", "output_dir", "quick", "repeats", "cpus", "peers", "seed")
#: Kept out: needs gigabytes of disk and minutes by design (run it on its own).
EXCLUDED = {"bench_memory": "needs a multi-GB input by design; run python -m benchmarks.bench_memory"}
PACKAGE = "benchmarks"


def discover() -> list[str]:
    """Names of the per-part benchmark modules in ``./benchmarks``."""
    return sorted(p.stem for p in (Path.cwd() / PACKAGE).glob("bench_*.py"))


def part(module: str) -> str:
    return module.removeprefix("bench_")


def call(req: dict[str, Any]) -> dict[str, Any]:
    """Import ``benchmarks.<module>``, bind the known arguments to its ``run()``, call it."""
    module_name = req["module"]
    try:
        module = importlib.import_module(f"{PACKAGE}.{module_name}")
    except Exception as exc:  # noqa: BLE001  (a broken module is a skipped stage)
        return {"status": "skipped", "reason": f"cannot import: {type(exc).__name__}: {exc}"}
    run = getattr(module, "run", None)
    if not callable(run):
        return {"status": "skipped", "reason": "has no run() function"}
    kwargs = {}
    for name, param in inspect.signature(run).parameters.items():
        if name in req["args"]:
            value = req["args"][name]
            kwargs[name] = Path(value) if name == "output_dir" else value
        elif param.default is param.empty and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            return {"status": "skipped", "reason": f"run() needs {name!r}, which the harness does not "
                                                   f"provide (it provides {', '.join(KNOWN_ARGS)})"}
    try:
        result = run(**kwargs)
    except Exception as exc:  # noqa: BLE001
        tail = traceback.format_exc().strip().splitlines()[-3:]
        reason = f"run() raised {type(exc).__name__}: {measure.last_error(str(exc))}"
        return {"status": "failed", "reason": reason, "traceback": tail}
    if not isinstance(result, dict):
        return {"status": "skipped", "reason": f"run() returned {type(result).__name__}, expected a dict"}
    if set(result) == {"skipped"}:
        return {"status": "skipped", "reason": str(result["skipped"])}
    return {"status": "ok", "args": sorted(kwargs), "result": result}


if __name__ == "__main__":
    measure.child_main(call)
