"""What the plain and the Ray paths share around the loop: start or resume the model, wrap the
batches in a resumable stream, log metrics from rank 0, evaluate, then train. ``run_local`` is the
plain path itself: data read and tokenized in this process, checkpoints written to
``<output>/checkpoints`` (a local directory, or for a URL saved here and uploaded).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from llmray.io.storage import Storage
from llmray.train import transfer
from llmray.train.data import BatchStream, local_batches, seed_for
from llmray.train.export import export
from llmray.train.loop import Hooks, MetricsLog, evaluate, train
from llmray.train.model import STATE, load, load_trainer_state
from llmray.train.plan import Plan

#: Seed slot of evaluation masking: every evaluation masks the same tokens, so scores compare.
EVAL_SEED = 0x5EED
METRICS = "metrics.jsonl"


def run_loop(
    plan: Plan,
    epoch_batches: Callable[[int], Iterable[Any]],
    eval_batches: Callable[[], Iterable[Any]],
    checkpoint: Callable,
    *,
    device: torch.device,
    rank: int,
    start: Path | None,
) -> dict[str, Any]:
    """Train from ``start`` (a checkpoint directory) or from the plan's model, on one worker."""
    spec = plan.spec
    if start is not None:
        model, resume = load(spec.task, start), load_trainer_state(start)
    else:
        model, resume = plan.new_model(), None
    stream = BatchStream(epoch_batches, plan.epochs, resume[1]["data"] if resume else None)
    log = MetricsLog(plan.output_storage(), METRICS, plan.total_steps) if rank == 0 else None

    def logged_checkpoint(step: int, save: Callable[[Path], None], metrics: dict[str, Any]) -> None:
        if log is not None:
            log.flush()  # a checkpoint never runs ahead of the stored metrics
        checkpoint(step, save, metrics)

    hooks = Hooks(
        log=log or (lambda record: None),
        evaluate=(lambda m: evaluate(m, eval_batches(), spec.task, device, spec.eval_batches))
        if plan.has_eval
        else None,
        checkpoint=logged_checkpoint,
        position=stream.position,
    )
    return train(model, stream, spec, hooks, device=device, total_steps=plan.total_steps, resume=resume)


def fresh_metrics(plan: Plan) -> None:
    """A new run starts a new metrics file; a resumed one appends to it."""
    if plan.resume_from is None:
        plan.output_storage().delete(METRICS)


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
