"""Tiny models for the serving and classify tests, made in seconds on one core: a WordPiece
vocabulary and a 2-layer BERT (an MLM checkpoint), a classifier fine-tuned from it with the plain
loop (no Ray), and a fastText classifier; the data tells two topics apart by their words."""

from __future__ import annotations

import random
from pathlib import Path

from tests.helpers import write_jsonl

TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
}
SPORT = "goal match team score league coach player season referee stadium".split()
FOOD = "recipe oven flour sugar bake dinner salt pepper butter kitchen".split()
FILLER = "the a of and to in was on with for it at".split()


def labeled(n: int, seed: int) -> list[dict]:
    """Two topics told apart by their words, with shared filler."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "sport" if i % 2 else "food"
        words = rng.choices(SPORT if label == "sport" else FOOD, k=6) + rng.choices(FILLER, k=6)
        rng.shuffle(words)
        rows.append({"id": f"{seed}-{i}", "text": " ".join(words), "label": label})
    return rows


def mlm_checkpoint(directory: Path) -> Path:
    """A tiny BERT MLM (random weights) with its vocabulary."""
    from transformers import BertConfig, BertForMaskedLM

    from llmray import tokenizer as toks

    texts = [r["text"] for r in labeled(200, seed=1)]
    toks.train_wordpiece([texts], directory, vocab_size=200, min_frequency=1, max_length=64)
    config = BertConfig(vocab_size=toks.load(str(directory)).get_vocab_size(), **TINY)
    BertForMaskedLM(config).save_pretrained(directory)
    return directory


def classifier(tmp: Path) -> Path:
    """``tmp/run/model``: the tiny MLM fine-tuned on sport/food (>= 0.9 held-out accuracy)."""
    import torch

    from llmray.train.config import parse_train
    from llmray.train.local import run_local
    from llmray.train.plan import prepare

    checkpoint = mlm_checkpoint(tmp / "mlm")
    write_jsonl(tmp / "train.jsonl", labeled(320, seed=2))
    write_jsonl(tmp / "test.jsonl", labeled(60, seed=3))
    spec = parse_train({"train": {
        "task": "classification", "data": str(tmp / "train.jsonl"), "eval_data": str(tmp / "test.jsonl"),
        "output": str(tmp / "run"), "model": {"path": str(checkpoint)}, "seq_len": 32, "batch_size": 16,
        "epochs": 3, "optimizer": {"lr": 3e-3}, "log_every": 20, "eval_every": 0,
    }})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = run_local(prepare(spec), device="cpu")
    finally:
        torch.set_num_threads(threads)
    assert summary["accuracy"] >= 0.9, summary
    return tmp / "run" / "model"


def cached(base: Path, name: str, make) -> Path:
    """``make(directory)`` once per test session (under pytest's base temporary directory), so the
    serving and classify tests share their tiny models."""
    import shutil

    directory = base / f"tiny-{name}"
    done = directory / ".done"
    if not done.is_file():
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        done.write_text(str(make(directory)))
    return Path(done.read_text())


def fasttext_model(directory: Path) -> Path:
    """A fastText sport/food classifier trained with ``llmray train`` (task: fasttext), one thread."""
    from llmray.train import fasttext

    write_jsonl(directory / "train.jsonl", labeled(400, seed=5))
    write_jsonl(directory / "test.jsonl", labeled(100, seed=6))
    spec = fasttext.parse({"train": {
        "task": "fasttext", "data": str(directory / "train.jsonl"), "eval_data": str(directory / "test.jsonl"),
        "output": str(directory / "run"), "epochs": 10, "dim": 16, "bucket": 10_000, "threads": 1,
    }})
    summary = fasttext.train(spec, echo=False)
    assert summary["accuracy"] >= 0.9, summary
    return directory / "run" / "model"
