"""The training loop: plain PyTorch, the same on a Ray Train worker and on one device without Ray.

``train`` takes a model, an iterable of batches, the spec and ``Hooks`` (metrics, evaluation,
checkpoints), and owns only what every setting shares: AdamW with warm-up and linear decay,
gradient accumulation, clipping, bf16 autocast on CUDA, and DDP when a process group of more than
one rank exists (Ray Train creates it; one process never wraps). Where batches come from and where
checkpoints go is the caller's business, so Ray appears only in ``trainer``.

``run_loop`` is what a worker runs on either path: start or resume the model, wrap the batches in
a resumable stream, log metrics from rank 0, evaluate, train. Without Ray see :mod:`.local`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from llmray.io.storage import Storage
from llmray.train.config import OptimizerSpec, ScheduleSpec, TrainSpec
from llmray.train.data import BatchStream
from llmray.train.model import load, load_trainer_state, save_checkpoint, unwrap
from llmray.train.plan import Plan

Batch = dict[str, torch.Tensor]


@dataclasses.dataclass
class Hooks:
    #: Called on rank 0 with each metrics record (train every log_every steps, eval, final).
    log: Callable[[dict[str, Any]], None] = lambda record: None
    #: Called on every rank with the bare model; returns eval metrics (may run collectives).
    evaluate: Callable[[torch.nn.Module], dict[str, float]] | None = None
    #: Called on every rank with the step, a function that writes the whole state into a directory,
    #: and the latest metrics; decides where the checkpoint goes (Ray: report; plain: a directory).
    checkpoint: Callable[[int, Callable[[Path], None], dict[str, Any]], None] | None = None
    #: The data position to store with a checkpoint (see ``data.BatchStream``).
    position: Callable[[], dict[str, int]] = dict


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def make_optimizer(model: torch.nn.Module, spec: OptimizerSpec) -> torch.optim.Optimizer:
    """AdamW; biases and LayerNorm weights are not decayed (BERT's recipe)."""
    decay, plain = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (plain if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    groups = [{"params": decay, "weight_decay": spec.weight_decay}, {"params": plain, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=spec.lr, betas=(spec.betas[0], spec.betas[1]), eps=spec.eps)


def make_schedule(optimizer: torch.optim.Optimizer, spec: ScheduleSpec, total_steps: int) -> Any:
    warmup = spec.warmup_steps or int(spec.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if spec.decay == "constant":
            return 1.0
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


class _Window:
    """Loss and throughput since the last log line, summed over ranks when logged."""

    def __init__(self, device: torch.device):
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.sums = torch.zeros(3, device=self.device, dtype=torch.float64)  # loss, samples, tokens
        self.micro = 0
        self.seconds = 0.0

    def add(self, loss: torch.Tensor, batch: Batch) -> None:
        self.micro += 1
        self.sums += torch.stack(
            [
                loss.detach().double(),
                torch.tensor(len(batch["input_ids"]), device=self.device, dtype=torch.float64),
                batch["attention_mask"].sum().double(),
            ]
        )

    def flush(self) -> dict[str, float]:
        """Collective when distributed: every rank calls it at the same step."""
        sums = self.sums.clone()
        if world_size() > 1:
            dist.all_reduce(sums)
        loss, samples, tokens = sums.tolist()
        seconds, micro = max(self.seconds, 1e-9), self.micro * world_size()
        self.reset()
        return {
            "loss": round(loss / micro, 5),
            "samples_per_s": round(samples / seconds, 1),
            "tokens_per_s": round(tokens / seconds, 1),
        }


def train(
    model: torch.nn.Module,
    batches: Iterable[Batch],
    spec: TrainSpec,
    hooks: Hooks,
    *,
    device: torch.device,
    total_steps: int,
    resume: tuple[dict[str, Any], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run optimizer steps until ``total_steps`` or the end of ``batches``; return a summary.

    ``resume`` is (trainer state, state) of a checkpoint whose weights ``model`` already holds.
    Evaluation and a checkpoint always happen at the last step. The summary (also the final
    checkpoint's metrics) has ``loop_s``, from the first batch to the last step and its evaluation,
    and ``train_s``, the same less evaluation and checkpoint time: what throughput is measured on.
    """
    model.to(device)
    world = world_size()
    rank = dist.get_rank() if world > 1 else 0
    net = (
        torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
        if world > 1
        else model
    )
    optimizer = make_optimizer(model, spec.optimizer)
    schedule = make_schedule(optimizer, spec.schedule, total_steps)
    step = samples = 0
    if resume:
        trainer_state, state = resume
        optimizer.load_state_dict(trainer_state["optimizer"])
        schedule.load_state_dict(trainer_state["schedule"])
        step, samples = state["step"], state["samples"]
    saved_at, evaluated_at = step, -1
    window, last = _Window(device), {}
    started = tick = time.perf_counter()
    hook_s = 0.0

    def save(directory: Path) -> None:
        save_checkpoint(
            directory,
            model,
            {"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()},
            {"step": step, "samples": samples, "data": hooks.position()},
        )

    def due(every: int) -> bool:
        return bool(every) and step % every == 0

    def run_hooks(final: bool) -> None:
        nonlocal saved_at, evaluated_at, last, hook_s, tick
        window.seconds += time.perf_counter() - tick
        began = time.perf_counter()
        if (due(spec.log_every) or final) and window.micro:
            last = {"step": step, **window.flush(), "lr": schedule.get_last_lr()[0], "samples": samples}
            hooks.log(last)
        if hooks.evaluate and evaluated_at != step and (due(spec.eval_every) or final):
            metrics = hooks.evaluate(model)
            hooks.log({"step": step, **metrics})
            last, evaluated_at = {**last, **metrics}, step
        if final:
            # Timings as of now: the final checkpoint's own write (and Ray report) is not in them.
            loop_s = time.perf_counter() - started
            last = {
                **last,
                "steps": step,
                "loop_s": round(loop_s, 3),
                "train_s": round(loop_s - hook_s - (time.perf_counter() - began), 3),
            }
        if hooks.checkpoint and saved_at != step and (due(spec.checkpoint_every) or final):
            hooks.checkpoint(step, save, last)
            saved_at = step
        hook_s += time.perf_counter() - began
        tick = time.perf_counter()

    net.train()
    micro = 0
    iterator = iter(batches)
    while step < total_steps:
        batch = next(iterator, None)
        if batch is None:
            break
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        if micro % spec.grad_accum == 0:
            # Dropout seeded by step: a run resumed from a checkpoint (or restarted after a lost
            # worker) draws the masks an uninterrupted run draws, so both end with the same model.
            torch.manual_seed(spec.seed + 7919 * step + rank)
        micro += 1
        stepping = micro % spec.grad_accum == 0
        with net.no_sync() if world > 1 and not stepping else contextlib.nullcontext():
            with autocast(device):
                loss = net(**batch).loss
            (loss / spec.grad_accum).backward()
        window.add(loss, batch)
        samples += len(batch["input_ids"]) * world
        if not stepping:
            continue
        if spec.optimizer.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), spec.optimizer.max_grad_norm)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        # The last step's hooks run once, as final: its checkpoint then carries the run's timings.
        if step < total_steps and (due(spec.log_every) or due(spec.eval_every) or due(spec.checkpoint_every)):
            run_hooks(final=False)
    if step == 0:
        raise RuntimeError("no training batches: the data holds fewer rows than one batch per worker")
    run_hooks(final=True)
    return last


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    batches: Iterable[Batch],
    task: str,
    device: torch.device,
    limit: int | None = None,
) -> dict[str, float]:
    """Held-out loss (MLM: per masked token, and perplexity; classification: per row, accuracy and
    macro F1), summed over all ranks."""
    model = unwrap(model)
    was_training = model.training
    model.eval()
    classes = model.config.num_labels if task == "classification" else 0
    # loss sum, weight, then true positives, false positives, false negatives per class
    sums = torch.zeros(2 + 3 * classes, dtype=torch.float64, device=device)
    for i, batch in enumerate(batches):
        if limit is not None and i >= limit:
            break
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast(device):
            out = model(**batch)
        labels = batch["labels"]
        weight = (labels != -100).sum() if task == "mlm" else torch.tensor(len(labels), device=device)
        sums[0] += out.loss.double() * weight
        sums[1] += weight
        if classes:
            predicted = out.logits.argmax(-1)
            hit = torch.nn.functional.one_hot(labels, classes).double()
            guess = torch.nn.functional.one_hot(predicted, classes).double()
            sums[2 : 2 + classes] += (hit * guess).sum(0)
            sums[2 + classes : 2 + 2 * classes] += (guess * (1 - hit)).sum(0)
            sums[2 + 2 * classes :] += (hit * (1 - guess)).sum(0)
    if world_size() > 1:
        dist.all_reduce(sums)
    model.train(was_training)
    if sums[1] == 0:
        return {}
    loss = float(sums[0] / sums[1])
    if task == "mlm":
        return {"eval_loss": round(loss, 5), "perplexity": round(math.exp(min(loss, 50.0)), 3)}
    tp, fp, fn = sums[2:].reshape(3, classes)
    seen = (tp + fp + fn) > 0
    f1 = (2 * tp / (2 * tp + fp + fn).clamp(min=1))[seen].mean()
    return {
        "eval_loss": round(loss, 5),
        "accuracy": round(float(tp.sum() / sums[1]), 5),
        "f1": round(float(f1), 5),
        "eval_rows": int(sums[1]),
    }


def progress_line(record: dict[str, Any], total_steps: int) -> str:
    """A metrics record as the terminal shows it: ``step 10/300  loss 6.9 samples_per_s 410 ...``."""
    shown = " ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
        for k, v in record.items()
        if k not in ("step", "samples", "tokens")
    )
    return f"step {record['step']}/{total_steps}  {shown}"


class MetricsLog:
    """Appends each record to ``metrics.jsonl`` (one JSON object a line) and prints a short line.

    Object stores cannot append: there the whole file is rewritten, at most every ``UPLOAD_S``
    seconds and on ``flush`` (each checkpoint), so the stored file lags the run by that much.
    """

    UPLOAD_S = 30.0

    def __init__(self, storage: Storage, name: str, total_steps: int, echo: bool = True):
        self.storage, self.name, self.total_steps, self.echo = storage, name, total_steps, echo
        if storage.local:
            Path(storage.url).mkdir(parents=True, exist_ok=True)
        # A resumed run continues the stored file.
        self.lines = [] if storage.local or not storage.exists(name) else [storage.get(name).decode()]
        self.uploaded = time.monotonic()

    def __call__(self, record: dict[str, Any]) -> None:
        line = json.dumps(record) + "\n"
        if self.storage.local:
            with open(self.storage.join(self.name), "a", encoding="utf-8") as f:
                f.write(line)
        else:
            self.lines.append(line)
            if time.monotonic() - self.uploaded >= self.UPLOAD_S:
                self.flush()
        if self.echo:
            print(progress_line(record, self.total_steps), flush=True)

    def flush(self) -> None:
        if not self.storage.local:
            self.storage.put(self.name, "".join(self.lines).encode())
            self.uploaded = time.monotonic()


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
    echo: bool = True,
) -> dict[str, Any]:
    """Train from ``start`` (a checkpoint directory) or from the plan's model, on one worker;
    ``echo``: rank 0 prints each metrics record (off on Ray, where the driver prints them)."""
    spec = plan.spec
    if start is not None:
        model, resume = load(spec.task, start), load_trainer_state(start)
    else:
        model, resume = plan.new_model(), None
    stream = BatchStream(epoch_batches, plan.epochs, resume[1]["data"] if resume else None)
    log = MetricsLog(plan.output_storage(), METRICS, plan.total_steps, echo=echo) if rank == 0 else None

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
