"""End to end through a real local Ray runtime: outputs, stats that reconcile, bad input, resume."""

import gzip
import json
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmray.config import parse_job
from llmray.errors import UserError
from llmray.pipeline.runner import RunOptions, run_job
from tests.helpers import ENGLISH, job, write_jsonl

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


NO_HEAVY_IMPORTS = """
import json, sys
import ray
from llmray.config import load_job
from llmray.pipeline.runner import RunOptions, inputs_from_paths, run_job
import dataclasses
out = sys.argv[1]
for name in ("dedup", "clean", "pipeline"):
    spec = load_job(f"jobs/{name}.yaml")
    spec.output = dataclasses.replace(spec.output, path=f"{out}/{name}")
    run_job(spec, RunOptions(num_cpus=2, overwrite=True, progress=False))

def heavy():
    return "pandas" in sys.modules or "scipy.linalg" in sys.modules

def compiled():  # kernels this process compiled instead of loading them from the install's cache
    from numba.core.registry import CPUDispatcher
    return sorted(f"{name}.{attr}" for name, module in list(sys.modules.items()) if name.startswith("llmray.kernels")
                  for attr, value in vars(module).items()
                  if isinstance(value, CPUDispatcher) and value.stats.cache_misses)

@ray.remote(num_cpus=1)
def probe():
    import os, time
    time.sleep(0.2)
    return os.getpid(), "llmray.pipeline.segment" in sys.modules, heavy(), compiled()

workers = {pid: (ran, heavy, built) for pid, ran, heavy, built in ray.get([probe.remote() for _ in range(6)])}
print(json.dumps({"driver": heavy(), "driver_compiled": compiled(), "workers": list(workers.values())}))
"""


def test_the_shipped_jobs_never_import_pandas_or_scipy(tmp_path):
    """pyarrow imports pandas the first time a process converts a Python or numpy value (0.25 s in
    every worker of every run): the data path, the global steps and the report go through
    llmray.kernels.arrow instead. numba imports scipy.linalg on its first kernel (0.15 s) unless
    llmray.kernels.jit set it up. Nor does any process compile a kernel: the install compiled them
    all (``make setup``). Run in a Ray of its own, whose workers run nothing else."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", NO_HEAVY_IMPORTS, str(tmp_path)], cwd=root, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["driver"] is False
    ran = [pandas for ran, pandas, _ in seen["workers"] if ran]
    assert ran and not any(ran), seen
    assert seen["driver_compiled"] == [] and all(built == [] for _, _, built in seen["workers"]), seen
