"""Measuring: repeats summarized as median and spread, peak memory, core pinning, child processes.

Standard library only (psutil when present), because the peer benchmarks import this module from a
separate virtual environment that may not have llmray's dependencies.

Every measurement runs in a child process of its own (``python -m llmray.bench.<module> REQUEST
RESULT``, both JSON files): one Ray runtime per process, a clean peak-memory figure per stage, and a
crash or a hang in one stage costs that stage only.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MB = 1e6
#: Thread pools of native libraries, held to the cores a measurement was given.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS",
               "RAYON_NUM_THREADS", "TOKENIZERS_PARALLELISM")


class ChildFailed(RuntimeError):
    """A measurement's child process failed: the message is its last error line."""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ERROR_LINE = re.compile(r"^[\w.]*(Error|Exception|Exit)\b.*")


def last_error(output: str) -> str:
    """The last line of a traceback that names an exception (the rest is in the child's log)."""
    lines = [_ANSI.sub("", line).strip() for line in output.strip().splitlines()]
    errors = [line for line in lines if _ERROR_LINE.match(line)]
    return (errors or lines or ["no output"])[-1][:500]


def summarize(values: list[float]) -> dict[str, Any]:
    """Median, min, max and spread ((max - min) / median, in percent) of repeated measurements."""
    if not values:
        return {"median": None, "min": None, "max": None, "spread_pct": None, "runs": []}
    median = statistics.median(values)
    spread = (max(values) - min(values)) / median * 100 if median else 0.0
    return {"median": _round(median), "min": _round(min(values)), "max": _round(max(values)),
            "spread_pct": round(spread, 1), "runs": [_round(v) for v in values]}


def rates(wall_s: list[float], docs: int, nbytes: int, cores: int) -> dict[str, Any]:
    """Throughput figures of repeated runs over the same input: docs/s, MB/s and MB/s per core."""
    return {
        "wall_s": summarize(wall_s),
        "docs_per_s": summarize([docs / t for t in wall_s if t > 0]),
        "mb_per_s": summarize([nbytes / MB / t for t in wall_s if t > 0]),
        "mb_per_s_per_core": summarize([nbytes / MB / t / cores for t in wall_s if t > 0]),
    }


def _round(value: float) -> float:
    return float(f"{value:.4g}")


def timed_repeats(fn: Callable[[int], Any], repeats: int) -> tuple[list[float], Any]:
    """Call ``fn(repeat_index)`` ``repeats`` times; return the wall times and the last result."""
    times, result = [], None
    for r in range(repeats):
        started = time.perf_counter()
        result = fn(r)
        times.append(time.perf_counter() - started)
    return times, result


# --- memory --------------------------------------------------------------------------------------


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> None:
    """Start a new peak-RSS window for this process (Linux 4.0+; elsewhere the lifetime peak stays)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """Peak resident memory of this process since the last ``reset_peak_rss`` (VmHWM), in MB."""
    kb = _status_kb("VmHWM")
    if kb is None:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb * 1024 / MB, 1)


def rss_mb() -> float:
    kb = _status_kb("VmRSS")
    return round((kb or 0) * 1024 / MB, 1)


class TreeMemory:
    """Samples the RSS of a process (this one by default) and all its descendants (Ray's raylet, GCS
    and workers, or a command's whole tree).

    Peak of the sum over the tree and of the largest single process. Shared pages (Ray's object
    store in /dev/shm) can be counted in several processes, so the tree figure is an upper bound.
    """

    def __init__(self, pid: int | None = None, interval_s: float = 0.1):
        self.pid, self.interval_s = pid, interval_s
        self.peak_tree = self.peak_process = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> TreeMemory:
        import psutil

        root = psutil.Process(self.pid)

        def sample() -> None:
            while not self._stop.is_set():
                sizes = []
                try:
                    tree = [root, *root.children(recursive=True)]
                except psutil.Error:  # the command has exited
                    return
                for proc in tree:
                    try:
                        sizes.append(proc.memory_info().rss)
                    except psutil.Error:
                        continue
                self.peak_tree = max(self.peak_tree, sum(sizes))
                self.peak_process = max(self.peak_process, max(sizes, default=0))
                self._stop.wait(self.interval_s)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def figures(self) -> dict[str, float]:
        return {"peak_tree_rss_mb": round(self.peak_tree / MB, 1),
                "peak_process_rss_mb": round(self.peak_process / MB, 1)}


# --- cores -----------------------------------------------------------------------------------------


def pin_to_cores(n: int) -> list[int]:
    """Restrict this process (and what it starts later) to ``n`` cores and native pools to ``n`` threads.

    "Per core" then means what it says: a library that quietly uses every core cannot look faster.
    """
    threads = str(n)
    for var in THREAD_VARS:
        os.environ[var] = "false" if var == "TOKENIZERS_PARALLELISM" and n == 1 else threads
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(available) >= n and hasattr(os, "sched_setaffinity"):
        cores = available[:n]
        os.sched_setaffinity(0, cores)
        return cores
    return available


# --- machine ---------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, memory, OS, Python and library versions, load."""
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cores_logical": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_avg_1m_5m_15m": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    try:
        import psutil

        info["cores_physical"] = psutil.cpu_count(logical=False)
        info["ram_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    info["libraries"] = {name: _version(name) for name in ("ray", "pyarrow", "numpy", "numba", "torch",
                                                           "datasketch", "llmray")}
    return info


