"""``llmray serve MODEL_DIR``: a Ray Serve application of one model, in the foreground.

Without ``--address`` it starts Ray in this process (its own local cluster), starts Serve's HTTP proxy
on ``--host``/``--port``, deploys :class:`llmray.serve.app.ModelServer` and prints one line when the
replicas are ready. SIGTERM or Ctrl-C shuts Serve and Ray down and frees the port (exit status 0).
With ``--address`` (or a RAY_ADDRESS naming a cluster, as for ``llmray run``) it joins a running
cluster: it starts Serve there if none runs (and shuts it down on exit), otherwise it deploys its
application into the running Serve and deletes only that on exit (the proxy, and so the port, belong
to that Serve). The model is checked before Ray starts.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

from llmray.errors import UserError
from llmray.helpformat import HelpFormatter

DESCRIPTION = """\
Serve a model with Ray Serve, with dynamic batching of the texts of concurrent requests: a model
written by `llmray train` (task: classification, fasttext or mlm), any Hugging Face
sequence-classification directory, or a fastText .bin/.ftz file. Runs in the foreground; SIGTERM or
Ctrl-C stops it and frees the port.

  POST /predict    {"texts": ["...", ...]}  ->  {"predictions": [{"label": ..., "score": ...}, ...]}
                   in the order of the texts; the same labels as `llmray predict`
  POST /fill-mask  {"texts": ["... [MASK] ..."], "top_k": 5}  (an MLM)
  GET  /healthz    200 {"status": "ok", "task", "labels", "seq_len", ...} once the replicas are ready

Bad requests get a 4xx and a one-line JSON {"error": "..."}, and the server goes on: a body that is
not UTF-8 or not JSON, no "texts", a non-string entry (400), more than --max-texts texts or a body
over 16 MB (413), an unknown route (404), the wrong method (405). An empty string is classified like
any text; a long one is cut to the model's sequence length (only its beginning is read)."""

EPILOG = """\
example:
  llmray serve runs/finetune/model --port 8000
  curl -s localhost:8000/predict -H 'Content-Type: application/json' \\
       -d '{"texts": ["free money, click now", "see you at 3"]}'

On a cluster: --address auto (or RAY_ADDRESS), or deploy cluster/serve.yaml with `serve deploy`,
or cluster/kuberay-rayservice.yaml on Kubernetes."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a classification (or MLM) model over HTTP with Ray Serve",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument("model", metavar="MODEL_DIR",
                   help="a model directory, a fastText .bin, or a URL (s3://..., read by every replica)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port")
    p.add_argument("--replicas", type=int, default=1, metavar="N", help="model replicas (copies of the model)")
    p.add_argument("--num-cpus", type=float, default=1.0, metavar="C",
                   help="CPUs per replica (also its torch threads)")
    p.add_argument("--num-gpus", type=float, default=0.0, metavar="G", help="GPUs per replica (0: CPU)")
    p.add_argument("--max-batch-size", type=int, default=32, metavar="B",
                   help="most texts in one forward pass, gathered across concurrent requests")
    p.add_argument("--batch-wait-ms", type=float, default=5.0, metavar="MS",
                   help="longest wait for a batch to fill")
    p.add_argument("--max-texts", type=int, default=256, metavar="N",
                   help="most texts in one request (more: 413)")
    p.add_argument("--address", metavar="ADDR",
                   help="a running Ray cluster to join (e.g. auto, on one of its nodes); default: start "
                        "Ray in this process")
    p.set_defaults(func=cmd_serve)


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class _Stop(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Stop()


def cmd_serve(args: argparse.Namespace) -> int:
    from llmray import models
    from llmray.io.storage import Storage

    if not 0 < args.port < 65536:
        raise UserError(f"--port: {args.port} is not a port number")
    store = Storage(str(Path(args.model).expanduser()) if "://" not in args.model else args.model)
    if store.local:
        kind = models.kind_of(Path(store.url), args.model)  # one line and exit 2 before Ray starts
        model = store.url
    else:
        kind, model = "a model at a URL", args.model
    from llmray.cluster import cluster_address, connect

    joined = cluster_address(args.address) is not None  # --address, or RAY_ADDRESS naming a cluster
    if not joined and not _port_free(args.host, args.port):
        raise UserError(f"--port: {args.host}:{args.port} is in use; stop what holds it or pick another port")
    if not joined:  # a replica that can never be placed would leave serve.run waiting for ever
        _check_fits(args.replicas, args.num_cpus, "CPU", os.cpu_count() or 1)
    from llmray.serve.app import APP_NAME, ROUTES, application

    app = application(model, replicas=args.replicas, num_cpus=args.num_cpus, num_gpus=args.num_gpus,
                      max_batch_size=args.max_batch_size, batch_wait_ms=args.batch_wait_ms, max_texts=args.max_texts)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with it ignored
    import ray
    from ray import serve

    owns_serve = True
    try:
        connect(args.address)  # a new local Ray unless joining (or one line on why it cannot join)
        if not joined and args.num_gpus:  # the GPUs Ray found here
            _check_fits(args.replicas, args.num_gpus, "GPU", ray.cluster_resources().get("GPU", 0.0))
        owns_serve = not joined or not _serve_running()
        signal.signal(signal.SIGTERM, _on_sigterm)  # again: Ray's core worker installs its own on init
        signal.signal(signal.SIGINT, signal.default_int_handler)
        logging.getLogger("ray.serve").setLevel(logging.WARNING)  # not "connecting to existing Serve app"
        if owns_serve:
            serve.start(http_options={"host": args.host, "port": args.port},
                        logging_config={"log_level": "WARNING", "enable_access_log": False})
        try:
            serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
        except Exception as exc:  # a replica that cannot start: its error, in one line
            raise UserError(f"{args.model}: the model server did not start: {_first_line(exc)}") from None
        route = ROUTES.get(kind, "/predict")
        print(f"serving {args.model} ({kind}) on http://{args.host}:{args.port}  POST {route}  GET /healthz  "
              f"({args.replicas} replica{'s' if args.replicas != 1 else ''}); SIGTERM or Ctrl-C stops",
              flush=True)
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, _Stop):
        print("stopping", file=sys.stderr, flush=True)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut the shutdown short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if ray.is_initialized():
                if owns_serve and joined:
                    serve.shutdown()
                else:  # the replicas drain; a Ray of our own then takes the proxy and controller with it
                    serve.delete(APP_NAME)
        finally:
            ray.shutdown()
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)
    return 0


def _check_fits(replicas: int, per: float, what: str, total: float) -> None:
    if replicas * per > total + 1e-9:
        flag = f"--num-{what.lower()}s"
        raise UserError(f"--replicas {replicas} x {flag} {per:g} needs {replicas * per:g} {what}s; this machine "
                        f"has {total:g} (use fewer, or join a cluster with --address)")


def _serve_running() -> bool:
    import ray
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    try:
        ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    except ValueError:
        return False
    return True


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if "Error" in line and not line.startswith(("File ", "Traceback"))]
    return (useful[-1] if useful else lines[0] if lines else type(exc).__name__)[:500]
