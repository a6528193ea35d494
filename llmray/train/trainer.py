"""The loop on Ray Train: ``TorchTrainer`` workers fed by Ray Data, checkpoints under ``<output>``.

Data: the driver builds lazy Ray Datasets (read -> ``Featurizer`` in Ray Data tasks); each worker
streams its shard with ``get_dataset_shard(...).iter_torch_batches``. Ingest runs with
``preserve_order``, so the split across workers, and therefore each worker's batch order, is the
same on every run: a resumed run replays the interrupted epoch and skips what it had trained on.

Checkpoints: every ``checkpoint_every`` steps and at the end, rank 0 saves the whole state and all
ranks call ``ray.train.report`` (the only report calls: each costs about 1.8 s here). Ray keeps
them as ``<output>/checkpoints/step_NNNNNN``; a new trainer on the same place finds them, which
is how ``--resume`` and worker-failure restarts (``max_failures``) continue. For a URL output Ray
writes them through ``storage_filesystem``: the output's own fsspec file system (the job's
``storage_options``: endpoint, credentials) wrapped for pyarrow, so any node reaches the bucket.
Per-step metrics are written by rank 0 to ``<output>/metrics.jsonl`` (for a local output on a
multi-node cluster, a shared filesystem).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import ray.train
import ray.train.torch
from ray.data import ExecutionOptions
from ray.data.collate_fn import NumpyBatchCollateFn
from ray.train import Checkpoint, CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from llmray.errors import UserError
from llmray.io.storage import Storage
from llmray.train import transfer
from llmray.train.data import Collate, ray_dataset, seed_for
from llmray.train.export import export
from llmray.train.loop import EVAL_SEED, METRICS, fresh_metrics, progress_line, run_loop
from llmray.train.plan import Plan


class _Collate(NumpyBatchCollateFn):
    """Ray's collate interface around ``data.Collate`` (which knows nothing of Ray)."""

    def __init__(self, collate: Collate):
        self.collate = collate

    def __call__(self, batch: dict[str, np.ndarray]) -> Any:
        return self.collate(batch)


def fit(plan: Plan, address: str | None = None) -> dict[str, Any]:
    """Train on Ray workers, then export ``<output>/model`` from the last checkpoint."""
    from llmray import cluster

    spec = plan.spec
    startup_s = cluster.connect(address)
    started = time.perf_counter()
    fresh_metrics(plan)
    datasets = {"train": ray_dataset(plan.train, plan.columns, plan.featurizer("train"))}
    if plan.has_eval:
        files, columns = plan.eval_source()
        datasets["eval"] = ray_dataset(files, columns, plan.featurizer("eval"))
    ingest = ExecutionOptions(preserve_order=True)
    resources = worker_resources(
        spec.num_workers, spec.use_gpu, spec.resources_per_worker, cluster.cpu_count()
    )
    filesystem, storage_path = transfer.arrow(plan.output, spec.storage_options)
    trainer = TorchTrainer(
        _worker,
        train_loop_config={"plan": plan},
        scaling_config=ScalingConfig(
            num_workers=spec.num_workers, use_gpu=spec.use_gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(
            name="checkpoints",
            storage_path=storage_path,
            storage_filesystem=filesystem,
            failure_config=FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=spec.keep_checkpoints),
        ),
        datasets=datasets,
        dataset_config=DataConfig(execution_options=ingest),
    )
    try:
        with echo_metrics(plan.output_storage(), METRICS, plan.total_steps):
            result = trainer.fit()
    except ray.train.WorkerGroupError as exc:
        causes = list(exc.worker_failures.values())
        user = next((c for c in causes if isinstance(c, UserError)), None)
        if user is not None:
            raise UserError(str(user)) from None
        raise
    with result.checkpoint.as_directory() as directory:
        export(Path(directory), plan)
    return {
        **result.metrics,
        "wall_s": round(time.perf_counter() - started, 2),
        "startup_s": round(startup_s, 2),
    }


