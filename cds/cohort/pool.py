"""Worker processes for cohort runs: start them, feed them, collect their results in order, stop them.

Processes, not threads: the durable-rules C core never releases the GIL. This is a
small pool of its own rather than concurrent.futures' ProcessPoolExecutor, whose
management thread and result queue made an aborted run hang at interpreter exit
(a worker terminated while writing a result left the exit handler waiting on the
pipe) and which reports a dead worker as a bare BrokenProcessPool. Here:

* Start: workers are forked on Linux (they inherit the parent's compiled rule sets)
  and spawned elsewhere (macOS forks unsafely; each spawned worker builds its rule
  sets once, in `initializer`). Signals are blocked while forking, so that a Ctrl-C
  at that moment cannot kill a half-started worker.
* A worker never outlives the parent: on Linux it asks the kernel for SIGKILL when
  the parent dies (prctl PR_SET_PDEATHSIG) and checks, after asking, that the parent
  is still the one that started it; everywhere it checks the parent's PID every
  second while it waits for work, and a write to a parent that is gone fails. Its
  standard input and output are /dev/null, so that ``cds batch | consumer`` sees
  the end of its input as soon as the parent exits. SIGTERM kills it (the default),
  SIGINT and SIGHUP are ignored: the parent, which gets them too from the terminal,
  decides.
* The parent never blocks on a worker: each worker has its own pair of pipes, both
  non-blocking on the parent's side, and one selector waits for results, for room to
  send tasks and for the workers' exit. A worker that exits while the run goes on
  (killed by the out-of-memory killer, a crash in the C core) raises `WorkerLost` at once.
* Stop: at the normal end each worker reads the end of its task pipe and exits;
  on any abort (an exception, a signal, the consumer closing the generator early)
  every worker is killed (SIGKILL: its results are not wanted) and reaped, which
  takes milliseconds. Nothing is left for the interpreter's exit to wait on.

Messages are length-prefixed pickles between a parent and the children it started.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import pickle
import select
import selectors
import signal
import struct
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from cds.errors import EXIT_OK, WorkerFailed, WorkerLost

IN_FLIGHT_PER_JOB = 4  # tasks in flight (sent, running or waiting to be taken in order) per worker
QUEUED_PER_WORKER = 2  # tasks sent to one worker at a time: one running, one waiting in its pipe
LIVENESS_INTERVAL = 1.0  # seconds between a waiting worker's checks that its parent is alive
STOP_TIMEOUT = 10.0  # seconds a worker has to exit after the end of its tasks before it is killed
MAX_MESSAGE = 1 << 30  # a result larger than this is a broken worker, not a result

_HEADER = struct.Struct("<Q")
_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PIPE_BYTES = 1 << 20  # the widest pipe buffer asked for on Linux (F_SETPIPE_SZ; pipe-max-size is 1 MiB by default)
PIPE_BUDGET_SHARE = 4  # a pool's pipes are widened only while all of them fit in this fraction (1/4) of the user's pipe budget
DEFAULT_PIPE_PAGES = 16  # a new pipe's buffer (64 KiB with 4 KiB pages)


def start_method() -> str:
    """fork on Linux only (elsewhere, notably macOS, fork is unsafe with system libraries): spawn."""
    return "fork" if sys.platform.startswith("linux") else "spawn"


def pipe_bytes(jobs: int, max_size: int, soft_pages: int, page: int) -> int:
    """The buffer to give each of a pool's ``2 * jobs`` pipes: PIPE_BYTES, or less so that it is at most
    `max_size` (/proc/sys/fs/pipe-max-size) and all of them fit in 1/PIPE_BUDGET_SHARE of the user's budget
    (`soft_pages`, /proc/sys/fs/pipe-user-pages-soft; 0: no budget); 0 to leave the default (DEFAULT_PIPE_PAGES
    pages: so many pipes that even the default takes more than that share, from ``-j 129`` at Linux's defaults,
    keep it, and the share is then exceeded by the default pipes alone).

    Past the budget, every new pipe of the user, in any process (a shell pipeline, another run), gets a page or
    two (kernel-dependent) instead of 16 and F_SETPIPE_SZ fails; above pipe-max-size it fails for a user without
    CAP_SYS_RESOURCE.
    A power of two: the kernel rounds a size up to one, so what is counted here is what the pipes take."""
    size = min(PIPE_BYTES, max_size)
    if soft_pages:
        size = min(size, soft_pages * page // PIPE_BUDGET_SHARE // (2 * max(jobs, 1)))
    size = 1 << (size.bit_length() - 1) if size > 0 else 0
    return size if size > DEFAULT_PIPE_PAGES * page else 0


def _pipe_limits() -> tuple[int, int, int] | None:
    """(pipe-max-size, pipe-user-pages-soft, the page size) of this Linux system, None where they cannot be read."""
    try:
        max_size = int(Path("/proc/sys/fs/pipe-max-size").read_text())
        soft = int(Path("/proc/sys/fs/pipe-user-pages-soft").read_text())
        return max_size, soft, os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def pipe_size_for(jobs: int) -> int:
    """`pipe_bytes` for a pool of `jobs` workers on this system (0, the default size, off Linux or without /proc)."""
    if not sys.platform.startswith("linux"):
        return 0
    limits = _pipe_limits()
    return pipe_bytes(jobs, *limits) if limits is not None else 0


def _widen(fd: int, size: int) -> None:
    """Give a pipe a buffer of `size` bytes (`pipe_size_for`; 0: leave it), best effort: the default 64 KiB works,
    only slower.

    A task of 128 profiles is about 130 KB and its result about 80 KB: through a 64 KiB pipe each went in
    three or more writes, each waking the other side, and the worker blocked on its result until the
    parent had read the first part."""
    if size:
        import fcntl

        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)


# --------------------------------------------------------------------------- in the worker


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(EXIT_OK)  # nothing to report: the parent that would read it is gone


def _read_exact(fd: int, n: int, parent_pid: int) -> bytes | None:
    """n bytes from the task pipe, or None at its end; exits if the parent is gone while waiting."""
    buf = bytearray()
    while len(buf) < n:
        ready, _, _ = select.select([fd], [], [], LIVENESS_INTERVAL)
        if not ready:
            if os.getppid() != parent_pid:
                os._exit(EXIT_OK)  # nothing to report: the parent that would read it is gone
            continue
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _portable(exc: BaseException) -> BaseException:
    """The exception itself if it can be sent to the parent, else a WorkerFailed saying what it was."""
    try:
        pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own bytes; an exception class may not rebuild
        return exc
    except Exception:  # noqa: BLE001 - any pickling failure
        return WorkerFailed(f"internal error in a worker process ({type(exc).__name__}: {exc})")


def _worker_main(
    tasks: Any,
    results: Any,
    parent_pid: int,
    fn: Callable[[Any], Any],
    initializer: Callable[..., None] | None,
    initargs: tuple[Any, ...],
    inherited: list[int],
) -> None:
    _die_with_parent(parent_pid)
    for fd in inherited:  # the parent's ends of the pipes, this worker's and the others' (fork copies them)
        with contextlib.suppress(OSError):
            os.close(fd)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
    if initializer is not None:
        initializer(*initargs)
    rfd, wfd = tasks.fileno(), results.fileno()
    while True:
        header = _read_exact(rfd, _HEADER.size, parent_pid)
        if header is None:
            break
        body = _read_exact(rfd, _HEADER.unpack(header)[0], parent_pid)
        if body is None:
            break
        seq, task = pickle.loads(body)  # noqa: S301 - from the parent that started this process
        try:
            message = (seq, True, fn(task))
        except Exception as exc:  # noqa: BLE001 - sent to the parent, which raises it
            message = (seq, False, _portable(exc))
        data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        _write_all(wfd, _HEADER.pack(len(data)) + data)


# --------------------------------------------------------------------------- in the parent


class _Worker:
    def __init__(self, process: Any, tasks: Any, results: Any):
        self.process = process
        self.tasks, self.results = tasks, results  # the parent's ends (multiprocessing Connections)
        self.outbox = bytearray()  # what a full task pipe did not take yet
        # the result being read: its header, then its body, each read into place (no copy, no 1 MiB read buffer)
        self.header = bytearray(_HEADER.size)
        self.body: bytearray | None = None
        self.got = 0  # bytes of the header, or of the body, read so far
        self.assigned: deque[int] = deque()

    def __repr__(self) -> str:
        return f"<worker {self.process.pid}>"


class WorkerPool:
    """`jobs` worker processes running `fn`; `map_ordered` yields the results in task order.

    Use as a context manager (or call `close`/`abort`): leaving it by an exception kills the workers.
    """

    def __init__(
        self,
        fn: Callable[[Any], Any],
        jobs: int,
        initializer: Callable[..., None] | None = None,
        initargs: tuple[Any, ...] = (),
        method: str | None = None,
    ):
        self.fn = fn
        self.jobs = jobs
        self.workers: list[_Worker] = []
        self.selector = selectors.DefaultSelector()
        self.closed = False
        method = method or start_method()
        ctx: Any = multiprocessing.get_context(method)
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            inherited: list[int] = []
            pipe_size = pipe_size_for(jobs)
            for i in range(jobs):
                task_r, task_w = ctx.Pipe(duplex=False)
                result_r, result_w = ctx.Pipe(duplex=False)
                _widen(task_w.fileno(), pipe_size)
                _widen(result_w.fileno(), pipe_size)
                # a forked worker closes the parent's ends of every pipe, its own included: holding the
                # write end of its own task pipe, it would never see the end of its tasks (and would be
                # killed after STOP_TIMEOUT instead of exiting)
                own = [task_w.fileno(), result_r.fileno()]
                process = ctx.Process(
                    target=_worker_main,
                    args=(task_r, result_w, os.getpid(), fn, initializer, initargs, inherited + own if method == "fork" else []),
                    name=f"cds-worker-{i + 1}",
                    daemon=True,
                )
                worker = _Worker(process, task_w, result_r)
                self.workers.append(worker)
                try:
                    process.start()
                finally:
                    task_r.close()
                    result_w.close()
                os.set_blocking(task_w.fileno(), False)
                os.set_blocking(result_r.fileno(), False)
                inherited += [task_w.fileno(), result_r.fileno()]
                self.selector.register(result_r.fileno(), selectors.EVENT_READ, ("result", worker))
                self.selector.register(process.sentinel, selectors.EVENT_READ, ("exit", worker))
        except BaseException:
            self.abort()
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
            raise
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)  # a signal that came meanwhile is raised here
        except BaseException:
            self.abort()
            raise

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self.workers]

    # ----------------------------------------------------------------- feeding and collecting

    def map_ordered(self, tasks: Iterable[Any]) -> Iterator[Any]:
        """fn over tasks; results in task order, at most jobs * IN_FLIGHT_PER_JOB tasks in flight.

        Tasks are taken from the iterable as room frees up (never the whole input at once).
        An exception raised by fn in a worker is raised here; a worker that dies raises WorkerLost.
        """
        it = iter(tasks)
        limit = self.jobs * IN_FLIGHT_PER_JOB
        exhausted = False
        sent = taken = 0
        done: dict[int, Any] = {}
        while True:
            while not exhausted and sent - taken < limit:
                worker = min(self.workers, key=lambda w: len(w.assigned))
                if len(worker.assigned) >= QUEUED_PER_WORKER:
                    break
                try:
                    task = next(it)
                except StopIteration:
                    exhausted = True
                    break
                self._send(worker, sent, task)
                sent += 1
            if taken in done:
                yield done.pop(taken)
                taken += 1
                continue
            if exhausted and taken == sent:
                return
            self._wait(done)

    def _send(self, worker: _Worker, seq: int, task: Any) -> None:
        data = pickle.dumps((seq, task), pickle.HIGHEST_PROTOCOL)
        header = _HEADER.pack(len(data))
        worker.assigned.append(seq)
        if not worker.outbox:  # the pipe has room (usually): header and task go in one write, without a copy
            try:
                sent = os.writev(worker.tasks.fileno(), [header, data])
            except BlockingIOError:
                sent = 0
            except OSError:  # the worker is gone (EPIPE): its exit is reported by the selector
                return
            if sent == len(header) + len(data):
                return
            if sent < len(header):
                worker.outbox += header[sent:]
                sent = len(header)
            worker.outbox += memoryview(data)[sent - len(header) :]
        else:
            worker.outbox += header
            worker.outbox += data
        self._flush(worker)

    def _flush(self, worker: _Worker) -> None:
        fd = worker.tasks.fileno()
        try:
            while worker.outbox:
                n = os.write(fd, worker.outbox)
                del worker.outbox[:n]
        except BlockingIOError:
            pass
        except OSError:  # the worker is gone (EPIPE): its exit is reported by the selector
            worker.outbox.clear()
        want = selectors.EVENT_WRITE if worker.outbox else 0
        key = self.selector.get_map().get(fd)
        if want and key is None:
            self.selector.register(fd, want, ("task", worker))
        elif not want and key is not None:
            self.selector.unregister(fd)

    def _wait(self, done: dict[int, Any]) -> None:
        exited = []
        for key, _ in self.selector.select():
            kind, worker = key.data
            if kind == "task":
                self._flush(worker)
            elif kind == "result":
                self._receive(worker, done)
            else:
                exited.append(worker)
        for worker in exited:
            self._receive(worker, done)  # whatever it sent before it died
            raise self._lost(worker)

    def _receive(self, worker: _Worker, done: dict[int, Any]) -> None:
        """Read what the worker's result pipe holds: each message's header, then its body, into place."""
        fd = worker.results.fileno()
        while True:
            target = worker.header if worker.body is None else worker.body
            try:
                n = os.readv(fd, [memoryview(target)[worker.got :]])
            except BlockingIOError:
                return
            except OSError:
                n = 0
            if not n:
                raise self._lost(worker)
            worker.got += n
            if worker.got < len(target):
                continue
            worker.got = 0
            if worker.body is None:
                (size,) = _HEADER.unpack(target)
                if not 0 < size <= MAX_MESSAGE:
                    raise self._lost(worker)
                worker.body = bytearray(size)
                continue
            worker.body = None
            seq, ok, value = pickle.loads(target)  # noqa: S301 - our worker
            worker.assigned.remove(seq)
            if not ok:
                raise value
            done[seq] = value

    def _lost(self, worker: _Worker) -> WorkerLost:
        # its pipes (and its sentinel) close as the worker dies, a moment before the process can be
        # reaped: wait for that (bounded) so that the message can say how it died
        worker.process.join(STOP_TIMEOUT)
        code = worker.process.exitcode
        how = (
            f"killed by {signal.Signals(-code).name}"
            if code is not None and code < 0 and -code in signal.valid_signals()
            else f"exit status {code}"
            if code is not None
            else "its pipe closed"
        )
        return WorkerLost(
            f"a worker process died ({how}; e.g. killed when out of memory, or a crash); "
            "the run was stopped and no output file was written"
        )

    # ----------------------------------------------------------------- stopping

    def close(self) -> None:
        """The normal end: every worker reads the end of its tasks and exits (killed if it takes STOP_TIMEOUT)."""
        if self.closed:
            return
        for w in self.workers:
            with contextlib.suppress(OSError):
                w.tasks.close()
        for w in self.workers:
            w.process.join(STOP_TIMEOUT)
        self.abort()  # kills whatever did not exit, reaps, releases the pipes

    def abort(self) -> None:
        """Kill every worker now (results not wanted), reap them and release the pipes. Never raises."""
        if self.closed:
            return
        self.closed = True
        for w in self.workers:
            if w.process.pid is not None and w.process.exitcode is None:
                with contextlib.suppress(OSError):
                    os.kill(w.process.pid, signal.SIGKILL)
        for w in self.workers:
            if w.process.pid is not None:
                w.process.join(STOP_TIMEOUT)  # SIGKILL: prompt (the bound is for a wedged kernel)
            for conn in (w.tasks, w.results):
                with contextlib.suppress(OSError):
                    conn.close()
            with contextlib.suppress(ValueError):
                w.process.close()
        with contextlib.suppress(Exception):
            self.selector.close()
