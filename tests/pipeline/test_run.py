"""End to end through a real local Ray runtime: outputs, stats that reconcile, bad input, resume."""

import gzip
import json
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmray.config import parse_job
from llmray.errors import UserError
from llmray.pipeline.runner import RunOptions, run_job
from tests.helpers import ENGLISH, HAS_C_COMPILER, job, write_jsonl

QUIET = RunOptions(progress=False)


def reconciles(stats: dict) -> bool:
    return stats["docs_in"] == stats["docs_out"] + sum(stats["dropped"].values()) + stats["quarantined"]


def kept_ids(out) -> list[str]:
    return sorted(pq.read_table(out / "data").column("id").to_pylist())


@pytest.fixture
def corpus(tmp_path):
    records = [{"id": f"en{i}", "text": f"{ENGLISH} Item {i}, call 555-123-{1000 + i} or mail a{i}@example.org."}
               for i in range(40)]
    records += [{"id": f"fr{i}", "text": "Le conseil municipal a voté le budget annuel de la bibliothèque "
                                        "et les horaires d'ouverture du soir pour les familles."}
                for i in range(10)]
    write_jsonl(tmp_path / "in" / "part1.jsonl", records[:25])
    with gzip.open(tmp_path / "in" / "part2.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in records[25:])
    return tmp_path / "in"


def test_pipeline_writes_data_stats_report_and_rejects(ray_session, corpus, tmp_path):
    out = tmp_path / "out"
    steps = ["unicode_normalize", "clean_whitespace", "pii_redact", {"language": {"languages": ["en"]}}]
    started = time.perf_counter()
    stats = run_job(parse_job(job(corpus, out, steps, rejects=True)), QUIET)
    elapsed = time.perf_counter() - started
    assert stats["docs_in"] == 50 and stats["docs_out"] == 40
    assert stats["dropped"] == {"language.other_language": 10}
    assert reconciles(stats) and stats["accounting_ok"]
    names = [s["name"] for s in stats["stages"]]
    assert names == ["read", "unicode_normalize", "clean_whitespace", "pii_redact", "language", "unique_ids", "write"]
    assert stats["duplicate_ids"] == {"count": 0, "examples": []}
    assert [(s["docs_in"], s["docs_out"]) for s in stats["stages"]] == [
        (50, 50), (50, 50), (50, 50), (50, 50), (50, 40), (40, 40), (40, 40)]
    assert stats["counters"]["pii_redact"] == {"email_redacted": 40, "phone_redacted": 40}
    # Times are the run's own: within what the caller waited, every step's within the whole.
    assert 0 <= stats["startup_s"] < stats["wall_s"] <= elapsed
    assert all(0 <= s["wall_s"] <= stats["wall_s"] for s in stats["stages"])
    data = pq.read_table(out / "data")
    assert {"id", "text", "source"} <= set(data.column_names)
    assert all("<EMAIL>" in t and "<PHONE>" in t and "@" not in t for t in data.column("text").to_pylist())
    rejects = pq.read_table(out / "rejects")
    assert sorted(rejects.column("id").to_pylist()) == sorted(f"fr{i}" for i in range(10))
    assert set(rejects.column("reason").to_pylist()) == {"language.other_language"}
    # what decided: the score of the language found (French); other_language has no threshold
    assert all(0 < v <= 1 for v in rejects.column("value").to_pylist())
    assert rejects.column("threshold").null_count == rejects.num_rows
    on_disk = json.loads((out / "stats.json").read_text())
    assert on_disk["docs_out"] == 40 and on_disk["sources"]["default"]["docs_out"] == 40
    report = (out / "report.html").read_text()
    assert "data:image/svg+xml;base64," in report and "language.other_language" in report


def test_every_kind_of_bad_input_in_one_run(ray_session, tmp_path):
    src = tmp_path / "in"
    write_jsonl(src / "good.jsonl", [{"text": ENGLISH}] * 3)
    write_jsonl(src / "broken.jsonl", [{"text": ENGLISH}, '{"text": "cut', {"body": "no text"}, {"text": 5}])
    with open(src / "broken.jsonl", "ab") as f:
        f.write(b'{"text": "bad \xff byte"}\n')
    whole = gzip.compress(b"".join(b'{"text": "record %d"}\n' % i for i in range(4000)))
    (src / "truncated.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    (src / "empty.jsonl").write_bytes(b"")
    (src / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    pq.write_table(pa.table({"body": ["a", "b", "c"]}), src / "wrongcol.parquet")
    with open(src / "huge.jsonl", "w") as f:
        f.write('{"id": "huge", "text": "' + "word " * 300_000 + '"}\n')
    spec = parse_job({"input": {"paths": str(src), "max_doc_mb": 1}, "output": {"path": str(tmp_path / "out")}})
    stats = run_job(spec, QUIET)
    assert reconciles(stats)
    assert stats["dropped"] == {"read.too_large": 1}
    lines = [json.loads(line) for p in (tmp_path / "out" / "quarantine").glob("*.jsonl")
             for line in p.read_text().splitlines()]
    by_file = {}
    for q in lines:
        by_file.setdefault(q["file"].rsplit("/", 1)[-1], []).append(q)
    assert sorted(q["line"] for q in by_file["broken.jsonl"]) == [2, 3, 4, 5]
    assert {"truncated.jsonl.gz", "empty.jsonl", "latin1.txt", "wrongcol.parquet"} <= set(by_file)
    assert stats["quarantined"] == sum(q["rows"] for q in lines)
    assert all(q["error"] and q["file"] for q in lines)


def test_jsonl_gz_output_and_resume_skips_finished_chunks(ray_session, corpus, tmp_path):
    out = tmp_path / "out"
    raw = job(corpus, out, ["clean_whitespace"], format="jsonl.gz")
    raw["input"]["chunk_mb"] = 0.001  # one unit per file
    first = run_job(parse_job(raw), QUIET)
    shards = sorted((out / "data").glob("*.jsonl.gz"))
    assert shards and all(json.loads(gzip.open(p).readline())["id"] for p in shards)
    markers = sorted((out / "_progress" / "s0").glob("*.json"))
    assert len(markers) >= 2
    # Simulate a crash that lost the second chunk: its marker is gone, a failed attempt left half
    # a shard under its own attempt name, and the run never got to write stats.json.
    (out / "stats.json").unlink()
    markers[1].unlink()
    key = markers[1].stem
    (out / "data" / f"{key}-deadbeef-0000.jsonl.gz").write_bytes(b"half")
    again = run_job(parse_job(raw), QUIET)
    assert again["docs_in"] == first["docs_in"] and again["docs_out"] == first["docs_out"]
    assert not list((out / "data").glob("*deadbeef*")), "a failed attempt's shard was left in the output"
    ids = [json.loads(line)["id"] for p in (out / "data").glob("*.jsonl.gz") for line in gzip.open(p)]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == first["docs_out"]


def test_changed_job_is_refused_without_overwrite(ray_session, corpus, tmp_path):
    out = tmp_path / "out"
    run_job(parse_job(job(corpus, out, ["clean_whitespace"])), QUIET)
    changed = parse_job(job(corpus, out, ["unicode_normalize"]))
    with pytest.raises(UserError, match="different job"):
        run_job(changed, QUIET)
    stats = run_job(changed, RunOptions(progress=False, overwrite=True))
    assert [s["name"] for s in stats["stages"]][1] == "unicode_normalize"
    assert len(kept_ids(out)) == 50


def test_rerunning_a_finished_job_changes_nothing(ray_session, corpus, tmp_path):
    out = tmp_path / "out"
    raw = job(corpus, out, ["clean_whitespace"])
    first = run_job(parse_job(raw), QUIET)
    shards = {p.name: p.stat().st_mtime_ns for p in (out / "data").iterdir()}
    again = run_job(parse_job(raw), QUIET)
    assert again.pop("already_complete") is True and again == first
    assert {p.name: p.stat().st_mtime_ns for p in (out / "data").iterdir()} == shards


SHIPPED_JOBS = """
import dataclasses, hashlib, json, sys
import pyarrow.parquet as pq
import ray
from llmray.config import load_job
from llmray.pipeline.runner import RunOptions, run_job
out = sys.argv[1]
stats = {}
for name in ("dedup", "clean", "clean_mixed", "pipeline"):
    spec = load_job(f"jobs/{name}.yaml")
    spec.output = dataclasses.replace(spec.output, path=f"{out}/{name}")
    stats[name] = run_job(spec, RunOptions(num_cpus=2, overwrite=True, progress=False))

def heavy():
    return "pandas" in sys.modules or "scipy.linalg" in sys.modules

def kernels():  # whether numba is loaded, and the kernels it compiled instead of loading the install's
    if "numba" not in sys.modules:
        return False, []
    from numba.core.registry import CPUDispatcher
    return True, sorted(f"{name}.{attr}" for name, module in list(sys.modules.items())
                        if name.startswith("llmray.kernels") for attr, value in vars(module).items()
                        if isinstance(value, CPUDispatcher) and value.stats.cache_misses)

@ray.remote(num_cpus=1)
def probe():
    import os, time
    time.sleep(0.2)
    return os.getpid(), "llmray.pipeline.segment" in sys.modules, heavy(), kernels()

workers = {pid: (ran, heavy, numba) for pid, ran, heavy, numba in ray.get([probe.remote() for _ in range(6)])}
driver = [heavy(), kernels()]
outputs = {}  # read here: reading parquet back imports pandas
for name, counts in stats.items():
    table = pq.read_table(f"{out}/{name}/data")
    rows = sorted(zip(*(table.column(c).to_pylist() for c in sorted(table.column_names)), strict=True), key=repr)
    outputs[name] = {"rows": hashlib.sha1(repr(rows).encode()).hexdigest(), "docs_out": counts["docs_out"],
                     "dropped": counts["dropped"], "quarantined": counts["quarantined"]}
print(json.dumps({"outputs": outputs, "driver": driver, "workers": list(workers.values())}))
"""


def run_shipped_jobs(out: Path, kernels: str = "") -> dict[str, Any]:
    """The shipped English, Chinese and mixed jobs on the shipped corpora, in a Ray of its own whose
    workers run nothing else; ``kernels="jit"`` makes every process use numba's JIT."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "LLMRAY_KERNELS": kernels}
    done = subprocess.run([sys.executable, "-c", SHIPPED_JOBS, str(out)], cwd=root, capture_output=True, text=True,
                          timeout=400, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_shipped_jobs_run_the_install_s_kernels_without_pandas_scipy_or_numba(tmp_path):
    """pyarrow imports pandas the first time a process converts a Python or numpy value (0.25 s in
    every worker of every run): the data path, the global steps and the report go through
    llmray.kernels.arrow instead. Nor does any process compile a kernel or import numba: the install
    compiled them all, ahead of time (``make setup``); with ``LLMRAY_KERNELS=jit`` they load numba's
    cache, where numba skips scipy.linalg (0.15 s) as llmray.kernels.jit sets it up. Both ways the
    jobs give the same rows and counts."""
    seen = {mode: run_shipped_jobs(tmp_path / (mode or "aot"), mode) for mode in ("", "jit")}
    assert seen[""]["outputs"] == seen["jit"]["outputs"]
    for mode, run in seen.items():
        ran = [worker for worker in run["workers"] if worker[0]]
        assert ran and run["driver"][0] is False and not any(heavy for _, heavy, _ in ran), (mode, run)
        numba = [run["driver"][1], *(kernels for _, _, kernels in ran)]
        assert all(compiled == [] for _, compiled in numba), (mode, run)
        if mode == "jit":
            assert all(loaded for loaded, _ in numba[1:]), run  # the switch did switch
        elif HAS_C_COMPILER:  # else the install could not build the module
            assert not any(loaded for loaded, _ in numba), run