@contextlib.contextmanager
def echo_metrics(storage: Storage, name: str, total_steps: int, every_s: float = 1.0) -> Iterator[None]:
    """Print the metrics rank 0 writes, as they arrive, from the driver: the workers' own output
    stays in Ray's logs (with Ray's noise), and each line is printed once. For a URL output the
    file arrives as rank 0 uploads it (every 30 s and at each checkpoint)."""
    stop = threading.Event()

    def size() -> int:
        try:
            return storage.size(name) if storage.exists(name) else 0
        except OSError:
            return 0

    read = size()  # bytes already printed: a resumed run's earlier records were printed by its own run

    def show() -> None:
        """Print the complete lines written since the last call (the file only ever grows)."""
        nonlocal read
        end = size()
        if end <= read:
            return
        try:
            chunk = storage.get_range(name, read, end)
        except OSError:
            return
        complete = chunk[: chunk.rfind(b"\n") + 1]
        read += len(complete)
        for line in complete.decode("utf-8", "replace").splitlines():
            with contextlib.suppress(ValueError, KeyError):
                print(progress_line(json.loads(line), total_steps), flush=True)

    def watch() -> None:
        while not stop.wait(every_s):
            show()

    thread = threading.Thread(target=watch, name="llmray-metrics", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        show()


def worker_resources(workers: int, use_gpu: bool, given: dict[str, float], cpus: int) -> dict[str, float]:
    """Ray resources per worker. Ray Data needs a CPU of its own to read and tokenize while the
    workers train (without one, ingest waits forever): by default a worker takes up to one CPU,
    less when the cluster is small, and a given reservation that leaves none is refused."""
    if given:
        resources = dict(given)
    else:
        resources = {"CPU": round(min(1.0, (cpus - 1) / workers), 2)} | ({"GPU": 1.0} if use_gpu else {})
    if cpus - workers * resources.get("CPU", 1.0) < 1:
        raise UserError(
            f"train.resources_per_worker: {workers} workers x {resources.get('CPU', 1.0):g} CPU leave "
            f"less than one of the cluster's {cpus} CPUs to Ray Data for reading the data; "
            f"lower the CPUs per worker or the number of workers"
        )
    return resources


def _worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: the shared loop over this worker's shard of the data."""
    plan: Plan = config["plan"]
    spec = plan.spec
    context = ray.train.get_context()
    rank = context.get_world_rank()
    train_shard = ray.train.get_dataset_shard("train")

    def epoch_batches(epoch: int) -> Iterable[Any]:
        seed = seed_for(spec.seed, epoch, rank)
        return train_shard.iter_torch_batches(
            batch_size=spec.batch_size,
            collate_fn=_Collate(plan.collate(seed)),
            drop_last=True,
            local_shuffle_buffer_size=spec.shuffle_buffer or None,
            local_shuffle_seed=seed if spec.shuffle_buffer else None,
        )

    def eval_batches() -> Iterable[Any]:
        shard = ray.train.get_dataset_shard("eval")
        return shard.iter_torch_batches(
            batch_size=spec.batch_size,
            collate_fn=_Collate(plan.collate(seed_for(spec.seed, EVAL_SEED, rank))),
        )

    def checkpoint(step: int, save: Callable[[Path], None], metrics: dict[str, Any]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            if rank == 0:
                save(Path(tmp))
            ray.train.report(
                metrics,
                checkpoint=Checkpoint.from_directory(tmp) if rank == 0 else None,
                checkpoint_dir_name=f"step_{step:06d}",
            )

    device = ray.train.torch.get_device()
    # Ray's own record of this run's checkpoints wins (worker restarts, --resume of a Ray run); a
    # plain-loop run resumed here has only the directory the driver found.
    start = ray.train.get_checkpoint() or (
        _checkpoint(plan.resume_from, spec.storage_options) if plan.resume_from else None
    )
    if start is None:
        run_loop(plan, epoch_batches, eval_batches, checkpoint, device=device, rank=rank, start=None, echo=False)
        return
    with start.as_directory() as directory:
        run_loop(
            plan, epoch_batches, eval_batches, checkpoint, device=device, rank=rank, start=Path(directory),
            echo=False,
        )


def _checkpoint(location: str, options: dict[str, Any]) -> Checkpoint:
    """A checkpoint directory, local or at a URL, as Ray's Checkpoint (which downloads it when used)."""
    filesystem, path = transfer.arrow(location, options)
    return Checkpoint(path, filesystem=filesystem)
