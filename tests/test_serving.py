"""The server's shared runs (engine.serving): one run per key in flight, a memory budget with a first-come
queue, cached traces counted and evicted first, abandoned runs stopped and resumed, per-session fairness, and
memory estimates that cover what a run really uses."""

from __future__ import annotations

import ctypes
import gc
import itertools
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import torch

import engine
from engine.serving.cache import RunCache, Waiting
from engine.serving.memory import run_bytes, trace_bytes

MB = 1 << 20
_ids = itertools.count(1)


class FakeTrace:
    """Stands for a trace of a given size (the cache only asks a trace for its storages)."""

    def __init__(self, nbytes: int):
        self.size, self.id = nbytes, next(_ids)

    def storages(self):
        yield self.id, self.size


def slow(result, seconds: float = 0.3, log: list | None = None):
    """A compute that takes `seconds`, records its start and end, and honours cancel between steps."""
    def compute(cancel, prefix):
        start = time.monotonic()
        for _ in range(int(seconds / 0.02)):
            if cancel():
                raise engine.RunCancelled("stopped")
            time.sleep(0.02)
        if log is not None:
            log.append((start, time.monotonic()))
        return result
    return compute


def test_concurrent_requests_for_one_key_run_once():
    cache = RunCache(budget_bytes=100 * MB)
    calls = []
    trace = FakeTrace(MB)

    def compute(cancel, prefix):
        calls.append(1)
        time.sleep(0.5)
        return trace

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: cache.get("same text", compute, 2 * MB), range(8)))
    assert len(calls) == 1 and cache.runs_started == 1
    assert all(r is trace for r in results)
    assert cache.get("same text", compute, 2 * MB) is trace and len(calls) == 1  # now a cache hit


def test_a_run_larger_than_the_budget_is_refused_with_the_limit():
    cache = RunCache(budget_bytes=300 * MB)
    with pytest.raises(engine.BudgetExceeded, match=r"about 1,024 MB.*budget for runs \(300 MB"):
        cache.get("huge", slow(FakeTrace(MB)), 1024 * MB)
    assert cache.runs_started == 0


def test_runs_that_do_not_fit_wait_in_a_first_come_queue():
    cache = RunCache(budget_bytes=100 * MB, poll_s=0.02)
    log: list[tuple[float, float]] = []
    seen: dict[str, list[Waiting]] = {name: [] for name in "abc"}

    def request(name: str):
        return cache.get(name, slow(FakeTrace(MB), 0.3, log), 60 * MB, on_wait=seen[name].append)

    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(request, name) for name in "abc"]
        time.sleep(0.1)
        assert cache.status().queued == 2 and cache.status().running == 1
        for f in futures:
            f.result()
    spans = sorted(log)
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))  # one at a time
    positions = [w.position for name in "abc" for w in seen[name] if w.state == "queued"]
    assert 2 in positions and 1 in positions  # visitors see their place in the queue move up
    assert cache.status().reserved_bytes == 0


def test_cached_traces_count_against_the_budget_and_are_evicted_first():
    cache = RunCache(budget_bytes=100 * MB)
    for name in ("old", "newer"):
        cache.get(name, slow(FakeTrace(40 * MB), 0.01), 45 * MB)
    assert cache.nbytes == 80 * MB and len(cache) == 2
    cache.get("big", slow(FakeTrace(30 * MB), 0.01), 50 * MB)  # needs room: the oldest trace goes
    assert "old" not in cache and "newer" in cache and "big" in cache
    assert cache.nbytes <= 100 * MB


def test_an_abandoned_run_stops_and_the_same_request_resumes_from_its_layers(minilm):
    text = "The mole dug a tunnel under the lawn, and the gardener was furious about it."
    cache = RunCache(budget_bytes=1 << 30, poll_s=0.01)
    layers_done: list[int] = []

    def compute(cancel, prefix):
        layers_done.append(len(prefix.layers) if prefix is not None else 0)

        def slow_cancel() -> bool:  # a layer every 50 ms, so the visitor can leave mid-run
            time.sleep(0.05)
            return cancel()

        return minilm.run(text, cancel=slow_cancel, reuse=prefix)

    def leave_after(seconds: float):
        def on_wait(waiting: Waiting) -> None:
            if waiting.seconds > seconds:
                raise KeyboardInterrupt("the visitor asked for something else")
        return on_wait

    with pytest.raises(KeyboardInterrupt):
        cache.get("key", compute, 64 * MB, on_wait=leave_after(0.12))
    deadline = time.monotonic() + 5
    while cache.status().running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cache.status().running == 0 and "key" not in cache  # it stopped, nothing half-done is cached
    trace = cache.get("key", compute, 64 * MB)
    assert 0 < layers_done[1] < minilm.config.n_layers  # resumed after the layers already computed
    alone = minilm.run(text)
    for name in engine.NAMES:
        for layer in range(minilm.config.n_layers):
            assert torch.equal(trace[name, layer], alone[name, layer]), (name, layer)


