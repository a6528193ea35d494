"""Connecting to Ray: embedded on the local cores, or joining a cluster."""

from __future__ import annotations

import logging
import os
import time

from llmray.errors import UserError


def connect(address: str | None = None, num_cpus: int | None = None) -> float:
    """Start or join Ray once per process; return the seconds it took (reported apart from the run)."""
    import ray

    if ray.is_initialized():
        return 0.0
    started = time.perf_counter()
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    kwargs: dict = {"configure_logging": False, "log_to_driver": True}
    if address:
        kwargs["address"] = address
    else:
        kwargs.update(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False)
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        raise UserError(f"cannot reach the Ray cluster at {address}: {exc}") from None
    _quiet_ray_data()
    return time.perf_counter() - started


def _quiet_ray_data() -> None:
    """llmray prints its own progress; Ray Data's per-operator bars would drown it."""
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.ERROR)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


def cpu_count() -> int:
    import ray

    if not ray.is_initialized():
        return os.cpu_count() or 1
    return max(1, int(ray.cluster_resources().get("CPU", 1)))
