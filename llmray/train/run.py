"""What the plain and the Ray paths share around the loop: start or resume the model, wrap the
batches in a resumable stream, log metrics from rank 0, evaluate, then train. ``run_local`` is the
plain path itself: data read and tokenized in this process, checkpoints written to a directory.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from llmray.train.data import BatchStream, local_batches, seed_for
from llmray.train.export import export
from llmray.train.loop import Hooks, MetricsLog, evaluate, train
from llmray.train.model import latest_checkpoint, load, load_trainer_state
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
    hooks = Hooks(
        log=MetricsLog(Path(plan.output) / METRICS, plan.total_steps) if rank == 0 else (lambda record: None),
        evaluate=(lambda m: evaluate(m, eval_batches(), spec.task, device, spec.eval_batches))
        if plan.has_eval
        else None,
        checkpoint=checkpoint,
        position=stream.position,
    )
    return train(model, stream, spec, hooks, device=device, total_steps=plan.total_steps, resume=resume)


def fresh_metrics(plan: Plan) -> None:
    """A new run starts a new metrics file; a resumed one appends to it."""
    if plan.resume_from is None:
        (Path(plan.output) / METRICS).unlink(missing_ok=True)


def run_local(plan: Plan, device: str | None = None) -> dict[str, Any]:
    """Train in this process on one device, checkpoint to ``<output>/checkpoints``, export ``model/``."""
    spec = plan.spec
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(plan.output)
    checkpoints = out / "checkpoints"
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

    def checkpoint(step: int, save: Callable[[Path], None], metrics: dict) -> None:
        target_dir = checkpoints / f"step_{step:06d}"
        save(target_dir)
        done = sorted((p for p in checkpoints.glob("step_*") if p != target_dir), key=lambda p: p.name)
        for old in done[: max(0, len(done) - spec.keep_checkpoints + 1)]:
            shutil.rmtree(old, ignore_errors=True)

    start = Path(plan.resume_from) if plan.resume_from else None
    summary = run_loop(plan, epoch_batches, eval_batches, checkpoint, device=target, rank=0, start=start)
    last = latest_checkpoint(checkpoints)
    assert last is not None  # the loop always checkpoints its last step
    export(last, plan, out / "model")
    return summary
