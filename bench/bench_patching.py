"""Time the patching sweeps of the Compare view on the mole presets, and print which heads carry the difference.

    .venv/bin/python bench/bench_patching.py                       # both embedded models, CPU
    .venv/bin/python bench/bench_patching.py --models smollm2-135m --threads 1 --one-by-one

A: "The gardener trapped the burrowing mole" (animal), B: "In chemistry, the amount of a substance is measured
in units called the mole"; the target is "mole" in each. Each patched run reuses B's layers before the
patched one; by default the patched runs go as one batch (engine.batch). Prints the time of the layer sweep
and the all-heads sweep, and the top heads by each effect.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import engine  # noqa: E402
from engine.analysis import compare, senses  # noqa: E402

ANIMAL = "The gardener trapped the burrowing mole"
CHEMISTRY = "In chemistry, the amount of a substance is measured in units called the mole"


def top(scores: np.ndarray, m: int = 5) -> str:
    return ", ".join(f"L{layer}H{head} {value:+.3f}" for layer, head, value in senses.top_heads(scores, m))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m", "minilm-l6"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--one-by-one", action="store_true",
                        help="also time the sweeps as one traced run per patch (run=default_run, with reuse=)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in args.models:
        model = engine.load(name, device="cpu")
        a, b = model.run(ANIMAL), model.run(CHEMISTRY)
        target_a = senses.find_word(model, ANIMAL, "mole")[0][-1]
        target_b = senses.find_word(model, CHEMISTRY, "mole")[0][-1]
        print(f"\n## {name}: A {a.n_tokens} tokens (target {target_a}), B {b.n_tokens} tokens (target {target_b})")
        start = time.perf_counter()
        distances = compare.head_distances(a, target_a, b, target_b)
        similarity = compare.layer_similarity(a, target_a, b, target_b)
        print(f"head distances + layer similarity: {time.perf_counter() - start:.3f} s")
        print("similarity by layer:", " ".join(f"{s:.2f}" for s in similarity))
        print("most different heads (1 − cos of head_out):", top(np.nan_to_num(distances, nan=-1)))
        start = time.perf_counter()
        layers = compare.sweep_layers(a, target_a, b, target_b)
        t_layers = time.perf_counter() - start
        start = time.perf_counter()
        heads = compare.sweep_all_heads(a, target_a, b, target_b)
        t_heads = time.perf_counter() - start
        print(f"layer sweep ({len(layers.cells)} runs): {t_layers:.2f} s; all-heads sweep ({len(heads.cells)} runs): "
              f"{t_heads:.2f} s")
        if args.one_by_one:
            run = compare.default_run(model, b)
            start = time.perf_counter()
            compare.sweep_layers(a, target_a, b, target_b, run=run)
            t_layers = time.perf_counter() - start
            start = time.perf_counter()
            compare.sweep_all_heads(a, target_a, b, target_b, run=run)
            print(f"one traced run per patch (reuse=): layer sweep {t_layers:.2f} s; all-heads sweep "
                  f"{time.perf_counter() - start:.2f} s")
        print(f"cos(B, A) at the last block: {layers.base_cos:.3f}")
        print("layer sweep, gap closed:", " ".join(f"{g:.2f}" for g in layers.gap_closed))
        print("top heads by gap closed:", top(heads.gap_closed))
        if heads.logprob_change is not None:
            token = model.readable([heads.token_id])[0]
            print(f"followed token {token!r} (A's top prediction), log p in B: {heads.base_logprob:.2f}")
            print("layer sweep, Δ log p:", " ".join(f"{d:+.2f}" for d in layers.logprob_change))
            print("top heads by Δ log p:", top(heads.logprob_change))


if __name__ == "__main__":
    main()
