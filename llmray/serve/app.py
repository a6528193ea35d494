"""The Ray Serve deployment of a model: HTTP routes, request checks and dynamic batching.

Routes (every answer is JSON; an error is one line, ``{"error": "..."}``, with a 4xx status):

    POST /predict     {"texts": ["...", ...]}  ->  {"predictions": [{"label": ..., "score": ...}, ...]}
                      (a classification or fastText model; in the order of the texts)
    POST /fill-mask   {"texts": ["Paris is the [MASK] of France."], "top_k": 5}
                      ->  {"predictions": [[[{"token": ..., "score": ...}, ...] per [MASK]] per text]}
                      (a masked-language model)
    GET  /healthz     {"status": "ok", "task": ..., "model": ..., "labels": [...]} once a replica is ready

Each text of a request becomes one item of ``@serve.batch``: texts from concurrent requests share a
forward pass of up to ``max_batch_size`` texts, gathered for at most ``batch_wait_timeout_s``. The
forward pass runs in a worker thread, so the replica keeps reading requests meanwhile.

Bad input is answered, never fatal to the replica: a body that is not UTF-8 (400), not JSON (400),
not an object, without ``texts``, with a non-string entry or an unknown key (400), more than
``max_texts`` texts or a body over ``max_body_mb`` (413), a route the model does not have (404),
the wrong method (405). Empty strings are classified (``[CLS] [SEP]``); long texts are cut to the
model's sequence length (``llmray.models``). An unexpected failure in a batch is a 500 for
the requests in it; the replica goes on.

For ``serve run`` config files and KubeRay's RayService, ``build`` is the application builder:
``import_path: llmray.serve.app:build`` with ``args: {model: ..., max_batch_size: ...}``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import math
from typing import Any

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from llmray import models
from llmray.errors import UserError

APP_NAME = "llmray"
MAX_TEXTS = 256
MAX_BODY_MB = 16.0
MAX_TOP_K = 50
ROUTES = {"classification": "/predict", "fasttext": "/predict", "mlm": "/fill-mask"}


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def parse_body(raw: bytes, max_texts: int, max_body_bytes: int, allowed: tuple[str, ...] = ("texts",)) -> dict:
    """The checked request: ``{"texts": [str, ...], ...}``; a BadRequest naming the problem otherwise."""
    if len(raw) > max_body_bytes:
        raise BadRequest(413, f"the body is {len(raw):,} bytes, more than the maximum of {max_body_bytes:,}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(400, f"the body is not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(400, f"the body is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(body, dict):
        raise BadRequest(400, 'the body must be a JSON object: {"texts": ["...", ...]}')
    extra = sorted(set(body) - set(allowed))
    if extra:
        raise BadRequest(400, f"unknown key {extra[0]!r} (allowed: {', '.join(allowed)})")
    if "texts" not in body:
        raise BadRequest(400, 'missing "texts" (a list of strings)')
    texts = body["texts"]
    if not isinstance(texts, list):
        raise BadRequest(400, f'"texts" must be a list of strings, got {type(texts).__name__}')
    if len(texts) > max_texts:
        raise BadRequest(413, f"{len(texts):,} texts is more than the maximum of {max_texts:,} a request")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise BadRequest(400, f"texts[{i}] is not a string (got {type(t).__name__})")
        if not t.isascii():
            try:
                t.encode("utf-8")
            except UnicodeEncodeError:
                raise BadRequest(400, f"texts[{i}] is not valid Unicode (a lone surrogate escape)") from None
    return body


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(message.split())}, status_code=status)


@serve.deployment(name=APP_NAME, health_check_period_s=10, health_check_timeout_s=30, max_ongoing_requests=256)
class ModelServer:
    def __init__(self, model: str, max_batch_size: int = 32, batch_wait_timeout_s: float = 0.005,
                 max_texts: int = MAX_TEXTS, max_body_mb: float = MAX_BODY_MB, device: str = "auto",
                 threads: int = 0, storage_options: dict[str, Any] | None = None):
        path = models.local_path(model, storage_options)
        self.kind = models.kind_of(path, model)
        device = models.device_for(self.kind, device, threads)  # a fastText model: one CPU, no torch
        self.name, self.device = model, device
        self.model = models.load(path, device=device, given=model, kind=self.kind)
        self.max_texts, self.max_body_bytes = max_texts, int(max_body_mb * (1 << 20))
        self.max_batch_size = max_batch_size
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="llmray-model")
        self.batched.set_max_batch_size(max_batch_size)
        self.batched.set_batch_wait_timeout_s(batch_wait_timeout_s)

    def check_health(self) -> None:
        if self.model is None:
            raise RuntimeError("no model loaded")

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def batched(self, items: list[tuple[str, int]]) -> list[Any]:
        return await asyncio.get_running_loop().run_in_executor(self.pool, self._run, items)

    def _run(self, items: list[tuple[str, int]]) -> list[Any]:
        texts = [text for text, _ in items]
        if self.kind == "mlm":
            top = max(k for _, k in items)
            return [[fill[:k] for fill in fills] for fills, (_, k) in
                    zip(self.model.fill(texts, top), items, strict=True)]
        best, probs = models.classify(self.model, texts, len(texts))
        labels = self.model.labels
        return [{"label": labels[k], "score": round(float(p[k]), 6)} for k, p in zip(best, probs, strict=True)]

    def info(self) -> dict[str, Any]:
        return {"status": "ok", "task": self.kind, "model": self.name, "device": self.device,
                "labels": list(self.model.labels), "seq_len": self.model.seq_len, "route": ROUTES[self.kind],
                "max_texts": self.max_texts, "max_batch_size": self.max_batch_size}

    async def __call__(self, request: Request) -> JSONResponse:
        path, root = request.url.path, request.scope.get("root_path", "")
        if root and path.startswith(root):  # an application under a route prefix other than /
            path = path[len(root) :]
        path = path.rstrip("/") or "/"
        try:
            if path in ("/healthz", "/"):
                if request.method not in ("GET", "HEAD"):
                    return _error(405, f"{path} answers GET")
                return JSONResponse(self.info())
            if path not in ("/predict", "/fill-mask"):
                return _error(404, f"no route {path} (this server has GET /healthz and POST {ROUTES[self.kind]})")
            if path != ROUTES[self.kind]:
                what = "a masked-language model" if self.kind == "mlm" else "a classifier"
                return _error(404, f"this server holds {what}: use POST {ROUTES[self.kind]}")
            if request.method != "POST":
                return _error(405, f"{path} answers POST with a JSON body")
            allowed = ("texts", "top_k") if self.kind == "mlm" else ("texts",)
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_body_bytes:  # refused before it is read
                raise BadRequest(413, f"the body is {int(declared):,} bytes, more than the maximum of "
                                      f"{self.max_body_bytes:,}")
            body = parse_body(await request.body(), self.max_texts, self.max_body_bytes, allowed)
            top_k = body.get("top_k", 5)
            if self.kind == "mlm":
                if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
                    raise BadRequest(400, f'"top_k" must be an integer from 1 to {MAX_TOP_K}')
                for i, text in enumerate(body["texts"]):
                    if self.model.mask_token not in text:
                        raise BadRequest(400, f"texts[{i}] has no {self.model.mask_token} to fill")
            results = await asyncio.gather(*(self.batched((text, top_k)) for text in body["texts"]))
            return JSONResponse({"predictions": list(results)})
        except BadRequest as exc:
            return _error(exc.status, exc.message)
        except Exception as exc:  # a failed batch: this request fails, the replica serves on
            return _error(500, f"{type(exc).__name__}: {exc}")


def application(model: str, *, replicas: int = 1, num_cpus: float = 1.0, num_gpus: float = 0.0,
                max_batch_size: int = 32, batch_wait_ms: float = 5.0, max_texts: int = MAX_TEXTS,
                max_body_mb: float = MAX_BODY_MB, storage_options: dict[str, Any] | None = None) -> Any:
    """The bound Serve application for ``model`` (a local path or URL every replica can read)."""
    for name, value, low in (("replicas", replicas, 1), ("max_batch_size", max_batch_size, 1),
                             ("max_texts", max_texts, 1)):
        if int(value) < low:
            raise UserError(f"{name}: {value} must be at least {low}")
    if num_gpus < 0 or num_cpus < 0 or batch_wait_ms < 0 or not max_body_mb > 0:
        raise UserError("num_gpus, num_cpus and batch_wait_ms must be 0 or more, max_body_mb positive")
    threads = max(1, math.floor(num_cpus)) if num_cpus else 1
    deployment = ModelServer.options(
        num_replicas=int(replicas),
        ray_actor_options={"num_cpus": num_cpus, "num_gpus": num_gpus},
        max_ongoing_requests=max(256, 2 * int(max_batch_size)),
    )
    return deployment.bind(
        model, max_batch_size=int(max_batch_size), batch_wait_timeout_s=batch_wait_ms / 1000.0,
        max_texts=int(max_texts), max_body_mb=float(max_body_mb), device="auto" if num_gpus else "cpu",
        threads=threads, storage_options=storage_options,
    )


def build(args: dict[str, Any]) -> Any:
    """Application builder for Serve config files: ``args`` are ``application``'s keyword arguments
    with ``model`` required."""
    args = dict(args or {})
    if "model" not in args:
        raise ValueError("llmray.serve.app:build needs args.model (a model directory or URL)")
    return application(args.pop("model"), **args)
