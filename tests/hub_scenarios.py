"""Disk-budget scenarios against a fake hub, each in a fresh process: `python tests/hub_scenarios.py ARGS_JSON`.

huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE once, when it is imported, so the fake hub starts first and
the engine is imported after. ARGS_JSON: {"scenario": name, "repos": {id: folder}, "cache": folder,
"budget_gb": float, "slow": {id: seconds}}. Prints one JSON object: what the scenario saw.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_hub import FakeHub  # noqa: E402


def entries(root: Path) -> list[str]:
    from engine.model_cache import ModelCache

    return [e.name.removeprefix("models--").replace("--", "/") for e in ModelCache(root).entries()]


def load(name: str) -> str:
    """'ok', or the error's class and message."""
    import engine
    from components import settings

    try:
        engine.load(name, **settings.load().load_options())
        return "ok"
    except engine.EngineError as err:
        return f"{type(err).__name__}: {err}"


def lru(hub: FakeHub, root: Path) -> dict:
    """a, b, a again (from the cache), c: b is the least recently used and goes; a big model is refused."""
    seen = {}
    for step, name in enumerate(["org/a", "org/b", "org/a", "org/c"]):
        seen[f"{step}:{name}"] = [load(name), entries(root), len(hub.served)]
        time.sleep(0.05)  # distinct last-use times even on a coarse clock
    seen["big"] = [load("org/big"), entries(root), [f for r, f in hub.served if r == "org/big"],
                   (root / "models--org--big").exists()]
    seen["70b"] = [load("org/70b"), [f for r, f in hub.served if r == "org/70b"]]  # small files, a 70 B config
    return seen


def in_use(hub: FakeHub, root: Path) -> dict:
    """While org/slow downloads (its files are served slowly), org/other needs its room: it is refused rather than
    removing org/slow; once org/slow is loaded it is no longer in use and org/other takes its place."""
    first: dict[str, str] = {}
    loader = threading.Thread(target=lambda: first.update(slow=load("org/slow")))
    loader.start()
    while not any(r == "org/slow" and f.endswith(".safetensors") for r, f in hub.served):
        time.sleep(0.05)
    during = load("org/other")
    slow_present = (root / "models--org--slow").exists()
    loader.join()
    after = load("org/other")
    return {"during": during, "slow_present_during": slow_present, "slow": first["slow"], "after": after,
            "entries": entries(root)}


def families(hub: FakeHub, root: Path) -> dict:
    """Each repository loaded in turn: (result, the engine's family, parameters, the files fetched)."""
    import engine
    from components import settings

    seen = {}
    for name in hub.repos:
        before = len(hub.served)
        try:
            model = engine.load(name, **settings.load().load_options())
            seen[name] = ["ok", model.config.family, model.n_params(), sorted(f for _, f in hub.served[before:])]
        except engine.EngineError as err:
            seen[name] = [f"{type(err).__name__}: {err}", None, 0, sorted(f for _, f in hub.served[before:])]
    return seen


def main() -> None:
    args = json.loads(sys.argv[1])
    repos = {repo: Path(folder) for repo, folder in args["repos"].items()}
    with FakeHub(repos, slow=args.get("slow")) as hub:
        os.environ.update(HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", ATTN_EXPLORER_CACHE=args["cache"],
                          ATTN_EXPLORER_MODEL_CACHE_GB=str(args["budget_gb"]), ATTN_EXPLORER_DEVICE="cpu",
                          HF_HUB_DISABLE_PROGRESS_BARS="1")
        root = Path(args["cache"]) / "hub"
        result = {"lru": lru, "in_use": in_use, "families": families}[args["scenario"]](hub, root)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
