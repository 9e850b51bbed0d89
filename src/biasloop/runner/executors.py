"""Executors: where the independent runs of a sweep execute.

An executor gets a picklable ``work(unit) -> outcome`` function and the units to
run. It calls ``on_start(unit)`` when a unit is handed to a worker and
``on_done(unit, outcome, lost)`` when it ends: ``outcome`` is what ``work``
returned, or None with ``lost`` saying why the worker died without answering.
``work`` itself never raises for a failed run, so one failure never stops the
rest. Executors register by name in :data:`EXECUTORS`:

- ``local``: this machine; one run after another in this process, or
  ``sweep.max_parallel`` worker processes, each run in a fresh process;
- ``ray``: a Ray cluster (``sweep.address``) or a Ray instance started here, each
  run a Ray task reserving ``sweep.resources_per_run``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from biasloop.config.sweep import SweepConfig
from biasloop.errors import BiasloopError, ConfigError, MissingDependencyError
from biasloop.registry import Registry

log = logging.getLogger("biasloop.sweep")

Work = Callable[[Any], Any]
OnStart = Callable[[Any], None]
OnDone = Callable[[Any, Any, "str | None"], None]


@dataclass(frozen=True, kw_only=True)
class Executor:
    """``session(settings)`` gets ready (connects, checks) before the sweep writes anything;
    ``run(work, units, settings=, on_start=, on_done=)`` executes units inside it."""

    run: Callable[..., None]
    session: Callable[[SweepConfig], AbstractContextManager[None]]
    summary: str = ""  # one line, shown by `biasloop list`


EXECUTORS: Registry[Executor] = Registry("executor", field="--executor")


def get_executor(settings: SweepConfig) -> Executor:
    """The executor ``settings.executor`` names; an unknown name is an error naming the field."""
    try:
        executor = EXECUTORS.get(settings.executor)
    except ConfigError:
        raise ConfigError(
            f"sweep.executor = {settings.executor!r}: unknown executor; valid: "
            f"{', '.join(EXECUTORS.names())}"
        ) from None
    return executor


# ---------------------------------------------------------------- local
def _local_session(settings: SweepConfig) -> AbstractContextManager[None]:
    """Nothing to connect to: the local executor needs only this machine."""
    return contextlib.nullcontext()


def _die_with_parent(parent_pid: int) -> None:
    """End this worker when the sweep process dies (even by SIGKILL), so no orphan keeps writing."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
            if os.getppid() != parent_pid:  # the parent died before prctl took effect
                os._exit(1)
            return

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _child(work: Work, unit: Any, connection: Any, parent_pid: int) -> None:
    """Entry point of a local worker process: run one unit and send back its outcome."""
    _die_with_parent(parent_pid)
    outcome = work(unit)
    connection.send(outcome)
    connection.close()


def _run_local(work: Work, units: Sequence[Any], *, settings: SweepConfig, on_start: OnStart,
               on_done: OnDone) -> None:
    """One run after another in this process, or ``max_parallel`` worker processes."""
    parallel = settings.max_parallel or 1
    if parallel == 1:
        for unit in units:
            on_start(unit)
            on_done(unit, work(unit), None)
        return
    _run_processes(work, units, parallel=parallel, on_start=on_start, on_done=on_done)


def _run_processes(work: Work, units: Sequence[Any], *, parallel: int, on_start: OnStart,
                   on_done: OnDone) -> None:
    """Up to ``parallel`` runs at once, each in its own fresh (spawned) process.

    A process per run isolates runs: a crash or out-of-memory kill loses only
    that run, and no torch or CUDA state leaks from one run into the next.
    """
    import multiprocessing
    from multiprocessing.connection import wait

    context = multiprocessing.get_context("spawn")  # fork after torch threads start can hang
    pending = list(units)
    running: dict[int, tuple[Any, Any, Any]] = {}  # sentinel -> (process, unit, connection)
    try:
        while pending or running:
            while pending and len(running) < parallel:
                unit = pending.pop(0)
                receive, send = context.Pipe(duplex=False)
                process = context.Process(target=_child, args=(work, unit, send, os.getpid()),
                                          daemon=True)
                process.start()
                send.close()
                running[process.sentinel] = (process, unit, receive)
                on_start(unit)
            for sentinel in wait(list(running)):
                process, unit, receive = running.pop(sentinel)
                outcome = None
                with contextlib.suppress(EOFError, OSError):  # died without sending
                    outcome = receive.recv() if receive.poll() else None
                receive.close()
                process.join()
                lost = None if outcome is not None else (
                    f"worker process died (exit code {process.exitcode}) without a result")
                on_done(unit, outcome, lost)
    finally:
        for process, _, receive in running.values():  # interrupted: stop the rest
            process.terminate()
            process.join(timeout=10)
            receive.close()


