"""RunCache: the heavy computations a server shares between its sessions, under one memory budget.

What it holds: runs (Trace), generations, and any other heavy result (patching sweeps, role probes, corpus jobs):
an entry is anything with `storages()` -> (storage id, bytes) pairs (an iterable of pairs or a dict), each
distinct storage counted once across the whole cache, as `Trace.storages` gives them. A new kind of job needs
only a key, a memory estimate and a compute(cancel, prefix) that returns such a result (prefix is a stopped
Trace run's layers, None for anything else); see `components/runs.py`, `components/sweeps.py`,
`components/probes.py`.

- Finished results are kept (least recently used out first) and count against the budget.
- One computation per key in flight (single flight): a second request for the same key waits for the first and
  shares its result.
- Every new computation reserves its estimated peak before it starts. One that does not fit waits in a
  first-come queue (finished results are evicted first to make room); one larger than the whole budget is
  refused.
- Measured memory counts too (`resident`: the server's RSS, or its cgroup's working set). The cache notes the
  server's resident bytes at rest (the lowest seen while nothing was reserved, from the end of the first
  computation on, less what was cached and what `outside()` says sits legitimately outside the budget, i.e. the
  loaded models); from then on a computation starts only when
  the measured growth over that rest (at least the cached bytes) + the reservations in flight + its own need fit
  in the budget. So whatever the estimates miss (pages' figures, sessions, the allocator's retained pages) is
  counted at every start, and the server's peak stays within rest + models + budget + what sessions allocate
  while computations run (README, "Memory budget"). With nothing in flight and nothing cached, a computation
  that fits the budget by its estimate starts anyway (waiting could not free anything it counts).
- `trim()` (glibc's malloc_trim) runs after each computation and each eviction, outside the lock, so that
  freed memory shows in the measurement.
- Computations run in their own threads; requesters wait with a callback (`on_wait`) that can show the queue
  and can give up (raise) when its visitor asks for something else. A run nobody waits for any more stops at
  its next layer, and the layers it computed are kept as a prefix that the same request later resumes from.
- Per session: at most one computation running (a visitor who asks for something else stops waiting for the
  older one, which then stops unless another visitor waits for it; the newer one starts once it has stopped)
  and a cap on new computations per minute.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..errors import BudgetExceeded, RateLimited, RunCancelled
from ..trace import Prefix
from . import _caches


class Result(Protocol):
    """What the cache keeps: anything that can say which tensor/array storages it holds (Trace, Generation,
    HeadRoles, Sweep, ...)."""

    def storages(self) -> Iterable[tuple[int, int]] | dict[int, int]: ...


Compute = Callable[[Callable[[], bool], "Prefix | None"], Any]  # (cancel, prefix to resume from) -> a Result


@dataclass(frozen=True)
class Waiting:
    """What a requester is waiting for, passed to its on_wait callback about every poll interval."""

    state: Literal["queued", "running"]  # queued: waiting for memory; running: computing
    position: int = 0  # queued: 1 = next to start
    queued: int = 0  # how many runs wait for memory
    shared: bool = False  # another visitor asked for the same run first
    seconds: float = 0.0  # since this request began waiting


@dataclass(eq=False)
class _Flight:
    key: Hashable
    need: int  # bytes reserved while it runs
    session: Hashable | None
    waiters: int = 1
    state: Literal["queued", "running", "done"] = "queued"
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None

    @property
    def abandoned(self) -> bool:
        return self.waiters == 0


@dataclass(frozen=True)
class Status:
    budget_bytes: int
    cached_bytes: int
    reserved_bytes: int
    cached_runs: int
    running: int
    queued: int
    resident_bytes: int = 0  # measured (0 without a `resident` reader)
    rest_bytes: int = 0  # the server at rest, loaded models left out (0 until measured)
    sessions: int = 0  # sessions whose new runs of the last minute are counted (the per-visitor cap)
    outside_bytes: int = 0  # what `outside()` reports (the loaded models)


class RunCache:
    """Shared by every session of a server. `get` is thread-safe; traces are read-only, so sharing is safe."""

    def __init__(self, budget_bytes: int, max_entries: int = 64, runs_per_minute: int | None = None,
                 max_prefixes: int = 8, poll_s: float = 0.25, *, resident: Callable[[], int] | None = None,
                 outside: Callable[[], int] | None = None, trim: Callable[[], object] | None = None):
        """resident: reads the server's measured resident bytes (None: admission by the estimates only);
        outside: bytes that sit outside the budget and may grow (the loaded models); trim: gives freed memory
        back to the system (engine.serving.memory.trim)."""
        self.budget_bytes = budget_bytes
        self._resident, self._outside, self._trim = resident, outside or (lambda: 0), trim
        self._rest: int | None = None  # resident bytes at rest, less cached and outside bytes
        self.max_entries = max_entries
        self.runs_per_minute = runs_per_minute
        self.poll_s = poll_s
        self._entries: OrderedDict[Hashable, Result] = OrderedDict()
        self._prefixes: OrderedDict[Hashable, Prefix] = OrderedDict()  # stopped runs, to resume
        self._max_prefixes = max_prefixes
        self._flights: dict[Hashable, _Flight] = {}
        self._queue: deque[_Flight] = deque()
        self._started: dict[Hashable, deque[float]] = {}  # session -> start times of its recent new runs
        self._reserved = 0
        self._cond = threading.Condition()
        self.runs_started = 0  # engine runs begun (cache misses), for tests and status
        self._finished = 0  # computations ended (done, failed or stopped)
        _caches.add(self)

    # ---- reading -----------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def peek(self, key: Hashable) -> Any:
        """The cached result for key, or None; does not compute."""
        with self._cond:
            return self._entries.get(key)

    def status(self) -> Status:
        with self._cond:
            running = sum(f.state == "running" for f in self._flights.values())
            queued = len(self._queue)
            resident = self._resident() if self._resident is not None else 0
            return Status(self.budget_bytes, self._cached_bytes(), self._reserved, len(self._entries), running,
                          queued, resident, self._rest or 0, len(self._started), self._outside())

    @property
    def nbytes(self) -> int:
        with self._cond:
            return self._cached_bytes()

    # ---- the one entry point -----------------------------------------------------------------------------

    def get(self, key: Hashable, compute: Compute, need_bytes: int, *, session: Hashable | None = None,
            on_wait: Callable[[Waiting], None] | None = None) -> Any:
        """The result for key: cached, shared with a computation in flight, or computed in a new one that reserves
        need_bytes first. on_wait(Waiting) is called while waiting; if it raises, this request gives up (the
        run goes on for other requesters, or stops when nobody waits for it any more)."""
        started = time.monotonic()
        while True:
            with self._cond:
                if key in self._entries:
                    self._entries.move_to_end(key)
                    return self._entries[key]
                flight, shared = self._flights.get(key), True
                if flight is None:
                    flight, shared = self._start(key, compute, need_bytes, session), False
                else:
                    flight.waiters += 1
            try:
                return self._wait(flight, shared, started, on_wait)
            except RunCancelled:
                continue  # a run we joined just as everyone else left it was stopped: ask again (it resumes)

    # ---- internals ---------------------------------------------------------------------------------------

    def _start(self, key: Hashable, compute: Compute, need: int, session: Hashable | None) -> _Flight:
        """Begin a new run (under the lock): checks, supersede the session's older run, start its thread."""
        if need > self.budget_bytes:
            raise BudgetExceeded(f"this run needs about {need / 2**20:,.0f} MB, more than this server's whole "
                                 f"memory budget for runs ({self.budget_bytes / 2**20:,.0f} MB, "
                                 "ATTN_EXPLORER_MEMORY_MB). Use a shorter text.")
        if session is not None:
            self._check_rate(session)
        flight = _Flight(key=key, need=need, session=session)
        self._flights[key] = flight
        self.runs_started += 1
        threading.Thread(target=self._run, args=(flight, compute), name=f"run-{self.runs_started}",
                         daemon=True).start()
        return flight

    def _check_rate(self, session: Hashable) -> None:
        if self.runs_per_minute is None:
            return
        now = time.monotonic()
        for other in [s for s, starts in self._started.items() if now - starts[-1] > 60]:
            del self._started[other]  # sessions with no new run in the last minute: nothing to remember
        recent = self._started.setdefault(session, deque())
        while recent and now - recent[0] > 60:
            recent.popleft()
        if len(recent) >= self.runs_per_minute:
            wait = 60 - (now - recent[0])
            raise RateLimited(f"you started {len(recent)} new runs in the last minute, this server's limit; "
                              f"new runs are possible again in {wait:.0f} s (what is already computed still "
                              "shows at once).")
        recent.append(now)

    def _wait(self, flight: _Flight, shared: bool, started: float,
              on_wait: Callable[[Waiting], None] | None) -> Any:
        try:
            while not flight.done.wait(self.poll_s):
                if on_wait is not None:
                    on_wait(self._waiting(flight, shared, started))
        except BaseException:
            with self._cond:
                if flight.state != "done":
                    flight.waiters -= 1
                    self._cond.notify_all()
            raise
        if flight.error is not None:
            raise flight.error
        return flight.result

    def _waiting(self, flight: _Flight, shared: bool, started: float) -> Waiting:
        with self._cond:
            if flight.state == "queued" and flight in self._queue:
                position = self._queue.index(flight) + 1
                return Waiting("queued", position, len(self._queue), shared, time.monotonic() - started)
            return Waiting("running", shared=shared, seconds=time.monotonic() - started)

    def _run(self, flight: _Flight, compute: Compute) -> None:
        """The computation's own thread: wait for memory, compute, keep the result, wake every requester."""
        reserved = False
        try:
            self._reserve(flight)
            reserved = True
            with self._cond:
                prefix = self._prefixes.pop(flight.key, None)
            result = compute(lambda: flight.abandoned, prefix)
            with self._cond:
                self._reserved -= flight.need
                reserved = False
                self._entries[flight.key] = result
                self._evict()
                flight.result = result
        except RunCancelled as stop:
            flight.error = stop
            if stop.prefix is not None:
                with self._cond:
                    self._prefixes[flight.key] = stop.prefix
                    while len(self._prefixes) > self._max_prefixes:
                        self._prefixes.popitem(last=False)
        except BaseException as err:  # noqa: BLE001 - handed to every requester, raised in their threads
            flight.error = err
        finally:
            with self._cond:
                if reserved:
                    self._reserved -= flight.need
                flight.state = "done"
                self._finished += 1
                self._flights.pop(flight.key, None)
                self._cond.notify_all()
            if self._trim is not None:
                self._trim()  # the computation's temporaries (and anything evicted) back to the system
            if self._resident is not None:
                with self._cond:
                    self._sample_rest()
            flight.done.set()

    def _reserve(self, flight: _Flight) -> None:
        """Wait in the first-come queue (skipping computations whose session is busy) until the flight's memory
        fits, by the estimates and by measurement; finished results are evicted first."""
        with self._cond:
            self._queue.append(flight)
        try:
            while True:
                trim = False
                with self._cond:
                    if flight.abandoned:
                        raise RunCancelled("nobody waits for this run any more: it was dropped from the queue.")
                    if self._next_to_start() is flight:
                        evicted = self._evict(room_for=flight.need)
                        if self._reserved + self._cached_bytes() + flight.need <= self.budget_bytes:
                            fits, evicted_too = self._fits_measured(flight.need)
                            if fits:
                                self._reserved += flight.need
                                flight.state = "running"
                                return
                            evicted, trim = evicted + evicted_too, True  # measured too high: free, look again
                        trim = trim or evicted > 0
                    if not trim or self._trim is None:
                        self._cond.wait(self.poll_s)
                        continue
                self._trim()  # outside the lock: evicted results and freed pages leave the measurement
                with self._cond:
                    self._cond.wait(self.poll_s)
        finally:
            with self._cond:
                self._queue.remove(flight)
                self._cond.notify_all()

    def _fits_measured(self, need: int) -> tuple[bool, int]:
        """(whether a computation of `need` bytes may start by the measured memory, results evicted to make room).
        Under the lock. Without a `resident` reader, by the estimates alone."""
        if self._resident is None:
            return True, 0
        self._sample_rest()
        if self._rest is None:  # no computation finished yet: the models' pages may not all be resident
            return True, 0
        measured = self._measured()
        if measured + self._reserved + need <= self.budget_bytes:
            return True, 0
        evicted = 0
        for held in (self._entries, self._prefixes):  # least recently used first; then stopped runs' prefixes
            while held and measured + self._reserved + need > self.budget_bytes:
                before = self._cached_bytes()
                held.popitem(last=False)  # its bytes leave the measurement once it is freed and trimmed
                measured -= before - self._cached_bytes()
                evicted += 1
        idle = self._reserved == 0 and not self._entries and not self._prefixes
        return idle and not evicted, evicted  # nothing left to wait for: start (after a trim and one more look)

    def _sample_rest(self) -> None:
        """Under the lock, while nothing is reserved and once a computation has finished (it touched every weight
        of its model): what is neither cached nor a loaded model is the server at rest; the lowest figure is kept."""
        if self._reserved or (self._rest is None and not self._finished):
            return
        rest = self._resident() - self._outside() - self._cached_bytes()
        self._rest = rest if self._rest is None else min(self._rest, rest)

    def _measured(self) -> int:
        """Bytes the budget holds by measurement: the resident bytes' growth over the server at rest (loaded models
        left out), at least the cached bytes."""
        return max(self._resident() - self._outside() - self._rest, self._cached_bytes())

    def _next_to_start(self) -> _Flight | None:
        """The first queued run whose session has no other run computing: a session's next run waits for its
        previous one without holding up the runs of other sessions queued behind it."""
        return next((f for f in self._queue if not self._session_busy(f)), None)

    def _session_busy(self, flight: _Flight) -> bool:
        """True while an older run that this flight's session started and left is still computing."""
        return flight.session is not None and any(
            other is not flight and other.session == flight.session and other.state == "running"
            for other in self._flights.values())

    def _cached_bytes(self) -> int:
        """Bytes of the cached results and prefixes, each storage once (reused layers are shared)."""
        seen: dict[int, int] = {}
        for result in self._entries.values():
            seen.update(result.storages())
        return sum(seen.values()) + sum(p.nbytes() for p in self._prefixes.values())

    def _evict(self, room_for: int = 0) -> int:
        """Drop least recently used results (then prefixes) while over the entry limit or the budget; how many."""
        def over() -> bool:
            return self._reserved + self._cached_bytes() + room_for > self.budget_bytes

        evicted = 0
        while self._entries and (len(self._entries) > self.max_entries or over()):
            self._entries.popitem(last=False)
            evicted += 1
        while self._prefixes and over():
            self._prefixes.popitem(last=False)
            evicted += 1
        return evicted
