"""Runs where the data lives: input and output in an S3 bucket (a real S3-compatible server on
127.0.0.1), resume after kill -9, a rerun that does nothing, problems said in one line, and a
3-node cluster that shares nothing but the bucket."""

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from llmray.config import parse_job
from llmray.pipeline.runner import RunOptions, run_job
from tests.helpers import ENGLISH, kill_group, run_isolated

ROOT = Path(__file__).resolve().parents[2]
QUIET = RunOptions(progress=False)


def put_corpus(s3, bucket: str, files: int = 6, docs: int = 30) -> str:
    """JSONL files with exact and near copies, so both dedup steps have work."""
    fs = s3.fs()
    for f in range(files):
        lines = []
        for i in range(docs):
            text = f"{ENGLISH} Record {i % 17} of the series {f % 3}." + (" Extra words here." if i % 5 == 0 else "")
            lines.append(json.dumps({"id": f"f{f}-{i:03d}", "text": text}))
        fs.pipe_file(f"{bucket}/in/part-{f}.jsonl", ("\n".join(lines) + "\n").encode())
    return f"s3://{bucket}/in/"


def raw_job(source: str, out: str, s3, steps=None, **extra) -> dict:
    return {"input": {"paths": [source], "storage_options": s3.options, "chunk_mb": 0.002},
            "steps": steps if steps is not None else ["clean_whitespace", "exact_dedup", "minhash_dedup"],
            "output": {"path": out, "storage_options": s3.options, "rejects": True, **extra}}


def read_output(s3, prefix: str) -> dict[str, str]:
    fs = s3.fs()
    rows = {}
    for path in fs.find(f"{prefix}/data"):
        for row in pq.read_table(io.BytesIO(fs.cat_file(path))).to_pylist():
            assert row["id"] not in rows, f"{row['id']} written twice"
            rows[row["id"]] = row["text"]
    return rows


def test_a_job_reads_and_writes_a_bucket_like_a_directory(ray_session, s3, tmp_path):
    bucket = s3.bucket()
    source = put_corpus(s3, bucket)
    stats = run_job(parse_job(raw_job(source, f"s3://{bucket}/out", s3)), QUIET)
    assert stats["accounting_ok"] and stats["docs_in"] == 180 and stats["dropped"]["exact_dedup.duplicate"] > 0
    fs = s3.fs()
    names = {p.split("/", 2)[2] for p in fs.find(f"{bucket}/out")}
    top = {n.split("/")[0] for n in names}
    assert top == {"data", "rejects", "stats.json", "report.html", "job.json", "README.md", "_progress"}
    assert not [n for n in names if n.startswith("_work") or "probe" in n], "scratch left in the bucket"
    on_disk = json.loads(fs.cat_file(f"{bucket}/out/stats.json"))
    assert on_disk["docs_out"] == stats["docs_out"]
    # the same job on local disk gives the same documents
    local = tmp_path / "local"
    local_job = raw_job(source, str(local), s3)
    local_job["output"].pop("storage_options")
    run_job(parse_job(local_job), QUIET)
    expected = {r["id"]: r["text"] for r in pq.read_table(local / "data").to_pylist()}
    assert read_output(s3, f"{bucket}/out") == expected
    # a rerun finds the finished output and touches nothing
    before = {p: fs.info(p)["ETag"] for p in fs.find(f"{bucket}/out")}
    again = run_job(parse_job(raw_job(source, f"s3://{bucket}/out", s3)), QUIET)
    assert again["already_complete"] and {p: fs.info(p)["ETag"] for p in fs.find(f"{bucket}/out")} == before


def test_leftovers_of_a_failed_attempt_never_reach_the_output(ray_session, s3):
    bucket = s3.bucket()
    source = put_corpus(s3, bucket, files=2)
    raw = raw_job(source, f"s3://{bucket}/out", s3, steps=["clean_whitespace"])
    run_job(parse_job(raw), QUIET)
    fs = s3.fs()
    marker = sorted(fs.find(f"{bucket}/out/_progress/s0"))[-1]
    key = marker.rsplit("/", 1)[1].removesuffix(".json")
    fs.rm_file(marker)  # as if the unit's attempt died before its commit
    fs.rm_file(f"{bucket}/out/stats.json")
    fs.pipe_file(f"{bucket}/out/data/{key}-deadbeef-0000.parquet", b"half a shard")
    stats = run_job(parse_job(raw), QUIET)
    assert stats["accounting_ok"] and not [p for p in fs.find(f"{bucket}/out") if "deadbeef" in p]
    assert len(read_output(s3, f"{bucket}/out")) == stats["docs_out"]


