"""What closed sessions leave behind in Streamlit's runtime, released.

A closed page's session is kept for a reconnect (Streamlit's MemorySessionStorage: at most 128, for 2 minutes)
and then dropped without being shut down, so its media files and download callables stay registered in the
runtime's MediaFileManager for ever (each download callable holds its request: texts, settings). `release_closed`
drops the references of every session the runtime no longer knows, as a shutdown would; the app calls it at
every run (cheap: one pass over the sessions). `held` counts what the runtime holds, for the status page and the
soak test.
"""

from __future__ import annotations

import logging

_LOGGER = logging.getLogger(__name__)


def _runtime():
    from streamlit.runtime import Runtime

    return Runtime.instance() if Runtime.exists() else None


def release_closed() -> int:
    """Drop the media and download references of sessions that are neither connected nor kept for a reconnect;
    how many sessions were released. A no-op outside a running server (AppTest, scripts)."""
    runtime = _runtime()
    manager = getattr(runtime, "_session_mgr", None)  # AppTest's stand-in runtime has none
    if manager is None:
        return 0
    try:
        known = {info.session.id for info in manager.list_sessions()}
        media = runtime.media_file_mgr
        with media._lock:
            gone = set(media._files_by_session_and_coord) - known
            orphans = bool(set(media._deferred_ids_by_session) - known)
        for session_id in gone:
            media.clear_session_refs(session_id)
        if gone or orphans:
            media.remove_orphaned_files()  # drops the download callables no session references any more
        return len(gone)
    except RuntimeError:  # the event loop changed the sessions while we read them (we run in a script thread):
        return 0  # the next run releases them
    except AttributeError as err:  # another Streamlit version: leave it to Streamlit
        _LOGGER.warning("cannot release closed sessions' files: %s", str(err))  # not err: its frames hold runs
        return 0


def held() -> dict[str, int]:
    """{"sessions", "sessions_kept", "media_files", "downloads", "sessions_with_files"} of the running server."""
    runtime = _runtime()
    if runtime is None:
        return {}
    try:
        manager, media = runtime._session_mgr, runtime.media_file_mgr
        return {"sessions": len(manager.list_active_sessions()),
                "sessions_kept": len(manager.list_sessions()) - len(manager.list_active_sessions()),
                "media_files": len(media._file_metadata), "downloads": len(media._deferred_callables),
                "sessions_with_files": len(set(media._files_by_session_and_coord)
                                           | set(media._deferred_ids_by_session))}
    except (AttributeError, RuntimeError):
        return {}
