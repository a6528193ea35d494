"""``model/``: the trained model in Hugging Face format (config, weights, tokenizer), loadable with
``from_pretrained``, plus ``llmray.json`` (task, labels, sequence length, fields) for ``predict`` and
``README.md``, its model card (the data it was trained on, the task, the last evaluation's metrics,
how it was trained). Built in a local directory and published to ``<output>/model`` whole,
``llmray.json`` last.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmray.io.storage import Storage, is_url, local_copy
from llmray.train.model import STATE, WEIGHTS
from llmray.train.transfer import staging

if TYPE_CHECKING:
    from llmray.train.plan import Plan

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
META = "llmray.json"
CARD = "README.md"


def export(checkpoint: Path, plan: Plan) -> str:
    """Copy a local checkpoint's model and the run's tokenizer to ``<output>/model``, replacing it
    whole; return its path or URL."""
    out = plan.output_storage()
    tokenizer = Path(local_copy(plan.tokenizer_dir, plan.spec.storage_options))
    with staging(out, "model", last=META) as tmp:
        for name in ("config.json", *WEIGHTS):
            if (checkpoint / name).is_file():
                shutil.copy2(checkpoint / name, tmp / name)
        for name in TOKENIZER_FILES:
            if (tokenizer / name).is_file():
                shutil.copy2(tokenizer / name, tmp / name)
        state = json.loads((checkpoint / STATE).read_text())
        spec = plan.spec
        meta = {
            "task": spec.task,
            "labels": plan.labels,
            "seq_len": spec.seq_len,
            "text_field": spec.text_field,
            "id_field": spec.id_field,
            "steps": state["step"],
            "samples": state["samples"],
        }
        try:
            (tmp / CARD).write_text(model_card(plan, state, _last_eval(out), _config(tmp)))
        except Exception as exc:  # the card describes the model; it must never cost the model
            logging.getLogger(__name__).warning("model card not written: %s: %s", type(exc).__name__, exc)
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
    return out.join("model")


def _last_eval(out: Storage) -> dict[str, Any]:
    """The run's last evaluation record in ``metrics.jsonl`` (empty if none could be read)."""
    try:
        lines = out.get("metrics.jsonl").decode().splitlines() if out.exists("metrics.jsonl") else []
    except OSError:
        return {}
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:  # a line cut short (an object store's copy lags the run)
            continue
        if isinstance(record, dict) and "eval_loss" in record:
            return record
    return {}