def cli(args: list[str], s3, **env) -> subprocess.CompletedProcess:
    return run_isolated([sys.executable, "-m", "llmray.cli", *args], timeout=120, cwd=ROOT,
                        env={**os.environ, "PYTHONPATH": str(ROOT), **s3.env, **env})


def test_problems_with_the_bucket_are_one_line_and_exit_2(s3):
    bucket = s3.bucket()
    source = put_corpus(s3, bucket, files=1)
    cases = [
        ({}, f"s3://no-such-bucket-{bucket}/out", "bucket"),
        ({"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, f"s3://{bucket}/out", "nothing answers"),
        ({"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
          "AWS_CONFIG_FILE": "/nonexistent"}, f"s3://{bucket}/out", "no credentials"),
    ]
    for env, out, words in cases:
        done = cli(["run", "jobs/quickstart.yaml", "--input", source, "--output", out], s3, **env)
        assert done.returncode == 2, done.stderr[-2000:]
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and out in lines[0] and words in lines[0], lines
    done = cli(["run", "jobs/quickstart.yaml", "--input", f"s3://{bucket}/nothing-here/", "--output",
                f"s3://{bucket}/o"], s3)
    assert done.returncode == 2 and "nothing-here" in done.stderr and done.stderr.count("\n") == 1


@pytest.mark.slow  # ~110 s; the same resume on local disk runs in every suite (test_reliability)
def test_kill_9_then_resume_on_object_storage_equals_an_uninterrupted_run(s3, tmp_path):
    bucket = s3.bucket()
    source = put_corpus(s3, bucket, files=12, docs=20)
    steps = "[{python: {function: 'tests.slow_ops:slow_identity'}}, exact_dedup, minhash_dedup]"

    def job(out: str) -> Path:
        path = tmp_path / f"{out}.yaml"
        path.write_text(f"input: {{paths: {source}, chunk_mb: 0.002}}\nsteps: {steps}\n"
                        f"output: {{path: 's3://{bucket}/{out}', rejects: true}}\n")
        return path

    env = {**os.environ, "PYTHONPATH": str(ROOT), **s3.env}
    args = [sys.executable, "-m", "llmray.cli", "run", "--quiet", "--num-cpus", "2"]
    proc = subprocess.Popen([*args, str(job("out"))], env=env, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    fs = s3.fs()
    deadline = time.monotonic() + 120
    try:
        while len([p for p in fs.find(f"{bucket}/out/_progress/s0") if p.endswith(".json")]) < 3:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.2)
    finally:
        kill_group(proc)
    assert not fs.exists(f"{bucket}/out/stats.json"), "the run finished before it could be interrupted"
    for name in ("out", "clean"):
        done = run_isolated([*args, str(job(name))], timeout=240, env=env, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-3000:]
    resumed = json.loads(fs.cat_file(f"{bucket}/out/stats.json"))
    clean = json.loads(fs.cat_file(f"{bucket}/clean/stats.json"))
    for key in ("docs_in", "docs_out", "dropped", "quarantined", "bytes_in", "bytes_out"):
        assert resumed[key] == clean[key], key
    assert read_output(s3, f"{bucket}/out") == read_output(s3, f"{bucket}/clean")


THREE_NODES = """
import json, sys, tempfile
import ray
from ray.cluster_utils import Cluster
from llmray.config import parse_job
from llmray.pipeline.runner import RunOptions, run_job

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                        "temp_dir": tempfile.mkdtemp(prefix="head-")})
for k in range(2):
    cluster.add_node(num_cpus=1, temp_dir=tempfile.mkdtemp(prefix=f"node{k}-"))
cluster.wait_for_nodes()
try:
    stats = run_job(parse_job(json.loads(sys.argv[1])), RunOptions(address=cluster.address, progress=False))
    print(json.dumps({"nodes": stats["nodes"], "docs_out": stats["docs_out"], "ok": stats["accounting_ok"]}))
finally:
    ray.shutdown()
    cluster.shutdown()
"""


@pytest.mark.cluster
def test_three_nodes_share_nothing_but_the_bucket(ray_session, s3, tmp_path):
    bucket = s3.bucket()
    source = put_corpus(s3, bucket, files=9)
    raw = raw_job(source, f"s3://{bucket}/cluster", s3)
    done = run_isolated([sys.executable, "-c", THREE_NODES, json.dumps(raw)], timeout=240, cwd=tmp_path,
                        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ok"] and result["nodes"] == 3, result
    single = run_job(parse_job(raw_job(source, f"s3://{bucket}/single", s3)), QUIET)
    assert result["docs_out"] == single["docs_out"]
    assert read_output(s3, f"{bucket}/cluster") == read_output(s3, f"{bucket}/single")
