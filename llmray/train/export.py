"""``model/``: the trained model in Hugging Face format (config, weights, tokenizer), loadable with
``from_pretrained``, plus ``llmray.json`` (task, labels, sequence length, fields) for ``predict``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from llmray.train.model import STATE, WEIGHTS

if TYPE_CHECKING:
    from llmray.train.plan import Plan

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
META = "llmray.json"


def export(checkpoint: Path, plan: Plan, out_dir: Path) -> Path:
    """Copy the checkpoint's model and the run's tokenizer into ``out_dir``, replacing it whole."""
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in ("config.json", *WEIGHTS):
        if (checkpoint / name).is_file():
            shutil.copy2(checkpoint / name, tmp / name)
    for name in TOKENIZER_FILES:
        source = Path(plan.tokenizer_dir) / name
        if source.is_file():
            shutil.copy2(source, tmp / name)
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
    (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return out_dir
