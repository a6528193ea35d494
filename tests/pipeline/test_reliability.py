"""Crashes: kill -9 the driver and resume; kill a Ray worker mid-run. Each run is its own process
with its own Ray, so killing it cannot touch the test session's runtime."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from llmray.config import load_job, parse_job
from llmray.errors import JobError
from llmray.pipeline.runner import RunOptions, run_job
from tests.helpers import write_jsonl

ROOT = Path(__file__).resolve().parents[2]
FILES, DOCS = 24, 50


@pytest.fixture
def slow_job(tmp_path):
    for f in range(FILES):
        write_jsonl(tmp_path / "in" / f"part{f:02d}.jsonl",
                    [{"id": f"f{f}-{i}", "text": f"document {i} of file {f} " * 20} for i in range(DOCS)])

    def write(out: str) -> Path:
        job = tmp_path / f"{out}.yaml"
        job.write_text(f"input: {{paths: {tmp_path / 'in'}, chunk_mb: 0.02}}\n"
                       f"steps:\n  - python: {{function: 'tests.slow_ops:slow_identity'}}\n"
                       f"  - python: {{function: 'tests.slow_ops:keep_even_length', kind: filter}}\n"
                       f"output: {{path: {tmp_path / out}}}\n")
        return job
    return write


@pytest.fixture
def start(children):
    def run(job: Path) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.Popen([sys.executable, "-m", "llmray.cli", "run", str(job), "--quiet", "--num-cpus", "2"],
                                env=env, cwd=ROOT, start_new_session=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        children.append(proc)
        return proc
    return run


def wait_for_markers(proc: subprocess.Popen, progress: Path, at_least: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = len(list(progress.glob("*.json"))) if progress.is_dir() else 0
        if done >= at_least or proc.poll() is not None:
            return done
        time.sleep(0.1)
    raise TimeoutError(f"no progress in {progress}")


def output_ids(out: Path) -> list[str]:
    return pq.read_table(out / "data").column("id").to_pylist()


def test_kill_9_driver_then_resume_equals_uninterrupted_run(ray_session, slow_job, start):
    job = slow_job("out")
    out = job.parent / "out"
    proc = start(job)
    done = wait_for_markers(proc, out / "_progress" / "s0", at_least=4)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 4 <= done < FILES, "the run finished before it could be interrupted"
    assert not (out / "stats.json").exists()
    resumed = start(job)
    assert resumed.wait(timeout=180) == 0, resumed.stdout.read()
    stats = json.loads((out / "stats.json").read_text())

    clean_job = slow_job("clean")  # the uninterrupted run, in this process's Ray (no second start-up)
    reference = run_job(load_job(clean_job), RunOptions(progress=False))

    ids = output_ids(out)
    assert len(ids) == len(set(ids)), "a document was written twice"
    assert sorted(ids) == sorted(output_ids(clean_job.parent / "clean"))
    for key in ("docs_in", "docs_out", "dropped", "quarantined", "bytes_in", "bytes_out"):
        assert stats[key] == reference[key], key
    assert stats["accounting_ok"] and stats["docs_in"] == FILES * DOCS
    assert not list((out / "data").glob("*.tmp"))


def test_killed_worker_is_retried_and_output_is_complete(slow_job, start):
    job = slow_job("out")
    out = job.parent / "out"
    proc = start(job)
    wait_for_markers(proc, out / "_progress" / "s0", at_least=3)
    workers = [c for c in psutil.Process(proc.pid).children(recursive=True)
               if " ".join(c.cmdline()).startswith("ray::_run_task")]
    assert workers, "no Ray worker found to kill"
    for worker in workers:  # every chunk worker, so one of them is surely mid-chunk
        worker.kill()
    assert proc.wait(timeout=180) == 0, proc.stdout.read()
    stats = json.loads((out / "stats.json").read_text())
    assert stats["docs_in"] == FILES * DOCS and stats["accounting_ok"]
    assert stats["retries"] >= 1
    assert len(set(output_ids(out))) == stats["docs_out"]


def test_job_files_run_no_code_unless_a_python_step_names_it():
    with pytest.raises(JobError, match="cannot import"):
        parse_job({"input": "x", "steps": [{"python": {"function": "no_such_module_xyz:f"}}]})
    with pytest.raises(JobError, match="module:function"):
        parse_job({"input": "x", "steps": [{"python": {"function": "os.system"}}]})
    spec = parse_job({"input": "$(rm -rf /); `touch /tmp/pwned`", "steps": []})
    assert spec.inputs[0].paths == ["$(rm -rf /); `touch /tmp/pwned`"]