EXECUTORS.register("local")(
    Executor(run=_run_local, session=_local_session, summary="Runs one after another here, or in `max_parallel` worker processes.")
)


# ---------------------------------------------------------------- ray
def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingDependencyError(
            "sweep.executor = 'ray' needs the ray package; install it with "
            "pip install 'ray[default]'"
        ) from None
    return ray


def _ray_options(settings: SweepConfig) -> dict[str, Any]:
    resources = settings.resources_per_run
    options: dict[str, Any] = {"num_cpus": resources.cpus, "num_gpus": resources.gpus,
                               "max_retries": 0}  # a rerun of the sweep resumes a lost run
    if resources.memory_gb is not None:
        options["memory"] = int(resources.memory_gb * 1024**3)
    return options


def _check_cluster_fits(ray: Any, settings: SweepConfig, *, started_here: bool) -> None:
    """A run that no node can hold would wait forever: say so before submitting it."""
    resources = settings.resources_per_run
    total = ray.cluster_resources()
    for key, field, wanted in (("CPU", "cpus", resources.cpus), ("GPU", "gpus", resources.gpus)):
        have = float(total.get(key, 0.0))
        if wanted > have:
            message = (f"sweep.resources_per_run.{field} = {wanted:g}, but the Ray cluster has "
                       f"{have:g} {key}s")
            if started_here:
                raise ConfigError(f"{message}; lower it or connect to a bigger cluster "
                                  "with sweep.address")
            log.warning("%s now; runs wait until nodes with enough join", message)


def _probe(address: str) -> None:
    """Fail in seconds, not minutes, when nothing listens at ``HOST:PORT``."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as err:
        raise BiasloopError(
            f"sweep.address = {address!r}: nothing answers at {host}:{port} "
            f"({err.strerror or err}); start the cluster with `ray start --head` or fix the address"
        ) from None


def _init_ray(ray: Any, settings: SweepConfig) -> None:
    """Connect to ``settings.address``, or start a Ray instance here; one-line errors."""
    try:
        if settings.address:
            _probe(settings.address)
            ray.init(address=settings.address, log_to_driver=False)
        else:
            ray.init(include_dashboard=False, log_to_driver=False)
    except BiasloopError:
        raise
    except Exception as err:  # noqa: BLE001 - Ray raises many kinds, with tracebacks inside
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        telling = [line for line in lines if "Error" in line] or lines or [type(err).__name__]
        what = (f"cannot connect to the Ray cluster at {settings.address!r}" if settings.address
                else "cannot start a local Ray instance")
        raise BiasloopError(
            f"sweep.address = {settings.address!r}: {what} ({telling[-1][:300]})"
        ) from None


@contextlib.contextmanager
def _ray_session(settings: SweepConfig) -> Iterator[None]:
    """Connect (or start Ray) before the sweep writes anything; disconnect at the end."""
    ray = _import_ray()
    connected_here = not ray.is_initialized()
    if connected_here:
        _init_ray(ray, settings)
    else:
        log.info("using the Ray connection already open in this process")
    try:
        _check_cluster_fits(ray, settings, started_here=connected_here and not settings.address)
        yield
    finally:
        if connected_here:
            ray.shutdown()  # a cluster we connected to keeps running; one we started stops


def _run_ray(work: Work, units: Sequence[Any], *, settings: SweepConfig, on_start: OnStart,
             on_done: OnDone) -> None:
    """Each unit a Ray task reserving ``settings.resources_per_run`` (inside the session)."""
    ray = _import_ray()
    task = ray.remote(work).options(**_ray_options(settings))
    limit = settings.max_parallel or len(units)
    pending = list(units)
    in_flight: dict[Any, Any] = {}
    while pending or in_flight:
        while pending and len(in_flight) < limit:
            unit = pending.pop(0)
            in_flight[task.remote(unit)] = unit
            on_start(unit)
        ready, _ = ray.wait(list(in_flight), num_returns=1)
        for ref in ready:
            unit = in_flight.pop(ref)
            try:
                outcome, lost = ray.get(ref), None
            except ray.exceptions.RayError as err:
                first = (str(err).strip().splitlines() or [""])[0][:300]
                outcome, lost = None, f"Ray lost the run ({type(err).__name__}: {first})"
            on_done(unit, outcome, lost)


EXECUTORS.register("ray")(
    Executor(run=_run_ray, session=_ray_session, summary="Runs as Ray tasks on a local or remote cluster.")
)
