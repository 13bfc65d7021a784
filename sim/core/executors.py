"""Where simulation runs execute: one ``concurrent.futures.Executor`` interface, three kinds.

What it models: a sweep, a capacity plan or a break-even study is a bag of independent
runs, each a pure function of (experiment, replication index). They are handed to an
:class:`~concurrent.futures.Executor` and nothing else, so the results are bit-identical
whichever executor ran them (a run never sees which process it is in):

* ``local`` - a forked process pool (:func:`make_pool`), one process per core by default;
* ``--workers 1`` - :class:`SerialExecutor`, every run in the calling process (no pickling,
  easy to debug and profile);
* ``dask`` - ``distributed.Client(address).get_executor()`` for an existing scheduler (the
  ``--scheduler`` option or ``DASK_SCHEDULER_ADDRESS``), else a ``LocalCluster`` of worker
  processes bound to 127.0.0.1 only (no dashboard). dask is imported lazily; without it
  the command fails with one line suggesting ``pip install 'capsim[dask]'``.

Assumptions and guarantees:

* Workers never outlive the command. :func:`bounded_map` submits lazily with a bounded
  number of runs in flight, and :func:`open_executor` shuts the executor down with
  ``cancel_futures`` in a ``finally``; on an interrupt the local pool's workers are
  terminated at once rather than left to finish their current run. If the command is
  killed outright (SIGKILL), forked workers are killed too: each asks Linux for
  ``PR_SET_PDEATHSIG`` (via ctypes, best-effort, a no-op elsewhere). ``make_pool`` takes no
  initializer, so the request is made as the first step of every task run in the pool
  (:func:`in_worker`; it is idempotent and costs one system call per process).
* A run's arguments and result must pickle (cloudpickle for dask); the experiment is
  sent with every run, the result is the run's flat row (a small dict).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import multiprocessing as mp
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from typing import Any, Literal, TypeVar

from sim.core.errors import ConfigError

__all__ = [
    "ExecutorKind",
    "default_workers",
    "make_pool",
    "terminate_pool",
    "SerialExecutor",
    "open_executor",
    "check_executor_options",
    "bounded_map",
    "die_with_parent",
    "in_worker",
    "interrupt_at_safe_points",
    "DASK_HINT",
]

ExecutorKind = Literal["local", "dask"]
T = TypeVar("T")

DASK_HINT = "the dask executor needs dask.distributed: pip install 'capsim[dask]'"
_PR_SET_PDEATHSIG = 1
_deathsig_pid: int | None = None  # the process that already asked for PDEATHSIG


def default_workers() -> int:
    """The cores this process may run on (all of them by default)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def make_pool(workers: int) -> Executor:
    """A process pool whose workers are forked (fast start, inherit loaded modules)."""
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx)


TERMINATE_GRACE_S = 1.0  # how long an interrupted worker gets to end before SIGKILL


def terminate_pool(pool: Executor) -> None:
    """Cancel what has not started and kill the workers now."""
    # Taken before shutdown: ProcessPoolExecutor.shutdown(wait=False) drops its _processes,
    # and workers left running keep the interpreter's exit waiting until their runs end.
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.terminate()
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.join(timeout=TERMINATE_GRACE_S)
            if proc.is_alive():  # a run that does not yield to SIGTERM: its work is discarded
                proc.kill()
                proc.join()
    pool.shutdown(wait=True)


class SerialExecutor(Executor):
    """Runs each submitted call at once, in the calling thread (``--workers 1``)."""

    def __init__(self) -> None:
        self._shutdown = False
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
        future: Future[T] = Future()
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # an interrupt must still reach the caller
            if not isinstance(exc, Exception):
                raise
            future.set_exception(exc)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True


def die_with_parent(parent_pid: int | None = None) -> bool:
    """Ask Linux to SIGKILL this process when its parent dies (best-effort).

    Returns True when the request is in place. ``parent_pid``: the parent expected; if it
    is already gone (the race between fork and this call), the process kills itself.
    """
    global _deathsig_pid
    if _deathsig_pid == os.getpid():
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    _deathsig_pid = os.getpid()
    if parent_pid is not None and os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGKILL)
    return True


