"""A bounded, thread-safe LRU for traces: at most `max_entries` and `max_bytes`, oldest out first."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

from ..trace import Trace


class TraceCache:
    """Shared by every session of a server; traces are read-only, so handing out the same object is safe."""

    def __init__(self, max_entries: int = 16, max_bytes: int = 4 << 30):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, Trace] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(t.nbytes() for t in self._entries.values())

    def get(self, key: Hashable, compute: Callable[[], Trace]) -> Trace:
        """The cached trace for `key`, computing (outside the lock) and storing it on a miss."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        trace = compute()
        with self._lock:
            self._entries[key] = trace
            self._entries.move_to_end(key)
            self._evict()
        return trace

    def _evict(self) -> None:
        total = sum(t.nbytes() for t in self._entries.values())
        while len(self._entries) > 1 and (len(self._entries) > self.max_entries or total > self.max_bytes):
            _, old = self._entries.popitem(last=False)
            total -= old.nbytes()