def memory_touch(mb: int = 512) -> dict[str, float]:
    """MB/s of writing memory this process never touched, then of writing it again.

    On virtual machines whose host backs guest memory lazily and takes freed memory back (virtio
    free-page reporting), the first figure swings by 100x from hour to hour; every buffer and every
    page of written files pays it, so absolute job figures from different hours are not comparable
    (ratios measured in one run are). Recorded at the start and end of a benchmark."""
    size = mb << 20
    buffer = bytearray(size)  # mapped, not yet touched
    view = (ctypes.c_char * size).from_buffer(buffer)
    rates = []
    for value in (1, 2):
        started = time.perf_counter()
        ctypes.memset(ctypes.addressof(view), value, size)
        rates.append(round(mb / max(time.perf_counter() - started, 1e-9)))
    del view
    return {"fresh_mb_s": rates[0], "warm_mb_s": rates[1]}


#: A fixed amount of pure interpreter work, timed inside each child (its start-up apart).
_SPIN = ("import time; t = time.perf_counter(); s = 0\n"
         "for i in range({n}): s += i\n"
         "print(time.perf_counter() - t)")


def core_parallelism(cores: int, n: int = 5_000_000, repeats: int = 3) -> dict[str, float]:
    """How fast ``cores`` processes of identical pure compute each run, against one alone.

    Where virtual cores share physical ones, or the host is busy, this is below 1 and it caps the
    parallel efficiency any job can reach on the machine (on this project's 2-core VM it measured
    0.68-0.82 in one hour, about 1.0 in the next); a job's 1-to-N CPU efficiency is best read
    against it."""
    def spin(k: int) -> float:
        procs = [subprocess.Popen([sys.executable, "-c", _SPIN.format(n=n)], stdout=subprocess.PIPE, text=True)
                 for _ in range(k)]
        return max(float(p.communicate()[0]) for p in procs)

    # Alternated and the best of each kept: on a shared host one sample of either swings by 20%.
    alone = together = float("inf")
    for _ in range(repeats):
        alone, together = min(alone, spin(1)), min(together, spin(cores))
    return {"cores": cores, "alone_s": round(alone, 4), "together_s": round(together, 4),
            "efficiency": round(alone / together, 3)}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# --- child processes -------------------------------------------------------------------------------


def run_child(module: str, request: dict[str, Any], timeout_s: float, python: str | None = None) -> dict[str, Any]:
    """Run ``python -m llmray.bench.<module> REQUEST RESULT`` in the current directory; return RESULT.

    Another interpreter (the peers' environment) sees this llmray through a link on its path, and
    nothing else of this environment.
    """
    with tempfile.TemporaryDirectory(prefix="llmray-bench-") as tmp:
        req, res = Path(tmp) / "request.json", Path(tmp) / "result.json"
        req.write_text(json.dumps(request, default=str))
        env = dict(os.environ)
        if python and os.path.abspath(python) != os.path.abspath(sys.executable):
            (Path(tmp) / "path").mkdir()
            (Path(tmp) / "path" / "llmray").symlink_to(Path(__file__).resolve().parents[1])
            env["PYTHONPATH"] = str(Path(tmp) / "path")
        cmd = [python or sys.executable, "-m", f"llmray.bench.{module}", str(req), str(res)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
        except subprocess.TimeoutExpired:
            raise ChildFailed(f"timed out after {timeout_s:.0f} s") from None
        except OSError as exc:
            raise ChildFailed(f"cannot start {cmd[0]}: {exc}") from None
        if proc.returncode or not res.exists():
            raise ChildFailed(f"exit status {proc.returncode}: {last_error(proc.stderr or proc.stdout)}")
        return json.loads(res.read_text())


def child_main(handler: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Entry point of a child: read the request named on the command line, write the handler's result."""
    request_path, result_path = sys.argv[1:3]
    result = handler(json.loads(Path(request_path).read_text()))
    Path(result_path).write_text(json.dumps(result, default=str))

