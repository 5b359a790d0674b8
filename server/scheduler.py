"""The one thread that runs the model: a bounded queue in front of engine/decoding/loop.py's DecodeLoop.

HTTP handlers tokenize, validate and submit a Job (one engine Request per prompt). The scheduler
thread admits waiting requests into the running batch at every step boundary (when there is room),
steps the batch, and posts each request's events back to the handler's event loop. A finished row
returns at once; a request whose client went away is cancelled at the next step. Beam requests run on a
thread of their own beside the batch.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from decodelab.engine.backends.base import Backend
from decodelab.engine.memory import release_free_memory
from decodelab.engine.decoding.loop import DecodeLoop
from decodelab.engine.decoding.requests import Request

from .errors import ApiError
from .metrics import RequestClock

log = logging.getLogger("decodelab.serve")


class Job:
    """One HTTP request's work. Events arrive on `events` as (kind, request index, payload)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, requests: list[Request], stream: bool = True,
                 clock: RequestClock | None = None):
        """clock: the /metrics figures this job feeds (its first token, its tokens and times)."""
        self.loop, self.requests, self.clock = loop, requests, clock
        self.events: asyncio.Queue = asyncio.Queue()
        self.cancel = threading.Event()
        for index, request in enumerate(requests):
            request.cancel = self.cancel
            post = partial(self._post, "step", index) if stream else None  # whole answers need no steps
            request.on_step = post if clock is None else partial(self._step, post)
            request.on_done = partial(self._done, index)

    def _step(self, post, event) -> None:
        assert self.clock is not None  # _step is hooked only with a clock
        self.clock.step(bool(event.tokens))
        if post is not None:
            post(event)

    def _done(self, index: int, completions: list) -> None:
        if self.clock is not None:
            self.clock.done(completions)
        self._post("done", index, completions)

    def _post(self, kind: str, index: int, payload) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, index, payload))
        except RuntimeError:  # the handler's loop is gone: nobody is listening
            self.cancel.set()

    def fail(self, message: str) -> None:
        self._post("error", -1, message)


