"""The one place that runs llmray's work on Ray: lists of tasks, a bounded number in flight.

The runner and every global step hand their task lists here (``engine.map(fn, items)``); no step
calls ``ray.remote`` itself. Tasks return small summaries, never data, and at most ``window``
are in flight, so what the driver holds grows with the CPUs, not with the number of tasks. A
worker that dies (killed, out of memory, node lost) has its task retried ``max_retries`` times.
``LocalEngine`` runs the same lists in this process, for Python use without a cluster and tests.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from llmray.errors import UserError

OnResult = Callable[[int, Any], None]


class TaskFailed(RuntimeError):
    """A task raised: says which one and why, in one line."""


class Engine:
    def __init__(self, num_cpus: int, max_retries: int = 3, window: int | None = None, progress: bool = False,
                 prefix: str = ""):
        self.num_cpus = max(1, num_cpus)
        self.max_retries = max_retries
        self.window = window or 2 * self.num_cpus + 2
        #: Show a bar per task list (those handed an ``on_result`` show their own).
        self.progress, self.prefix = progress, prefix

    def named(self, prefix: str) -> Engine:
        """The same engine, its bars labelled ``prefix: <label>`` (one global step's phases)."""
        return type(self)(self.num_cpus, self.max_retries, self.window, self.progress, prefix)

    def map(self, fn: Callable[..., Any], items: Sequence[tuple], label: str = "", shared: Any = None,
            on_result: OnResult | None = None) -> list[Any] | None:
        """Run ``fn(*item)`` (``fn(shared, *item)`` with ``shared``) for every item as a task.

        Returns the results in item order, or, with ``on_result``, hands each to it as it comes
        (``on_result(index, result)``) and keeps none.
        """
        import ray

        task = _remote(fn, self.max_retries)
        shared_ref = ray.put(shared) if shared is not None else None
        results: list[Any] | None = [None] * len(items) if on_result is None else None
        pending: dict[Any, int] = {}
        queue: Iterable[tuple[int, tuple]] = iter(enumerate(items))

        def submit() -> None:
            for index, item in queue:
                args = (shared_ref, *item) if shared_ref is not None else item
                pending[task.remote(*args)] = index
                if len(pending) >= self.window:
                    return

        bar = self._bar(len(items), label) if on_result is None else None
        submit()
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                index = pending.pop(done[0])
                result = _result(done[0], label, index)
                if on_result is not None:
                    on_result(index, result)
                else:
                    assert results is not None
                    results[index] = result
                if bar is not None:
                    bar.update(1)
                submit()
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        finally:
            if bar is not None:
                bar.close()
        return results

    def _bar(self, total: int, label: str) -> Any:
        if not self.progress:
            return None
        from tqdm import tqdm

        return tqdm(total=total, desc=f"{self.prefix}: {label}" if self.prefix else label, unit="task",
                    file=sys.stderr, dynamic_ncols=True, mininterval=0.5, leave=False)


class LocalEngine(Engine):
    """The same contract, run one item after another in this process (no Ray)."""

    def map(self, fn: Callable[..., Any], items: Sequence[tuple], label: str = "", shared: Any = None,
            on_result: OnResult | None = None) -> list[Any] | None:
        results = []
        for index, item in enumerate(items):
            result = fn(shared, *item) if shared is not None else fn(*item)
            if on_result is not None:
                on_result(index, result)
            else:
                results.append(result)
        return None if on_result is not None else results


@functools.cache
def _remote(fn: Callable[..., Any], max_retries: int) -> Any:
    import ray

    return ray.remote(fn).options(num_cpus=1, max_retries=max_retries, retry_exceptions=False)


def _result(ref: Any, label: str, index: int) -> Any:
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if isinstance(exc.cause, BaseException) else None
        if isinstance(cause, UserError):
            raise type(cause)(str(cause)) from None
        what = f"{type(cause).__name__}: {cause}" if cause is not None else _first_line(str(exc))
        raise TaskFailed(f"{label} task {index} failed: {what}") from cause
    except ray.exceptions.RayError as exc:  # the worker died (killed, out of memory, node lost)
        raise TaskFailed(f"{label} task {index}: its worker died on every try ({type(exc).__name__}: "
                         f"{_first_line(str(exc))}); see Ray's logs, or raise --max-retries") from None


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")
