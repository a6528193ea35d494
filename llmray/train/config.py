"""Train job file -> typed ``TrainSpec``; every key and value is checked before any worker starts.

A train job file has one top-level key::

    train:
      task: mlm                      # mlm (masked-language pretraining) | classification
      data: out/quickstart/data      # parquet dirs, jsonl(.gz) files, globs or a tokens/ dir; paths or URLs
      model: {config: {hidden_size: 128, num_hidden_layers: 2, num_attention_heads: 2}}
      max_steps: 300

Mistakes name their place: ``train.optimizer.lrr: unknown key (allowed: ...)``. Command-line
overrides (``--data``, ``--max-steps``, ...) replace fields before the same checks run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

from llmray import params
from llmray.errors import JobError
from llmray.params import read_yaml, unknown

TASKS = ("mlm", "classification")
#: BertConfig sizes a job file may set for a new model, with their types.
BERT_SIZES: dict[str, type] = {
    "hidden_size": int,
    "num_hidden_layers": int,
    "num_attention_heads": int,
    "intermediate_size": int,
    "max_position_embeddings": int,
    "type_vocab_size": int,
    "hidden_dropout_prob": float,
    "attention_probs_dropout_prob": float,
}


@dataclasses.dataclass
class ModelSpec:
    #: A Hugging Face checkpoint directory (local or a URL), or ``package://<python package>/<dir>``
    #: inside an installed package. Required for classification; for mlm, continues pretraining from it.
    path: str | None = None
    #: Sizes of a new BERT trained from scratch (mlm only), any of ``BERT_SIZES``.
    config: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        params.validate(self, "train")


@dataclasses.dataclass
class TokenizerSpec:
    #: A tokenizer directory, local or a URL (tokenizer.json or vocab.txt). Default: the model's own,
    #: or for a new model a WordPiece vocabulary trained on the training data into ``<output>/tokenizer``.
    path: str | None = None
    vocab_size: int = 8000
    min_frequency: int = 2
    lowercase: bool = True
    #: At most this many documents (an even sample) train the vocabulary.
    max_docs: int = 200_000

    def __post_init__(self) -> None:
        params.validate(self, "train")


@dataclasses.dataclass
class OptimizerSpec:
    name: Literal["adamw"] = "adamw"
    lr: float = 5e-4
    #: Not applied to biases and LayerNorm weights.
    weight_decay: float = 0.01
    betas: list[float] = dataclasses.field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    #: Gradients are clipped to this global norm; 0 turns clipping off.
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        params.validate(self, "train")


@dataclasses.dataclass
class ScheduleSpec:
    #: Linear warm-up from 0 over this many steps (or this share of all steps, if warmup_steps is 0).
    warmup_steps: int = 0
    warmup_ratio: float = 0.0
    #: After warm-up: linear decay to 0 at the last step, or constant.
    decay: Literal["linear", "constant"] = "linear"

    def __post_init__(self) -> None:
        params.validate(self, "train")


@dataclasses.dataclass
class TrainSpec:
    task: Literal["mlm", "classification"] = "mlm"
    data: list[str] = dataclasses.field(default_factory=list)
    #: Held-out data; without it, ``eval_fraction`` of the training rows (by a hash of the id) is held out.
    eval_data: list[str] = dataclasses.field(default_factory=list)
    eval_fraction: float = 0.0
    text_field: str = "text"
    label_field: str = "label"
    id_field: str = "id"
    #: A local directory or an fsspec URL (s3://, gs://, ...): checkpoints/, metrics.jsonl, model/.
    output: str = "runs/train"
    #: fsspec options for URLs in data, eval_data, output and model/tokenizer paths (e.g.
    #: ``{endpoint_url: ..., key: ..., secret: ...}``); without them, credentials come from the environment.
    storage_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    model: ModelSpec = dataclasses.field(default_factory=ModelSpec)
    tokenizer: TokenizerSpec = dataclasses.field(default_factory=TokenizerSpec)
    seq_len: int = 128
    #: Sequences per worker per micro-batch; one optimizer step sees batch_size * grad_accum * workers.
    batch_size: int = 32
    grad_accum: int = 1
    optimizer: OptimizerSpec = dataclasses.field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = dataclasses.field(default_factory=ScheduleSpec)
    #: Optimizer steps. Training stops at max_steps or after ``epochs`` passes, whichever is first.
    max_steps: int | None = None
    epochs: int | None = None
    mlm_probability: float = 0.15
    #: Rows held in the local shuffle buffer of each worker (0: keep the data order).
    shuffle_buffer: int = 1000
    log_every: int = 10
    #: Evaluate / checkpoint every this many steps (0: only at the end; both always happen at the end).
    eval_every: int = 0
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    #: Evaluate on at most this many batches per worker (None: all of the eval data).
    eval_batches: int | None = None
    seed: int = 0
    num_workers: int = 1
    use_gpu: bool = False
    #: Ray resources of each worker, e.g. {CPU: 4, GPU: 1}; default 1 CPU, or 1 GPU with use_gpu.
    resources_per_worker: dict[str, float] = dataclasses.field(default_factory=dict)
    #: Worker failures survived by restarting from the last checkpoint.
    max_failures: int = 0

    def __post_init__(self) -> None:
        params.validate(self, "train")


def load_train_job(path: str | Path, **overrides: Any) -> TrainSpec:
    """Read a train job file, apply command-line overrides (None means not given), check it all."""
    path = Path(path)
    raw = read_yaml(path)
    try:
        return parse_train(raw, **overrides)
    except JobError as exc:
        raise JobError(f"{path}: {exc}") from None


def parse_train(raw: Any, **overrides: Any) -> TrainSpec:
    """A job mapping (``{"train": {...}}``) plus overrides (None: not given) -> a checked TrainSpec."""
    if not isinstance(raw, dict) or "train" not in raw:
        raise JobError("a train job file needs a top-level `train:` mapping")
    for key in raw:
        if key != "train":
            raise JobError(f"{key}: {unknown(str(key), ['train'], 'section')}")
    body = dict(raw["train"] or {})
    if isinstance(body.get("tokenizer"), str):
        body["tokenizer"] = {"path": body["tokenizer"]}
    spec = params.build(TrainSpec, body, "train")
    return check(dataclasses.replace(spec, **{k: v for k, v in overrides.items() if v is not None}))


def check(spec: TrainSpec) -> TrainSpec:
    """Cross-field rules; each failure names the key."""
    if not spec.data:
        raise JobError("train.data: missing (parquet directories or jsonl files to train on; or pass --data)")
    for key in ("seq_len", "batch_size", "grad_accum", "num_workers", "log_every", "keep_checkpoints"):
        _at_least(spec, key, 1)
    for key in ("eval_every", "checkpoint_every", "shuffle_buffer", "max_failures"):
        _at_least(spec, key, 0)
    for key in ("max_steps", "epochs", "eval_batches"):
        if getattr(spec, key) is not None:
            _at_least(spec, key, 1)
    if spec.seq_len < 8:
        raise JobError(f"train.seq_len: {spec.seq_len} is too short (at least 8)")
    if not 0 <= spec.eval_fraction < 1:
        raise JobError(f"train.eval_fraction: {spec.eval_fraction} is not in [0, 1)")
    if not 0 < spec.mlm_probability < 1:
        raise JobError(f"train.mlm_probability: {spec.mlm_probability} is not in (0, 1)")
    if spec.optimizer.lr <= 0:
        raise JobError(f"train.optimizer.lr: {spec.optimizer.lr} must be positive")
    if len(spec.optimizer.betas) != 2:
        raise JobError("train.optimizer.betas: give two numbers, e.g. [0.9, 0.999]")
    if not 0 <= spec.schedule.warmup_ratio < 1:
        raise JobError(f"train.schedule.warmup_ratio: {spec.schedule.warmup_ratio} is not in [0, 1)")
    if spec.schedule.warmup_steps < 0:
        raise JobError("train.schedule.warmup_steps: must be 0 or more")
    _check_model(spec)
    return spec


def _check_model(spec: TrainSpec) -> None:
    model = spec.model
    if spec.task == "classification" and not model.path:
        raise JobError("train.model.path: classification fine-tunes a checkpoint; give its directory")
    if model.path and model.config:
        raise JobError("train.model: give either path (a checkpoint) or config (a new model), not both")
    if not model.path and not model.config:
        raise JobError("train.model: give path (a checkpoint directory) or config (sizes of a new BERT)")
    for key, value in model.config.items():
        if key not in BERT_SIZES:
            raise JobError(f"train.model.config.{key}: {unknown(key, BERT_SIZES)}")
        params.check_value(value, BERT_SIZES[key], f"train.model.config.{key}")
    heads = model.config.get("num_attention_heads", 12)
    if model.config and model.config.get("hidden_size", 768) % heads:
        raise JobError("train.model.config.hidden_size: must be a multiple of num_attention_heads")


def _at_least(spec: TrainSpec, key: str, low: int) -> None:
    if getattr(spec, key) < low:
        raise JobError(f"train.{key}: {getattr(spec, key)} must be at least {low}")


def json_schema() -> dict[str, Any]:
    """JSON Schema of train job files (``llmray schema --train``)."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "llmray train job",
            "type": "object", "properties": {"train": params.json_schema(TrainSpec)}, "required": ["train"],
            "additionalProperties": False}
