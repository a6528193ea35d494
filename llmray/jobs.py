"""Jobs on a Ray cluster through its Jobs API (the dashboard's address): submit, status, logs, stop, jobs.

A submitted job runs on the cluster on its own: its driver (`llmray run ... --address auto`) lives on
the head node, so the machine that submitted it can go away. The runtime environment carries the job
file and the relative input paths, when they are small, at the same relative paths, so the job reads
what it names; absolute paths and URLs are the cluster's to read (a shared file system, s3://, ...).
With --package it also carries this llmray source and its dependencies pinned to the versions here.

Every request to the cluster has a timeout (--timeout), and so has every wait (--wait-timeout).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import glob
import logging
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from llmray.cluster import first_line
from llmray.errors import UserError

if TYPE_CHECKING:
    from ray.job_submission import JobDetails, JobSubmissionClient

EXIT_FAILED = 1
EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130
POLL_S = 0.5
#: A silent log stream is checked on this often, so a lost cluster is noticed rather than waited on.
CHECK_S = 5.0
DEFAULT_TIMEOUT_S = 15.0
DEFAULT_CARRY_MB = 64.0
GLOB_CHARS = "*?["
#: The SDK's INFO lines on uploads and log streams; llmray says what matters itself.
QUIET_LOGGERS = ("ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk",
                 "ray._private.runtime_env.packaging")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add submit, status, logs, stop and jobs to the `llmray` command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--address", metavar="URL",
                        help="the cluster's dashboard, e.g. http://HEAD:8265 (default: $RAY_ADDRESS)")
    common.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                        help="seconds to wait for each answer from the cluster (default: %(default)g)")

    p = sub.add_parser(
        "submit", parents=[common],
        help="run a job file on a Ray cluster through its Jobs API",
        description="Submit a job file to a Ray cluster and print its submission id. The job file is "
                    "checked here first. Relative input paths are carried with the job (up to --carry-mb); "
                    "absolute paths and URLs must be readable on the cluster. With --wait, exit 0 when the "
                    "job succeeds, the job's own exit status when it fails (2: a problem with the job or "
                    "its inputs, as with `llmray run`), 1 when it is stopped, 124 when --wait-timeout "
                    "passes first (the job goes on).")
    p.add_argument("job", help="the job file (YAML)")
    p.add_argument("--input", nargs="+", metavar="PATH_OR_URL",
                   help="read these instead of the job's input (relative paths are carried with the job)")
    p.add_argument("--output", metavar="DIR",
                   help="write here instead of the job's output.path: a path on the cluster that every node "
                        "can write, such as a shared file system (a relative path is made absolute here)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace what is in the output instead of resuming it")
    p.add_argument("--wait", action="store_true", help="stream the job's logs and exit with its outcome")
    p.add_argument("--wait-timeout", type=float, metavar="S",
                   help="with --wait, stop waiting after S seconds (default: until the job ends)")
    p.add_argument("--carry-mb", type=float, default=DEFAULT_CARRY_MB, metavar="MB",
                   help="most MB of relative local input to carry with the job; more must be put where the "
                        "cluster can read it (default: %(default)g)")
    p.add_argument("--package", action="store_true",
                   help="for clusters without llmray: carry this llmray source, and install its dependencies "
                        "pinned to the versions installed here (Ray excluded: the cluster's own is used)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the command the cluster would run and every file that would be carried, and stop")
    p.add_argument("--pip", action="append", default=[], metavar="REQ",
                   help="a pip requirement (ftfy==6.3.1) or requirements file to install for the job; "
                        "repeatable; overrides a --package pin of the same name")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("status", parents=[common], help="show a submitted job's state",
                       description="Print a job's id and state, when it ran, and why it failed if it did.")
    p.add_argument("id", help="the submission id (`llmray submit` prints it, `llmray jobs` lists them)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("logs", parents=[common], help="print a submitted job's logs",
                       description="Print a job's logs; with --follow, keep printing until the job ends.")
    p.add_argument("id", help="the submission id")
    p.add_argument("--follow", "-f", action="store_true", help="stream the logs until the job ends")
    p.add_argument("--wait-timeout", type=float, metavar="S",
                   help="with --follow, stop after S seconds (exit 124; default: until the job ends)")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("stop", parents=[common], help="stop a submitted job",
                       description="Stop a running job and wait until it has stopped.")
    p.add_argument("id", help="the submission id")
    p.add_argument("--wait-timeout", type=float, default=30.0, metavar="S",
                   help="seconds to wait for the job to stop (default: %(default)g; exit 124 if it has not)")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("jobs", parents=[common], help="list a cluster's submitted jobs",
                       description="List the cluster's submitted jobs, oldest first.")
    p.set_defaults(func=cmd_jobs)


class JobsClient:
    """The Ray Jobs API with a timeout on every request and one-line errors for what goes wrong."""

    def __init__(self, address: str | None, timeout: float):
        self.address = dashboard_url(address)
        self.timeout = timeout
        with self._answers():
            self._client = _timed_client_class()(self.address, timeout)
        for name in QUIET_LOGGERS:  # after the import: the SDK's modules set their own level
            logging.getLogger(name).setLevel(logging.WARNING)

    @contextlib.contextmanager
    def _answers(self, job_id: str | None = None) -> Iterator[None]:
        """Turn what the Jobs API raises into a ``UserError`` that says what to do."""
        import aiohttp
        from ray.exceptions import AuthenticationError

        try:
            yield
        except AuthenticationError:
            raise UserError(f"the cluster at {self.address} asks for its auth token: export RAY_AUTH_MODE="
                            f"token, with the token in RAY_AUTH_TOKEN or ~/.ray/auth_token") from None
        except (OSError, aiohttp.ClientError):  # requests' and aiohttp's connection errors and timeouts
            raise UserError(f"cannot reach the Ray dashboard at {self.address} (waited up to "
                            f"{self.timeout:g} s, --timeout): is the cluster up, and is this its dashboard "
                            f"address (port 8265 unless set otherwise)?") from None
        except RuntimeError as exc:
            if job_id and "404" in str(exc):
                raise UserError(f"no job {job_id} on the cluster at {self.address} "
                                f"(`llmray jobs` lists them)") from None
            raise UserError(f"the Jobs API at {self.address} failed: {first_line(str(exc))}") from None

    def submit(self, entrypoint: str, runtime_env: dict[str, Any], metadata: dict[str, str]) -> str:
        with self._answers():
            try:
                return self._client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env,
                                               metadata=metadata)
            except ValueError as exc:  # the runtime environment, checked by the SDK before sending
                raise UserError(f"cannot submit: {first_line(str(exc))}") from None

    def info(self, job_id: str) -> JobDetails:
        with self._answers(job_id):
            return self._client.get_job_info(job_id)

    def logs(self, job_id: str) -> str:
        with self._answers(job_id):
            return self._client.get_job_logs(job_id)

    def stop(self, job_id: str) -> bool:
        with self._answers(job_id):
            return self._client.stop_job(job_id)

    def submitted(self) -> list[JobDetails]:
        with self._answers():
            return [j for j in self._client.list_jobs() if j.submission_id]

    def wait(self, job_id: str, timeout: float | None) -> JobDetails | None:
        """The job's details once it has ended; None if ``timeout`` seconds pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not (info := self.info(job_id)).status.is_terminal():
            if deadline is not None and time.monotonic() > deadline:
                return None
            time.sleep(POLL_S)
        return info

    def follow(self, job_id: str, timeout: float | None, out: TextIO) -> JobDetails | None:
        """Stream the job's logs to ``out`` until it ends and return its details; None if ``timeout``
        seconds pass first."""
        self.info(job_id)  # an unknown id is one line here, not a broken stream
        started = time.monotonic()
        with self._answers(job_id):
            ended = asyncio.run(self._stream(job_id, out, None if timeout is None else started + timeout))
        if not ended:
            return None
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        return self.wait(job_id, left)

    async def _stream(self, job_id: str, out: TextIO, deadline: float | None) -> bool:
        """Copy the log stream to ``out``: True once it ends with the job, False at ``deadline``. While it
        is silent, the job's state is asked for every CHECK_S (each request under --timeout), so a cluster
        that went away is reported instead of waited on forever."""
        stream = self._client.tail_job_logs(job_id).__aiter__()
        pending = asyncio.ensure_future(stream.__anext__())
        ended_before = False
        try:
            while True:
                wait_s = CHECK_S if deadline is None else max(0.0, min(CHECK_S, deadline - time.monotonic()))
                done, _ = await asyncio.wait({pending}, timeout=wait_s)
                if done:
                    try:
                        out.write(pending.result())
                    except StopAsyncIteration:
                        return True
                    out.flush()
                    pending = asyncio.ensure_future(stream.__anext__())
                    continue
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                ended = (await asyncio.to_thread(self._client.get_job_status, job_id)).is_terminal()
                if ended and ended_before:  # the stream should have closed by now: do not wait on it
                    return True
                ended_before = ended
        finally:
            pending.cancel()


