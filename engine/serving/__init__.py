"""What a server shares between its sessions: loaded models, computed runs and the memory they may use.

`status()` sums every RunCache of this process (a server has one): what an operator's status page shows.
"""

from __future__ import annotations

import weakref

_caches: weakref.WeakSet = weakref.WeakSet()  # every RunCache of this process, registered by its constructor


def status() -> dict[str, int]:
    """{"runs_in_flight", "runs_queued", "cached_runs", "budget_mb", "reserved_mb", "cached_mb", "resident_mb",
    "rest_mb", "models_mb", "capped_sessions"} of this process (resident, rest and models: as the run cache
    measures them, 0 where it does not)."""
    totals = dict.fromkeys(("runs_in_flight", "runs_queued", "cached_runs", "budget_mb", "reserved_mb",
                            "cached_mb", "resident_mb", "rest_mb", "models_mb", "capped_sessions"), 0)
    for cache in list(_caches):
        s = cache.status()
        totals["runs_in_flight"] += s.running
        totals["runs_queued"] += s.queued
        totals["cached_runs"] += s.cached_runs
        totals["budget_mb"] += s.budget_bytes >> 20
        totals["reserved_mb"] += s.reserved_bytes >> 20
        totals["cached_mb"] += s.cached_bytes >> 20
        totals["resident_mb"] = max(totals["resident_mb"], s.resident_bytes >> 20)  # one process: not summed
        totals["rest_mb"] = max(totals["rest_mb"], s.rest_bytes >> 20)
        totals["models_mb"] = max(totals["models_mb"], s.outside_bytes >> 20)
        totals["capped_sessions"] += s.sessions
    return totals
