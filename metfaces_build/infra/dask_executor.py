"""Run a stage's tasks on a Dask cluster with the same results as the local process pool.

`DaskExecutor.imap` has `LocalExecutor.imap`'s contract: results in task order by default
(as completed with `ordered=False`), the stage's initializer run once per worker process
before its first task (so dlib models load once per process, never per task), and task
exceptions re-raised here. Stages write their outputs in the order received, so a Dask run
gives the same files as a local one.

Workers read and write the paths in the tasks themselves: the work directory (and the model
files) must be visible at the same absolute paths on every worker, e.g. a shared
filesystem. See docs/dask.md.
"""
from __future__ import annotations

import itertools
import os
import socket
import sys
import threading
import uuid
from collections import deque
from typing import Any, Callable, Iterable, Iterator, Optional

from ..core.errors import UsageError

INSTALL_HINT = "pip install 'metfaces-build[dask]'"
CONNECT_TIMEOUT = 10.0  # seconds to reach the scheduler
WORKER_WAIT = 30.0      # seconds to wait for a first worker to join
TASKS_PER_THREAD = 4    # tasks in flight per worker thread: busy workers, bounded memory


# ---- worker side ---------------------------------------------------------------------
# Module state of each worker process: which initializers ran, and a lock that serializes
# tasks relying on the per-process state an initializer set up (dlib models are not
# thread-safe; a Dask worker may run several threads).

_INITIALIZED: set = set()
_INIT_LOCK = threading.Lock()
_RUN_LOCK = threading.Lock()


class OnWorker:
    """`fn` wrapped with a run-once-per-process `initializer` (picklable, runs on workers)."""

    def __init__(self, fn: Callable, initializer: Optional[Callable], initargs: tuple, token: str):
        self.fn = fn
        self.initializer = initializer
        self.initargs = initargs
        self.token = token

    def __call__(self, task: Any) -> Any:
        if self.initializer is None:
            return self.fn(task)
        with _INIT_LOCK:
            if self.token not in _INITIALIZED:
                try:
                    self.initializer(*self.initargs)
                except Exception as e:  # e.g. a model path that only exists on the client
                    raise UsageError(
                        f"Dask worker {socket.gethostname()} (pid {os.getpid()}): setup "
                        f"{getattr(self.initializer, '__name__', self.initializer)} failed: "
                        f"{type(e).__name__}: {e}\nworkers need the same files at the same paths "
                        "as this machine (shared filesystem; see docs/dask.md)") from None
                _INITIALIZED.add(self.token)
        with _RUN_LOCK:
            return self.fn(task)


# ---- client side ---------------------------------------------------------------------

