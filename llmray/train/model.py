"""Models and checkpoints. A checkpoint directory is a Hugging Face model (config.json and weights,
loadable by ``from_pretrained``) plus ``trainer_state.pt`` (optimizer, schedule) and ``state.json``
(step, data position), so the same directory serves resume and export.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Models and tokenizers are local directories only: never reach for the Hugging Face hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import torch  # noqa: E402
import transformers  # noqa: E402

if TYPE_CHECKING:
    from llmray.io.storage import Storage

transformers.logging.set_verbosity_error()
transformers.logging.disable_progress_bar()

WEIGHTS = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
STATE = "state.json"
TRAINER_STATE = "trainer_state.pt"


def has_weights(directory: Path) -> bool:
    return any((directory / name).is_file() for name in WEIGHTS)


def build(
    task: str,
    *,
    path: str | None = None,
    sizes: dict[str, Any] | None = None,
    vocab_size: int = 0,
    pad_id: int = 0,
    labels: list | None = None,
    seed: int = 0,
) -> torch.nn.Module:
    """A new BERT from sizes (mlm), or a checkpoint with the head the task needs."""
    torch.manual_seed(seed)  # every worker starts from the same weights
    if task == "mlm" and path is None:
        config = transformers.BertConfig(vocab_size=vocab_size, pad_token_id=pad_id, **(sizes or {}))
        return transformers.BertForMaskedLM(config)
    if task == "mlm":
        return transformers.AutoModelForMaskedLM.from_pretrained(path)
    names = [str(label) for label in labels or []]
    return transformers.AutoModelForSequenceClassification.from_pretrained(
        path,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )


def load(task: str, directory: Path) -> torch.nn.Module:
    """A model saved by ``save_checkpoint``, with its head."""
    cls = (
        transformers.AutoModelForMaskedLM
        if task == "mlm"
        else transformers.AutoModelForSequenceClassification
    )
    return cls.from_pretrained(directory)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def save_checkpoint(
    directory: Path, model: torch.nn.Module, trainer_state: dict[str, Any], state: dict[str, Any]
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    unwrap(model).save_pretrained(directory)
    torch.save(trainer_state, directory / TRAINER_STATE)
    # Written last: a directory with state.json is a complete checkpoint.
    (directory / STATE).write_text(json.dumps(state, indent=2) + "\n")


def load_trainer_state(directory: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(optimizer and schedule state, step and data position) of a checkpoint."""
    return (
        torch.load(directory / TRAINER_STATE, map_location="cpu", weights_only=True),
        json.loads((directory / STATE).read_text()),
    )


def latest_checkpoint(checkpoints: Storage) -> str | None:
    """The complete checkpoint (state.json and weights) with the highest step under ``checkpoints``
    (``step_000123``): its path or URL."""
    held: dict[str, set[str]] = {}
    for rel in checkpoints.find():
        name, _, rest = rel.partition("/")
        if name.startswith("step_"):
            held.setdefault(name, set()).add(rest)
    done = [name for name, files in held.items() if STATE in files and any(w in files for w in WEIGHTS)]
    last = max(done, key=lambda name: int(name.split("_")[1]), default=None)
    return checkpoints.join(last) if last else None
