"""Run minhash_dedup on a 2-node local Ray cluster; print the kept ids and the nodes that ran tasks.

Usage: python tests/dedup/cluster_job.py INPUT_DIR OUTPUT_DIR   (test_dedup runs this)
"""

import json
import os
import sys
from pathlib import Path

import pyarrow.parquet as pq
import ray
from ray.cluster_utils import Cluster
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from llmray.config import parse_job
from llmray.pipeline.runner import RunOptions, run_job


def main() -> None:
    source, out = sys.argv[1], Path(sys.argv[2])
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        cluster.wait_for_nodes()
        # A worker on each node first, as a cluster that has run anything has one: a node's first
        # worker takes a second or more to start, longer than this small job needs on the other node.
        ready = ray.remote(num_cpus=1)(lambda: ray.get_runtime_context().get_node_id())
        nodes = [node["NodeID"] for node in ray.nodes() if node["Alive"]]
        started = ray.get([ready.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote()
                           for node in nodes])
        assert sorted(started) == sorted(nodes), (started, nodes)
        raw = {"input": {"paths": [source], "chunk_mb": 0.01},
               "steps": [{"minhash_dedup": {"local_components_max_edges": 0}}], "output": {"path": str(out)}}
        stats = run_job(parse_job(raw), RunOptions(progress=False))
        kept = sorted(pq.read_table(out / "data").column("id").to_pylist())
        print(json.dumps({"nodes": stats["nodes"], "kept": kept}))
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
