"""Models loaded for inference, shared by ``llmray predict`` (llmray.train.predict), ``llmray serve``
(llmray.serve) and the ``classify`` step (llmray.ops.classify), so the three give the same label for
the same text. It sits below all three (it imports only llmray.errors, llmray.io.storage and
llmray.tokenizer, and torch, transformers and fasttext lazily); ``llmray train`` uses its fastText
pieces to check the model it exports.

Three kinds, told apart by what the path holds (``kind_of``):

- ``classification``: a Hugging Face sequence-classification directory (config.json whose architecture
  ends in ``ForSequenceClassification``, weights, a tokenizer), such as ``llmray train``'s
  ``model/``. Labels come from ``llmray.json`` or the config's ``id2label``.
- ``mlm``: a masked-language model directory (``llmray train`` with ``task: mlm``): fills ``[MASK]``.
- ``fasttext``: a fastText supervised model file (``.bin``/``.ftz``, by its magic number), or a
  directory holding ``model.bin`` and ``llmray.json`` (``llmray train`` with ``task: fasttext``).
  Applied with ``fasttext-predict`` (a dependency of the ``language`` step), on one CPU.

What happens to a text, the same everywhere: it is cut to ``CHARS_PER_POSITION`` characters per
model position before tokenizing (a 100 KB text costs what 4 KB do), then to the model's sequence
length in tokens (``seq_len`` from ``llmray.json``, else the model's positions, at most 512):
``[CLS] tokens [SEP]``, and the rest is not seen. An empty text is ``[CLS] [SEP]`` and gets a label
like any other. A lone surrogate (not encodable as UTF-8) becomes ``?``. Batches are padded to
their longest row only. A model at a URL is downloaded once per process (``local_path``). Nothing
here imports Ray; torch and transformers load on first use, with the Hugging Face hub kept offline
(models are local directories only).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from llmray.errors import UserError
from llmray.io.storage import local_copy

META = "llmray.json"
FASTTEXT_FILE = "model.bin"
FASTTEXT_MAGIC = 793712314
FASTTEXT_PREFIX = "__label__"
CHARS_PER_POSITION = 32
KINDS = ("classification", "mlm", "fasttext")
WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")


def local_path(model: str, options: dict[str, Any] | None = None) -> Path:
    """A local path holding the model at ``model``: the path itself (``~`` expanded), or for a URL
    (s3://, gs://, ...) a copy downloaded once per process (every replica, actor or task loads it)."""
    return Path(local_copy(os.path.expanduser(model) if "://" not in model else model, options))


def _offline() -> None:
    """Before transformers loads: never reach for the hub; quiet its logging (as llmray.train.model)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def read_meta(directory: Path) -> dict[str, Any]:
    path = directory / META
    return json.loads(path.read_text()) if path.is_file() else {}


def is_fasttext_file(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return len(head) == 4 and int.from_bytes(head, "little") == FASTTEXT_MAGIC


def kind_of(path: Path, given: str | None = None) -> str:
    """``classification``, ``mlm`` or ``fasttext`` for a local model path; a one-line UserError for
    anything else (no such path, no weights, no head)."""
    given = given or str(path)
    if path.is_file():
        if is_fasttext_file(path):
            return "fasttext"
        raise UserError(f"{given}: not a model (a model directory, or a fastText .bin/.ftz file)")
    if not path.is_dir():
        raise UserError(f"{given}: no such model directory or file")
    meta = read_meta(path)
    if meta.get("task") == "fasttext" or (
        is_fasttext_file(path / FASTTEXT_FILE) and not (path / "config.json").is_file()
    ):
        if not is_fasttext_file(path / FASTTEXT_FILE):
            raise UserError(f"{given}: a fastText model directory without a valid {FASTTEXT_FILE}")
        return "fasttext"
    config_file = path / "config.json"
    if not config_file.is_file() or not any((path / name).is_file() for name in WEIGHTS):
        raise UserError(
            f"{given}: not a model directory (needs config.json and weights, or a fastText {FASTTEXT_FILE})"
        )
    config = json.loads(config_file.read_text())
    architectures = config.get("architectures") or ["an unknown architecture"]
    if meta.get("task") == "mlm" or "MaskedLM" in architectures[0]:
        return "mlm"
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return "classification"
    raise UserError(
        f"{given} has no classification head ({architectures[0]}); fine-tune it first with "
        f"`task: classification` and use that model"
    )


def require_classifier(path: Path, given: str | None = None) -> str:
    """The kind of a model that can label texts (classification or fasttext); a clear error for an MLM."""
    kind = kind_of(path, given)
    if kind == "mlm":
        raise UserError(
            f"{given or path} has no classification head (a masked-language model); fine-tune it first with "
            f"`task: classification` and use that model (or serve it for POST /fill-mask)"
        )
    return kind


def clean(texts: list[str], max_chars: int) -> list[str]:
    """Texts cut to ``max_chars``; None becomes "", a lone surrogate ``?`` (see the module docstring)."""
    out = []
    for text in texts:
        text = (text or "")[:max_chars]
        if not text.isascii():
            text = text.encode("utf-8", "replace").decode("utf-8")
        out.append(text)
    return out


def declared_labels(directory: Path) -> list | None:
    """The labels a model directory declares, without loading it: ``llmray.json``'s, else the
    config's ``id2label`` in id order; None where it declares none."""
    if not directory.is_dir():
        return None
    meta = read_meta(directory)
    if meta.get("labels"):
        return list(meta["labels"])
    config = directory / "config.json"
    id2label = json.loads(config.read_text()).get("id2label") if config.is_file() else None
    return [id2label[k] for k in sorted(id2label, key=int)] if id2label else None


def device_for(kind: str, device: str = "cpu", threads: int = 0) -> str:
    """The device a model of ``kind`` runs on: a fastText model on the CPU (no torch); ``auto`` a GPU
    where torch sees one. ``threads`` > 0 sets torch's threads, for the whole process."""
    if kind == "fasttext":
        return "cpu"
    import torch

    if threads:
        torch.set_num_threads(threads)
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


class _Bert:
    """A Hugging Face model directory with its tokenizer, read as the module docstring says."""

    def __init__(self, directory: Path, auto_class: str, device: str = "cpu", given: str | None = None):
        import torch
        import transformers

        from llmray import tokenizer as toks

        _offline()
        self.config = json.loads((directory / "config.json").read_text())
        self.meta = read_meta(directory)
        self.torch, self.toks, self.device = torch, toks, torch.device(device)
        self.model = getattr(transformers, auto_class).from_pretrained(directory).eval().to(self.device)
        self.tok = toks.load(str(directory))
        self.special = toks.special_ids(self.tok, given or str(directory))
        self.seq_len = int(self.meta.get("seq_len") or min(512, self.config.get("max_position_embeddings", 512)))
        self.max_chars = self.seq_len * CHARS_PER_POSITION

    def rows(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, attention_mask) padded to the longest row of the batch."""
        flat, lengths = self.toks.encode(self.tok, clean(texts, self.max_chars))
        input_ids, mask = self.toks.truncate(flat, lengths, self.seq_len, self.special)
        width = int(min(lengths.max(initial=0), self.seq_len - 2)) + 2
        return input_ids[:, :width], mask[:, :width]

    def logits(self, input_ids: np.ndarray, mask: np.ndarray) -> Any:
        torch = self.torch
        with torch.inference_mode():
            return self.model(
                input_ids=torch.as_tensor(input_ids, dtype=torch.long, device=self.device),
                attention_mask=torch.as_tensor(mask, dtype=torch.long, device=self.device),
            ).logits


class SequenceClassifier(_Bert):
    """A Hugging Face sequence-classification model with its tokenizer (see the module docstring)."""

    kind = "classification"

    def __init__(self, directory: Path, device: str = "cpu", given: str | None = None):
        super().__init__(directory, "AutoModelForSequenceClassification", device, given)
        self.labels = declared_labels(directory) or []
        self.text_field, self.id_field = self.meta.get("text_field", "text"), self.meta.get("id_field", "id")

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """Softmax over the labels, one row per text (float32, label order)."""
        if not texts:
            return np.zeros((0, len(self.labels)), np.float32)
        logits = self.logits(*self.rows(texts))
        return self.torch.softmax(logits.float(), -1).cpu().numpy()


class FastTextClassifier:
    """A fastText supervised model applied with fasttext-predict (one CPU, microseconds a text)."""

    kind = "fasttext"

    def __init__(self, path: Path, device: str = "cpu", given: str | None = None):
        import fasttext  # fasttext-predict: a core dependency (the language step's model ships with it)

        file = path / FASTTEXT_FILE if path.is_dir() else path
        meta = read_meta(path) if path.is_dir() else {}
        try:
            self.model = fasttext.load_model(str(file)).f
        except (ValueError, RuntimeError) as exc:
            raise UserError(f"{given or path}: cannot load the fastText model ({exc})") from None
        found = [label for _, label in self.model.predict("\n", -1, 0.0, "replace")]
        tokens = meta.get("fasttext_labels") or sorted(found)
        if sorted(tokens) != sorted(found):
            raise UserError(f"{given or path}: {META} lists other labels than the fastText model holds")
        self.labels = meta.get("labels") or [t[len(FASTTEXT_PREFIX):] if t.startswith(FASTTEXT_PREFIX) else t
                                             for t in tokens]
        self.column = {token: i for i, token in enumerate(tokens)}
        self.lowercase = bool(meta.get("lowercase", False))
        self.split_punctuation = bool(meta.get("split_punctuation", False))
        self.max_chars = int(meta.get("max_chars") or 100_000)
        self.text_field, self.id_field = meta.get("text_field", "text"), meta.get("id_field", "id")
        self.seq_len = None

    def line(self, text: str) -> str:
        return preprocess(text, self.lowercase, self.split_punctuation) + "\n"

    def probabilities(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), len(self.labels)), np.float32)
        k = len(self.labels)
        for row, text in enumerate(clean(texts, self.max_chars)):
            for prob, label in self.model.predict(self.line(text), k, 0.0, "replace"):
                out[row, self.column[label]] = prob
        return out


_PUNCTUATION = re.compile(r"([^\w\s])")
_SPACE = re.compile(r"\s+")


def preprocess(text: str, lowercase: bool, split_punctuation: bool) -> str:
    """One line for fastText: whitespace (newlines too) collapsed, optionally lower-cased and with
    punctuation split from words; training and inference use the same function."""
    if lowercase:
        text = text.lower()
    if split_punctuation:
        text = _PUNCTUATION.sub(r" \1 ", text)
    return _SPACE.sub(" ", text).strip()


class MaskFiller(_Bert):
    """A masked-language model: the most likely tokens at each ``[MASK]`` of a text."""

    kind = "mlm"

    def __init__(self, directory: Path, device: str = "cpu", given: str | None = None):
        super().__init__(directory, "AutoModelForMaskedLM", device, given)
        self.mask_token = self.toks.MASK
        self.labels: list = []

    def fill(self, texts: list[str], top_k: int = 5) -> list[list[list[dict[str, Any]]]]:
        """For each text, for each ``[MASK]`` that fits in the sequence, the ``top_k`` tokens and scores."""
        if not texts:
            return []
        torch = self.torch
        input_ids, mask = self.rows(texts)
        logits = self.logits(input_ids, mask)
        out = []
        for row in range(len(texts)):
            positions = np.flatnonzero(input_ids[row] == self.special.mask)
            fills = []
            if len(positions):
                probs = torch.softmax(logits[row, torch.as_tensor(positions)].float(), -1)
                scores, ids = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
                for s_row, i_row in zip(scores.tolist(), ids.tolist(), strict=True):
                    fills.append([{"token": self.tok.id_to_token(i), "score": round(s, 6)}
                                  for s, i in zip(s_row, i_row, strict=True)])
            out.append(fills)
        return out


def load(path: Path, device: str = "cpu", given: str | None = None, kind: str | None = None) -> Any:
    """The model at a local ``path``, of ``kind`` (default: ``kind_of(path)``)."""
    kind = kind or kind_of(path, given)
    cls = {"classification": SequenceClassifier, "fasttext": FastTextClassifier, "mlm": MaskFiller}[kind]
    return cls(path, device=device_for(kind, device), given=given)


def classify(model: Any, texts: list[str], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(index of the best label, probabilities) for every text, ``batch_size`` texts a forward pass."""
    parts = [model.probabilities(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
    probs = np.concatenate(parts) if parts else np.zeros((0, len(model.labels)), np.float32)
    return probs.argmax(-1) if len(probs) else np.zeros(0, np.int64), probs
