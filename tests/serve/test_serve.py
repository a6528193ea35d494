"""``llmray serve``: a real Ray Serve on 127.0.0.1 (a subprocess with its own Ray), real HTTP requests.

Labels and their order agree with ``llmray predict`` on the same texts; every kind of bad input is a
4xx with a one-line JSON error and the server answers afterwards; SIGTERM ends the process with
status 0 and frees the port. An MLM (``/fill-mask``) and a fastText model are served in-process on
the test session's Ray. Every process started here is stopped by its fixture, also on failure.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers import write_jsonl
from tests.serve import tiny

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pydantic, inside Ray Serve


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def request(port: int, path: str, body: bytes | dict | None = None, method: str | None = None,
            timeout: float = 30) -> tuple[int, dict, bytes]:
    """(status, JSON body, raw body) of one request; 4xx/5xx are answers too."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method or
                                 ("POST" if data is not None else "GET"),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw), raw
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw), raw


def wait_healthy(port: int, proc: subprocess.Popen | None = None, timeout: float = START_TIMEOUT_S) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"llmray serve exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            status, body, _ = request(port, "/healthz", timeout=2)
            if status == 200 and body.get("status") == "ok":
                return body
        except (OSError, ValueError):
            pass
        time.sleep(0.3)
    raise AssertionError(f"no healthy answer on port {port} within {timeout} s")


class Server:
    """``llmray serve`` in its own process group, stopped by pid (SIGTERM, then SIGKILL of its group)."""

    def __init__(self, model: Path, port: int, *extra: str):
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        self.port = port
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llmray.cli", "serve", str(model), "--port", str(port), *extra],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )

    def stop(self, timeout: float = 60, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the group this fixture created, by its id
                self.proc.wait(10)
        return self.proc.returncode


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory) -> Path:
    return tiny.cached(tmp_path_factory.getbasetemp(), "classifier", tiny.classifier)


@pytest.fixture(scope="module")
def server(classifier_dir):
    srv = Server(classifier_dir, free_port(), "--max-texts", "64", "--max-batch-size", "8")
    try:
        srv.health = wait_healthy(srv.port, srv.proc)
        yield srv
    finally:
        srv.stop()


TEXTS = [r["text"] for r in tiny.labeled(40, seed=11)]


def predict_cli(model: Path, texts: list[str], tmp: Path) -> list[dict]:
    from llmray.train.predict import predict

    write_jsonl(tmp / "in.jsonl", [{"id": str(i), "text": t} for i, t in enumerate(texts)])
    predict(str(model), [str(tmp / "in.jsonl")], str(tmp / "out.jsonl"))
    return [json.loads(line) for line in (tmp / "out.jsonl").read_text().splitlines()]


def test_healthz_describes_the_model(server):
    assert server.health["task"] == "classification" and server.health["labels"] == ["food", "sport"]
    assert server.health["max_texts"] == 64 and server.health["seq_len"] == 32


def test_predictions_match_llmray_predict_in_order(server, classifier_dir, tmp_path):
    status, body, _ = request(server.port, "/predict", {"texts": TEXTS})
    assert status == 200
    served = body["predictions"]
    offline = predict_cli(classifier_dir, TEXTS, tmp_path)
    assert [p["label"] for p in served] == [r["label"] for r in offline]
    assert all(abs(p["score"] - r["score"]) < 1e-4 for p, r in zip(served, offline, strict=True))
    truth = [r["label"] for r in tiny.labeled(40, seed=11)]
    assert sum(p["label"] == t for p, t in zip(served, truth, strict=True)) >= 36


def test_concurrent_requests_are_batched_and_answered_in_order(server):
    """16 clients at once, each with its own slice: every answer holds its own texts' labels."""
    status, body, _ = request(server.port, "/predict", {"texts": TEXTS})
    one_by_one = [p["label"] for p in body["predictions"]]

    def call(i: int) -> list[str]:
        texts = TEXTS[i : i + 5]
        code, answer, _ = request(server.port, "/predict", {"texts": texts})
        assert code == 200
        return [p["label"] for p in answer["predictions"]]

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(0, 32, 2)))
    assert results == [one_by_one[i : i + 5] for i in range(0, 32, 2)]


