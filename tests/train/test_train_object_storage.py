"""Training where the data lives: corpus, checkpoints, metrics and model in buckets of a real
S3-compatible server (tests/s3server.py) on Ray Train, --resume from the bucket, the plain loop and
predict reading and writing URLs, and a place the run cannot write to refused in one line (exit
status 2) before any work starts.

Ray Train costs 15-40 s per fit() on this shared machine, so the module shares one run and its resume.
"""

from __future__ import annotations

import gzip
import json
import socket

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmray import cli
from tests.train.test_train import CORPUS, TINY, labeled, one_torch_thread, tiny_checkpoint  # noqa: F401

DOCS = 120


def main(*argv: object) -> int:
    return cli.main([str(a) for a in argv])


def write_job(path, **train):
    path.write_text(json.dumps({"train": train}))  # JSON is YAML
    return path


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def stored_records(fs, path: str) -> list[dict]:
    return [json.loads(line) for line in fs.cat_file(path).decode().splitlines()]


@pytest.fixture(scope="module")
def bucket_run(ray_session, s3, tmp_path_factory):
    """A parquet corpus in one bucket; 8 steps on Ray Train into another, checkpoints every 4; noted;
    then --resume to 12 steps."""
    fs = s3.fs()
    data, out = s3.bucket(), s3.bucket()
    with gzip.open(CORPUS[0], "rt") as f:
        docs = [json.loads(line) for _, line in zip(range(DOCS), f, strict=False)]
    for part in range(2):
        table = pa.Table.from_pylist([{"id": d["id"], "text": d["text"]} for d in docs[part::2]])
        with fs.open(f"{data}/corpus/part-{part}.parquet", "wb") as f:
            pq.write_table(table, f)
    job = write_job(
        tmp_path_factory.mktemp("s3run") / "mlm.yaml",
        task="mlm",
        data=f"s3://{data}/corpus",
        output=f"s3://{out}/run",
        storage_options=s3.options,
        model={"config": TINY},
        tokenizer={"vocab_size": 500},
        seq_len=64,
        batch_size=16,
        max_steps=8,
        log_every=2,
        checkpoint_every=4,
        num_workers=1,
        shuffle_buffer=100,
    )
    assert main("train", job) == 0
    first = {
        "metrics": stored_records(fs, f"{out}/run/metrics.jsonl"),
        "objects": {p.removeprefix(f"{out}/run/") for p in fs.find(f"{out}/run")},
        "model_steps": json.loads(fs.cat_file(f"{out}/run/model/llmray.json"))["steps"],
    }
    assert main("train", job, "--resume", "--max-steps", 12) == 0
    return fs, f"{out}/run", first


def test_checkpoints_metrics_and_model_land_in_the_bucket(bucket_run, tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    fs, run, first = bucket_run
    objects = first["objects"]
    for step in ("step_000004", "step_000008"):
        assert {f"checkpoints/{step}/state.json", f"checkpoints/{step}/model.safetensors"} <= objects
    assert {"metrics.jsonl", "tokenizer/tokenizer.json", "model/config.json", "model/llmray.json"} <= objects
    assert [r["step"] for r in first["metrics"]] == [2, 4, 6, 8] and first["model_steps"] == 8
    fs.get(f"{run}/model", str(tmp_path / "model"), recursive=True)  # the resumed run's, as users get it
    model = AutoModelForMaskedLM.from_pretrained(tmp_path / "model")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "model")
    assert model.config.vocab_size == tokenizer.vocab_size


def test_resume_from_the_bucket_continues_the_step_count(bucket_run):
    fs, run, first = bucket_run
    after = stored_records(fs, f"{run}/metrics.jsonl")
    assert after[: len(first["metrics"])] == first["metrics"]
    assert [r["step"] for r in after[len(first["metrics"]) :]] == [10, 12]
    assert after[-1]["samples"] == 12 * 16  # every step saw 16 rows, none replayed
    kept = [p.rsplit("/", 1)[1] for p in fs.ls(f"{run}/checkpoints", detail=False)]
    assert [name for name in kept if name.startswith("step_")] == ["step_000008", "step_000012"]
    assert json.loads(fs.cat_file(f"{run}/model/llmray.json"))["steps"] == 12