def in_worker(parent_pid: int, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in a pool worker that dies with ``parent_pid`` (see module doc)."""
    die_with_parent(parent_pid)
    # The fork inherits the CLI's SIGTERM-as-Ctrl-C handler; a worker told to stop stops.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return fn(*args)


class _LocalPool(Executor):
    """The forked process pool, with every task wrapped by :func:`in_worker`."""

    def __init__(self, workers: int):
        self._pool = make_pool(workers)
        self._parent_pid = os.getpid()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        if kwargs:
            raise TypeError("keyword arguments are not supported; bind them first")
        return self._pool.submit(in_worker, self._parent_pid, fn, *args)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)

    def terminate(self) -> None:
        """Kill the workers now (an interrupt): their current runs are discarded."""
        terminate_pool(self._pool)


@contextlib.contextmanager
def open_executor(kind: ExecutorKind = "local", *, workers: int | None = None,
                  scheduler: str | None = None) -> Iterator[Executor]:
    """An executor for the duration of a ``with`` block, always shut down on exit.

    ``local`` with one worker is the in-process :class:`SerialExecutor`. ``dask`` uses
    ``scheduler`` (or ``DASK_SCHEDULER_ADDRESS``) when given, else a loopback LocalCluster
    of ``workers`` single-threaded processes.
    """
    check_executor_options(kind, scheduler)
    n = max(1, int(workers or default_workers()))
    if kind == "dask":
        with _dask_executor(n, scheduler) as executor:
            yield executor
        return
    executor: Executor = SerialExecutor() if n == 1 else _LocalPool(n)
    clean = False
    try:
        yield executor
        clean = True
    finally:
        if not clean and isinstance(executor, _LocalPool):
            executor.terminate()
        else:
            executor.shutdown(wait=True, cancel_futures=True)


def check_executor_options(kind: str, scheduler: str | None) -> None:
    """A one-line error for an unknown executor or a scheduler without dask."""
    if kind not in ("local", "dask"):
        raise ConfigError(f"unknown executor '{kind}' (use local or dask)", field="--executor")
    if scheduler and kind != "dask":
        raise ConfigError("--scheduler needs --executor dask", field="--scheduler")


@contextlib.contextmanager
def _dask_executor(workers: int, scheduler: str | None) -> Iterator[Executor]:
    try:  # an optional dependency: imported only when asked for
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError(DASK_HINT, field="--executor") from None
    address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or None
    cluster = None
    try:
        if address:
            client = Client(address, timeout="10s")
        else:
            # No dashboard; the scheduler's small HTTP server (health checks) on a free
            # loopback port rather than the fixed 8787.
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address=None,
                                   scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                                   silence_logs=logging.ERROR)
            client = Client(cluster)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:  # ValueError: not an address
        if cluster is not None:
            cluster.close()
        where = address or "a local cluster"
        raise ConfigError(f"cannot reach the dask scheduler at {where}: "
                          f"{' '.join(str(exc).split())}", field="--scheduler") from None
    executor = client.get_executor(pure=False)
    try:
        yield executor
    finally:
        with contextlib.suppress(Exception):
            executor.shutdown(wait=False)
        client.close()
        if cluster is not None:
            cluster.close()


POLL_S = 0.2  # how often a wait on worker processes looks for a Ctrl-C


@contextlib.contextmanager
def interrupt_at_safe_points() -> Iterator[Callable[[], None]]:
    """While waiting on worker processes, Ctrl-C only sets a flag, and the waiting loop
    calls the yielded ``check()`` between waits of at most ``POLL_S``, which raises
    KeyboardInterrupt there.

    Why: raised asynchronously, the interrupt could land inside ``concurrent.futures``
    while it held a future's lock (``wait`` and ``as_completed`` take every pending
    future's lock); the pool's manager thread then blocked on that lock for good, and the
    process hung at exit (seen as a rare hang of the sweep's Ctrl-C test). Outside the
    main thread, or where someone else handles SIGINT, nothing changes.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield lambda: None
        return
    hit = threading.Event()

    def check() -> None:
        if hit.is_set():
            hit.clear()
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, lambda _signum, _frame: hit.set())
    try:
        yield check
    finally:
        signal.signal(signal.SIGINT, previous)
    check()  # a Ctrl-C after the last wait is not lost


def bounded_map(executor: Executor, fn: Callable[..., T], items: Iterable[Any], *,
                max_in_flight: int, args: Callable[[Any], tuple] = lambda item: (item,)
                ) -> Iterator[tuple[Any, Future[T]]]:
    """Submit ``fn(*args(item))`` lazily, at most ``max_in_flight`` at a time, and yield
    ``(item, future)`` pairs as they complete (completion order).

    If the consumer stops early or an exception (an interrupt) passes through, runs not
    yet started are cancelled; the executor itself is shut down by its owner. With
    worker processes, a Ctrl-C is raised between waits (:func:`interrupt_at_safe_points`);
    the serial executor runs in this process and is interrupted where it is.
    """
    pending = iter(items)
    in_flight: dict[Future[T], Any] = {}
    safe = (contextlib.nullcontext(lambda: None) if isinstance(executor, SerialExecutor)
            else interrupt_at_safe_points())
    try:
        with safe as check:
            while True:
                for item in pending:
                    in_flight[executor.submit(fn, *args(item))] = item
                    if len(in_flight) >= max(1, max_in_flight):
                        break
                if not in_flight:
                    return
                done: set[Future[T]] = set()
                while not done:
                    done, _ = wait(list(in_flight), timeout=POLL_S,
                                   return_when=FIRST_COMPLETED)
                    check()
                for future in done:
                    yield in_flight.pop(future), future
    finally:
        for future in in_flight:
            future.cancel()