class DaskExecutor:
    """Tasks on the Dask scheduler at `scheduler` (e.g. tcp://10.0.0.5:8786).

    Connects on construction, so a missing package or unreachable scheduler is a
    UsageError before any work starts; `imap` closes the connection when it finishes.
    """

    def __init__(self, scheduler: Optional[str], initializer: Optional[Callable] = None,
                 initargs: tuple = (), connect_timeout: float = CONNECT_TIMEOUT,
                 worker_wait: float = WORKER_WAIT):
        _client_class()  # not installed: say so before anything else
        self.scheduler = scheduler or _default_scheduler()
        if not self.scheduler:
            raise UsageError("--executor dask needs --scheduler ADDRESS (e.g. tcp://host:8786) "
                             "or $DASK_SCHEDULER_ADDRESS")
        self.initializer = initializer
        self.initargs = initargs
        self.connect_timeout = connect_timeout
        self.worker_wait = worker_wait
        self._token = uuid.uuid4().hex  # a new initializer run for each executor
        self._client = None
        self._connect()

    # -- connection --
    def _connect(self):
        if self._client is not None:
            return self._client
        Client = _client_class()
        _check_reachable(self.scheduler, self.connect_timeout)
        try:
            client = Client(self.scheduler, timeout=self.connect_timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as e:
            raise UsageError(f"cannot connect to the Dask scheduler at {self.scheduler}: {e}") from None
        try:
            client.wait_for_workers(1, timeout=self.worker_wait)
        except (TimeoutError, OSError):
            client.close()
            raise UsageError(f"the Dask scheduler at {self.scheduler} has no workers (waited "
                             f"{self.worker_wait:g} s); start some with `dask worker "
                             f"{self.scheduler} --nthreads 1`") from None
        self._client = client
        self._warn_threads(client)
        return client

    def _warn_threads(self, client) -> None:
        if self.initializer is None:
            return
        threaded = [w for w in client.scheduler_info()["workers"].values() if w["nthreads"] > 1]
        if threaded:
            print(f"note: {len(threaded)} Dask worker(s) have several threads; this stage runs "
                  "one task at a time per worker process (its models are per process). Start "
                  f"workers with `dask worker {self.scheduler} --nworkers N --nthreads 1` to "
                  "use every core.", file=sys.stderr)

    def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            client.close()

    def __enter__(self) -> "DaskExecutor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def threads(self) -> int:
        """Worker threads on the cluster now (at least 1)."""
        workers = self._connect().scheduler_info()["workers"].values()
        return max(1, sum(int(w["nthreads"]) for w in workers))

    # -- work --
    def imap(self, fn: Callable, tasks: Iterable, ordered: bool = True) -> Iterator[Any]:
        """Like `LocalExecutor.imap`: a bounded window of tasks in flight on the cluster."""
        from distributed import as_completed  # deferred: the optional [dask] extra
        client = self._connect()
        call = OnWorker(fn, self.initializer, self.initargs, self._token)
        name = getattr(fn, "__name__", "task")
        numbered = enumerate(tasks)

        def submit(i, task):
            # pure=False: never merge tasks by hash; stages write files as a side effect
            return client.submit(call, task, pure=False, key=f"{name}-{self._token[:8]}-{i}")

        first = [submit(i, t) for i, t in itertools.islice(numbered, TASKS_PER_THREAD * self.threads())]
        in_flight = list(first)
        try:
            if ordered:
                pending = deque(first)
                while pending:
                    fut = pending.popleft()
                    result = fut.result()
                    in_flight.remove(fut)
                    for i, t in itertools.islice(numbered, 1):
                        nxt = submit(i, t)
                        pending.append(nxt)
                        in_flight.append(nxt)
                    yield result
            else:
                done = as_completed(first, loop=client.loop)
                for fut in done:
                    result = fut.result()
                    in_flight.remove(fut)
                    for i, t in itertools.islice(numbered, 1):
                        nxt = submit(i, t)
                        done.add(nxt)
                        in_flight.append(nxt)
                    yield result
        finally:
            if in_flight:  # an error or an abandoned generator: stop the rest
                client.cancel(in_flight)
            self.close()


def _client_class():
    try:
        from distributed import Client  # deferred: the optional [dask] extra
    except ImportError:
        raise UsageError("--executor dask needs dask.distributed, which is not installed: "
                         f"{INSTALL_HINT}") from None
    return Client


def _default_scheduler() -> Optional[str]:
    """$DASK_SCHEDULER_ADDRESS (dask's own config key), when dask is installed."""
    try:
        import dask  # deferred: the optional [dask] extra
    except ImportError:
        return os.environ.get("DASK_SCHEDULER_ADDRESS") or None
    return dask.config.get("scheduler-address", None) or None


def _check_reachable(address: str, timeout: float) -> None:
    """Fail fast on a tcp:// address nobody listens at (distributed's own failure path
    leaves a half-built Client that complains at interpreter exit)."""
    addr = address if "://" in address else f"tcp://{address}"
    scheme, _, rest = addr.partition("://")
    if scheme != "tcp":
        return
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit():
        raise UsageError(f"--scheduler {address!r}: expected tcp://HOST:PORT (e.g. "
                         "tcp://10.0.0.5:8786)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise UsageError(f"cannot reach the Dask scheduler at {address}: {e.strerror or e}; "
                         f"is `dask scheduler` running there?") from None