def test_any_result_that_names_its_storages_is_cached_counted_and_shared():
    """Sweeps, probes and corpus jobs go through the same cache: a result needs only storages() (pairs or a
    dict); storages shared between results count once."""

    class JobResult:  # e.g. a corpus job's per-text numbers, one array shared with another result
        def __init__(self, own: int, shared_id: int, shared: int):
            self.parts = {next(_ids): own, shared_id: shared}

        def storages(self) -> dict[int, int]:
            return self.parts

    cache = RunCache(budget_bytes=100 * MB, runs_per_minute=2)
    calls = []

    def job(result):
        def compute(cancel, prefix):
            calls.append(1)
            time.sleep(0.2)
            return result
        return compute

    shared = next(_ids)
    first = JobResult(10 * MB, shared, 30 * MB)
    with ThreadPoolExecutor(4) as pool:  # four visitors ask for the same job (v0 first): one computation
        asks = [pool.submit(cache.get, ("corpus", "job 1"), job(first), 50 * MB, session="v0")]
        wait_until(lambda: cache.status().running == 1)
        asks += [pool.submit(cache.get, ("corpus", "job 1"), job(first), 50 * MB, session=f"v{v}") for v in (1, 2, 3)]
        results = [ask.result(timeout=5) for ask in asks]
    assert all(r is first for r in results) and len(calls) == 1
    cache.get(("corpus", "job 2"), job(JobResult(20 * MB, shared, 30 * MB)), 50 * MB, session="v0")
    assert cache.nbytes == (10 + 20 + 30) * MB  # the shared array once
    with pytest.raises(engine.RateLimited):  # a job counts toward its visitor's cap like a run
        cache.get(("corpus", "job 3"), job(JobResult(MB, next(_ids), 0)), 2 * MB, session="v0")


def test_new_runs_per_session_are_capped_and_other_sessions_are_served():
    cache = RunCache(budget_bytes=100 * MB, runs_per_minute=3)
    for i in range(3):
        cache.get(f"text {i}", slow(FakeTrace(MB), 0.01), 2 * MB, session="visitor A")
    assert cache.get("text 0", slow(FakeTrace(MB), 0.01), 2 * MB, session="visitor A")  # a cached run: no limit
    with pytest.raises(engine.RateLimited, match="3 new runs in the last minute"):
        cache.get("text 3", slow(FakeTrace(MB), 0.01), 2 * MB, session="visitor A")
    assert cache.get("text 3", slow(FakeTrace(MB), 0.01), 2 * MB, session="visitor B")  # another visitor


