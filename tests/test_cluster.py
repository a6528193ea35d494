"""Work spreads over a multi-node cluster and gives the same output; the cluster/ files are valid."""

import json
import os
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from llmray.config import parse_job
from llmray.pipeline.runner import RunOptions, run_job
from tests.helpers import ENGLISH, job, run_isolated, write_jsonl

ROOT = Path(__file__).resolve().parent.parent
STEPS = ["clean_whitespace", "pii_redact", {"length": {"min_words": 30}}]

# ray.cluster_utils.Cluster cannot share a process with the session's ray.init(), so the 2-node run
# happens in a child process: two nodes of one CPU each, the job driven through `--address`.
TWO_NODES = """
import json, sys
import ray
from ray.cluster_utils import Cluster
from llmray.config import parse_job
from llmray.pipeline.runner import RunOptions, run_job

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
try:
    stats = run_job(parse_job(json.loads(sys.argv[1])), RunOptions(address=cluster.address, progress=False))
    alive = sum(1 for n in ray.nodes() if n["Alive"])
    print(json.dumps({"nodes": stats["nodes"], "ray_nodes": alive, "docs_out": stats["docs_out"]}))
finally:
    ray.shutdown()
    cluster.shutdown()
"""


def kept_ids(out: Path) -> list[str]:
    return sorted(pq.read_table(out / "data").column("id").to_pylist())


@pytest.fixture
def corpus(tmp_path):
    """Eight files, so eight chunks to share out; every fourth document is too short to keep."""
    for f in range(8):
        write_jsonl(tmp_path / "in" / f"part{f}.jsonl", [
            {"id": f"f{f}-{i}", "text": "Too short." if i % 4 == 0 else f"{ENGLISH} Call 555-123-{1000 + i}."}
            for i in range(20)])
    return tmp_path / "in"


@pytest.mark.cluster
def test_two_nodes_both_work_and_match_a_single_node_run(ray_session, corpus, tmp_path):
    spread = tmp_path / "two-nodes"
    env = {**os.environ, "RAY_AUTH_MODE": "token", "LLMRAY_CONNECT_TIMEOUT": "10"}
    done = run_isolated([sys.executable, "-c", TWO_NODES, json.dumps(job(corpus, spread, STEPS, chunk_mb=0.001))],
                        timeout=150, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ray_nodes"] == 2
    assert result["nodes"] == 2, "every chunk ran on one node"
    single = tmp_path / "one-node"
    stats = run_job(parse_job(job(corpus, single, STEPS, chunk_mb=0.001)), RunOptions(progress=False))
    assert stats["nodes"] == 1
    assert result["docs_out"] == stats["docs_out"] == 8 * 15
    assert kept_ids(spread) == kept_ids(single)
    texts = {r["id"]: r["text"] for r in pq.read_table(spread / "data").to_pylist()}
    assert texts == {r["id"]: r["text"] for r in pq.read_table(single / "data").to_pylist()}


def manifests(name: str) -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all((ROOT / "cluster" / name).read_text())}


def test_autoscaler_config_passes_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "cluster" / "autoscaler-aws.yaml").read_text())
    validate_config(prepare_config(config))  # what `ray up` checks before it launches anything
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    gpus = [t["resources"].get("GPU", 0) for name, t in types.items() if name != config["head_node_type"]]
    assert 0 in gpus and any(gpus), "a CPU and a GPU worker type"


def test_kuberay_manifests_have_cpu_and_gpu_workers_and_run_llmray():
    cluster = manifests("kuberay-raycluster.yaml")["RayCluster"]
    assert cluster["apiVersion"] == "ray.io/v1"
    gpus = [g["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0)
            for g in cluster["spec"]["workerGroupSpecs"]]
    assert 0 in gpus and any(gpus), "a CPU and a GPU worker group"
    rayjob = manifests("kuberay-rayjob.yaml")["RayJob"]
    assert rayjob["apiVersion"] == "ray.io/v1"
    assert "llmray" in rayjob["spec"]["entrypoint"] and "--address auto" in rayjob["spec"]["entrypoint"]
    assert rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]
