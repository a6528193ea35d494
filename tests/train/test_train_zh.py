"""Chinese text in training: BERT-style CJK character handling in the WordPiece vocabulary, and a
tiny masked-language model trained on the shipped Chinese corpus with the plain loop (no Ray)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from llmray import tokenizer as toks
from llmray.params import read_yaml
from llmray.train.config import parse_train
from llmray.train.plan import prepare

ROOT = Path(__file__).resolve().parents[2]
ZH = [str(ROOT / "data" / "zh" / name) for name in ("guwenguanzhi.jsonl.gz", "kicad-zh.jsonl.gz")]
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
        "max_position_embeddings": 64}


def texts(path: str) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


@pytest.fixture(scope="module")
def vocabulary(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("zh_vocab")
    docs = texts(ZH[0]) + texts(ZH[1])
    toks.train_wordpiece([docs[::2]], directory, vocab_size=5000, min_frequency=1, max_length=128)
    return directory


def test_chinese_characters_are_tokens_not_unknowns(vocabulary):
    tok = toks.load(str(vocabulary))
    trained_on = set("".join((texts(ZH[0]) + texts(ZH[1]))[::2]))
    vocab = tok.get_vocab()
    assert all(c in vocab for c in trained_on if "\u4e00" <= c <= "\u9fff")  # every Han character seen
    held_out = [t[:500] for t in texts(ZH[0])[1::2] + texts(ZH[1])[1::2]]
    encodings = tok.encode_batch(held_out, add_special_tokens=False)
    unknown = [text[a:b] for text, e in zip(held_out, encodings, strict=True)
               for t, (a, b) in zip(e.tokens, e.offsets, strict=True) if t == toks.UNK]
    tokens = sum(len(e.tokens) for e in encodings)
    # Classical Chinese is full of rare characters: the held-out half has some that the other half
    # never uses (about 1.6% of its tokens). Those, and only those, are unknown.
    known_yet_unknown = [u for u in unknown if not (len(u) == 1 and u not in trained_on)]
    assert len(unknown) / tokens < 0.03, (len(unknown), tokens)
    assert len(known_yet_unknown) / tokens < 0.001, known_yet_unknown[:10]
    sample = tok.encode("古文觀止是清人選定的散文選本，原理图编辑器 KiCad 很好用。", add_special_tokens=False).tokens
    assert sample[:5] == ["古", "文", "觀", "止", "是"] and "，" in sample
    assert "kicad" in "".join(sample).replace("##", "")
    assert all(len(t) == 1 for t in sample if "\u4e00" <= t[0] <= "\u9fff")  # one character per Han token


def test_mlm_trains_on_chinese_text(tmp_path):
    from llmray.train.local import run_local

    spec = parse_train({"train": {
        "task": "mlm", "data": ZH, "eval_fraction": 0.05, "output": str(tmp_path / "run"),
        "model": {"config": TINY}, "tokenizer": {"vocab_size": 3000, "min_frequency": 1},
        "seq_len": 64, "batch_size": 16, "max_steps": 40, "optimizer": {"lr": 3e-3},
        "schedule": {"warmup_steps": 3}, "log_every": 5, "eval_every": 40}})
    summary = run_local(prepare(spec), device="cpu")
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in metrics if "loss" in m]
    assert summary["steps"] == 40 and losses[-1] < losses[0] - 0.5, losses
    vocab = (tmp_path / "run" / "tokenizer" / "vocab.txt").read_text(encoding="utf-8").split("\n")
    assert sum(1 for t in vocab if len(t) == 1 and "\u4e00" <= t <= "\u9fff") > 1500


def test_the_example_job_parses():
    spec = parse_train(read_yaml(ROOT / "jobs" / "bert_mlm_zh.yaml"))
    assert spec.task == "mlm"
