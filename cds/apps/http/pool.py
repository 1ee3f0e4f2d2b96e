"""Evaluation worker processes for the HTTP service, driven from the event loop.

The durable-rules C core holds the GIL and is not re-entrant, so the service never
evaluates on the event loop or in threads: each of N worker processes (``spawn``ed:
no inherited event loop, threads or sockets) compiles the rule set once and then serves
one task at a time over its own pipe. The event loop hands a task to an idle worker,
sends it, and waits for the reply through ``loop.add_reader`` on the pipe: no thread
blocks, and the reply arrives in the loop.

A worker that dies (killed, out of memory, a crash in the C core) closes its end of the
pipe: the request it was running fails with `WorkerUnavailable` (503), and a replacement
is started at once. A task that runs longer than `task_timeout` kills its worker the
same way. Requests wait for an idle worker at most `queue_timeout` (then 503 as well).

    pool = WorkerPool(size, target, args)   # target(conn, *args) runs in the worker
    info = await pool.start()               # the first worker's "ready" payload
    result = await pool.run(task)           # ("ok", value) | ("invalid", ...) | ...
    await pool.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext
from typing import Any

log = logging.getLogger("cds.serve")

START_TIMEOUT_S = 120.0  # compiling the rules takes about a second; this only bounds a hang


class WorkerUnavailable(Exception):
    """The request could not be evaluated: its worker died, timed out, or none became free in time."""


class WorkerStartError(Exception):
    """A worker could not start (e.g. an invalid rule folder or site file): the message says why."""


class _Worker:
    def __init__(self, ctx: SpawnContext, target: Callable[..., None], args: tuple[Any, ...]):
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=target, args=(child, *args), daemon=True, name="cds-worker")
        self.process.start()
        child.close()  # only the worker holds its end: its death is EOF here
        self.pid = self.process.pid
        self.waiter: asyncio.Future[Any] | None = None
        self.ready = False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.close()


class WorkerPool:
    def __init__(
        self,
        size: int,
        target: Callable[..., None],
        args: tuple[Any, ...] = (),
        *,
        task_timeout: float = 60.0,
        queue_timeout: float = 30.0,
    ):
        if size < 1:
            raise ValueError("at least one worker")
        self.size = size
        self.target, self.args = target, args
        self.task_timeout, self.queue_timeout = task_timeout, queue_timeout
        self.ctx = multiprocessing.get_context("spawn")
        self.workers: set[_Worker] = set()
        self.idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self.busy = 0
        self.replaced = 0
        self.info: dict[str, Any] | None = None
        self.stopping = False
        self.loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> dict[str, Any]:
        """Start every worker and wait until all are ready; WorkerStartError if one cannot start."""
        self.loop = asyncio.get_running_loop()
        starting = [self._spawn() for _ in range(self.size)]
        try:
            results = await asyncio.wait_for(asyncio.gather(*starting), START_TIMEOUT_S)
        except BaseException:
            await self.stop()
            raise
        self.info = results[0]
        return self.info

    def _spawn(self) -> asyncio.Future[Any]:
        """Start one worker; the future resolves with its ready payload (it joins the idle queue then)."""
        assert self.loop is not None
        worker = _Worker(self.ctx, self.target, self.args)
        self.workers.add(worker)
        worker.waiter = self.loop.create_future()
        self.loop.add_reader(worker.conn.fileno(), self._readable, worker)
        # uvloop (libuv) makes a polled descriptor non-blocking; a reply larger than the pipe's buffer
        # would then fail half-read. Blocking again: readable means a reply is coming, read it whole.
        os.set_blocking(worker.conn.fileno(), True)
        return worker.waiter

    def _readable(self, worker: _Worker) -> None:
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            self._lost(worker)
            return
        waiter, worker.waiter = worker.waiter, None
        if not worker.ready:
            kind, payload = message
            if kind != "ready":
                self._discard(worker)
                if waiter is not None and not waiter.done():
                    waiter.set_exception(WorkerStartError(payload))
                return
            worker.ready = True
            log.info("worker %d ready", worker.pid)
            self.idle.put_nowait(worker)
            if waiter is not None and not waiter.done():
                waiter.set_result(payload)
            return
        if waiter is not None and not waiter.done():
            waiter.set_result(message)

    def _discard(self, worker: _Worker) -> None:
        if worker in self.workers:
            self.workers.discard(worker)
            assert self.loop is not None
            self.loop.remove_reader(worker.conn.fileno())
            worker.close()
            if worker.process.is_alive():
                worker.process.kill()
            worker.process.join(5)

    def _lost(self, worker: _Worker) -> None:
        """A worker's pipe closed: it died. Fail its task, start a replacement."""
        was_ready = worker.ready
        self._discard(worker)
        code = worker.process.exitcode
        waiter, worker.waiter = worker.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(
                WorkerUnavailable("the worker evaluating this request died")
                if was_ready
                else WorkerStartError(f"a worker exited while starting (exit code {code})")
            )
        if self.stopping or not was_ready:
            return
        log.warning("worker %d died (exit code %s); starting a replacement", worker.pid, code)
        self.replaced += 1
        replacement = self._spawn()
        replacement.add_done_callback(_log_failed_start)

    async def stop(self, grace: float = 10.0) -> None:
        """Close every pipe (a worker exits at EOF after its current task), then terminate what is left."""
        self.stopping = True
        workers = list(self.workers)
        for w in workers:
            if self.loop is not None:
                self.loop.remove_reader(w.conn.fileno())
            w.close()
            if w.waiter is not None and not w.waiter.done():
                w.waiter.set_exception(WorkerUnavailable("the service is shutting down"))
        self.workers.clear()
        deadline = time.monotonic() + grace
        for w in workers:
            while w.process.is_alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if w.process.is_alive():  # stuck in a task past the grace time (workers ignore SIGTERM)
                w.process.kill()
            w.process.join(2)

    # ------------------------------------------------------------------ tasks

    def stats(self) -> dict[str, int]:
        return {
            "configured": self.size,
            "ready": sum(1 for w in self.workers if w.ready),
            "busy": self.busy,
            "replaced": self.replaced,
        }

    async def _take(self) -> _Worker:
        deadline = time.monotonic() + self.queue_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.stopping:
                raise WorkerUnavailable("no worker became free in time")
            try:
                worker = await asyncio.wait_for(self.idle.get(), remaining)
            except TimeoutError:
                raise WorkerUnavailable("no worker became free in time") from None
            if worker in self.workers:  # a worker that died while idle was discarded: skip it
                return worker

    async def run(self, task: Any) -> Any:
        """Run one task on an idle worker and return its reply; WorkerUnavailable if it cannot."""
        assert self.loop is not None
        worker = await self._take()
        self.busy += 1
        try:
            worker.waiter = self.loop.create_future()
            try:
                worker.conn.send(task)
            except (OSError, ValueError):  # died between the queue and now: the task never reached it
                self._lost(worker)
                raise WorkerUnavailable("the worker died before the request reached it") from None
            try:
                result = await asyncio.wait_for(asyncio.shield(worker.waiter), self.task_timeout)
            except TimeoutError:
                log.error("worker %d exceeded %.0f s on one request; killing it", worker.pid, self.task_timeout)
                worker.process.kill()  # its pipe closes: _lost() replaces it
                raise WorkerUnavailable("the evaluation took too long") from None
            except asyncio.CancelledError:
                # the client went away mid-task: the worker finishes it; it rejoins the queue when its reply arrives
                worker.waiter.add_done_callback(functools.partial(self._requeue, worker))
                raise
        finally:
            self.busy -= 1
        self.idle.put_nowait(worker)
        return result

    def _requeue(self, worker: _Worker, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is None and worker in self.workers:
            self.idle.put_nowait(worker)


def _log_failed_start(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("a replacement worker could not start: %s", future.exception())


def worker_signals() -> None:
    """In a worker: ignore SIGINT and SIGTERM, which reach the whole process group (Ctrl-C, `timeout`,
    systemd): the server shuts down gracefully and stops its workers by closing their pipes
    (a worker exits at EOF, also when the server itself is killed)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def settle_heap() -> None:
    """Collect, then move every object alive now into the collector's permanent generation (`gc.freeze`).

    A long-running process (the server, a worker) builds its heap at start-up (modules, the compiled
    rule set, the frameworks' routes and models) and then allocates only per request. Left in the
    oldest generation, that heap is traversed by every full collection: one full collection took
    up to 49 ms in a worker (about once per 300 patient-views), a request that meets it waits for it.
    Frozen, it is never traversed again; what requests allocate is still collected as before.
    """
    gc.collect()
    gc.freeze()


def worker_loop(conn: Connection, handle: Callable[[Any], Any], ready: dict[str, Any]) -> None:
    """Announce readiness, then answer tasks until the server closes the pipe (EOF).

    The heap is settled (`settle_heap`) before the first task and again after it: the first task's
    lazy imports and caches are start-up too.
    """
    try:
        settle_heap()
        conn.send(("ready", {**ready, "pid": os.getpid()}))
        conn.send(handle(conn.recv()))
        settle_heap()
        while True:
            conn.send(handle(conn.recv()))
    except (EOFError, OSError):  # the server closed the pipe (stopping) or is gone
        return
