"""Start and stop a multi-node Ray cluster on this one machine, for trying `llmray submit` and friends.

    python cluster/local_cluster.py start --workers 2     # a head and 2 worker nodes, 1 CPU each
    eval "$(python cluster/local_cluster.py env)"          # RAY_ADDRESS and RAY_AUTH_MODE for llmray
    python cluster/local_cluster.py stop

Every node is a `ray start --block` in a session of its own, listening on free ports on 127.0.0.1, with
its pid, log and addresses kept in --dir. `stop` ends exactly those nodes (never `ray stop`, which
would end every Ray instance on the machine, including other people's).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

STATE = "state.json"
STARTED = "Ray runtime started"
LOCALHOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCALHOST, 0))
        return s.getsockname()[1]


def node_env() -> dict[str, str]:
    """Token auth on (Ray's default for new clusters), no draining on stop (it waits up to 30 s for
    running work, which is about to go anyway), and this Python first on PATH for job entrypoints."""
    env = dict(os.environ)
    env.setdefault("RAY_AUTH_MODE", "token")
    env.setdefault("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "0")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def ray_cli() -> str:
    return os.path.join(os.path.dirname(sys.executable), "ray")


def start(directory: Path, workers: int, cpus: int, timeout: float) -> dict:
    """Start the head, then the workers; return the state written to ``directory/state.json``."""
    if (directory / STATE).exists():
        raise SystemExit(f"{directory} already holds a cluster: run `stop --dir {directory}` first")
    directory.mkdir(parents=True, exist_ok=True)
    env = node_env()
    if env["RAY_AUTH_MODE"] == "token":
        # Creates ~/.ray/auth_token if there is none, as ray.init() does for a new local cluster.
        subprocess.run([ray_cli(), "get-auth-token", "--generate"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Ports of its own, never Ray's defaults, so it runs beside any other Ray on the machine.
    gcs, dashboard, client = free_port(), free_port(), free_port()
    state: dict = {"gcs": f"{LOCALHOST}:{gcs}", "dashboard": f"http://{LOCALHOST}:{dashboard}",
                   "auth_mode": env["RAY_AUTH_MODE"], "nodes": []}
    head = ["--head", f"--port={gcs}", f"--dashboard-port={dashboard}", f"--dashboard-host={LOCALHOST}",
            f"--ray-client-server-port={client}", f"--temp-dir={directory / 'ray'}"]
    try:
        for k in range(workers + 1):
            role = head if k == 0 else [f"--address={state['gcs']}"]
            args = [*role, f"--num-cpus={cpus}",
                    f"--dashboard-agent-listen-port={free_port()}", "--disable-usage-stats", "--block"]
            state["nodes"].append(_start_node(directory / f"node{k}.log", args, env, timeout))
            _write_state(directory, state)
        _wait_for_dashboard(state["dashboard"], timeout)
    except BaseException:
        stop(directory, timeout)
        raise
    return state


def _start_node(log: Path, args: list[str], env: dict[str, str], timeout: float) -> dict:
    with open(log, "wb") as out:
        proc = subprocess.Popen([ray_cli(), "start", *args], stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    node = {"pid": proc.pid, "log": str(log)}
    deadline = time.monotonic() + timeout
    while STARTED not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            _end_node(node, timeout=5)
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise SystemExit(f"a Ray node did not start within {timeout:g} s; see {log}: " + " | ".join(tail))
        time.sleep(0.2)
    return node


def _wait_for_dashboard(url: str, timeout: float) -> None:
    """Until the Jobs API answers (401 counts: it is up, and wants the token)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/jobs/", timeout=2).close()
            return
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"the dashboard at {url} did not answer within {timeout:g} s")
        time.sleep(0.3)


def stop(directory: Path, timeout: float) -> int:
    """End the nodes started in ``directory``, workers first; return how many were running."""
    try:
        state = json.loads((directory / STATE).read_text())
    except FileNotFoundError:
        return 0
    running = sum(_end_node(node, timeout) for node in reversed(state["nodes"]))
    (directory / STATE).unlink()
    shutil.rmtree(directory / "ray", ignore_errors=True)
    return running


def _end_node(node: dict, timeout: float) -> bool:
    """SIGTERM the node's `ray start --block` (it drains and ends its processes); after ``timeout``,
    SIGKILL whatever is left in its session. Job drivers, in sessions of their own, follow their
    supervisor within a second. Returns whether anything of the node was still running."""
    pid = node["pid"]
    left = session_processes(pid)
    if pid in left and "start" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and session_processes(pid):
        time.sleep(0.2)
    for straggler in session_processes(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(straggler, signal.SIGKILL)
    return bool(left)


def session_processes(sid: int) -> list[int]:
    """Live processes in session ``sid``; they are the node's own, since each node has a fresh one."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[3]) == sid and fields[0] != "Z":
                found.append(int(entry))
    return found


def _write_state(directory: Path, state: dict) -> None:
    (directory / STATE).write_text(json.dumps(state, indent=2))


def env_lines(state: dict) -> str:
    return (f"export RAY_ADDRESS={state['dashboard']} RAY_AUTH_MODE={state['auth_mode']}\n"
            f"# on this machine, `llmray run JOB --address {state['gcs']}` joins it too")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("action", choices=["start", "stop", "env"],
                        help="start the nodes, stop them, or print the shell exports for llmray")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/llmray-local-cluster"),
                        help="where the nodes' pids, logs and Ray's temporary files live")
    parser.add_argument("--workers", type=int, default=2, help="worker nodes besides the head")
    parser.add_argument("--cpus", type=int, default=1, help="CPUs each node offers to Ray")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for a node to start, or to end before it is killed")
    args = parser.parse_args(argv)
    if args.action == "start":
        state = start(args.dir, args.workers, args.cpus, args.timeout)
        print(f"started a head and {args.workers} worker node(s) of {args.cpus} CPU(s); "
              f"dashboard {state['dashboard']}", file=sys.stderr)
        print(env_lines(state))
    elif args.action == "stop":
        print(f"stopped {stop(args.dir, args.timeout)} node(s)", file=sys.stderr)
    else:
        try:
            print(env_lines(json.loads((args.dir / STATE).read_text())))
        except FileNotFoundError:
            raise SystemExit(f"no cluster in {args.dir}: run `start` first") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