@functools.cache
def _timed_client_class() -> type[JobSubmissionClient]:
    """``JobSubmissionClient`` whose every HTTP request has a timeout (the SDK sets none, so an address
    that drops packets would hang it). Built on first use, so `llmray --help` does not import Ray."""
    from ray.job_submission import JobSubmissionClient

    class TimedJobSubmissionClient(JobSubmissionClient):
        def __init__(self, address: str, timeout: float):
            self._request_timeout = timeout  # set first: the constructor already asks for the version
            super().__init__(address)

        def _do_request(self, method: str, endpoint: str, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", self._request_timeout)
            return super()._do_request(method, endpoint, **kwargs)

    return TimedJobSubmissionClient


def dashboard_url(address: str | None) -> str:
    """``--address`` or ``$RAY_ADDRESS`` as an http(s) URL of the dashboard."""
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise UserError("no cluster given: pass --address http://HEAD:8265 or set RAY_ADDRESS")
    if address.startswith("ray://"):
        raise UserError(f"{address} is a Ray Client address; jobs go through the dashboard: "
                        f"--address http://HEAD:8265")
    return (address if "://" in address else f"http://{address}").rstrip("/")


def cmd_submit(args: argparse.Namespace) -> int:
    from llmray.config import load_job

    spec = load_job(args.job)  # a broken job file stops here, not on the cluster
    inputs = args.input or [path for source in spec.inputs for path in source.paths]
    output = cluster_path(args.output or spec.output.path)
    with tempfile.TemporaryDirectory(prefix="llmray-submit-") as stage:
        job_file, carried = stage_job(Path(stage), args.job, inputs, args.carry_mb)
        command = ["python", "-m", "llmray.cli", "run", job_file, "--address", "auto", "--output", output]
        command += ["--input", *args.input] if args.input else []
        command += ["--overwrite"] if args.overwrite else []
        if args.dry_run:
            print(f"would run on the cluster: {shlex.join(command)}")
            print(f"would carry {len(carried)} file(s), {sum(f.stat().st_size for f in carried) / 1e6:,.2f} MB:")
            for path in carried:
                print(f"  {path}")
            return 0
        client = JobsClient(args.address, args.timeout)
        env = runtime_env(stage, args.package, args.pip)
        job_id = client.submit(shlex.join(command), env, metadata={"llmray_job": args.job})
    print(job_id, flush=True)
    print(f"llmray: submitted {job_id} to {client.address}; output: {output} (on the cluster)",
          file=sys.stderr)
    if not args.wait:
        print(f"llmray: `llmray logs {job_id} --follow` follows it, `llmray stop {job_id}` stops it",
              file=sys.stderr)
        return 0
    followed = _follow(client, job_id, args.wait_timeout)
    if isinstance(followed, int):
        return followed
    if followed.status.value == "SUCCEEDED":
        print(f"llmray: job {job_id} SUCCEEDED in {_duration(followed)}", file=sys.stderr)
        return 0
    reason = failure_reason(followed, client.logs(job_id))
    print(f"llmray: error: job {job_id} {followed.status.value}: {reason}", file=sys.stderr)
    code = followed.driver_exit_code
    return code if followed.status.value == "FAILED" and isinstance(code, int) and code > 0 else EXIT_FAILED


def _follow(client: JobsClient, job_id: str, timeout: float | None) -> JobDetails | int:
    """Stream the job's logs until it ends and return its details; or, when the wait ends first
    (--wait-timeout, Ctrl-C), say so and return the exit status for it."""
    try:
        info = client.follow(job_id, timeout, sys.stdout)
    except KeyboardInterrupt:
        print(f"llmray: stopped waiting; job {job_id} goes on (`llmray stop {job_id}` stops it)",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    if info is None:
        print(f"llmray: job {job_id} is still running after {timeout:g} s (--wait-timeout); it goes on",
              file=sys.stderr)
        return EXIT_TIMEOUT
    return info


def cmd_status(args: argparse.Namespace) -> int:
    client = JobsClient(args.address, args.timeout)
    info = client.info(args.id)
    print(f"{args.id}  {info.status.value}  {_when(info)}")
    print(f"entrypoint: {info.entrypoint}")
    if info.status.value in ("FAILED", "STOPPED"):
        print(f"reason: {failure_reason(info, client.logs(args.id))}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    client = JobsClient(args.address, args.timeout)
    if not args.follow:
        sys.stdout.write(client.logs(args.id))
        return 0
    followed = _follow(client, args.id, args.wait_timeout)
    return followed if isinstance(followed, int) else 0


def cmd_stop(args: argparse.Namespace) -> int:
    client = JobsClient(args.address, args.timeout)
    info = client.info(args.id)
    if not info.status.is_terminal():
        client.stop(args.id)
        info = client.wait(args.id, args.wait_timeout)
        if info is None:
            print(f"llmray: job {args.id} has not stopped after {args.wait_timeout:g} s (--wait-timeout)",
                  file=sys.stderr)
            return EXIT_TIMEOUT
    print(f"{args.id}  {info.status.value}")
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    client = JobsClient(args.address, args.timeout)
    jobs = sorted(client.submitted(), key=lambda j: j.start_time or 0)
    if not jobs:
        print(f"no jobs on the cluster at {client.address}", file=sys.stderr)
        return 0
    print(f"{'SUBMISSION ID':<30} {'STATUS':<10} {'STARTED':<20} {'TOOK':>8}  JOB")
    for j in jobs:
        started = _clock(j.start_time) if j.start_time else "-"
        name = (j.metadata or {}).get("llmray_job") or _shorten(j.entrypoint, 60)
        print(f"{j.submission_id:<30} {j.status.value:<10} {started:<20} {_duration(j):>8}  {name}")
    return 0


def failure_reason(info: JobDetails, logs: str) -> str:
    """One line on why a job did not succeed: for a driver that failed, llmray's own error line if it
    printed one, else its last words (the exception); otherwise Ray's message (a runtime environment
    that could not be set up, a stop)."""
    lines = [line.strip() for line in logs.splitlines() if line.strip()]
    if info.status.value == "FAILED" and info.driver_exit_code is not None and lines:
        errors = [line for line in lines if line.startswith("llmray: error: ")]
        return errors[-1].removeprefix("llmray: error: ") if errors else lines[-1]
    return first_line(info.message or "no reason given")


def stage_job(stage: Path, job_file: str, inputs: list[str], carry_mb: float) -> tuple[str, list[Path]]:
    """Copy the job file and the relative local inputs into ``stage`` (the job's working directory on the
    cluster) at their relative paths, so the job reads what it names; return the job file's path there
    and every file carried."""
    files = sorted({f for path in inputs if is_relative_local(path) for f in local_files(path)})
    size = sum(f.stat().st_size for f in files)
    if size > carry_mb * 1e6:
        raise UserError(f"the relative input paths hold {size / 1e6:,.1f} MB, over --carry-mb {carry_mb:g}: "
                        f"put the data where the cluster can read it (a shared file system, s3://...) and "
                        f"pass that path with --input")
    job, here = Path(job_file).resolve(), Path.cwd().resolve()
    job_there = job.relative_to(here) if job.is_relative_to(here) else Path(job.name)
    for source, target in [*((f, f) for f in files), (job, job_there)]:
        (stage / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, stage / target)
    return str(job_there), sorted({*files, job_there})


def is_relative_local(path: str) -> bool:
    """Relative local paths are what this machine holds; absolute ones and URLs are the cluster's."""
    return "://" not in path and not os.path.isabs(path)


def local_files(path: str) -> list[Path]:
    """The files a relative input path names here: a file, a directory's files, or a glob's matches.
    Never a hidden file or folder (``.env``, ``.git/``), and never through a link that leads out of
    this directory: only what the job reads travels."""
    if Path(os.path.normpath(path)).parts[:1] == ("..",):
        raise UserError(f"{path}: only relative paths under this directory are carried with the job; give an "
                        f"absolute path or URL that the cluster can read")
    if any(ch in path for ch in GLOB_CHARS):
        found = [Path(p) for p in glob.glob(path, recursive=True)]
    elif os.path.isdir(path):
        found = [Path(folder) / name for folder, dirs, names in os.walk(path)
                 for name in names if not _hidden(Path(folder) / name)]
    else:
        found = [Path(path)]
    here = Path.cwd().resolve()
    files = sorted(Path(os.path.normpath(p)) for p in found
                   if p.is_file() and not _hidden(p) and p.resolve().is_relative_to(here))
    if not files:
        raise UserError(f"input not found: {path} (relative paths are read here and carried with the job)")
    return files


def _hidden(path: Path) -> bool:
    return any(part.startswith(".") and part not in (".", "..") for part in path.parts)


def cluster_path(path: str) -> str:
    """A local path as the cluster should see it: relative ones are resolved here, since the job's own
    working directory is a temporary copy that nobody would find."""
    return path if "://" in path or os.path.isabs(path) else os.path.abspath(path)


def runtime_env(working_dir: str, package: bool, pip: list[str]) -> dict[str, Any]:
    """The job's Ray runtime environment: the staged files as its working directory, and for a cluster
    without llmray (``package``) this source and its pins; ``pip`` adds or overrides requirements."""
    env: dict[str, Any] = {"working_dir": working_dir}
    requirements = [line for req in pip for line in _requirement_lines(req)]
    if package:
        import llmray

        env["py_modules"] = [str(Path(llmray.__file__).parent)]
        env["excludes"] = ["__pycache__", "*.pyc"]
        requirements = _merge(dependency_pins(), requirements)
    if requirements:
        env["pip"] = requirements
    return env


def _requirement_lines(req: str) -> list[str]:
    """A requirement, or the requirements in a file (comments and blank lines dropped)."""
    if not os.path.isfile(req):
        return [req]
    lines = (line.split("#", 1)[0].strip() for line in Path(req).read_text().splitlines())
    return [line for line in lines if line]


def dependency_pins() -> list[str]:
    """llmray's dependencies at the versions installed here, so the cluster runs what was tested here.
    Ray is left out (the cluster's own runs the job), and so are local version tags like ``+cpu``,
    which no package index serves."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = []
    for line in metadata.requires("llmray") or []:
        req = Requirement(line)
        if canonicalize_name(req.name) == "ray" or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        try:
            pins.append(f"{req.name}=={metadata.version(req.name).split('+')[0]}")
        except metadata.PackageNotFoundError:
            pins.append(f"{req.name}{req.specifier}")
    return pins


def _merge(pins: list[str], requirements: list[str]) -> list[str]:
    """``pins`` and ``requirements``, where a requirement replaces the pin of the same package."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    named = set()
    for req in requirements:
        with contextlib.suppress(InvalidRequirement):  # pip options such as --index-url
            named.add(canonicalize_name(Requirement(req).name))
    return [p for p in pins if canonicalize_name(Requirement(p).name) not in named] + requirements


def _when(info: JobDetails) -> str:
    if not info.start_time:
        return "not started yet"
    verb = "took" if info.end_time else "running for"
    return f"started {_clock(info.start_time)}, {verb} {_duration(info)}"


def _clock(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def _duration(info: JobDetails) -> str:
    if not info.start_time:
        return "-"
    seconds = ((info.end_time or time.time() * 1000) - info.start_time) / 1000
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
