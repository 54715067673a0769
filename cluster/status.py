"""One replica's status as JSON, served at /replica/status by replica.py (and through the balancer at
/replica/<name>/status): who it is, its sessions, its runs in flight and queued, its memory.

    {"replica": "r1", "pid": 1234, "state": "ONE_OR_MORE_SESSIONS_CONNECTED", "sessions": 3,
     "runs_in_flight": 1, "runs_queued": 0, "rss_mb": 1180, "uptime_s": 312,
     "warm_start": {"model": "smollm2-135m", "state": "ready", "message": "ready", "seconds": 2.1}}
"""

from __future__ import annotations

import os
import sys
import time

import psutil

STARTED = time.time()
REPLICA_ENV = "ATTN_EXPLORER_REPLICA"  # the replica's name, set by scripts/serve.sh (r1, r2, …)


def serving_status() -> dict[str, int]:
    """Runs in flight and queued (and the memory budget's use) on this server, from engine.serving.status().
    Before the app has imported the engine (no visitor yet) nothing can be running; the engine is not imported
    here (it imports torch: seconds)."""
    serving = sys.modules.get("engine.serving")
    return dict(serving.status()) if serving is not None else {"runs_in_flight": 0, "runs_queued": 0}


def held() -> dict[str, int]:
    """What Streamlit's runtime holds for sessions (components/sessions.py): connected and kept for a reconnect,
    media files, download callables."""
    from components.sessions import held as runtime_held
    from components.sessions import release_closed

    release_closed()  # as the app does at every run: sessions that expired since the last run count for nothing
    return {f"runtime_{name}": count for name, count in runtime_held().items()}


def session_count() -> int:
    """Browser sessions connected to this Streamlit server (the gauge /_stcore/metrics reports)."""
    from streamlit.runtime import Runtime

    if not Runtime.exists():
        return 0
    stats = Runtime.instance().stats_mgr.get_stats(family_names=["active_sessions"])
    return sum(int(stat.value) for stat in stats.get("active_sessions", []))


def runtime_state() -> str:
    from streamlit.runtime import Runtime

    return Runtime.instance().state.name if Runtime.exists() else "NOT_STARTED"


def warm_start_status() -> dict | None:
    """The default model's load begun at the server's start (components/warm_start.py): model, state (loading,
    ready, failed), its latest message and seconds; None if this server did not start one."""
    module = sys.modules.get("components.warm_start")
    loading = module.current() if module is not None else None
    return loading.status() if loading is not None else None


def replica_status() -> dict:
    """Everything an operator needs about this replica, in one JSON-ready dict."""
    return {
        "replica": os.environ.get(REPLICA_ENV, "single"),
        "pid": os.getpid(),
        "state": runtime_state(),
        "sessions": session_count(),
        **serving_status(),
        **held(),
        "rss_mb": round(psutil.Process().memory_info().rss / 2**20),
        "uptime_s": round(time.time() - STARTED),
        "warm_start": warm_start_status(),
    }