def test_plain_loop_and_predict_read_and_write_urls(s3, tiny_checkpoint, tmp_path, monkeypatch, capsys):  # noqa: F811
    """The base model, data and output of the plain loop (no Ray) in a bucket, and its --resume from
    there; predict then reads that model and a jsonl there and writes its predictions there,
    credentials from the environment."""
    from llmray.train import local

    fs, bucket = s3.fs(), s3.bucket()
    fs.put(str(tiny_checkpoint), f"{bucket}/base", recursive=True)
    fs.pipe_file(f"{bucket}/train.jsonl", jsonl(labeled(160, seed=2)))
    fs.pipe_file(f"{bucket}/test.jsonl", jsonl(labeled(20, seed=3)))
    job = write_job(
        tmp_path / "cls.yaml",
        task="classification",
        data=f"s3://{bucket}/train.jsonl",
        model={"path": f"s3://{bucket}/base"},
        storage_options=s3.options,
        seq_len=32,
        batch_size=16,
        max_steps=6,
        optimizer={"lr": 3e-3},
        log_every=5,
        checkpoint_every=5,
        keep_checkpoints=1,
    )
    argv = [str(job), "--output", f"s3://{bucket}/cls", "--device", "cpu"]
    assert local.main(argv) == 0
    assert fs.ls(f"{bucket}/cls/checkpoints", detail=False) == [f"{bucket}/cls/checkpoints/step_000006"]
    assert local.main([*argv, "--resume", "--max-steps", "10"]) == 0
    assert fs.ls(f"{bucket}/cls/checkpoints", detail=False) == [f"{bucket}/cls/checkpoints/step_000010"]
    assert [r["step"] for r in stored_records(fs, f"{bucket}/cls/metrics.jsonl")] == [5, 6, 10]
    meta = json.loads(fs.cat_file(f"{bucket}/cls/model/llmray.json"))
    assert meta["labels"] == ["food", "sport"] and meta["steps"] == 10

    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    target = f"s3://{bucket}/predictions/test.jsonl"
    assert main("predict", f"s3://{bucket}/cls/model", "--input", f"s3://{bucket}/test.jsonl", "--output", target) == 0
    assert target in capsys.readouterr().out
    rows = stored_records(fs, target.removeprefix("s3://"))
    assert [r["id"] for r in rows] == [r["id"] for r in labeled(20, seed=3)]
    assert all(r["label"] in ("food", "sport") and 0.5 <= r["score"] <= 1 for r in rows)


def test_token_shards_in_a_bucket_train_as_they_are(s3, tmp_path):
    """A tokens/ folder as the tokenize step writes it (shards, _meta.json, _tokenizer/), read from
    the bucket: its tokenizer is fetched from there, its _-names are not data."""
    from llmray import tokenizer as toks
    from llmray.train.config import parse_train
    from llmray.train.local import run_local
    from llmray.train.plan import prepare

    fs, bucket = s3.fs(), s3.bucket()
    texts = [r["text"] for r in labeled(200, seed=1)]
    toks.train_wordpiece([texts], tmp_path / "tok", vocab_size=200, min_frequency=1, max_length=32)
    tok = toks.load(str(tmp_path / "tok"))
    flat, lengths = toks.encode(tok, texts)
    ids, mask = toks.pack(flat, lengths, 32, toks.special_ids(tok, "tok"))
    table = pa.table({"input_ids": pa.array(ids.tolist(), pa.list_(pa.int32())),
                      "attention_mask": pa.array(mask.tolist(), pa.list_(pa.int8()))})
    with fs.open(f"{bucket}/tokens/u0-0-0000.parquet", "wb") as f:
        pq.write_table(table, f)
    fs.put(str(tmp_path / "tok"), f"{bucket}/tokens/{toks.TOKENS_TOKENIZER}", recursive=True)
    fs.pipe_file(f"{bucket}/tokens/{toks.TOKENS_META}", json.dumps({"seq_len": 32}).encode())
    spec = parse_train({"train": {"data": f"s3://{bucket}/tokens", "output": str(tmp_path / "run"), "seq_len": 32,
                                  "model": {"config": TINY}, "batch_size": 8, "max_steps": 2,
                                  "storage_options": s3.options}})
    plan = prepare(spec)
    assert plan.kind == "tokens" and plan.train_rows == len(ids)
    assert plan.train.paths == [f"s3://{bucket}/tokens/u0-0-0000.parquet"]
    assert plan.tokenizer_dir == f"s3://{bucket}/tokens/{toks.TOKENS_TOKENIZER}"
    assert run_local(plan, device="cpu")["steps"] == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("problem", ["missing bucket", "nothing answers", "no credentials", "missing data"])
def test_a_place_the_run_cannot_use_is_one_line(problem, s3, tmp_path, monkeypatch, capsys):
    """Refused by the CLI before any work starts (no Ray here): exit status 2, one line naming the URL."""
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "d.jsonl").write_bytes(jsonl(labeled(40, seed=4)))
    train = {"data": str(tmp_path / "d.jsonl"), "output": f"s3://{s3.bucket()}/run", "model": {"config": TINY},
             "max_steps": 2}
    if problem == "missing bucket":
        train["output"] = url = "s3://no-such-bucket-llmray/run"
        expected = "create the bucket"
    elif problem == "nothing answers":
        url = train["output"]
        train["storage_options"] = {"endpoint_url": f"http://127.0.0.1:{_free_port()}"}
        expected = "nothing answers"
    elif problem == "no credentials":
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.delenv(key)
        for key in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
            monkeypatch.setenv(key, str(tmp_path / "none"))
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        url = train["output"]
        train["storage_options"] = {"endpoint_url": s3.endpoint}  # not the cached client of other tests
        expected = "no credentials found"
    else:
        train["data"] = url = f"s3://{s3.bucket()}/corpus"
        expected = "no such file or directory"
    assert main("train", write_job(tmp_path / "job.yaml", **train)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and url in lines[0] and expected in lines[0], lines
