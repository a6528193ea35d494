"""Training in one process on one device, without Ray: the same loop, data and outputs as
``llmray train`` (for a GPU box, a laptop, or a check that needs no cluster)::

    python -m llmray.train jobs/bert_mlm.yaml --output runs/local --device cuda

Data are read and tokenized in this process; checkpoints go to ``<output>/checkpoints`` (a local
directory, or for a URL saved here and uploaded).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from llmray.io.storage import Storage
from llmray.train import transfer
from llmray.train.data import local_batches, seed_for
from llmray.train.export import export
from llmray.train.loop import EVAL_SEED, fresh_metrics, run_loop
from llmray.train.model import STATE
from llmray.train.plan import Plan


def run_local(plan: Plan, device: str | None = None) -> dict[str, Any]:
    """Train in this process on one device, checkpoint to ``<output>/checkpoints``, export ``model/``."""
    spec = plan.spec
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    checkpoints = plan.output_storage().child("checkpoints")
    fresh_metrics(plan)

    def epoch_batches(epoch: int) -> Iterable[Any]:
        return local_batches(
            plan.train,
            plan.columns,
            plan.featurizer("train"),
            plan.collate(seed_for(spec.seed, epoch)),
            spec.batch_size,
            spec.shuffle_buffer,
            seed_for(spec.seed, epoch),
            drop_last=True,
        )

    def eval_batches() -> Iterable[Any]:
        files, columns = plan.eval_source()
        return local_batches(
            files,
            columns,
            plan.featurizer("eval"),
            plan.collate(seed_for(spec.seed, EVAL_SEED)),
            spec.batch_size,
            0,
            0,
            drop_last=False,
        )

    with contextlib.ExitStack() as stack:
        # Checkpoints are saved here; for a URL, uploaded and only the newest kept here (for export).
        here = (
            Path(checkpoints.url)
            if checkpoints.local
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="llmray-")))
        )
        saved: list[str] = []

        def checkpoint(step: int, save: Callable[[Path], None], metrics: dict) -> None:
            name = f"step_{step:06d}"
            save(here / name)
            if not checkpoints.local:
                checkpoints.delete_tree(name)
                transfer.upload(here / name, checkpoints.child(name), last=STATE)
                if saved:
                    shutil.rmtree(here / saved[-1])
            saved.append(name)
            _prune(checkpoints, name, spec.keep_checkpoints)

        start = (
            stack.enter_context(transfer.fetched(plan.resume_from, spec.storage_options))
            if plan.resume_from
            else None
        )
        summary = run_loop(plan, epoch_batches, eval_batches, checkpoint, device=target, rank=0, start=start)
        # The loop checkpoints its last step, unless a resumed run was already there.
        export(here / saved[-1] if saved else start, plan)
    return summary


def _prune(checkpoints: Storage, newest: str, keep: int) -> None:
    """Delete the oldest checkpoints but ``newest``, so that ``keep`` remain."""
    done = sorted(n for n in checkpoints.listdir() if n.startswith("step_") and n != newest)
    for old in done[: max(0, len(done) - keep + 1)]:
        checkpoints.delete_tree(old)


def main(argv: list[str] | None = None) -> int:
    """``python -m llmray.train``: one process, one device, no Ray."""
    parser = argparse.ArgumentParser(
        prog="python -m llmray.train",
        description="Train a train job on one device without Ray (same loop, data and outputs as "
        "`llmray train`; for a GPU box or a quick local run).",
    )
    parser.add_argument("job", help="the train job file (YAML with a top-level `train:`)")
    parser.add_argument("--data", nargs="+", metavar="PATH_OR_URL", help="training data instead of train.data")
    parser.add_argument(
        "--eval-data", nargs="+", metavar="PATH_OR_URL", help="held-out data instead of train.eval_data"
    )
    parser.add_argument("--output", metavar="DIR_OR_URL", help="output directory or URL instead of train.output")
    parser.add_argument(
        "--max-steps", type=int, metavar="N", help="optimizer steps instead of train.max_steps"
    )
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    args = parser.parse_args(argv)
    from llmray.errors import UserError
    from llmray.train.config import load_train_job
    from llmray.train.plan import prepare

    try:
        spec = load_train_job(
            args.job, data=args.data, eval_data=args.eval_data, output=args.output, max_steps=args.max_steps
        )
        summary = run_local(prepare(spec, resume=args.resume), device=args.device)
    except UserError as exc:
        print(f"llmray: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0
