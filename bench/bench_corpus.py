"""Head statistics over a corpus: in the process, and on a local Ray cluster of two workers (a head and a worker
node on 127.0.0.2, one CPU each), on the same texts; the arrays are checked equal.

    .venv/bin/python bench/bench_corpus.py                   # 1,000 texts of at most 64 tokens, SmolLM2
    .venv/bin/python bench/bench_corpus.py --texts 100 --no-ray

Texts: pairs of the built-in sample's sentences (sentence i and sentence i + 7 of a 1,000-sentence sample), cut
to --max-tokens. Memory: the peak RSS rise of this process during the in-process job (ru_maxrss before and after:
only a rise above the earlier peak shows, so the in-process job runs first), and the summed RSS of the cluster's
processes while the Ray job runs, sampled every 0.5 s (the two workers each hold a model).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import torch  # noqa: E402

import engine  # noqa: E402
from engine import corpus  # noqa: E402


def texts_of(n: int) -> corpus.Corpus:
    sample = corpus.sample_corpus(max(n, 300)).texts
    return corpus.Corpus(tuple(f"{sample[i]} {sample[(i + 7) % len(sample)]}" for i in range(n)), f"bench-{n}")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cluster_rss_mb(roots: list[psutil.Process]) -> float:
    """Summed RSS of the `ray start` processes and all their descendants (raylet's workers included)."""
    total = 0
    for root in roots:
        try:
            for p in [root, *root.children(recursive=True)]:
                total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--texts", type=int, default=1_000)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="torch threads in this process")
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = engine.load(args.model, device="cpu")
    texts = texts_of(args.texts)
    lengths = corpus.tokenize(model, texts, args.max_tokens).lengths
    print(f"{args.model}: {len(texts):,} texts, {sum(lengths):,} tokens (at most {args.max_tokens} per text, "
          f"mean {np.mean(lengths):.1f}); torch threads {args.threads}")

    before = peak_mb()
    start = time.perf_counter()
    local = corpus.corpus_stats(model, texts, args.max_tokens)
    seconds = time.perf_counter() - start
    print(f"in-process: {seconds:.1f} s ({len(texts) / seconds:.1f} texts/s); peak RSS rise "
          f"{peak_mb() - before:.0f} MB; result {sum(a.nbytes for a in local.per_text.values()) / 1e6:.1f} MB")
    if args.no_ray:
        return

    from engine.corpus import on_ray
    from tests import ray_cluster

    start_cluster = time.perf_counter()
    with ray_cluster.local_cluster(workers=1) as address:
        print(f"local Ray cluster up in {time.perf_counter() - start_cluster:.0f} s at {address}")
        on_ray.connect(address)
        roots = [p for p in psutil.Process().children() if "ray" in " ".join(p.cmdline())]
        peaks, running = [0.0], threading.Event()
        running.set()

        def sample() -> None:  # the cluster's summed RSS, every half second while the job runs
            while running.is_set():
                peaks.append(cluster_rss_mb(roots))
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        idle = cluster_rss_mb(roots)
        sampler.start()
        start = time.perf_counter()
        remote = corpus.corpus_stats(model, texts, args.max_tokens, ray_address=address, model_name=args.model,
                                     load_options={"device": "cpu"})
        ray_seconds = time.perf_counter() - start
        running.clear()
        sampler.join()
        on_ray.disconnect()
    worst = max(float(np.nanmax(np.abs(remote.per_text[n] - local.per_text[n]))) for n in corpus.NAMES)
    print(f"Ray, 2 workers: {ray_seconds:.1f} s ({len(texts) / ray_seconds:.1f} texts/s; each worker loads the model "
          f"first), speedup {seconds / ray_seconds:.2f}x; cluster RSS {idle:.0f} MB idle, peak {max(peaks):.0f} MB; "
          f"largest difference from in-process {worst:.1e}")


if __name__ == "__main__":
    main()
