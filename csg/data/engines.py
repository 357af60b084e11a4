"""Where many independent jobs run: in this process, in local worker processes, or on Ray.

Used by ``csg data prepare`` (one job per video) and ``csg batch`` (one job per row). A job is a
top-level function and its argument tuple; :func:`run_jobs` yields ``(index, result)`` as jobs
finish, in completion order, with a progress bar. The job function does its own writing (each job
owns its output files), so the engines only move small arguments and small results.

* ``local`` with ``workers=1``: in this process, in order (no pickling; tests pass closures).
* ``local`` with ``workers=N``: a ``spawn`` process pool (fork is unsafe with MediaPipe/torch
  threads); the job function and arguments must pickle.
* ``ray``: one Ray task per job (``ray.remote``, ``num_cpus`` / ``num_gpus`` per task), on the
  cluster at ``address`` (``auto``, ``ray://host:10001``, or ``$RAY_ADDRESS``), else on a local
  Ray started with ``workers`` CPUs; an already initialised Ray (``ray.init`` by the caller) is
  used as it is. Every node must see the same paths (a shared file system) and the same
  installation of csg.

Ray is an optional extra (``pip install 'csg[ray]'``); asking for it without it installed is one
:class:`~csg.errors.CsgError` line.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Iterator, Sequence

from ..errors import CsgError

ENGINES = ("local", "ray")
RAY_INSTALL = "pip install 'csg[ray]'"


def require_ray():
    """The ``ray`` module, or one line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise CsgError(f"--engine ray needs Ray, which is not installed: {RAY_INSTALL} "
                       "(or use --engine local --workers N)") from None
    return ray


def check_engine(engine: str, workers: int, address: str | None) -> None:
    """Refuse impossible combinations before any work (one line each)."""
    if engine not in ENGINES:
        raise CsgError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if workers < 1:
        raise CsgError(f"--workers must be at least 1, got {workers}")
    if address is not None and engine != "ray":
        raise CsgError("--address is the Ray cluster to join; it needs --engine ray")
    if engine == "ray":
        require_ray()


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def _init_worker(threads: int) -> None:  # pragma: no cover - runs in the spawned workers
    """Share the cores: torch/OpenMP in each of N workers get cpu_count // N threads (read by torch
    when a job first imports it)."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("MKL_NUM_THREADS", str(threads))


def run_jobs(fn: Callable, args: Sequence[tuple], *, engine: str = "local", workers: int = 1,
             address: str | None = None, desc: str = "jobs", progress: bool = True,
             num_gpus: float = 0.0) -> Iterator[tuple[int, Any]]:
    """Run ``fn(*args[i])`` for every i; yield ``(i, result)`` as each finishes.

    An exception in a job is raised here (the jobs already finished keep their outputs, so a
    rerun with resume picks up where this one stopped); jobs that must not stop the others catch
    their own errors and return them.
    """
    from tqdm import tqdm

    check_engine(engine, workers, address)
    bar = tqdm(total=len(args), desc=desc, unit="job", disable=not progress)
    try:
        if not args:
            return
        if engine == "ray":
            yield from _run_ray(fn, args, workers, address, bar, num_gpus)
        elif workers == 1 or len(args) == 1:
            for i, a in enumerate(args):
                result = fn(*a)
                bar.update()
                yield i, result
        else:
            yield from _run_pool(fn, args, workers, bar)
    finally:
        bar.close()


def _run_pool(fn, args, workers, bar):
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    n = min(workers, len(args))
    pool = ProcessPoolExecutor(n, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                               initargs=(_threads_per_worker(n),))
    finished = False
    try:
        futures = {pool.submit(fn, *a): i for i, a in enumerate(args)}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in sorted(done, key=futures.get):
                result = f.result()
                bar.update()
                yield futures[f], result
        finished = True
    finally:
        if finished:
            pool.shutdown(wait=True)
        else:  # a failed job, Ctrl-C or SIGTERM: stop the others now (resume redoes them)
            for p in list((getattr(pool, "_processes", None) or {}).values()):
                p.terminate()
            pool.shutdown(wait=False, cancel_futures=True)


def _run_ray(fn, args, workers, address, bar, num_gpus):
    ray = require_ray()
    started = False
    if not ray.is_initialized():
        kwargs = dict(include_dashboard=False, log_to_driver=True)
        if address is None and not os.environ.get("RAY_ADDRESS"):
            # a new local Ray for this run with --workers CPUs ("local": not a cluster that
            # `ray start` once left on this machine, whose address file may be stale)
            address, kwargs["num_cpus"] = "local", workers
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as e:
            where = address or os.environ.get("RAY_ADDRESS")
            raise CsgError(f"cannot reach the Ray cluster at {where} ({_first_line(e)}); start it "
                           "with `ray start --head` and pass --address auto or the address it "
                           "prints") from None
        started = True
    try:
        task = ray.remote(num_cpus=1, num_gpus=num_gpus, max_retries=0)(fn)
        refs = {task.remote(*a): i for i, a in enumerate(args)}
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for r in done:
                    try:
                        result = ray.get(r)
                    except ray.exceptions.RayTaskError as e:
                        raise e.as_instanceof_cause() from None
                    bar.update()
                    yield refs[r], result
        finally:
            for r in pending:
                ray.cancel(r, force=True)
    finally:
        if started:
            ray.shutdown()
