"""``model/``: the trained model in Hugging Face format (config, weights, tokenizer), loadable with
``from_pretrained``, plus ``llmray.json`` (task, labels, sequence length, fields) for ``predict``.
Built in a local directory and published to ``<output>/model`` whole, ``llmray.json`` last.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from llmray.train.model import STATE, WEIGHTS
from llmray.train.transfer import local_dir, staging

if TYPE_CHECKING:
    from llmray.train.plan import Plan

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
META = "llmray.json"


def export(checkpoint: Path, plan: Plan) -> str:
    """Copy a local checkpoint's model and the run's tokenizer to ``<output>/model``, replacing it
    whole; return its path or URL."""
    out = plan.output_storage()
    tokenizer = Path(local_dir(plan.tokenizer_dir, plan.spec.storage_options))
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
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
    return out.join("model")
