"""Downloaded hub models on disk, under a budget: the least recently used go first, never one in use.

Hub checkpoints are downloaded into a folder the app owns (`engine.hub.hub_root()`: `<cache root>/hub`, never
Hugging Face's shared cache, where other programs' models live), in Hugging Face's cache layout: one
`models--org--name` folder per repository. Beside them this module keeps

    .last-used/<repository folder>     touched at every use: its modification time orders the repositories (least
                                       recently used first); its text is the repository's planned size in bytes
    .in-use/<repository folder>.lock   locked shared (flock) by every thread or process that downloads or reads
                                       the repository; removing the repository needs it exclusively
    .budget.lock                       locked exclusively while one thread makes room and registers its download

Threads and processes (replicas on one machine) share the folder safely:
- a repository is removed only by the holder of the budget lock, and only while it can also lock the
  repository's in-use lock exclusively: never while anyone downloads or reads it;
- a repository in use counts as the larger of its size on disk and its planned size, so downloads running at
  once count in full from their start, and two of them cannot both take the same room;
- a removed folder is first renamed aside, so nobody finds a half-removed repository under its name.
Lock files are never deleted (a lock file deleted and created again could be locked twice); they are empty, one
per repository that passed the size check. The embedded models are not in this folder (SmolLM2's dequantised
weights are a sibling of it, the MiniLM weights are in their Python package), so they are never removed.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import DiskBudgetExceeded

USE_DIR = ".last-used"
LOCK_DIR = ".in-use"
BUDGET_LOCK = ".budget.lock"
ASIDE = ".removing-"


@dataclass(frozen=True)
class Entry:
    """One downloaded repository: its folder name, bytes on disk, planned bytes and last use (epoch seconds)."""

    name: str
    disk_bytes: int
    planned_bytes: int
    last_used: float


def disk_bytes(folder: Path) -> int:
    """Bytes of the regular files under `folder` (Hugging Face's snapshot links are not counted twice)."""
    total = 0
    for parent, _, files in os.walk(folder):
        for name in files:
            try:
                info = os.lstat(os.path.join(parent, name))
            except FileNotFoundError:  # a download renamed it meanwhile
                continue
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
    return total


def size_text(n_bytes: int) -> str:
    """1.2 GB, 340 MB, 12 kB: how sizes read in messages."""
    if n_bytes >= 1e9:
        return f"{n_bytes / 1e9:,.1f} GB"
    if n_bytes >= 1e6:
        return f"{n_bytes / 1e6:,.0f} MB"
    return f"{max(n_bytes, 1) / 1e3:,.0f} kB"


@contextmanager
def _flock(path: Path, mode: int) -> Iterator[None]:
    """Hold an flock on `path` (created if missing) for the block; the kernel releases it if the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle, mode)
        yield


class ModelCache:
    """The download folder `root` and its budget (None: no budget, nothing is removed)."""

    def __init__(self, root: Path, budget_bytes: int | None = None):
        self.root = Path(root)
        self.budget_bytes = budget_bytes

    @contextmanager
    def using(self, name: str) -> Iterator[None]:
        """Mark the repository folder `name` in use for the block (a shared lock): it cannot be removed meanwhile."""
        with _flock(self.root / LOCK_DIR / f"{name}.lock", fcntl.LOCK_SH):
            yield

    def touch(self, name: str, planned_bytes: int | None = None) -> None:
        """Record a use of `name` now, with the size its download will have (default: its size on disk)."""
        if planned_bytes is None:
            planned_bytes = disk_bytes(self.root / name)
        marker = self.root / USE_DIR / name
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(int(planned_bytes)))
        os.utime(marker, ns=(time.time_ns(), time.time_ns()))

    def reserve(self, name: str, planned_bytes: int) -> list[str]:
        """Record a use of `name` whose files will total `planned_bytes`, and remove the least recently used other
        repositories not in use until everything fits the budget. Call it inside `using(name)`, before the
        download. Returns the removed folder names; raises DiskBudgetExceeded when the repositories in use leave
        too little room."""
        with _flock(self.root / BUDGET_LOCK, fcntl.LOCK_EX):
            self._clear_leftovers()
            self.touch(name, planned_bytes)
            if self.budget_bytes is None:
                return []
            own = max(disk_bytes(self.root / name), planned_bytes)
            others = sorted((e for e in self.entries() if e.name != name), key=lambda e: e.last_used)
            busy = {e.name for e in others if self._in_use(e.name)}
            total = own + sum(max(e.disk_bytes, e.planned_bytes) if e.name in busy else e.disk_bytes
                              for e in others)
            removed = []
            for entry in others:  # least recently used first
                if total <= self.budget_bytes:
                    break
                if entry.name not in busy and self._remove_unused(entry.name):
                    total -= entry.disk_bytes
                    removed.append(entry.name)
            if total > self.budget_bytes:
                raise DiskBudgetExceeded(
                    f"the server's disk space for downloaded models ({size_text(self.budget_bytes)}) is taken by "
                    "models that other visitors are loading right now; try again in a minute, or choose an "
                    "embedded model.")
            return removed

    def entries(self) -> list[Entry]:
        """Every repository folder in the cache, with its size and last use (0 when never recorded)."""
        out = []
        for folder in sorted(self.root.glob("models--*")):
            if not folder.is_dir():
                continue
            marker = self.root / USE_DIR / folder.name
            try:
                planned, last_used = int(marker.read_text() or 0), marker.stat().st_mtime
            except (OSError, ValueError):
                planned, last_used = 0, 0.0
            out.append(Entry(folder.name, disk_bytes(folder), planned, last_used))
        return out

    @contextmanager
    def _held_if_free(self, name: str) -> Iterator[bool]:
        """Hold `name`'s in-use lock exclusively if no thread or process holds it (checked without waiting);
        yields whether it is held."""
        with open(self._lock_path(name), "a+b") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True

    def _in_use(self, name: str) -> bool:
        """True while some thread or process holds `name`'s in-use lock."""
        with self._held_if_free(name) as free:
            return not free

    def _remove_unused(self, name: str) -> bool:
        """Remove repository `name` unless it is in use (its in-use lock is held exclusively meanwhile)."""
        with self._held_if_free(name) as free:
            if not free:
                return False
            aside = self.root / f"{ASIDE}{name}-{os.getpid()}-{threading.get_ident()}"
            try:
                os.replace(self.root / name, aside)
            except FileNotFoundError:
                return False
            shutil.rmtree(aside, ignore_errors=True)
            (self.root / USE_DIR / name).unlink(missing_ok=True)
            return True

    def _lock_path(self, name: str) -> Path:
        path = self.root / LOCK_DIR / f"{name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _clear_leftovers(self) -> None:
        """Finish removals that a process interrupted (only called while holding the budget lock)."""
        for aside in self.root.glob(f"{ASIDE}*"):
            shutil.rmtree(aside, ignore_errors=True)