def test_the_cap_forgets_sessions_without_a_new_run_in_the_last_minute(monkeypatch):
    import types

    import engine.serving.cache as cache_module

    now = [1000.0]
    monkeypatch.setattr(cache_module, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    cache = RunCache(budget_bytes=100 * MB, runs_per_minute=3)
    for visitor in range(50):  # fifty visitors one after another, a run each
        cache.get(f"text {visitor}", slow(FakeTrace(MB), 0.0), 2 * MB, session=f"visitor {visitor}")
        now[0] += 5
    assert cache.status().sessions <= 13  # only those of the last minute: closed sessions leave nothing behind
    now[0] += 61
    cache.get("one more", slow(FakeTrace(MB), 0.0), 2 * MB, session="visitor 50")
    assert cache.status().sessions == 1


def test_a_session_computes_one_run_at_a_time():
    """A visitor who leaves a run for a new one: the old run stops, and the new one starts only after."""
    cache = RunCache(budget_bytes=100 * MB, poll_s=0.01)
    log: list[tuple[str, float, float]] = []

    def compute_named(name):
        def compute(cancel, prefix):
            start = time.monotonic()
            try:
                return slow(FakeTrace(MB), 1.0)(cancel, prefix)
            finally:
                log.append((name, start, time.monotonic()))
        return compute

    def leave(waiting: Waiting) -> None:
        if waiting.seconds > 0.1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.get("first", compute_named("first"), MB, session="s", on_wait=leave)
    cache.get("second", compute_named("second"), MB, session="s")
    (first, a0, a1), (second, b0, b1) = sorted(log, key=lambda r: r[1])
    assert (first, second) == ("first", "second") and b0 >= a1 and a1 - a0 < 0.5  # stopped early, then the next


def test_a_busy_session_does_not_hold_up_the_others():
    """Visitor A has a run computing and another waiting for it; visitor B's run, queued after A's second, starts
    at once rather than after A's first run."""
    cache = RunCache(budget_bytes=100 * MB, poll_s=0.01)
    a1, a2, b1 = [], [], []
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(cache.get, "a1", slow(FakeTrace(MB), 1.0, a1), MB, session="A")
        time.sleep(0.2)
        second = pool.submit(cache.get, "a2", slow(FakeTrace(MB), 0.2, a2), MB, session="A")
        time.sleep(0.2)
        other = pool.submit(cache.get, "b1", slow(FakeTrace(MB), 0.2, b1), MB, session="B")
        for request in (first, second, other):
            request.result()
    (_, a1_end), (a2_start, _), (b1_start, _) = a1[0], a2[0], b1[0]
    assert a2_start >= a1_end  # A: one run at a time
    assert b1_start < a1_end  # B: not behind A's waiting run


# ---- admission by measured memory ---------------------------------------------------------------------------

class Memory:
    """A server's resident memory, driven by the test: `base` (the process and its models), `extra` (what no
    estimate counts: pages, sessions) and the FakeTraces alive, which leave the figure only once freed AND
    trimmed, as glibc's allocator keeps freed pages until malloc_trim."""

    def __init__(self, base: int):
        self.base, self.extra, self.models = base, 0, 0
        self.alive: weakref.WeakSet = weakref.WeakSet()
        self.held = 0
        self.trims = 0

    def trace(self, nbytes: int) -> FakeTrace:
        trace = FakeTrace(nbytes)
        self.alive.add(trace)
        self.held += nbytes  # allocated now
        return trace

    def trim(self) -> None:
        gc.collect()
        self.trims += 1
        self.held = sum(t.size for t in self.alive)

    def resident(self) -> int:
        return self.base + self.models + self.extra + self.held

    def cache(self, budget: int) -> RunCache:
        return RunCache(budget, poll_s=0.01, resident=self.resident, outside=lambda: self.models, trim=self.trim)


def make(memory: Memory, nbytes: int, gate: threading.Event | None = None, log: list | None = None, name: str = ""):
    """A compute that allocates a FakeTrace of nbytes when it starts and returns it once `gate` is set; it logs
    (name, "start") and (name, "end")."""
    def compute(cancel, prefix):
        if log is not None:
            log.append((name, "start"))
        trace = memory.trace(nbytes)
        if gate is not None:
            assert gate.wait(30)
        if log is not None:
            log.append((name, "end"))
        return trace
    return compute


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_memory_the_estimates_miss_holds_new_runs_back_until_it_is_freed():
    memory = Memory(base=1000 * MB)
    cache = memory.cache(budget=100 * MB)
    cache.get("warm", make(memory, MB), 2 * MB)  # the server's rest is measured here
    assert cache.status().rest_bytes == 1000 * MB
    log: list = []
    finish_a = threading.Event()
    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(cache.get, "a", make(memory, 20 * MB, finish_a, log, "a"), 30 * MB)
        wait_until(lambda: ("a", "start") in log)
        memory.extra = 60 * MB  # e.g. pages drawing figures: no reservation counts it
        b = pool.submit(cache.get, "b", make(memory, 20 * MB, None, log, "b"), 30 * MB)
        wait_until(lambda: cache.status().queued == 1)
        time.sleep(0.2)  # b had many looks (poll 10 ms): by the estimates it fits (1 + 30 + 30 <= 100); measured,
        assert ("b", "start") not in log  # 1 + 20 in use + 60 + 30 reserved + 30 > 100: it waits
        memory.extra = 0  # the pages are drawn
        b.result(timeout=30)
        assert log == [("a", "start"), ("b", "start"), ("b", "end")]  # b started while a still ran
        finish_a.set()
        a.result(timeout=30)
    assert cache.status().reserved_bytes == 0


def test_measured_memory_evicts_cached_results_and_trims_before_a_run_starts():
    memory = Memory(base=1000 * MB)
    cache = memory.cache(budget=100 * MB)
    for name in ("old", "newer"):
        cache.get(name, make(memory, 30 * MB), 35 * MB)
    memory.extra = 30 * MB
    trims = memory.trims
    cache.get("third", make(memory, 10 * MB), 35 * MB)  # 60 cached + 30 extra + 35 > 100: the oldest goes
    assert "old" not in cache and "newer" in cache and "third" in cache
    assert memory.trims > trims  # trimmed after evicting (and after the run)
    assert memory.resident() == 1000 * MB + 30 * MB + 40 * MB  # the evicted trace left the measurement


def test_with_nothing_in_flight_and_nothing_cached_a_run_that_fits_its_estimate_starts():
    memory = Memory(base=1000 * MB)
    cache = memory.cache(budget=100 * MB)
    cache.get("first", make(memory, 10 * MB), 30 * MB)
    memory.extra = 90 * MB  # held by sessions: waiting for runs could never free it
    assert cache.get("second", make(memory, 10 * MB), 30 * MB) is not None
    assert "first" not in cache  # evicted first, in case it was what held the memory


def test_loaded_models_sit_outside_the_budget_and_the_rest_is_the_lowest_idle_figure():
    memory = Memory(base=1000 * MB)
    cache = memory.cache(budget=100 * MB)
    cache.get("a", make(memory, 10 * MB), 30 * MB)
    memory.models = 500 * MB  # a visitor loads a second model
    cache.get("b", make(memory, 10 * MB), 70 * MB)  # 20 measured + 70 <= 100: no wait, nothing evicted
    assert "a" in cache and "b" in cache
    memory.base -= 50 * MB  # the allocator gave back what loading left behind
    cache.get("c", make(memory, 10 * MB), 30 * MB)
    assert cache.status().rest_bytes == 950 * MB  # the server at rest, models left out


def test_in_flight_runs_count_by_reservation_on_top_of_what_they_already_use():
    memory = Memory(base=1000 * MB)
    cache = memory.cache(budget=100 * MB)
    cache.get("warm", make(memory, MB), 2 * MB)
    log: list = []
    finish_a = threading.Event()
    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(cache.get, "a", make(memory, 30 * MB, finish_a, log, "a"), 40 * MB)
        wait_until(lambda: ("a", "start") in log)
        b = pool.submit(cache.get, "b", make(memory, 30 * MB, None, log, "b"), 40 * MB)
        wait_until(lambda: cache.status().queued == 1)
        time.sleep(0.2)
        # estimates: 1 + 40 + 40 <= 100; measured: 1 + 30 in use + 40 reserved + 40 > 100: b waits for a
        assert ("b", "start") not in log
        finish_a.set()
        a.result(timeout=30)
        b.result(timeout=30)
    assert log == [("a", "start"), ("a", "end"), ("b", "start"), ("b", "end")]


def test_cgroup_working_set_v1_and_v2(tmp_path):
    from engine.serving.memory import cgroup_working_set

    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.max").write_text("max\n")
    assert cgroup_working_set(v2) is None  # no limit: the process's RSS is used
    (v2 / "memory.max").write_text(f"{4 << 30}\n")
    (v2 / "memory.current").write_text(f"{3 << 30}\n")
    (v2 / "memory.stat").write_text(f"anon {2 << 30}\ninactive_file {512 << 20}\nactive_file 0\n")
    assert cgroup_working_set(v2) == (3 << 30) - (512 << 20)
    v1 = tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert cgroup_working_set(v1) is None
    (v1 / "memory" / "memory.limit_in_bytes").write_text(f"{4 << 30}\n")
    (v1 / "memory" / "memory.usage_in_bytes").write_text(f"{1 << 30}\n")
    (v1 / "memory" / "memory.stat").write_text(f"cache 0\ntotal_inactive_file {256 << 20}\n")
    assert cgroup_working_set(v1) == (1 << 30) - (256 << 20)
    assert cgroup_working_set(tmp_path / "none") is None


# ---- memory estimates against measured runs ----------------------------------------------------------------

def peak_rise(fn) -> int:
    """The largest RSS rise over the level before `fn`, sampled every 2 ms."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    process = psutil.Process()
    base = process.memory_info().rss
    peak, done = [base], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = fn()
    finally:
        done.set()
        sampler.join()
    del result
    return peak[0] - base


@pytest.mark.slow
@pytest.mark.parametrize(("fixture", "n_tokens"), [("smollm", 512), ("smollm", 1536), ("minilm", 512)])
def test_the_estimate_covers_a_measured_run(request, fixture, n_tokens):
    model = request.getfixturevalue(fixture)
    ids = model.tokenizer("The mole dug a tunnel under the garden. " * 400)["input_ids"][:n_tokens]
    model.run_ids(ids[:64])  # warm the allocator and thread pools
    trace = model.run_ids(ids)
    assert trace.nbytes() == trace_bytes(model.config, n_tokens)  # the stored tensors, exactly
    del trace
    measured = peak_rise(lambda: model.run_ids(ids))
    estimate = run_bytes(model.config, n_tokens)
    assert measured <= estimate, f"measured {measured / MB:.0f} MB > estimate {estimate / MB:.0f} MB"
    assert estimate <= 4 * measured + 64 * MB  # and not wildly above what a run takes