def test_empty_and_huge_texts_are_answered(server):
    huge = "goal " * 20_000 + "oven " * 20_000  # 200 KB: only the first 30 tokens are read
    status, body, _ = request(server.port, "/predict", {"texts": ["", huge, "é" * 50_000]})
    assert status == 200 and len(body["predictions"]) == 3
    assert body["predictions"][1]["label"] == "sport"
    status, body, _ = request(server.port, "/predict", {"texts": []})
    assert status == 200 and body == {"predictions": []}


@pytest.mark.parametrize(
    "path, body, method, status, message",
    [
        ("/predict", b"{not json", None, 400, "not JSON"),
        ("/predict", b"\xff\xfe{}", None, 400, "not UTF-8"),
        ("/predict", b'{"texts": ["\\ud800"]}', None, 400, "lone surrogate"),
        ("/predict", b"[1, 2]", None, 400, "JSON object"),
        ("/predict", {"text": ["a"]}, None, 400, "unknown key 'text'"),
        ("/predict", {}, None, 400, 'missing "texts"'),
        ("/predict", {"texts": "goal"}, None, 400, "must be a list"),
        ("/predict", {"texts": ["goal", 3]}, None, 400, r"texts\[1\] is not a string"),
        ("/predict", {"texts": ["goal"] * 65}, None, 413, "more than the maximum of 64"),
        ("/fill-mask", {"texts": ["a [MASK]"]}, None, 404, "use POST /predict"),
        ("/nowhere", None, None, 404, "no route /nowhere"),
        ("/predict", None, "GET", 405, "answers POST"),
    ],
)
def test_bad_requests_get_a_4xx_and_the_server_keeps_serving(server, path, body, method, status, message):
    code, answer, raw = request(server.port, path, body, method)
    assert code == status, answer
    assert set(answer) == {"error"} and b"\n" not in raw.strip()
    import re

    assert re.search(message, answer["error"]), answer
    code, after, _ = request(server.port, "/predict", {"texts": ["goal match team"]})
    assert code == 200 and after["predictions"][0]["label"] == "sport"


def test_sigterm_stops_cleanly_and_frees_the_port(server):
    """Last in this module: the module's server stops here (its finalizer then has nothing to do)."""
    started = time.monotonic()
    assert server.stop() == 0, server.proc.stdout.read()
    assert time.monotonic() - started < 60
    assert port_is_free(server.port)
    with pytest.raises(OSError):
        request(server.port, "/healthz", timeout=2)


def test_ctrl_c_stops_a_fasttext_server_and_frees_the_port(tmp_path_factory):
    """SIGINT (Ctrl-C) on `llmray serve` of a fastText model: it answers, then stops with status 0."""
    model = tiny.cached(tmp_path_factory.getbasetemp(), "fasttext", tiny.fasttext_model)
    srv = Server(model / "model.bin", free_port())  # the bare fastText file
    try:
        assert wait_healthy(srv.port, srv.proc)["task"] == "fasttext"
        code, body, _ = request(srv.port, "/predict", {"texts": ["oven sugar bake", "goal match team"]})
        assert code == 200 and [p["label"] for p in body["predictions"]] == ["food", "sport"]
        assert srv.stop(sig=signal.SIGINT) == 0, srv.proc.stdout.read()
        assert port_is_free(srv.port)
    finally:
        srv.stop()


