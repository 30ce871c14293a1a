"""Where stage jobs run: a local process pool, or Ray tasks on a local or remote Ray cluster.

Both give a `submit(fn, *args) -> concurrent.futures.Future`, so the pipeline schedules its stages the
same way on one machine or many. With Ray, every worker must see the run directory at the same path
(a shared filesystem on a cluster; on one machine it simply is); stage outputs are written there by the
workers and gathered by the report as for a local run. Ray is an optional extra (`pip install
'simreal[ray]'`); asking for it without it installed is a one-line error.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import torch

from simreal.schema import ConfigError

Submit = Callable[..., "Future[Any]"]
log = logging.getLogger("simreal")


def init_worker(die_with_parent: bool = True) -> None:
    """Worker set-up: logging, one torch thread, and (local pools) death with the parent process, so
    no orphan keeps writing into a run directory after the run was killed."""
    if die_with_parent and sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s [%(process)d] %(message)s",
        datefmt="%H:%M:%S",
    )
    log.setLevel(logging.INFO)
    torch.set_num_threads(1)


@contextlib.contextmanager
def local_pool(workers: int) -> Iterator[Submit]:
    """`workers` spawned processes on this machine."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=spawn, initializer=init_worker) as pool:
        yield pool.submit


def _in_ray_worker(fn: Callable[..., Any], paths: list[str], *args: Any) -> Any:
    """A stage in a Ray worker: the driver's import path first, so the user modules a task names (and
    `ensure` re-imports) resolve there as they did in the driver."""
    sys.path[:0] = [p for p in paths if p not in sys.path]
    init_worker(die_with_parent=False)
    return fn(*args)


@contextlib.contextmanager
def ray_pool(workers: int, address: str | None) -> Iterator[Submit]:
    """Ray tasks (one CPU each): a local Ray instance with `workers` CPUs, or the cluster at `address`."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray: Ray is not installed (pip install 'simreal[ray]')") from None
    started = not ray.is_initialized()
    if started:
        if address is None:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    task = ray.remote(num_cpus=1, max_retries=0)(_in_ray_worker)

    def submit(fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = task.remote(fn, list(sys.path), *args).future()
        return future

    try:
        yield submit
    finally:
        if started:
            ray.shutdown()


def executor(backend: str, workers: int, address: str | None) -> contextlib.AbstractContextManager[Submit]:
    """The pool for `backend` ('local' or 'ray')."""
    if backend == "local":
        if address is not None:
            raise ConfigError("--address: only with --backend ray")
        return local_pool(workers)
    if backend == "ray":
        return ray_pool(workers, address)
    raise ConfigError(f"--backend: unknown backend {backend!r} (allowed: local, ray)")
