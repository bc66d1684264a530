"""Adaptive batching across concurrent requests.

Request threads decode and preprocess in parallel, then hand their tensors to one batcher per
loaded model. The batcher's thread takes everything queued at that moment (up to
``max_batch_size`` images, optionally waiting ``wait_ms`` for more) and runs one forward pass:
under load batches grow by themselves, at low load a request runs alone with no added latency.
One process-wide lock serialises forward passes of all models, so two models never fight for the
same cores.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

#: Serialises forward passes across every model in the process (CPU cores are the bottleneck).
INFERENCE_LOCK = threading.Lock()

RunFn = Callable[[np.ndarray, str], np.ndarray]


@dataclass
class _Job:
    batch: np.ndarray
    output: str
    done: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None


class Batcher:
    """Combines ``submit`` calls from many threads into few ``run(batch, output)`` calls."""

    def __init__(self, run: RunFn, *, max_batch_size: int = 32, wait_ms: float = 0.0, name: str = "model") -> None:
        self._run = run
        self.max_batch_size = max_batch_size
        self.wait_s = wait_ms / 1000.0
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._closed = False
        self._lock = threading.Lock()
        self.batches_run = 0
        self.items_run = 0
        self._thread = threading.Thread(target=self._loop, name=f"radzoo-batcher-{name}", daemon=True)
        self._thread.start()

    def submit(self, batch: np.ndarray, output: str) -> np.ndarray:
        """Embeddings of ``batch`` (blocks until its forward pass is done)."""
        job = _Job(np.ascontiguousarray(batch, dtype=np.float32), output)
        with self._lock:
            closed = self._closed
            if not closed:
                self._queue.put(job)
        if closed:  # model was unloaded while this request held it: run inline
            self._execute([job])
        job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def close(self) -> None:
        """Finish what is queued, then stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)

    # ---- worker ------------------------------------------------------------------------------
    def _loop(self) -> None:
        carry: _Job | None = None
        while True:
            first = carry if carry is not None else self._queue.get()
            carry = None
            if first is None:
                return
            jobs = [first]
            size = len(first.batch)
            deadline = time.monotonic() + self.wait_s
            stop = False
            while size < self.max_batch_size:
                timeout = deadline - time.monotonic()
                try:
                    nxt = self._queue.get_nowait() if timeout <= 0 else self._queue.get(timeout=timeout)
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                if size + len(nxt.batch) > self.max_batch_size:
                    carry = nxt
                    break
                jobs.append(nxt)
                size += len(nxt.batch)
            self._execute(jobs)
            if stop:
                # drain anything submitted before close()
                while True:
                    try:
                        rest = self._queue.get_nowait()
                    except queue.Empty:
                        return
                    if rest is not None:
                        self._execute([rest])

    def _execute(self, jobs: list[_Job]) -> None:
        by_output: dict[str, list[_Job]] = {}
        for job in jobs:
            by_output.setdefault(job.output, []).append(job)
        for output, group in by_output.items():
            try:
                batch = group[0].batch if len(group) == 1 else np.concatenate([j.batch for j in group])
                with INFERENCE_LOCK:
                    out = self._run(batch, output)
                self.batches_run += 1
                self.items_run += len(batch)
                start = 0
                for job in group:
                    job.result = out[start : start + len(job.batch)]
                    start += len(job.batch)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting request thread
                for job in group:
                    job.error = exc
            finally:
                for job in group:
                    job.done.set()