def _config(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _made_by_llmray(path: str, options: dict[str, Any]) -> str | None:
    """For data that is an llmray run's ``data/`` or ``tokens/``: what the run kept, in a few words."""
    folder = path.split("*", 1)[0].rstrip("/")
    parent, _, leaf = folder.rpartition("/")
    if leaf not in ("data", "tokens") or not parent:
        return None
    try:
        run = Storage(parent, options)
        if not run.exists("stats.json"):
            return None
        stats = run.get_json("stats.json")
    except Exception:
        return None
    job = f" of the job `{stats['job_file']}`" if stats.get("job_file") else ""
    from llmray.pipeline.report import human_size

    return (f"the output of an llmray run{job}: {stats['docs_out']:,} of {stats['docs_in']:,} documents kept "
            f"({human_size(stats['bytes_out'])} of text) after cleaning, filtering and deduplication "
            f"(its `README.md`, `stats.json` and `report.html` tell what was removed)")


def model_card(plan: Plan, state: dict[str, Any], evaluation: dict[str, Any], config: dict[str, Any]) -> str:
    """``README.md`` of the exported model."""
    from llmray import __version__

    spec = plan.spec
    task = "masked-language-model pretraining (MLM)" if spec.task == "mlm" else "sequence classification"
    pipeline = "fill-mask" if spec.task == "mlm" else "text-classification"
    name = Path(plan.output.rstrip("/")).name if not is_url(plan.output) else plan.output.rstrip("/").rsplit("/", 1)[1]
    workers = spec.num_workers
    effective = spec.batch_size * spec.grad_accum * workers
    lines = ["---", "library_name: transformers", f"pipeline_tag: {pipeline}", "tags:", "- llmray", "- bert", "---",
             "", f"# {name}", "",
             f"A BERT model ({config.get('model_type', 'bert')}, {config.get('num_hidden_layers', '?')} layers, "
             f"hidden size {config.get('hidden_size', '?')}, vocabulary {plan.vocab_size:,}) trained for {task} "
             f"with llmray {__version__}.", "", "## Data", ""]
    for path in spec.data:
        made = _made_by_llmray(path, spec.storage_options)
        lines.append(f"- `{path}`" + (f": {made}" if made else ""))
    if plan.train_rows is not None:
        held = " (the held-out share included)" if spec.eval_fraction and not spec.eval_data else ""
        lines.append(f"- {plan.train_rows:,} rows{held}")
    if spec.eval_data:
        lines.append("- evaluated on " + ", ".join(f"`{p}`" for p in spec.eval_data))
    elif spec.eval_fraction:
        lines.append(f"- evaluated on {spec.eval_fraction:.0%} of the rows held out by a hash of `{spec.id_field}`")
    if spec.task == "classification":
        lines.append(f"- text `{spec.text_field}`, label `{spec.label_field}`: " + ", ".join(
            f"`{label}`" for label in plan.labels))
    lines += ["", "## Evaluation", ""]
    if evaluation:
        shown = {k: v for k, v in evaluation.items() if k != "step"}
        lines += [f"The run's last evaluation, at step {evaluation.get('step', '?'):,}:", "",
                  "| metric | value |", "| --- | ---: |"]
        lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v:,} |" for k, v in shown.items()]
    else:
        lines.append("No evaluation was recorded (no eval data, or `metrics.jsonl` could not be read).")
    opt, schedule = spec.optimizer, spec.schedule
    warmup = (f"{schedule.warmup_steps:,} steps" if schedule.warmup_steps else
              f"{schedule.warmup_ratio:.0%} of the steps" if schedule.warmup_ratio else "none")
    start = f"`{spec.model.path}`" if spec.model.path else "a new model (random weights)"
    lines += ["", "## Training", "",
              "| | |", "| --- | --- |",
              f"| started from | {start} |",
              f"| optimizer steps | {state.get('step', 0):,} of {plan.total_steps:,} planned |",
              f"| samples seen | {state.get('samples', 0):,} |",
              f"| batch size | {spec.batch_size} per worker x {spec.grad_accum} accumulation x {workers} worker(s) "
              f"= {effective} per step |",
              f"| sequence length | {spec.seq_len} tokens |",
              f"| optimizer | {opt.name}, lr {opt.lr:g}, weight decay {opt.weight_decay:g}, betas {opt.betas}, "
              f"gradient clipping {opt.max_grad_norm:g} |",
              f"| schedule | warm-up {warmup}, then {schedule.decay} |",
              *([f"| masking | {spec.mlm_probability:.0%} of tokens |"] if spec.task == "mlm" else []),
              f"| seed | {spec.seed} |",
              f"| devices | {'GPU' if spec.use_gpu else 'CPU'} |",
              f"| llmray | {__version__} |",
              "", "## Use", "", "```python",
              "from transformers import AutoModelFor" + ("MaskedLM" if spec.task == "mlm" else
                                                         "SequenceClassification") + ", AutoTokenizer", "",
              'model = AutoModelFor' + ("MaskedLM" if spec.task == "mlm" else "SequenceClassification")
              + '.from_pretrained("path/to/model")',
              'tokenizer = AutoTokenizer.from_pretrained("path/to/model")', "```", ""]
    if spec.task == "classification":
        lines += ["or `llmray predict path/to/model --input docs.jsonl.gz --output predictions.jsonl`.", ""]
    return "\n".join(lines)