class Scheduler:
    """Admits jobs into one DecodeLoop and steps it; beyond the free rows, at most max_queue requests wait
    (then 429)."""

    def __init__(self, loaded: Backend, max_rows: int = 64, max_queue: int = 32, window: float = 0.01, pad: bool = True,
                 prefill_chunk: int = 256, kv_budget: int | None = None):
        self.loaded, self.max_rows, self.max_queue, self.pad = loaded, max_rows, max_queue, pad
        self.prefill_chunk, self.kv_budget = prefill_chunk, kv_budget
        self.window = window
        """Seconds an idle scheduler waits after a first request for others sent at the same time."""
        self.batch = DecodeLoop(loaded, max_rows=max_rows, pad=pad, prefill_chunk=prefill_chunk, kv_budget=kv_budget)
        self.beam_loop = DecodeLoop(loaded, max_rows=max_rows, pad=pad)
        self.beams = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decodelab-beams")
        """Beam requests, one at a time, beside the batch."""
        self.inbox: queue.Queue = queue.Queue()
        self.waiting: list[Request] = []
        self.owner: dict[int, Job] = {}
        self.lock = threading.Lock()
        self.queued = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="decodelab-scheduler", daemon=True)
        self.thread.start()

    @property
    def forwards(self) -> int:
        return self.batch.forwards

    def submit(self, job: Job) -> None:
        """Queue a job, or ApiError 429 (with Retry-After) when too many requests are waiting."""
        with self.lock:
            if self.queued + len(job.requests) > self.max_queue + self.free_rows():
                raise ApiError(429, f"the server is busy: {self.running_requests()} request(s) decoding in {self.batch.rows} of "
                               f"{self.max_rows} rows and {self.queued} waiting, and at most {self.max_queue} may wait "
                               "beyond the free rows; retry shortly", code="queue_full", headers={"Retry-After": "1"})
            self.queued += len(job.requests)
        self.inbox.put(job)

    def figures(self) -> tuple[float, ...]:
        """For /metrics, read from the HTTP side (a moment old at worst): requests running, requests waiting, rows in
        the batch, key/value bytes the rows hold, the budget (0: none), and the share of it in use."""
        batch = self.batch
        running = self.running_requests()
        rows = batch.rows
        used = 0
        live = batch.batch
        if live is not None and rows:
            used = batch.runner.kv_bytes(batch.padded_rows(rows), live.width, 0) or 0
        budget = batch.kv_budget or 0
        return running, self.queued, rows, used, budget, (used / budget if budget else 0.0)

    def running_requests(self) -> int:
        """Requests with rows in the batch (guidance rows are their guided request's; read from the HTTP side too)."""
        return len({id(r) for g in list(self.batch.groups) for r in g.requests if r.guides is None})

    def free_rows(self) -> int:
        """Rows the batch can still take (read from the HTTP side: a moment old at worst). A burst fills free rows
        first and only the rest counts against max_queue (64 requests at an idle server got 32 x 429)."""
        return max(0, self.max_rows - self.batch.rows)

    def stop(self) -> None:
        self.stopping.set()
        self.inbox.put(None)
        self.thread.join(timeout=5)
        self.beams.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        busy = False
        while not self.stopping.is_set():
            idle = not self.batch.groups and not self.waiting
            if idle and busy:  # the batch just emptied: its caches are free, give the memory back
                release_free_memory()
            busy = not idle
            try:
                self._collect(block=idle)
                self._drop_cancelled()
                if self.waiting:
                    self._admit()
                if self.batch.groups:
                    for request in self.batch.step():
                        self.owner.pop(id(request), None)
                    self._report_failed()  # a group the batch let go when a step ran out of memory
            except Exception as exc:  # noqa: BLE001 - report to the clients of this batch, keep serving
                log.exception("the decode batch failed")
                self._fail_batch(f"the server failed while generating: {type(exc).__name__}: {exc}")

    def _admit(self) -> None:
        """Join what fits from the queue. A request leaves the queue count when it leaves the queue, also when
        its join fails (the count leaked then, and the idle server took 4-9 of 32 requests until restarted)."""
        before = len(self.waiting)
        try:
            self.batch.admit(self.waiting)  # takes joining requests off the front of waiting, then prefills them
        finally:
            with self.lock:
                self.queued -= before - len(self.waiting)
            self._report_failed()

    def _report_failed(self) -> None:
        """Requests that failed alone (their own prefill, or a step out of memory) fail their jobs; the rest go on."""
        failed, self.batch.failed = self.batch.failed, []
        for request, why, _ in failed:
            job = self.owner.pop(id(request), None)
            if job is not None:
                job.cancel.set()
                job.fail(f"this request failed: {why}")

    def _collect(self, block: bool) -> None:
        try:
            job = self.inbox.get(timeout=0.5) if block else self.inbox.get_nowait()
        except queue.Empty:
            return
        while job is not None:
            for request in job.requests:
                if request.configs and not request.rows:  # beams only: searched on their own thread
                    self.beams.submit(self._search, job, request)
                    continue
                self.owner[id(request)] = job
                self.waiting.append(request)
            try:  # an idle batch waits a moment for requests sent together, so they share one group
                job = self.inbox.get(timeout=self.window) if block else self.inbox.get_nowait()
            except queue.Empty:
                return

    def _search(self, job: Job, request: Request) -> None:
        """A beam request, on the beam thread: HF's beam search holds its own cache for its beams, so it runs
        beside the batch instead of stopping it (a short request waited 7.4 s behind one)."""
        with self.lock:
            self.queued -= 1
        if request.cancel.is_set():
            return
        try:
            self.beam_loop.add([request])  # no rows join: the loop only runs the request's beam search
        except Exception as exc:  # noqa: BLE001 - this request fails alone
            log.exception("a beam search failed")
            job.fail(f"the server failed while generating: {type(exc).__name__}: {exc}")

    def _drop_cancelled(self) -> None:
        gone = [r for r in self.waiting if r.cancel.is_set()]
        if gone:
            self.waiting = [r for r in self.waiting if not r.cancel.is_set()]
            for request in gone:
                self.owner.pop(id(request), None)
            with self.lock:
                self.queued -= len(gone)

    def _fail_batch(self, message: str) -> None:
        jobs = {id(j): j for j in self.owner.values()}
        for job in jobs.values():
            job.fail(message)
        self.owner.clear()
        with self.lock:
            self.queued -= len(self.waiting)
        self.waiting = []
        self.batch = DecodeLoop(self.loaded, max_rows=self.max_rows, pad=self.pad, prefill_chunk=self.prefill_chunk,
                                kv_budget=self.kv_budget)
