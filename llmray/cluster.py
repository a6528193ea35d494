"""Connecting to Ray: embedded on the local cores, or joining a cluster."""

from __future__ import annotations

import logging
import os
import socket
import time

from llmray.errors import UserError

#: Seconds to wait for a cluster's address to answer before saying it cannot be reached.
CONNECT_TIMEOUT_ENV = "LLMRAY_CONNECT_TIMEOUT"
DEFAULT_CONNECT_TIMEOUT_S = 10.0


def connect(address: str | None = None, num_cpus: int | None = None, verbose: bool = False) -> float:
    """Start or join Ray once per process; return the seconds it took (reported apart from the run).

    Ray's own messages (its start-up banner, worker output) stay in Ray's log files unless
    ``verbose``: llmray prints its own progress and says where those logs are."""
    import ray

    if ray.is_initialized():
        return 0.0
    started = time.perf_counter()
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    address = cluster_address(address)
    if not verbose:
        logging.getLogger("ray").setLevel(logging.ERROR)
    kwargs: dict = {"configure_logging": False, "log_to_driver": verbose}
    if address:
        if num_cpus:
            raise UserError(f"--num-cpus sizes the Ray started here, but {address} is a cluster to join "
                            f"(from --address or RAY_ADDRESS): drop one of them")
        check_reachable(address)
        kwargs["address"] = address
    else:
        # "local": a RAY_ADDRESS meant for `llmray submit` must not send Ray looking for a cluster.
        kwargs.update(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False)
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        token = os.environ.get("RAY_AUTH_MODE") == "token"
        hint = "" if token else "; a cluster with token auth also needs RAY_AUTH_MODE=token"
        raise UserError(f"cannot join the Ray cluster at {address}: {first_line(str(exc))}{hint}") from None
    return time.perf_counter() - started


def log_dir() -> str | None:
    """Where this Ray session keeps its logs (worker output, tracebacks), if Ray runs here."""
    import ray

    node = getattr(ray._private.worker, "_global_node", None)
    return os.path.join(node.get_session_dir_path(), "logs") if node is not None else None


def cluster_address(address: str | None) -> str | None:
    """The cluster to join, or None to start Ray here. Without ``address``, a RAY_ADDRESS naming a
    cluster is joined, as ray.init() does (inside a Ray job it names the job's cluster); a dashboard
    URL there is for `llmray submit` and is left alone."""
    if not address:
        address = os.environ.get("RAY_ADDRESS", "")
        if not address or address.startswith(("http://", "https://")):
            return None
    if address.startswith(("http://", "https://")):
        raise UserError(f"{address} is a dashboard address: `llmray submit JOB --address {address}` runs a "
                        f"job there; `run --address` joins a cluster as auto or HOST:6379")
    if address.startswith("ray://"):
        # Ray Data's streaming executor needs a driver with its own core worker, which a Ray Client
        # driver lacks (ray-project/ray#42739): the run would fail at its first step.
        raise UserError(f"{address}: Ray Data cannot run through Ray Client; submit the job instead "
                        f"(`llmray submit JOB --address http://HEAD:8265`), or run it on a cluster node "
                        f"with --address auto")
    return address


def check_reachable(address: str) -> None:
    """Fail in one line, within LLMRAY_CONNECT_TIMEOUT seconds, when nothing answers at ``address``:
    Ray itself would retry for minutes. ``auto`` is found by Ray on this machine and not checked."""
    if address == "auto":
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"{address}: expected auto or HOST:PORT (the head's GCS port, 6379 by default)")
    timeout = float(os.environ.get(CONNECT_TIMEOUT_ENV) or DEFAULT_CONNECT_TIMEOUT_S)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UserError(f"cannot reach the Ray cluster at {address} within {timeout:g} s "
                        f"({exc.strerror or 'timed out'}; {CONNECT_TIMEOUT_ENV} sets the wait): is the head "
                        f"up, and the port open?") from None


def first_line(text: str) -> str:
    """Ray's errors run to many lines; llmray says one."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def quiet_ray_data() -> None:
    """llmray prints its own progress; Ray Data's per-operator bars would drown it. Called where
    llmray's own commands use Ray Data (training's input), not at start-up: importing Ray Data
    takes 0.5 s that a job run does not need."""
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
