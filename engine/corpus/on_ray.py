"""The corpus's batches on a Ray cluster: actors that each load the model once and run `run.run_batch`, the
same function the server process runs, so the reduced arrays are the same.

The address is Ray's: "auto" (a cluster started on this machine with `ray start`), "host:port" (its head) or
"ray://host:port" (Ray Client). The engine's own code is shipped to the workers with the job (`py_modules`), so
they run exactly the server's version; the model is loaded on each worker by name, with the server's loading
policy, so each node needs the project's environment (the models' packages and the weight cache).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from ..errors import EngineError, RunCancelled
from .run import BatchResult, run_batch

_lock = threading.Lock()
_connected: list[str] = []  # the address this process is connected to


class _Worker:
    """One model per actor, loaded once; it runs batch after batch."""

    def __init__(self, model_name: str, load_options: dict):
        import ray
        import torch

        import engine

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        torch.set_num_threads(max(1, int(cpus)))
        self.model = engine.load(model_name, **load_options)

    def run(self, texts, token_ids, causal: bool, stats: bool, qk_head) -> BatchResult:
        return run_batch(self.model, texts, token_ids, causal, stats, qk_head)


def connect(address: str) -> None:
    """Connect this process to the cluster at `address` once (a later, different address is refused)."""
    try:
        import ray
    except ImportError:
        raise EngineError("ATTN_EXPLORER_RAY_ADDRESS is set but Ray is not installed (pip install ray).") from None
    import engine

    with _lock:
        if _connected:
            if _connected[0] != address:
                raise EngineError(f"this process is already connected to the Ray cluster at {_connected[0]}.")
            return
        try:
            ray.init(address=address, runtime_env={"py_modules": [engine]}, log_to_driver=False,
                     logging_level="WARNING", configure_logging=False)
        except Exception as err:  # noqa: BLE001 - Ray raises many kinds; the visitor gets one message
            raise EngineError(f"could not connect to the Ray cluster at {address!r}: {err}") from None
        _connected.append(address)


def disconnect() -> None:
    """Leave the cluster (tests; a server stays connected)."""
    import ray

    with _lock:
        if _connected:
            ray.shutdown()
            _connected.clear()


def run_on_ray(address: str, model_name: str, load_options: dict, jobs: Sequence[tuple[list[int], list]],
               causal: bool, stats: bool, qk_head: tuple[int, int] | None,
               progress: Callable[[int, int], None] | None, cancel: Callable[[], bool] | None,
               n_workers: int | None = None, in_flight: int = 2) -> list[BatchResult]:
    """Every job (texts, their token ids) run by actors on the cluster, at most `in_flight` batches queued per
    actor; one actor per CPU of the cluster unless n_workers says. Results in the jobs' order."""
    import ray

    connect(address)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    n = max(1, min(n_workers or cpus, cpus, len(jobs)))
    worker = ray.remote(num_cpus=1)(_Worker)
    actors = [worker.remote(model_name, load_options) for _ in range(n)]
    total = sum(len(texts) for texts, _ in jobs)
    results: list[BatchResult | None] = [None] * len(jobs)
    pending: dict = {}  # future -> (job index, actor)
    queue = list(range(len(jobs)))
    done = 0
    try:
        for actor in actors:
            for _ in range(in_flight):
                if queue:
                    index = queue.pop(0)
                    pending[actor.run.remote(*jobs[index], causal, stats, qk_head)] = (index, actor)
        while pending:
            if cancel is not None and cancel():
                raise RunCancelled(f"the corpus run was cancelled after {done:,} of {total:,} texts.")
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.25)
            for future in ready:
                index, actor = pending.pop(future)
                try:
                    results[index] = ray.get(future)
                except ray.exceptions.RayError as err:
                    raise EngineError(f"a Ray worker failed: {_first_line(err)}") from None
                done += len(jobs[index][0])
                if progress is not None:
                    progress(done, total)
                if queue:
                    nxt = queue.pop(0)
                    pending[actor.run.remote(*jobs[nxt], causal, stats, qk_head)] = (nxt, actor)
    finally:
        for future in pending:
            ray.cancel(future)
        for actor in actors:
            ray.kill(actor)  # each worker's model goes with it
    return results  # type: ignore[return-value]


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__
