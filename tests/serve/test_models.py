"""llmray.models, the code behind ``llmray predict``, ``llmray serve`` and the ``classify`` step: it
agrees with a plain transformers forward pass, ignores padding and truncation saved in a
tokenizer.json, cuts long texts as stated, tells model kinds apart with one-line errors; and the
layering rule holds (nothing below serve imports it; llmray.models imports nothing above io)."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from llmray import models
from llmray.errors import UserError
from tests.serve import tiny

ROOT = Path(__file__).resolve().parents[2]
TEXTS = [r["text"] for r in tiny.labeled(12, seed=31)] + ["", "goal"]


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory) -> Path:
    return tiny.cached(tmp_path_factory.getbasetemp(), "classifier", tiny.classifier)


def test_probabilities_match_a_plain_transformers_forward_pass(classifier_dir):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    ours = models.load(classifier_dir).probabilities(TEXTS)
    tok = AutoTokenizer.from_pretrained(classifier_dir)
    model = AutoModelForSequenceClassification.from_pretrained(classifier_dir).eval()
    batch = tok(TEXTS, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.inference_mode():
        theirs = torch.softmax(model(**batch).logits, -1).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_padding_and_truncation_saved_in_tokenizer_json_are_ignored(classifier_dir, tmp_path):
    """sentence-transformers models save Fixed padding and truncation in tokenizer.json; attending to
    those pads (or losing the text's end to them) would change every prediction."""
    copy = tmp_path / "padded"
    shutil.copytree(classifier_dir, copy)
    config = json.loads((copy / "tokenizer.json").read_text())
    config["padding"] = {"strategy": {"Fixed": 40}, "direction": "Right", "pad_to_multiple_of": None,
                         "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"}
    config["truncation"] = {"max_length": 4, "strategy": "LongestFirst", "stride": 0, "direction": "Right"}
    (copy / "tokenizer.json").write_text(json.dumps(config))
    padded = models.load(copy)
    flat, lengths = padded.toks.encode(padded.tok, ["goal match team score league coach", "x"])
    assert lengths.tolist() == [6, 1] and 0 not in flat.tolist()
    np.testing.assert_allclose(padded.probabilities(TEXTS), models.load(classifier_dir).probabilities(TEXTS),
                               atol=1e-6)


def test_long_texts_are_cut_to_the_sequence_length(classifier_dir):
    model = models.load(classifier_dir)
    assert model.seq_len == 32 and model.max_chars == 32 * models.CHARS_PER_POSITION
    head = "goal match team " * 20
    ids, mask = model.rows([head, head + "oven " * 50_000, ""])  # the 250 KB text: only its beginning counts
    assert ids.shape == (3, 32) and (ids[0] == ids[1]).all() and mask[2].sum() == 2  # "" is [CLS] [SEP]
    probs = model.probabilities([head, head + "oven " * 50_000])
    np.testing.assert_allclose(probs[0], probs[1], atol=1e-6)
    assert models.clean(["a\ud800b", None], 10) == ["a?b", ""]  # a lone surrogate; a null


def test_kinds_and_one_line_errors(classifier_dir, tmp_path):
    assert models.kind_of(classifier_dir) == "classification"
    headless = tmp_path / "headless"
    headless.mkdir()
    (headless / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    (headless / "model.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match=r"has no classification head \(BertModel\); fine-tune it first"):
        models.kind_of(headless)
    with pytest.raises(UserError, match="no such model directory"):
        models.kind_of(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match="not a model"):
        models.kind_of(tmp_path / "notes.txt")
    with pytest.raises(UserError, match="not a model directory"):
        models.kind_of(tmp_path)
    assert models.local_path("~/x") == Path.home() / "x"


LOWER = ("llmray/kernels", "llmray/io", "llmray/ops", "llmray/dedup", "llmray/pipeline", "llmray/train")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_layering_nothing_below_serve_imports_it_and_models_sits_low():
    """Lower layers never import higher ones (kernels < io < ops/dedup < pipeline < train < serve < cli),
    also inside functions."""
    offenders = [f"{p.relative_to(ROOT)} imports {name}" for d in LOWER for p in sorted((ROOT / d).rglob("*.py"))
                 for name in _imports(p) if name == "llmray.serve" or name.startswith(("llmray.serve.", "llmray.cli"))]
    assert offenders == []
    above_io = ("llmray.ops", "llmray.dedup", "llmray.pipeline", "llmray.train", "llmray.serve", "llmray.cli")
    assert not [n for n in _imports(ROOT / "llmray/models.py") if n.startswith(above_io)]
    ops = [n for p in (ROOT / "llmray/ops").rglob("*.py") for n in _imports(p)]
    assert not [n for n in ops if n.startswith(("llmray.train", "llmray.pipeline"))]
