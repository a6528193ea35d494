"""`llmray submit/status/logs/stop/jobs` against a real Ray head with its dashboard, started (and stopped)
here; what a submission carries; and every bad address or id as one line with exit status 2."""

import gzip
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from llmray import cluster, jobs
from llmray.cli import main
from llmray.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("local_cluster", ROOT / "cluster" / "local_cluster.py")
local_cluster = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(local_cluster)

# Submits a job that runs until stopped, and returns once it has printed its first line.
SLEEPER = """
import sys, time
from ray.job_submission import JobSubmissionClient
client = JobSubmissionClient(sys.argv[1])
job_id = client.submit_job(entrypoint="echo started; sleep 300")
deadline = time.monotonic() + 60
while "started" not in client.get_job_logs(job_id) and time.monotonic() < deadline:
    time.sleep(0.5)
print(job_id)
"""


def llmray(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """The command as a user runs it: a process of its own, so the session's in-process Ray stays apart."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_AUTH_MODE": "token"}
    return subprocess.run([sys.executable, "-m", "llmray.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def quickstart_documents() -> int:
    """Lines in the shipped quickstart corpus: one document each."""
    files = (ROOT / "data" / "quickstart").glob("*.jsonl.gz")
    return sum(len(gzip.decompress(f.read_bytes()).splitlines()) for f in files)


def error_line(done: subprocess.CompletedProcess) -> str:
    """The last line on stderr, after checking it is an error and the only one."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("llmray: error:")]
    assert errors == lines[-1:], done.stderr
    return errors[0]


@pytest.fixture(scope="module")
def head(ray_session):
    """A Ray head with its dashboard, 1 CPU, on free ports; stopped at the end, and only it: the
    session's in-process Ray must still work afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="llmray-test-"))  # short: Ray's socket paths have a limit
    state = local_cluster.start(directory, workers=0, cpus=1, timeout=120)
    yield state["dashboard"]
    assert local_cluster.stop(directory, timeout=30) == 1
    assert not any(local_cluster.session_processes(node["pid"]) for node in state["nodes"])
    assert ray_session.get(ray_session.remote(lambda: 1).remote()) == 1
    shutil.rmtree(directory)


@pytest.mark.cluster
def test_submit_wait_runs_the_quickstart_on_the_cluster(head, tmp_path):
    out = tmp_path / "out"
    done = llmray("submit", "jobs/quickstart.yaml", "--address", head, "--output", str(out), "--wait",
                  "--wait-timeout", "150", timeout=180)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.splitlines()[0]
    assert job_id.startswith("raysubmit_")
    assert done.stderr.splitlines()[-1].startswith(f"llmray: job {job_id} SUCCEEDED")
    stats = json.loads((out / "stats.json").read_text())
    assert f"kept {stats['docs_out']:,}" in done.stdout  # the driver's summary, streamed from the cluster
    assert stats["docs_in"] == quickstart_documents() and stats["accounting_ok"] and stats["nodes"] == 1
    assert pq.read_table(out / "data").num_rows == stats["docs_out"]
    assert (out / "report.html").exists() and (out / "rejects").is_dir()
    status = llmray("status", job_id, "--address", head)
    assert status.returncode == 0 and status.stdout.startswith(f"{job_id}  SUCCEEDED")
    listed = llmray("jobs", "--address", head)
    assert any(line.startswith(job_id) and "SUCCEEDED" in line and line.endswith("jobs/quickstart.yaml")
               for line in listed.stdout.splitlines())


@pytest.mark.cluster
def test_a_job_failing_on_the_cluster_says_why_in_one_line(head, tmp_path):
    missing = "/nonexistent-llmray-input/part.jsonl"  # absolute: left for the cluster to read
    done = llmray("submit", "jobs/quickstart.yaml", "--address", head, "--input", missing,
                  "--output", str(tmp_path / "out"), "--wait", "--wait-timeout", "90", timeout=120)
    assert done.returncode == 2  # the driver's own exit status: a problem with the job's input
    job_id = done.stdout.splitlines()[0]
    assert error_line(done) == f"llmray: error: job {job_id} FAILED: input not found: {missing} " \
                               f"(check the path, or pass --input)"
    status = llmray("status", job_id, "--address", head)
    assert f"{job_id}  FAILED" in status.stdout and f"reason: input not found: {missing}" in status.stdout


@pytest.mark.cluster
def test_status_logs_and_stop_on_a_running_job(head):
    submitted = subprocess.run([sys.executable, "-c", SLEEPER, head], capture_output=True, text=True,
                               timeout=90, env={**os.environ, "RAY_AUTH_MODE": "token"})
    job_id = submitted.stdout.strip()
    status = llmray("status", job_id, "--address", head)
    assert status.returncode == 0 and status.stdout.startswith(f"{job_id}  RUNNING  started ")
    logs = llmray("logs", job_id, "--address", head)
    assert logs.returncode == 0 and "started" in logs.stdout
    followed = llmray("logs", job_id, "--address", head, "--follow", "--wait-timeout", "4")
    assert followed.returncode == 124 and "started" in followed.stdout
    assert followed.stderr.strip().endswith("(--wait-timeout); it goes on")
    stopped = llmray("stop", job_id, "--address", head, "--wait-timeout", "30")
    assert stopped.returncode == 0 and stopped.stdout.strip() == f"{job_id}  STOPPED"
    status = llmray("status", job_id, "--address", head)
    assert f"{job_id}  STOPPED" in status.stdout and "reason: Job was intentionally stopped." in status.stdout


@pytest.mark.cluster
@pytest.mark.parametrize("command", ["status", "logs", "stop"])
def test_an_unknown_job_id_is_one_line(head, command):
    done = llmray(command, "raysubmit_nosuchjob", "--address", head)
    assert done.returncode == 2
    assert error_line(done) == f"llmray: error: no job raysubmit_nosuchjob on the cluster at {head} " \
                               f"(`llmray jobs` lists them)"


def test_an_unreachable_dashboard_is_one_line_within_the_timeout():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{closed.getsockname()[1]}"
    done = llmray("jobs", "--address", refused)
    assert done.returncode == 2
    assert error_line(done).startswith(f"llmray: error: cannot reach the Ray dashboard at {refused}")
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        started = time.monotonic()
        done = llmray("submit", "jobs/quickstart.yaml", "--address", f"127.0.0.1:{silent.getsockname()[1]}",
                      "--timeout", "1")
        assert time.monotonic() - started < 20
    assert done.returncode == 2 and "waited up to 1 s" in error_line(done)


def test_run_refuses_a_dashboard_address_in_one_line(tmp_path):
    done = llmray("run", "jobs/quickstart.yaml", "--address", "http://127.0.0.1:8265", "--output",
                  str(tmp_path / "out"))
    assert done.returncode == 2
    assert error_line(done).startswith("llmray: error: http://127.0.0.1:8265 is a dashboard address: "
                                       "`llmray submit JOB --address http://127.0.0.1:8265`")


def test_cluster_addresses(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert cluster.cluster_address(None) is None
    assert cluster.cluster_address("auto") == "auto"
    monkeypatch.setenv("RAY_ADDRESS", "http://head:8265")  # exported for `llmray submit`
    assert cluster.cluster_address(None) is None
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")  # as inside a Ray job
    assert cluster.cluster_address(None) == "10.0.0.5:6379"
    with pytest.raises(UserError, match="Ray Data cannot run through Ray Client"):
        cluster.cluster_address("ray://head:10001")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{closed.getsockname()[1]}"
    monkeypatch.setenv("LLMRAY_CONNECT_TIMEOUT", "2")
    with pytest.raises(UserError, match=f"cannot reach the Ray cluster at {address} within 2 s"):
        cluster.check_reachable(address)
    assert jobs.dashboard_url("head:8265") == "http://head:8265"
    monkeypatch.delenv("RAY_ADDRESS")
    with pytest.raises(UserError, match="no cluster given"):
        jobs.dashboard_url(None)


def test_submission_carries_the_job_file_and_small_relative_inputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ["data/a.jsonl", "data/b.jsonl", "data/sub/c.jsonl", "data/skip.txt", "jobs/x.yaml"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}\n")
    stage = tmp_path / "stage"
    inputs = ["data/*.jsonl", "data/sub", "/shared/corpus", "s3://bucket/corpus/"]
    assert jobs.stage_job(stage, "jobs/x.yaml", inputs, carry_mb=1)[0] == "jobs/x.yaml"
    carried = sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file())
    assert carried == ["data/a.jsonl", "data/b.jsonl", "data/sub/c.jsonl", "jobs/x.yaml"]
    with pytest.raises(UserError, match="over --carry-mb 0"):
        jobs.stage_job(tmp_path / "stage2", "jobs/x.yaml", ["data"], carry_mb=0)
    with pytest.raises(UserError, match="input not found: data/none"):
        jobs.stage_job(tmp_path / "stage3", "jobs/x.yaml", ["data/none"], carry_mb=1)
    with pytest.raises(UserError, match="only relative paths under this directory"):
        jobs.stage_job(tmp_path / "stage4", "jobs/x.yaml", ["../elsewhere"], carry_mb=1)
    assert jobs.cluster_path("out/x") == str(tmp_path / "out/x")
    assert jobs.cluster_path("/shared/out") == "/shared/out" and jobs.cluster_path("s3://b/o") == "s3://b/o"


def test_submission_never_carries_secrets_or_follows_links_out(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name in ["corpus/a.jsonl", "corpus/.env", ".git/config", "corpus/.ssh/id_rsa", "jobs/x.yaml"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text('{"text": "x"}\n' if name.endswith(".jsonl") else "SECRET\n")
    (tmp_path / "jobs" / "x.yaml").write_text("input: corpus\n")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir(exist_ok=True)
    (outside / "private.jsonl").write_text("SECRET\n")
    (tmp_path / "corpus" / "linked.jsonl").symlink_to(outside / "private.jsonl")
    _, carried = jobs.stage_job(tmp_path / "stage", "jobs/x.yaml", ["corpus", "."], carry_mb=1)
    assert list(map(str, carried)) == ["corpus/a.jsonl", "jobs/x.yaml"]
    staged = [p for p in (tmp_path / "stage").rglob("*") if p.is_file()]
    assert all("SECRET" not in p.read_text() for p in staged)
    assert main(["submit", "jobs/x.yaml", "--address", "http://127.0.0.1:1", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "corpus/a.jsonl" in printed and ".env" not in printed and "linked" not in printed


def test_package_carries_the_source_and_its_pins(tmp_path):
    from importlib import metadata

    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# extra\nxxhash==3.4.1\n\n")
    env = jobs.runtime_env("/stage", package=True, pip=["numpy==1.26.4", str(requirements)])
    assert env["working_dir"] == "/stage"
    assert env["py_modules"] == [str(ROOT / "llmray")]
    pins = {line.split("==")[0]: line.split("==")[1] for line in env["pip"]}
    assert "ray" not in pins and not any("+" in v for v in pins.values())
    assert pins["numpy"] == "1.26.4" and pins["xxhash"] == "3.4.1"  # what was asked for wins
    assert pins["pyarrow"] == metadata.version("pyarrow").split("+")[0]
    assert len(pins) == len(env["pip"])  # one line per package
    assert jobs.runtime_env("/stage", package=False, pip=[]) == {"working_dir": "/stage"}
