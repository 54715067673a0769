"""Hugging Face hub checkpoints: sized before anything is written, then fetched into the app's own download folder.

`checkout(repo_id, ...)` asks the hub for the repository's file list with sizes (`HfApi.model_info` with
`files_metadata=True`), works out which files a load needs (`plan`), refuses a model whose files alone exceed the
disk budget before any file is written, and yields `fetch(weights)`: the config alone first (so the engine can
check the architecture and size), then everything it reads. The repository stays in use (never removed from the
cache, see model_cache.py) until the `with` block ends. When the hub is out of reach, only the local cache is
read and nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import DiskBudgetExceeded, ModelLoadError
from .model_cache import ModelCache, size_text

Progress = Callable[[float, str], None]
Fetch = Callable[[bool], Path]  # fetch(weights) -> the folder: config.json alone (False) or everything (True)

CONFIG_PATTERNS = ["config.json"]
WEIGHT_PATTERNS = ["*.json", "*.txt", "*.model", "tokenizer*", "*.safetensors"]
BIN_PATTERN = "pytorch_model*.bin"  # only for a checkpoint without safetensors


@dataclass(frozen=True)
class Plan:
    """The files one fetch downloads: the patterns given to snapshot_download and each matching file's size."""

    patterns: tuple[str, ...]
    files: tuple[tuple[str, int], ...]

    @property
    def n_bytes(self) -> int:
        return sum(size for _, size in self.files)


def plan(files: list[tuple[str, int]], weights: bool) -> Plan:
    """Which of a repository's (path, size) files a fetch downloads, matched exactly as snapshot_download does."""
    from huggingface_hub.utils import filter_repo_objects

    patterns = list(WEIGHT_PATTERNS if weights else CONFIG_PATTERNS)
    if weights and not list(filter_repo_objects(files, allow_patterns=["*.safetensors"], key=lambda f: f[0])):
        patterns.append(BIN_PATTERN)
    chosen = filter_repo_objects(files, allow_patterns=patterns, key=lambda f: f[0])
    return Plan(tuple(patterns), tuple(chosen))


def invalid_id(repo_id: str, folders_allowed: bool) -> ModelLoadError:
    shown = repr(repo_id if len(repo_id) <= 100 else repo_id[:100] + "…")
    folder = ", an existing local folder," if folders_allowed else ""
    return ModelLoadError(f"{shown} is neither an embedded model (smollm2-135m, minilm-l6){folder} nor a valid "
                          "Hugging Face model id (like 'gpt2' or 'org/name').")


def _hub_errors(repo_id: str, err: Exception) -> ModelLoadError | None:
    """The engine's message for a hub error a visitor can cause; None for an error that means 'out of reach'."""
    from huggingface_hub.errors import GatedRepoError, HFValidationError, RepositoryNotFoundError

    if isinstance(err, HFValidationError):
        return invalid_id(repo_id, folders_allowed=True)
    if isinstance(err, GatedRepoError):  # a subclass of RepositoryNotFoundError: test it first
        return ModelLoadError(f"{repo_id!r} is gated on the Hugging Face hub: log in and accept its terms.")
    if isinstance(err, RepositoryNotFoundError):
        return ModelLoadError(f"no public Hugging Face model named {repo_id!r} (it may be private or misspelt).")
    return None


def _out_of_reach(repo_id: str, why: str) -> ModelLoadError:
    return ModelLoadError(
        f"could not fetch {repo_id!r}: the Hugging Face hub is out of reach (no network?) and it is not in the "
        f"local cache. Offline, use smollm2-135m or minilm-l6, or a local folder. ({why})")


def repo_files(repo_id: str) -> tuple[str | None, list[tuple[str, int]]] | None:
    """(commit, [(path, size)]) of a hub repository; None when the hub cannot be reached (offline, no network,
    the hub down). Raises ModelLoadError for a name the hub refuses (invalid, private or missing, gated)."""
    from huggingface_hub import HfApi

    try:
        info = HfApi().model_info(repo_id, files_metadata=True)
    except Exception as err:  # noqa: BLE001 - every failure that is not the visitor's means "out of reach"
        refused = _hub_errors(repo_id, err)
        if refused is not None:
            raise refused from None
        return None
    files = [(s.rfilename, int(s.size or (s.lfs.size if s.lfs else 0) or 0)) for s in info.siblings or []]
    return info.sha, files


def _download(repo_id: str, root: Path, patterns: list[str], revision: str | None, offline: bool) -> Path:
    import huggingface_hub

    try:
        return Path(huggingface_hub.snapshot_download(repo_id, allow_patterns=patterns, revision=revision,
                                                      cache_dir=root, local_files_only=offline))
    except Exception as err:  # noqa: BLE001 - mapped to the engine's messages below
        refused = _hub_errors(repo_id, err)
        if refused is not None:
            raise refused from None
        if isinstance(err, OSError):  # LocalEntryNotFoundError, a connection that broke, a full disk
            raise _out_of_reach(repo_id, type(err).__name__) from None
        raise


@contextmanager
def checkout(repo_id: str, progress: Progress, root: Path, budget_bytes: int | None = None) -> Iterator[Fetch]:
    """Yields fetch(weights) -> the checkpoint's folder under `root`, downloading what is missing. A repository
    whose files exceed `budget_bytes` alone is refused before anything is written; other downloads are removed,
    least recently used first, to keep `root` under the budget. The repository is in use until the block ends."""
    from huggingface_hub.file_download import repo_folder_name

    progress(0.05, f"asking the Hugging Face hub about {repo_id}")
    listing = repo_files(repo_id)
    if listing is not None and budget_bytes is not None:
        needed = plan(listing[1], weights=True).n_bytes
        if needed > budget_bytes:
            raise DiskBudgetExceeded(
                f"{repo_id} needs {size_text(needed)} of downloads, more than this server's whole disk budget for "
                f"downloaded models ({size_text(budget_bytes)}). Choose a smaller model.")
    cache = ModelCache(root, budget_bytes)
    name = repo_folder_name(repo_id=repo_id, repo_type="model")
    if listing is None and not (root / name).is_dir():  # offline, never downloaded: nothing to read, nothing written
        raise _out_of_reach(repo_id, "not downloaded")

    def fetch(weights: bool) -> Path:
        if listing is None:  # offline: the local cache alone, nothing downloaded
            cache.touch(name)
            folder = _download(repo_id, root, WEIGHT_PATTERNS if weights else CONFIG_PATTERNS, None, offline=True)
            if weights and not any(folder.glob("*.safetensors")):
                folder = _download(repo_id, root, [*WEIGHT_PATTERNS, BIN_PATTERN], None, offline=True)
            return folder
        revision, files = listing
        chosen = plan(files, weights)
        cache.reserve(name, chosen.n_bytes)
        what = f"{repo_id} ({size_text(chosen.n_bytes)})" if weights else f"{repo_id}'s configuration"
        progress(0.1 if not weights else 0.2, f"fetching {what} from the Hugging Face hub")
        return _download(repo_id, root, list(chosen.patterns), revision, offline=False)

    with cache.using(name):
        yield fetch
