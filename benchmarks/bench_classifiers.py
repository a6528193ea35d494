"""Held-out accuracy of the shipped classifier jobs, as a user runs them (``llmray train`` as a child
process, then ``llmray predict`` on the held-out file, scored against its labels):

- ``bert_sentiment``: jobs/finetune.yaml's defaults (all-MiniLM-L6-v2, 3 epochs at 1e-4, 2 Ray Train
  workers) with ``--data data/sentiment/train.jsonl.gz --eval-data data/sentiment/test.jsonl.gz``:
  3,000 movie-review sentences, 1,000 held out.
- ``bert_spam`` (with ``--spam``): jobs/finetune.yaml as shipped (2,400 e-mails, 600 held out).
- ``fasttext_spam`` and ``fasttext_sentiment``: jobs/quality/train.yaml's defaults (``task:
  fasttext``), on its own data and on the sentiment set.

``accuracy`` is the last held-out evaluation in metrics.jsonl; ``predict_accuracy`` is what ``llmray
predict`` with the exported model scores on the same file (they must agree). ``wall_s`` is the whole
``llmray train`` command, Ray start-up included. On a shared 2-core machine times are noisy; the load
average before and after is recorded.

    python -m benchmarks.bench_classifiers [--spam] [--output benchmarks/results/classifiers.json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SENTIMENT = ROOT / "data" / "sentiment"
SPAM = ROOT / "data" / "spam"


def llmray(*argv: str | Path) -> float:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "llmray.cli", *map(str, argv)], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def run(job: Path, out: Path, data: Path | None) -> dict[str, Any]:
    argv: list[str | Path] = ["train", job, "--output", out]
    if data is not None:
        argv += ["--data", data / "train.jsonl.gz", "--eval-data", data / "test.jsonl.gz"]
    return summarize(job, out, data, llmray(*argv))


def summarize(job: Path, out: Path, data: Path | None, wall: float, reused: bool = False) -> dict[str, Any]:
    """The figures of a finished ``llmray train`` run in ``out`` (``llmray predict`` runs again)."""
    test = (data or SPAM) / "test.jsonl.gz"
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    final = [r for r in lines if "accuracy" in r][-1]
    llmray("predict", out / "model", "--input", test, "--output", out / "pred.jsonl")
    truth = {r["id"]: r["label"] for r in map(json.loads, gzip.open(test, "rt"))}
    preds = [json.loads(line) for line in (out / "pred.jsonl").read_text().splitlines()]
    right = sum(p["label"] == truth[p["id"]] for p in preds)
    speeds = [r["samples_per_s"] for r in lines if "samples_per_s" in r]
    result = {"job": str(job.relative_to(ROOT)), "data": str((data or SPAM).relative_to(ROOT)),
              "accuracy": final["accuracy"], "predict_accuracy": round(right / len(preds), 5),
              "eval_rows": final.get("eval_rows", len(preds)), "wall_s": round(wall, 1)}
    if reused:
        result["note"] = "training run made earlier by the same command (--from-run); predict rerun here"
    for key in ("f1", "train_rows", "train_s", "step"):
        if key in final:
            result[key] = final[key]
    if speeds:
        result["train_samples_per_s_median"] = sorted(speeds)[len(speeds) // 2]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spam", action="store_true", help="also jobs/finetune.yaml on its own spam data")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "classifiers.json")
    parser.add_argument("--from-run", nargs=3, action="append", default=[], metavar=("NAME", "DIR", "WALL_S"),
                        help="take NAME (e.g. bert_sentiment) from a finished run of the same `llmray train` "
                             "command in DIR that took WALL_S seconds, instead of training again")
    args = parser.parse_args(argv)
    earlier = {name: (Path(d), float(w)) for name, d, w in args.from_run}
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(),
                                           "loadavg_before": [round(x, 2) for x in os.getloadavg()]}}
    finetune, quality = ROOT / "jobs" / "finetune.yaml", ROOT / "jobs" / "quality" / "train.yaml"
    with tempfile.TemporaryDirectory(prefix="llmray-bench-classifiers-") as tmp_name:
        tmp = Path(tmp_name)
        for name, job, data in (("fasttext_spam", quality, None), ("fasttext_sentiment", quality, SENTIMENT),
                                ("bert_sentiment", finetune, SENTIMENT),
                                *((("bert_spam", finetune, None),) if args.spam else ())):
            if name in earlier:
                results[name] = summarize(job, earlier[name][0], data, earlier[name][1], reused=True)
            else:
                results[name] = run(job, tmp / name, data)
            print(name, results[name], flush=True)
    results["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