def run_cli(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run([sys.executable, "-m", "llmray.cli", *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_serve_refuses_a_model_without_a_classification_head_before_ray_starts(tmp_path):
    import json as _json

    headless = tmp_path / "headless"
    headless.mkdir()
    (headless / "config.json").write_text(_json.dumps({"architectures": ["BertModel"], "model_type": "bert"}))
    (headless / "model.safetensors").write_bytes(b"")
    done = run_cli("serve", str(headless), "--port", str(free_port()))
    assert done.returncode == 2 and "has no classification head (BertModel)" in done.stderr, done
    assert len(done.stderr.strip().splitlines()) == 1
    done = run_cli("serve", str(tmp_path / "missing"), "--port", str(free_port()))
    assert done.returncode == 2 and "no such model directory" in done.stderr


def test_serve_refuses_a_port_in_use(classifier_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        done = run_cli("serve", str(classifier_dir), "--port", str(s.getsockname()[1]))
    assert done.returncode == 2 and "is in use" in done.stderr, done


@pytest.fixture(scope="module")
def in_process_serve(ray_session, tmp_path_factory):
    """Serve on the test session's Ray (127.0.0.1, a free port) with two applications started together:
    the tiny MLM under /mlm, the fastText classifier under /ft (built by the config builder); shut
    down at the end."""
    from ray import serve

    from llmray.serve.app import application, build

    base = tmp_path_factory.getbasetemp()
    models = {"mlm": tiny.cached(base, "mlm", tiny.mlm_checkpoint),
              "ft": tiny.cached(base, "fasttext", tiny.fasttext_model)}
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port},
                logging_config={"log_level": "WARNING", "enable_access_log": False})
    try:
        serve.run_many([
            serve.RunTarget(application(str(models["mlm"]), max_batch_size=4), name="mlm", route_prefix="/mlm"),
            serve.RunTarget(build({"model": str(models["ft"]), "max_batch_size": 16, "max_body_mb": 1.0}), name="ft",
                            route_prefix="/ft"),
        ])
        yield port, models
    finally:
        serve.shutdown()


def test_mlm_model_answers_fill_mask(in_process_serve):
    port, _ = in_process_serve
    code, health, _ = request(port, "/mlm/healthz")
    assert code == 200 and health["task"] == "mlm"
    code, body, _ = request(port, "/mlm/fill-mask", {"texts": ["the [MASK] of goal", "[MASK] oven [MASK]"],
                                                      "top_k": 3})
    assert code == 200, body
    first, second = body["predictions"]
    assert len(first) == 1 and len(second) == 2 and all(len(fill) == 3 for fill in first + second)
    assert all(isinstance(c["token"], str) and 0 <= c["score"] <= 1 for fill in second for c in fill)
    code, body, _ = request(port, "/mlm/fill-mask", {"texts": ["no mask here"]})
    assert code == 400 and "has no [MASK]" in body["error"]
    code, body, _ = request(port, "/mlm/predict", {"texts": ["goal"]})
    assert code == 404 and "masked-language model" in body["error"]
    code, body, _ = request(port, "/mlm/fill-mask", {"texts": ["[MASK]"], "top_k": 0})
    assert code == 400 and "top_k" in body["error"]


def test_fasttext_model_is_served_with_the_same_labels_as_predict(in_process_serve, tmp_path):
    port, models = in_process_serve
    code, health, _ = request(port, "/ft/healthz")
    assert code == 200 and health["task"] == "fasttext" and health["labels"] == ["food", "sport"]
    texts = TEXTS + ["", "line one\nline two", "x" * 200_000]
    code, body, _ = request(port, "/ft/predict", {"texts": texts})
    assert code == 200
    offline = predict_cli(models["ft"], texts, tmp_path)
    assert [p["label"] for p in body["predictions"]] == [r["label"] for r in offline]


def test_a_body_over_the_maximum_is_refused_and_the_server_goes_on(in_process_serve):
    port, _ = in_process_serve
    code, body, raw = request(port, "/ft/predict", {"texts": ["oven " * 250_000]})  # 1.25 MB, over 1 MB
    assert code == 413 and "more than the maximum of 1,048,576" in body["error"] and b"\n" not in raw.strip()
    code, body, _ = request(port, "/ft/predict", {"texts": ["oven sugar bake"]})
    assert code == 200 and body["predictions"][0]["label"] == "food"


def test_serve_refuses_more_replicas_than_this_machine_holds(classifier_dir):
    done = run_cli("serve", str(classifier_dir), "--port", str(free_port()), "--replicas", "1000")
    assert done.returncode == 2 and "--replicas 1000 x --num-cpus 1 needs 1000 CPUs" in done.stderr, done


def test_serve_help_names_the_flags_and_routes():
    done = run_cli("serve", "--help")
    assert done.returncode == 0
    for flag in ("--port", "--host", "--replicas", "--num-gpus", "--max-batch-size", "--address", "POST /predict",
                 "GET  /healthz", "curl"):
        assert flag in done.stdout, flag


def test_cluster_serve_config_and_rayservice_agree_and_validate():
    import yaml
    from ray.serve.schema import ServeDeploySchema

    config = yaml.safe_load((ROOT / "cluster" / "serve.yaml").read_text())
    service = yaml.safe_load((ROOT / "cluster" / "kuberay-rayservice.yaml").read_text())
    assert service["kind"] == "RayService" and yaml.safe_load(service["spec"]["serveConfigV2"]) == config
    ServeDeploySchema.model_validate(config)
    (app,) = config["applications"]
    assert app["import_path"] == "llmray.serve.app:build"
    from llmray.serve.app import ModelServer, application

    assert set(app["args"]) - {"model"} <= set(application.__kwdefaults__)
    assert ModelServer is not None
