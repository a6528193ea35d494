"""Run minhash_dedup on a 2-node local Ray cluster; print the kept ids as JSON (test_dedup runs this).

Usage: python tests/dedup_cluster_job.py INPUT_DIR OUTPUT_DIR
"""

import json
import os
import sys
from pathlib import Path

import pyarrow.parquet as pq
import ray
from ray.cluster_utils import Cluster

from llmray.ops.dedup import MinhashDedup
from llmray.pipeline.context import GlobalContext


def main() -> None:
    source, out = Path(sys.argv[1]), Path(sys.argv[2])
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        cluster.wait_for_nodes()
        ctx = GlobalContext(input_dir=source, output_dir=out / "data", work_dir=out / "work", output_root=out,
                            rejects_dir=None, num_cpus=2)
        MinhashDedup(local_components_max_edges=0).run(ctx)
        kept = sorted(pq.read_table(ctx.output_dir).column("id").to_pylist())
        nodes = len([n for n in ray.nodes() if n["Alive"]])
        print(json.dumps({"nodes": nodes, "kept": kept}))
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
